"""A serving engine as a pure state machine on a virtual clock.

Scheduling policies for a language-model device cannot be judged on a real
model here (two CPU cores, a 135M model at tens of tokens a second) and should
not be judged on wall-clock time at all.  :class:`SimEngine` is a model of the
engines that serve models in production (vLLM, SGLang, llama.cpp's server) with
the properties a scheduler above them has to live with:

* **K slots**: at most ``slots`` sequences run at once (``max_num_seqs``);
  more wait in the engine's own FCFS queue.
* **Continuous batching with a per-step token budget**: every step decodes one
  token for each running sequence whose prompt is done, then fills the rest of
  ``step_tokens`` with prompt chunks (chunked prefill), oldest first.  The
  step that completes a prompt also produces its first token.
* **KV capacity**: every running sequence holds one KV entry per context token
  (prompt + generated).  When a step needs more than is free, the engine
  **preempts by recompute** (vLLM's default): the most recently admitted
  sequence loses its KV and goes back to the front of the queue, to prefill
  its prompt *and what it had generated* again later.  Recomputed tokens cost
  the engine time and are counted in :attr:`SimEngine.recomputed_tokens`.
* **Step time** ``alpha + beta * tokens + gamma * context``: a fixed launch
  cost, a cost per token processed in the step, and an attention cost per
  context token of every sequence in the batch.
* **Seeded outputs**: a sequence's output length (``target``) is given by the
  caller (the workload) or derived from a seed; its tokens are indices into a
  deterministic stream (``base``, ``offset``) that the HTTP front end renders
  as words, so a resumed sequence continues exactly where it stopped.

The engine has no clock: :meth:`step` returns how long the step takes and what
it produced; the caller advances its :class:`VirtualClock`-like time by that.
A caller that admits only when :meth:`can_admit` is true keeps the engine's
own queue empty, so the order of service is the caller's (that is how the
kernel's device queue drives it); a caller that submits everything at once
gets the engine's FCFS order (the "FIFO with continuous batching" baseline).
"""

from __future__ import annotations

from collections import deque
from dataclasses import dataclass, field
from typing import Final

from aios.abi.errors import AlreadyExists, InvalidArgument, NoSuchObject

MASK64: Final = (1 << 64) - 1


def mix64(x: int) -> int:
    """splitmix64's finaliser: a fast, well-spread deterministic hash of an int."""
    x = (x + 0x9E3779B97F4A7C15) & MASK64
    x = ((x ^ (x >> 30)) * 0xBF58476D1CE4E5B9) & MASK64
    x = ((x ^ (x >> 27)) * 0x94D049BB133111EB) & MASK64
    return x ^ (x >> 31)


@dataclass(frozen=True, slots=True)
class EngineConfig:
    slots: int = 16
    step_tokens: int = 512
    kv_tokens: int = 65_536
    alpha_ns: int = 4_000_000
    beta_ns: int = 40_000
    gamma_ns: int = 60

    def __post_init__(self) -> None:
        for name in ("slots", "step_tokens", "kv_tokens"):
            v = getattr(self, name)
            if not isinstance(v, int) or v < 1:
                raise InvalidArgument(f"{name} must be an int >= 1")
        if self.step_tokens < self.slots:
            raise InvalidArgument("step_tokens must cover one decode token per slot")
        for name in ("alpha_ns", "beta_ns", "gamma_ns"):
            v = getattr(self, name)
            if not isinstance(v, int) or v < 0:
                raise InvalidArgument(f"{name} must be an int >= 0")

    def step_ns(self, tokens: int, context: int) -> int:
        return self.alpha_ns + self.beta_ns * tokens + self.gamma_ns * context

    def decode_tokens_per_s(self, batch: int, context: int) -> float:
        """Aggregate decode rate with ``batch`` sequences of ``context`` tokens each."""
        return batch * 1e9 / self.step_ns(batch, batch * context)


