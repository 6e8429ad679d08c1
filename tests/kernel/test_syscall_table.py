"""The syscall table, the SDK and the docs agree; unknown numbers are ENOSYS."""

from __future__ import annotations

import keyword
import re
from pathlib import Path

from aios.abi.errors import InvalidArgument, NoSuchSyscall
from aios.abi.sysno import BLOCKS, Sys
from aios.abi.trap import trap
from aios.kernel.kernel import Kernel
from aios.sdk import syscalls as sdk

DOCS = Path(__file__).resolve().parents[2] / "docs" / "syscalls.md"


def wrapper_name(s: Sys) -> str:
    n = s.name.lower()
    return n + "_" if keyword.iskeyword(n) else n


def test_every_syscall_has_a_handler(kernel: Kernel) -> None:
    """A booted kernel: every number has a handler, registered by the owner of its block."""
    reg = kernel.registry.syscalls
    assert {n for n, _h in reg} == {int(s) for s in Sys}
    for s in Sys:
        assert kernel.table[s] is reg.handler(s) is not None
        owner = reg.owners[int(s)]
        assert any(lo <= s <= hi for lo, hi in BLOCKS[owner]), (s, owner)


def test_every_syscall_has_an_sdk_wrapper() -> None:
    for s in Sys:
        assert callable(getattr(sdk, wrapper_name(s), None)), s


def test_every_syscall_has_a_docs_row() -> None:
    text = DOCS.read_text()
    rows = dict(re.findall(r"^\| (\d+) \| `([A-Z_]+)` \|", text, re.M))
    assert {int(k): v for k, v in rows.items()} == {int(s): s.name for s in Sys}


def test_whitepaper_numbers() -> None:
    assert [s.name for s in Sys if s <= 13] == [
        "AGENT_SPAWN", "AGENT_SUPERVISOR_REGISTER", "AGENT_REGISTER", "AGENT_KILL", "IPC_SEND",
        "IPC_RECV", "AGENT_MEM_ALLOC", "AGENT_MEM_FREE", "FRAME_ALLOC", "PAGE_MAP",
        "AGENT_POOL_ALLOC", "PQC_OPERATION", "GET_ASYNC_RESULT",
    ]


def test_unknown_and_malformed_traps_do_not_crash(kernel: Kernel, run_agents) -> None:
    seen: list[type] = []

    async def prober(ctx):
        for sysno in (0, 14, 170, 10_000, -1, "IPC_SEND", None, 2.5):
            try:
                await trap(sysno)  # type: ignore[arg-type]
            except (NoSuchSyscall, InvalidArgument) as e:
                seen.append(type(e))
        try:
            await sdk.agent_self(1, 2, 3)  # type: ignore[call-arg]
        except TypeError:
            seen.append(TypeError)  # the wrapper's own signature refuses
        from aios.abi.sysno import Sys as S

        try:
            await trap(int(S.AGENT_SELF), 1, 2, 3)
        except InvalidArgument:
            seen.append(InvalidArgument)
        return await sdk.agent_self()

    res = run_agents(prober)
    (r,) = res.values()
    assert r["fault"] is None and isinstance(r["exit"], int)
    assert seen.count(NoSuchSyscall) == 8
    assert seen[-1] is InvalidArgument
    assert kernel.stats["panics"] == 0
