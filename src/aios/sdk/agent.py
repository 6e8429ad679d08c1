"""Agent definitions: functions and classes, and how the kernel starts them.

Two shapes, one contract:

* ``async def main(ctx): ...``: the agent is the function; it returns its
  exit status.
* a subclass of :class:`Agent` with ``on_start``, ``on_message`` and
  ``on_stop``: the SDK runs a message loop that receives one message at a
  time; if a message is a call (``msg.call``), the return value of
  ``on_message`` (bytes) is the reply.  ``self.state`` is the declared
  state (``ctx.state``) that clone, merge, split and upgrade act on.

:func:`start_function` turns either into what the kernel wants: a callable
taking the boot information and returning the agent's coroutine.
"""

from __future__ import annotations

import importlib
import inspect
from collections.abc import Callable, Coroutine
from typing import Any

from aios.abi.errors import InvalidArgument
from aios.sdk.context import Context


class Agent:
    """Base class for message-driven agents."""

    def __init__(self, ctx: Context) -> None:
        self.ctx = ctx

    @property
    def state(self) -> dict[str, Any]:
        return self.ctx.state

    async def on_start(self) -> None:
        """Called once before the first message."""

    async def on_message(self, msg: Any) -> bytes | None:
        """Handle one message; for a call, the return value is the reply."""
        return None

    async def on_stop(self) -> Any:
        """Called when ``stop()`` ends the loop; its value is the exit status."""
        return None

    def stop(self) -> None:
        self._stopping = True

    async def run(self) -> Any:
        self._stopping = False
        await self.on_start()
        ctx = self.ctx
        while not self._stopping:
            msg = await ctx.recv()
            out = await self.on_message(msg)
            if msg.call:
                await ctx.reply(msg, out if isinstance(out, bytes) else b"")
        return await self.on_stop()


StartFn = Callable[[dict[str, Any]], Coroutine[Any, Any, Any]]


def start_function(target: Any) -> StartFn:
    """The kernel-side start function for an agent function or :class:`Agent` class."""
    if inspect.isclass(target) and issubclass(target, Agent):
        cls = target

        def start_class(info: dict[str, Any]) -> Coroutine[Any, Any, Any]:
            return cls(Context(info)).run()

        start_class.__qualname__ = f"{cls.__module__}:{cls.__qualname__}"
        return start_class
    if inspect.iscoroutinefunction(target):
        fn = target

        def start_fn(info: dict[str, Any]) -> Coroutine[Any, Any, Any]:
            coro: Coroutine[Any, Any, Any] = fn(Context(info))
            return coro

        start_fn.__qualname__ = f"{getattr(fn, '__module__', '?')}:{fn.__qualname__}"
        return start_fn
    raise InvalidArgument(f"{target!r} is neither an async function nor an Agent subclass")


def is_file_entry(name: str) -> bool:
    """``'/abs/path/file.py:attribute'``: code named by its file, not by a module on the path."""
    path = name.rpartition(":")[0]
    return path.startswith("/") and path.endswith(".py")


def _load_file(path: str) -> Any:
    """Import the Python file at ``path`` as a module of its own (once per file and content)."""
    import hashlib
    import importlib.util
    import sys

    with open(path, "rb") as f:
        source = f.read()
    mod_name = "aios_user_" + hashlib.sha256(path.encode() + b"\0" + source).hexdigest()[:16]
    if mod_name in sys.modules:
        return sys.modules[mod_name]
    spec = importlib.util.spec_from_file_location(mod_name, path)
    if spec is None or spec.loader is None:
        raise InvalidArgument(f"cannot load {path} as Python")
    mod = importlib.util.module_from_spec(spec)
    sys.modules[mod_name] = mod  # dataclasses and pickling look their module up here
    try:
        spec.loader.exec_module(mod)
    except BaseException:
        del sys.modules[mod_name]
        raise
    return mod


def load_entry(name: str) -> StartFn:
    """Resolve ``'package.module:attribute'`` or ``'/path/file.py:attribute'`` to a start
    function (the kernel's loader)."""
    if not isinstance(name, str) or ":" not in name:
        raise InvalidArgument("entry must look like 'package.module:attribute' or '/path/file.py:attribute'")
    file_entry = is_file_entry(name)
    mod_name, _, attr = name.rpartition(":") if file_entry else name.partition(":")
    try:
        mod = _load_file(mod_name) if file_entry else importlib.import_module(mod_name)
        target = getattr(mod, attr)
    except ModuleNotFoundError as e:
        raise InvalidArgument(
            f"cannot load entry point {name!r}: {e}. An isolated or worker agent imports its code in its "
            "own process, which sees only the kernel's Python path (and, isolated, only the paths its "
            "sandbox may read): install the module there, or package it as a signed image "
            "(`aios image build` / `aios image sign`, spawned as 'image:<dir>')") from None
    except OSError as e:  # e.g. PermissionError: the sandbox refused to read the module's file
        where = getattr(e, "filename", None) or mod_name
        raise InvalidArgument(
            f"cannot load entry point {name!r}: reading {where} was refused ({e.strerror or e}). "
            "An isolated agent may read only the kernel's code paths and its own image: make that "
            "path readable to it, or package the code as a signed image (`aios image build`)") from None
    except (ImportError, AttributeError) as e:
        raise InvalidArgument(f"cannot load entry point {name!r}: {e}") from None
    except SyntaxError as e:  # the user's file, reported without the loader's own frames
        raise InvalidArgument(f"cannot load entry point {name!r}: {e.msg} at {e.filename}:{e.lineno}"
                              + (f": {e.text.strip()}" if e.text else "")) from None
    return start_function(target)


def remote_start(entry: str, info: dict[str, Any]) -> Coroutine[Any, Any, Any]:
    """Entry point used by out-of-process executors: load ``entry``, run it with ``info``,
    and hand its return value to the kernel with EXIT (a process exit code cannot carry it)."""
    from aios.sdk import syscalls

    start = load_entry(entry)

    async def run_then_exit() -> Any:
        value = await start(info)
        await syscalls.exit(value)
        return value

    return run_then_exit()
