"""Importing Python code the agent's uid cannot reach by path.

An isolated agent runs under its own host uid.  If the Python installation
lives below a directory that uid may not traverse (on these hosts the
interpreter is under ``/root``, mode 0700), a plain ``import`` of a module
the zygote had not already loaded fails with "No module named ...", even
though Landlock allows reading the files.

The fix keeps every protection in place: *before* the child drops to the
agent uid it opens a directory descriptor for each ``sys.path`` entry;
afterwards, for the entries the agent cannot reach by path, a meta-path
finder resolves modules with ``openat(dirfd, relative_path)``.  Only the
components below the descriptor are checked by the kernel (all
world-readable here), Landlock still checks the file against the read-only
hierarchy, and nothing outside those trees becomes reachable.  It serves
pure-Python modules and packages; C extensions must be loaded by the zygote
(which pre-imports the common ones) because ``dlopen`` needs a path.
"""

from __future__ import annotations

import contextlib
import importlib.abc
import importlib.machinery
import os
import sys
import types
from collections.abc import Sequence

# C extensions and common modules the zygote loads so agents can use them
PRELOAD = (
    "json", "re", "collections", "dataclasses", "typing", "enum", "functools", "itertools",
    "hashlib", "base64", "binascii", "struct", "math", "random", "datetime", "time", "heapq",
    "bisect", "copy", "string", "textwrap", "uuid", "decimal", "fractions", "statistics",
    "pathlib", "zlib", "pkgutil", "importlib.util", "contextlib", "operator", "array",
    "unicodedata", "_json", "_bisect", "_heapq", "_random", "_datetime", "_decimal",
    "_statistics", "select", "_contextvars", "contextvars", "asyncio", "weakref", "abc",
    "io", "csv", "_csv", "shlex", "fnmatch", "glob", "tempfile", "traceback", "logging",
    "secrets", "hmac", "_sha256", "_sha512", "_md5", "_sha1", "_blake2", "_sha3",
)  # fmt: skip


def preload() -> list[str]:
    """Import :data:`PRELOAD` (in the zygote); returns what could not be imported."""
    missing = []
    for name in PRELOAD:
        try:
            __import__(name)
        except ImportError:
            missing.append(name)
    return missing


def open_roots(paths: Sequence[str]) -> list[tuple[str, int]]:
    """Directory fds for ``paths`` (call while still privileged)."""
    out = []
    for p in paths:
        if not p or not os.path.isdir(p):
            continue
        with contextlib.suppress(OSError):
            out.append(
                (os.path.realpath(p), os.open(p, os.O_RDONLY | os.O_DIRECTORY | os.O_CLOEXEC))
            )
    return out


_TRUSTED_OPEN = [False]


def trusted_open() -> bool:
    """True while this module opens a source file below a root descriptor.

    Such an ``open`` carries a path *relative to the descriptor* (which the
    audit event cannot show), inside a tree the agent may read by construction;
    the advisory audit hook (``process.install_audit_hook``) skips it instead
    of resolving the relative path against the working directory."""
    return _TRUSTED_OPEN[0]


class _FdLoader(importlib.abc.Loader):
    def __init__(self, fd: int, rel: str, origin: str) -> None:
        self.fd, self.rel, self.origin = fd, rel, origin

    def create_module(self, spec: importlib.machinery.ModuleSpec) -> types.ModuleType | None:
        return None

    def exec_module(self, module: types.ModuleType) -> None:
        _TRUSTED_OPEN[0] = True
        try:
            fd = os.open(self.rel, os.O_RDONLY | os.O_CLOEXEC, dir_fd=self.fd)
        finally:
            _TRUSTED_OPEN[0] = False
        with os.fdopen(fd, "rb") as f:
            source = f.read()
        module.__file__ = self.origin
        exec(compile(source, self.origin, "exec", dont_inherit=True), module.__dict__)


class DirFdFinder(importlib.abc.MetaPathFinder):
    """Finds pure-Python modules below directory fds (see the module docstring)."""

    def __init__(self, roots: list[tuple[str, int]]) -> None:
        self.roots = roots

    def _locate(self, path: str) -> tuple[str, int, str] | None:
        rp = os.path.realpath(path)
        for root, fd in self.roots:
            if rp == root or rp.startswith(root + os.sep):
                return root, fd, os.path.relpath(rp, root)
        return None

    def find_spec(
        self, fullname: str, path: Sequence[str] | None, target: types.ModuleType | None = None
    ) -> importlib.machinery.ModuleSpec | None:
        leaf = fullname.rpartition(".")[2]
        where = (
            [(r, fd, ".") for r, fd in self.roots]
            if path is None
            else [x for p in path if (x := self._locate(p))]
        )
        for root, fd, reldir in where:
            base = os.path.normpath(os.path.join(reldir, leaf))
            init = os.path.join(base, "__init__.py")
            for rel, is_pkg in ((init, True), (base + ".py", False)):
                try:
                    os.stat(rel, dir_fd=fd)
                except OSError:
                    continue
                origin = os.path.join(root, rel)
                spec = importlib.machinery.ModuleSpec(
                    fullname, _FdLoader(fd, rel, origin), origin=origin, is_package=is_pkg
                )
                if is_pkg:
                    spec.submodule_search_locations = [os.path.join(root, base)]
                spec.has_location = True
                return spec
        return None


def install(roots: list[tuple[str, int]]) -> int:
    """Keep the roots the current uid cannot reach by path; install the finder. Returns how many."""
    keep = []
    for root, fd in roots:
        if os.access(root, os.R_OK | os.X_OK):
            os.close(fd)
        else:
            keep.append((root, fd))
    if keep:
        sys.meta_path.append(DirFdFinder(keep))
    return len(keep)
