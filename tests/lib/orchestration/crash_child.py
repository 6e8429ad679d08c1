"""The crash test's child process: a workflow whose checkpoints go to the kernel
journal (agent checkpoints, as the kernel module will keep them), logging every
task it starts; the ``block`` task never returns here, so the parent kills it."""

from __future__ import annotations

import asyncio
import os
import sys
from collections.abc import Mapping
from pathlib import Path
from typing import Any

from aios.kmod.journal.store import Journal
from aios.lib.orchestration.driver import Handler, StepContext, WorkflowDriver
from aios.lib.orchestration.workflow import loop, par, parse, seq, task, when, workflow

AID = 4242
WF = workflow("crashy", seq(
    "main",
    par("fan", task("a", "work"), task("b", "work"), task("c", "work")),
    loop("l", task("step", "work", {"i": "${iteration}"}), until=when("${step.i}", ">=", 3),
         max_iterations=10),
    task("block", "block"),
    task("final", "work", {"fan": "${fan}", "last": "${l}", "b": "${block}"})),
    output="${final}")


class JournalCheckpoints:
    """Workflow checkpoints as one agent's checkpoints in the kernel journal."""

    def __init__(self, journal: Journal, aid: int) -> None:
        self.j, self.aid = journal, aid

    def save(self, run_id: str, state: Mapping[str, Any]) -> None:
        self.j.checkpoint(self.aid, {"run": run_id, "state": dict(state)})
        self.j.commit()  # durable before the next step starts

    def load(self, run_id: str) -> Mapping[str, Any] | None:
        cp = self.j.latest_checkpoint(self.aid)
        if cp is None or cp.state.get("run") != run_id:
            return None
        state: Mapping[str, Any] = cp.state["state"]
        return state


def handlers(log: Path, block: bool) -> dict[str, Handler]:
    def write(line: str) -> None:
        with log.open("a") as f:
            f.write(line + "\n")
            f.flush()
            os.fsync(f.fileno())

    async def work(ctx: StepContext, args: dict[str, Any]) -> Any:
        write(f"START {ctx.key}")
        return {"key": ctx.key, "i": args.get("i")}

    async def blocker(ctx: StepContext, args: dict[str, Any]) -> Any:
        write(f"START {ctx.key}")
        if block:
            await asyncio.Event().wait()
        return {"unblocked": True}

    return {"work": work, "block": blocker}


async def main(journal: str, log: str) -> None:
    j = Journal(Path(journal))
    d = WorkflowDriver(handlers(Path(log), True), checkpoints=JournalCheckpoints(j, AID))
    await d.run(parse(WF), {}, run_id="r1")


if __name__ == "__main__":
    asyncio.run(main(sys.argv[1], sys.argv[2]))
