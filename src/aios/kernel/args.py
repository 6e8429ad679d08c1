"""Argument checks shared by the syscall handlers.

Handlers trust nothing an agent passes: each argument goes through one of
these, which return the value in canonical form or raise
:class:`~aios.abi.errors.InvalidArgument`.  (``bool`` is not an ``int`` here.)
"""

from __future__ import annotations

from typing import Any

import msgpack

from aios.abi.errors import InvalidArgument


def as_int(v: Any, name: str, lo: int | None = None, hi: int | None = None) -> int:
    if type(v) is not int:
        raise InvalidArgument(f"{name} must be an int")
    if lo is not None and v < lo:
        raise InvalidArgument(f"{name} must be >= {lo}")
    if hi is not None and v > hi:
        raise InvalidArgument(f"{name} must be <= {hi}")
    return v


def as_str(v: Any, name: str, max_len: int = 256) -> str:
    if type(v) is not str or len(v) > max_len:
        raise InvalidArgument(f"{name} must be a str of at most {max_len} characters")
    return v


def as_bool(v: Any, name: str) -> bool:
    if type(v) is not bool:
        raise InvalidArgument(f"{name} must be a bool")
    return v


def as_opts(v: Any, allowed: frozenset[str], name: str = "options") -> dict[str, Any]:
    if v is None:
        return {}
    if type(v) is not dict:
        raise InvalidArgument(f"{name} must be a dict")
    for k in v:
        if type(k) is not str or k not in allowed:
            raise InvalidArgument(f"unknown {name[:-1] if name.endswith('s') else name} {k!r}; allowed: {sorted(allowed)}")
    return v


def as_plain(v: Any, name: str, max_bytes: int) -> bytes:
    """Check that ``v`` is plain data (msgpack-able) within ``max_bytes``; returns the encoding."""
    try:
        blob: bytes = msgpack.packb(v, use_bin_type=True)
    except (TypeError, ValueError, OverflowError) as e:
        raise InvalidArgument(f"{name} must be plain data (dict/list/str/bytes/int/float/bool/None): {e}") from None
    if len(blob) > max_bytes:
        raise InvalidArgument(f"{name} is {len(blob)} bytes encoded; the limit is {max_bytes}")
    return blob


def copy_plain(v: Any, name: str, max_bytes: int) -> Any:
    """A deep copy of plain data, through its encoding (so it is also checked)."""
    return msgpack.unpackb(as_plain(v, name, max_bytes), raw=False, strict_map_key=False)


def as_dict(v: Any, name: str) -> dict[str, Any]:
    if type(v) is not dict:
        raise InvalidArgument(f"{name} must be a dict")
    return v
