"""The storage edge: foreign I/O exceptions become one :class:`~aios.abi.errors.StorageError`.

AIOS keeps state in a handful of files (the audit log, the keystore, the
token revocation list, the memory store).  Each is read and written through
a library with its own exceptions: ``sqlite3.DatabaseError`` for a damaged
database, ``json.JSONDecodeError`` for a truncated key file, ``OSError`` for
a full disk or a missing permission, ``UnicodeDecodeError`` for garbage.
None of those may reach an agent (where it would become a ``KernelPanic``)
or a user (as a traceback).  Each module wraps its file access in
:func:`storage_edge`, which names the file and what to do about it::

    with storage_edge(path, "the token revocation list",
                      "restore it from a backup, or delete it to start an empty list"):
        ...

Taxonomy errors raised inside pass through unchanged.
"""

from __future__ import annotations

import json
import sqlite3
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path

from aios.abi.errors import AIOSError, StorageError

FOREIGN: tuple[type[BaseException], ...] = (
    sqlite3.Error, json.JSONDecodeError, UnicodeDecodeError, OSError, ValueError, KeyError, TypeError,
)


def storage_error(exc: BaseException, path: Path | str, what: str, hint: str = "") -> StorageError:
    """The StorageError for ``exc`` raised while using ``what`` at ``path``."""
    if isinstance(exc, sqlite3.OperationalError):  # locked, read-only, a disk I/O error
        state = "could not be used"
    elif isinstance(exc, (sqlite3.Error, ValueError, KeyError, TypeError)):  # decoding included
        state = "is corrupt"
    else:
        state = "could not be read or written"
    msg = f"{what} at {path} {state} ({type(exc).__name__}: {exc})"
    if hint:
        msg += f"; {hint}"
    return StorageError(msg, path=str(path), hint=hint)


@contextmanager
def storage_edge(path: Path | str, what: str, hint: str = "") -> Iterator[None]:
    """Turn foreign I/O exceptions raised inside into one :class:`StorageError`."""
    try:
        yield
    except AIOSError:
        raise
    except FOREIGN as exc:
        raise storage_error(exc, path, what, hint) from exc
