"""Vectors (whitepaper 2.4's memory, the pure part): embedders and the vector index.

:mod:`aios.lib.vectors.embedding` turns text into unit vectors,
:mod:`aios.lib.vectors.index` searches them (with :mod:`~aios.lib.vectors.filters`
for metadata conditions and :mod:`~aios.lib.vectors.store` on disk); memoryd's core
(:mod:`aios.kmod.memoryd.core`) builds the shared memory fabric on both.
Nothing is imported here so that ``import aios.lib.vectors`` stays cheap.
"""
