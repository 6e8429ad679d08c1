"""Plans and agent loops on virtual time, against the simulated serving engine.

Whether a plan's independent steps really overlap, and what that is worth
against an agent that takes one step per model call, is a question of time;
it cannot be asked of the wall clock on a shared two-core host, and should
not be.  :class:`VirtualLoop` is a discrete-event loop on virtual nanoseconds
with two kinds of work:

* **model calls** (:meth:`VirtualLoop.llm`): a request of so many prompt and
  output tokens, submitted to a :class:`~aios.lib.llm.simengine.SimEngine`
  (continuous batching, chunked prefill, step time ``alpha + beta*tokens +
  gamma*context``); the loop steps the engine and fires the callback when the
  request's last token is out;
* **tool calls** (:meth:`VirtualLoop.after`): a fixed latency (a web search, a
  database), which needs no engine time.

:func:`run_plan` drives a :class:`~aios.lib.cognitive.dagrun.PlanRun` on it:
each step started is turned into work by a ``work`` function (the caller's
model of that skill), and its result is fed back when the work ends, so the
plan executes exactly as it would for real (substitution, refusals,
failures), only the clock is virtual.
"""

from __future__ import annotations

import heapq
import itertools
from collections.abc import Callable
from dataclasses import dataclass
from typing import Any

from aios.abi.errors import AIOSError, InvalidArgument
from aios.lib.cognitive.dagrun import PlanRun, StartStep
from aios.lib.llm.simengine import SimEngine


class VirtualLoop:
    """Events on virtual time; the engine steps whenever it has work."""

    def __init__(self, engine: SimEngine) -> None:
        self.engine = engine
        self.now = 0
        self._heap: list[tuple[int, int, Callable[[], None]]] = []
        self._seq = itertools.count()
        self._rids = itertools.count(1)
        self._llm_done: dict[int, Callable[[], None]] = {}
        self._llm_progress: dict[int, Callable[[int], None]] = {}
        self._stepping = False
        self.llm_calls = 0
        self.prompt_tokens = 0
        self.output_tokens = 0

    def at(self, t: int, fn: Callable[[], None]) -> None:
        heapq.heappush(self._heap, (max(t, self.now), next(self._seq), fn))

    def after(self, delay_ns: int, fn: Callable[[], None]) -> None:
        if delay_ns < 0:
            raise InvalidArgument("a delay is >= 0")
        self.at(self.now + delay_ns, fn)

    def llm(self, prompt_tokens: int, output_tokens: int, fn: Callable[[], None],
            on_progress: Callable[[int], None] | None = None) -> int:
        """A model call; ``fn`` runs when its last output token is produced, and
        ``on_progress(tokens so far)`` after every step that produced one (streaming)."""
        rid = next(self._rids)
        self.engine.submit(rid, max(1, prompt_tokens), max(1, output_tokens),
                           max(1, output_tokens))
        self._llm_done[rid] = fn
        if on_progress is not None:
            self._llm_progress[rid] = on_progress
        self.llm_calls += 1
        self.prompt_tokens += prompt_tokens
        self.output_tokens += output_tokens
        self._kick()
        return rid

    def _kick(self) -> None:
        if not self._stepping and self.engine.busy:
            self._stepping = True
            self.at(self.now, self._step)

    def _step(self) -> None:
        res = self.engine.step()
        if res is None:
            self._stepping = False
            return

        def end() -> None:
            for rid, gen in res.progress:
                prog = self._llm_progress.get(rid)
                if prog is not None:
                    prog(gen)
            for f in res.finished:
                self._llm_progress.pop(f.rid, None)
                cb = self._llm_done.pop(f.rid)
                cb()
            self._stepping = False
            self._kick()

        self.after(res.duration_ns, end)

    def run(self) -> int:
        """Run until nothing is left; returns the virtual time."""
        while self._heap:
            t, _, fn = heapq.heappop(self._heap)
            self.now = t
            fn()
        return self.now


@dataclass(frozen=True, slots=True)
class LlmWork:
    prompt_tokens: int
    output_tokens: int
    result: Any


@dataclass(frozen=True, slots=True)
class ToolWork:
    latency_ns: int
    result: Any  # a value, or an AIOSError to fail the step


Work = LlmWork | ToolWork


def start_plan(loop: VirtualLoop, run: PlanRun, work: Callable[[StartStep], Work],
               on_done: Callable[[], None] | None = None) -> Callable[[], None]:
    """Start executing ``run`` on ``loop``; ``on_done`` runs (on the loop) when it ends.
    Returns the function that starts whatever became ready (call it after adding
    steps to a streaming run, or sealing it)."""
    fired = [False]

    def launch() -> None:
        for st in run.ready():
            w = work(st)

            def done(st: StartStep = st, w: Work = w) -> None:
                if isinstance(w.result, AIOSError):
                    run.failed(st.step, w.result)
                else:
                    run.finished(st.step, w.result)
                launch()

            if isinstance(w, LlmWork):
                loop.llm(w.prompt_tokens, w.output_tokens, done)
            else:
                loop.after(w.latency_ns, done)
        if run.done and not fired[0]:
            fired[0] = True
            run.close()
            if on_done is not None:
                on_done()

    launch()
    return launch


def run_plan(loop: VirtualLoop, run: PlanRun, work: Callable[[StartStep], Work]) -> int:
    """Execute ``run`` on virtual time; returns the time at which it ended."""
    end = [loop.now]

    def done() -> None:
        end[0] = loop.now

    start_plan(loop, run, work, done)
    loop.run()
    return end[0]