@dataclass(slots=True)
class _Seq:
    rid: int
    prompt: int  # prompt tokens (for a resumed request: the whole snapshot prompt)
    max_tokens: int
    target: int  # natural length of the answer (finish "stop" there)
    base: int
    offset: int
    generated: int = 0
    prefilled: int = 0  # prompt tokens in the KV cache
    decoding: bool = False  # prompt done; generated tokens are in the KV cache too
    prefill_total: int = 0  # prompt tokens ever processed (beyond ``prompt``: recompute)
    admitted: int = -1  # admission order (LIFO victim choice)
    started: bool = False  # produced its first token
    preemptions: int = 0

    @property
    def context(self) -> int:
        return self.prefilled + (self.generated if self.decoding else 0)

    @property
    def prefill_target(self) -> int:
        # after a preemption the generated tokens are prompt for the recompute
        return self.prompt + (self.generated if self.preemptions else 0)

    @property
    def limit(self) -> int:
        return min(self.target, self.max_tokens)


@dataclass(frozen=True, slots=True)
class Finished:
    rid: int
    generated: int
    reason: str  # "stop" (natural end) or "length" (max_tokens)


@dataclass(frozen=True, slots=True)
class Evicted:
    """What a sequence taken off the engine had done (a snapshot's size)."""

    rid: int
    generated: int
    base: int
    offset: int


@dataclass(slots=True)
class StepResult:
    duration_ns: int
    tokens: int  # prompt + decode tokens processed in the step
    progress: list[tuple[int, int]] = field(default_factory=list)  # (rid, generated total)
    first: list[int] = field(default_factory=list)  # produced their first token
    finished: list[Finished] = field(default_factory=list)
    preempted: list[int] = field(default_factory=list)  # engine recompute preemptions


