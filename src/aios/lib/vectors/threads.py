"""Thread budgets for the numeric libraries: BLAS and ONNX Runtime.

On a 2-core host, numpy's OpenBLAS and ONNX Runtime each start a pool sized
to the machine, and both spin while waiting.  A semantic route (one small
matrix product and one short embedding) then spends more time handing work
between threads than computing: a 150-skill route went from 7.1 ms to
2.4 ms with one BLAS thread and identical decisions.  Routing therefore runs
with deliberate budgets:

* ONNX Runtime sessions use ``intra_op_threads()`` threads (default 1,
  ``$AIOS_EMBED_THREADS`` overrides) with spinning off; throughput comes
  from batching concurrent intents, not from splitting one tiny matrix
  product across cores.
* :func:`set_blas_threads` limits OpenBLAS at run time through its own
  entry point (found in the loaded library, or through ``threadpoolctl``
  when installed); it returns the previous value so a caller can restore
  it.  Nothing happens (and ``None`` is returned) when neither is found.
"""

from __future__ import annotations

import ctypes
import os
import re
from typing import Any

_SETTERS = ("scipy_openblas_set_num_threads64_", "openblas_set_num_threads64_",
            "openblas_set_num_threads")
_GETTERS = ("scipy_openblas_get_num_threads64_", "openblas_get_num_threads64_",
            "openblas_get_num_threads")
_lib: Any = None


def intra_op_threads() -> int:
    raw = os.environ.get("AIOS_EMBED_THREADS", "")
    return int(raw) if raw.isdigit() and int(raw) > 0 else 1


def _openblas() -> Any:
    global _lib
    if _lib is None:
        import numpy  # noqa: F401  (loads the BLAS library)

        try:
            with open("/proc/self/maps") as f:
                maps = f.read()
        except OSError:
            maps = ""
        for path in sorted(set(re.findall(r"(/\S*openblas\S*\.so\S*)", maps))):
            try:
                lib = ctypes.CDLL(path)
            except OSError:
                continue
            if any(hasattr(lib, s) for s in _SETTERS):
                _lib = lib
                break
        else:
            _lib = False
    return _lib or None


def blas_threads() -> int | None:
    lib = _openblas()
    if lib is None:
        return None
    for g in _GETTERS:
        if hasattr(lib, g):
            return int(getattr(lib, g)())
    return None


def set_blas_threads(n: int) -> int | None:
    """Limit OpenBLAS to ``n`` threads; the previous count, or None if not possible."""
    lib = _openblas()
    if lib is None:
        try:
            from threadpoolctl import threadpool_limits  # type: ignore[import-not-found]
        except ImportError:
            return None
        threadpool_limits(n, user_api="blas")
        return None
    before = blas_threads()
    for s in _SETTERS:
        if hasattr(lib, s):
            getattr(lib, s)(ctypes.c_int(n))
            break
    return before
