"""The memory package (whitepaper 2.4): embedding, vector index, fabric.

:mod:`aios.memory.embedding` turns text into unit vectors,
:mod:`aios.memory.index` stores and searches them; memoryd's core
(:mod:`aios.services.memoryd.core`) builds the shared memory fabric on both.
Nothing is imported here so that ``import aios.memory`` stays cheap.
"""