class SimEngine:
    """The engine: submit sequences, call :meth:`step` while :attr:`busy`."""

    def __init__(self, config: EngineConfig | None = None) -> None:
        self.cfg = config or EngineConfig()
        self._seqs: dict[int, _Seq] = {}
        self._waiting: deque[_Seq] = deque()
        self._running: list[_Seq] = []
        self._kv_used = 0
        self._admit_seq = 0
        # statistics
        self.steps = 0
        self.busy_ns = 0
        self.prefill_tokens = 0
        self.decode_tokens = 0
        self.recomputed_tokens = 0
        self.preemptions = 0

    # -- admission ---------------------------------------------------------------

    def submit(
        self, rid: int, prompt_tokens: int, max_tokens: int, target: int | None = None,
        *, base: int = 0, offset: int = 0,
    ) -> None:
        if rid in self._seqs:
            raise AlreadyExists(f"sequence {rid} is already on the engine", rid=rid)
        if prompt_tokens < 1 or max_tokens < 1:
            raise InvalidArgument("prompt_tokens and max_tokens must be >= 1")
        if prompt_tokens + max_tokens > self.cfg.kv_tokens:
            raise InvalidArgument(
                f"prompt + max_tokens ({prompt_tokens + max_tokens}) exceeds the engine's "
                f"KV capacity ({self.cfg.kv_tokens} tokens)"
            )
        t = max_tokens if target is None else max(1, target)
        s = _Seq(rid, prompt_tokens, max_tokens, t, base, offset)
        self._seqs[rid] = s
        self._waiting.append(s)

    def can_admit(self, prompt_tokens: int) -> bool:
        """Would a new sequence start in the next step (a free slot, KV for its prompt)?"""
        if self._waiting or len(self._running) >= self.cfg.slots:
            return False
        return self.kv_free >= prompt_tokens + 1

    def cancel(self, rid: int) -> bool:
        s = self._seqs.pop(rid, None)
        if s is None:
            return False
        if s in self._running:
            self._running.remove(s)
            self._kv_used -= s.context
        else:
            self._waiting.remove(s)
        return True

    def evict(self, rid: int) -> Evicted:
        """Take a sequence off the engine, keeping what it generated (kernel preemption)."""
        s = self._seqs.get(rid)
        if s is None:
            raise NoSuchObject(f"sequence {rid} is not on the engine", rid=rid)
        self.cancel(rid)
        return Evicted(rid, s.generated, s.base, s.offset)

    # -- observation ---------------------------------------------------------------

    @property
    def kv_free(self) -> int:
        return self.cfg.kv_tokens - self._kv_used

    @property
    def busy(self) -> bool:
        return bool(self._running or self._waiting)

    @property
    def running(self) -> int:
        return len(self._running)

    @property
    def waiting(self) -> int:
        return len(self._waiting)

    def generated(self, rid: int) -> int:
        s = self._seqs.get(rid)
        if s is None:
            raise NoSuchObject(f"sequence {rid} is not on the engine", rid=rid)
        return s.generated

    # -- the step ------------------------------------------------------------------

    def _admit(self) -> None:
        cfg = self.cfg
        while self._waiting and len(self._running) < cfg.slots:
            s = self._waiting[0]
            if self.kv_free < min(s.prefill_target, cfg.step_tokens) + 1:
                break
            self._waiting.popleft()
            s.admitted = self._admit_seq
            self._admit_seq += 1
            self._running.append(s)

    def _preempt_one(self, res: StepResult) -> bool:
        if len(self._running) <= 1:
            return False
        victim = max(self._running, key=lambda q: q.admitted)
        self._running.remove(victim)
        self._kv_used -= victim.context
        victim.prefilled = 0
        victim.decoding = False
        victim.preemptions += 1
        self.preemptions += 1
        self._waiting.appendleft(victim)
        res.preempted.append(victim.rid)
        return True

    def step(self) -> StepResult | None:
        """Run one engine iteration; None when there is nothing to do."""
        self._admit()
        if not self._running:
            return None
        cfg = self.cfg
        res = StepResult(0, 0)
        # decode: one token for every sequence past its prompt
        while True:
            decoders = [s for s in self._running if s.decoding]
            if self.kv_free >= len(decoders) or not self._preempt_one(res):
                break
        budget = cfg.step_tokens - len(decoders)
        chunks: list[tuple[_Seq, int]] = []
        for s in sorted(self._running, key=lambda q: q.admitted):
            if s.decoding or budget <= 0:
                continue
            need = s.prefill_target - s.prefilled
            room = self.kv_free - len(decoders) - sum(c for _, c in chunks)
            take = min(need, budget, room - (1 if need <= budget else 0))
            if take <= 0:
                continue
            chunks.append((s, take))
            budget -= take
        if not decoders and not chunks:
            # KV is full of half-done prompts: free the newest and retry next step
            if self._preempt_one(res):
                return self._retry(res)
            return None
        tokens = len(decoders) + sum(c for _, c in chunks)
        for s in decoders:
            s.generated += 1
            self._kv_used += 1
        for s, c in chunks:
            before = max(0, s.prefill_total - s.prompt)
            s.prefill_total += c
            self.recomputed_tokens += max(0, s.prefill_total - s.prompt) - before
            s.prefilled += c
            self._kv_used += c
            self.prefill_tokens += c
            if s.prefilled >= s.prefill_target:
                # the prompt is done: this step's forward pass yields a token
                s.prefilled = s.prompt
                s.decoding = True
                s.generated += 1
                self._kv_used += 1
                if not s.started:
                    s.started = True
                    res.first.append(s.rid)
                decoders.append(s)
        self.decode_tokens += len(decoders)
        context = sum(s.context for s in self._running)
        res.duration_ns = cfg.step_ns(tokens, context)
        res.tokens = tokens
        self.steps += 1
        self.busy_ns += res.duration_ns
        for s in decoders:
            res.progress.append((s.rid, s.generated))
            if s.generated >= s.limit:
                reason = "stop" if s.generated >= s.target else "length"
                res.finished.append(Finished(s.rid, s.generated, reason))
        for f in res.finished:
            s = self._seqs.pop(f.rid)
            self._running.remove(s)
            self._kv_used -= s.context
        return res

    def _retry(self, res: StepResult) -> StepResult | None:
        nxt = self.step()
        if nxt is None:
            return None
        nxt.preempted[:0] = res.preempted
        return nxt
