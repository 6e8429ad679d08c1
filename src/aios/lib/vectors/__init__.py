"""Vectors (whitepaper 2.4's memory, the pure part): embedders and the vector index.

:mod:`aios.lib.vectors.embedding` turns text into unit vectors,
:mod:`aios.lib.vectors.index` stores and searches them; memoryd's core
(:mod:`aios.kmod.memoryd.core`) builds the shared memory fabric on both.
Nothing is imported here so that ``import aios.lib.vectors`` stays cheap.
"""
