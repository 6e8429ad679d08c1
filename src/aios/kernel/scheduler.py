"""Scheduler 2.0: an EEVDF fair class and an EDF/CBS deadline class.

Design
------
The scheduler is pure: it never sleeps, never reads a clock except the one it
is given, and never touches the agent behind an entity.  The kernel calls it at
four moments: an agent becomes runnable (:meth:`Scheduler.wake`), the CPU needs
a next agent (:meth:`Scheduler.pick`), the running agent trapped after running
``delta`` ns (:meth:`Scheduler.charge`, which says whether it must now be
preempted), and the running agent goes back to the queue or to sleep
(:meth:`Scheduler.put_prev`, :meth:`Scheduler.block`).

Fair class (EEVDF, as Linux ``sched-eevdf.rst``).  Each entity has a weight
taken verbatim from Linux's ``sched_prio_to_weight`` (nice 0 = 1024, each nice
step is ~10 % of CPU) and a virtual runtime advanced by ``delta * 1024 /
weight`` (exactly: the integer remainder is carried per entity, so no time is
lost to rounding).  The queue's virtual time ``V`` is the weight-averaged
vruntime of every fair entity that is queued or running; an entity's lag is
``w * (V - v) / 1024`` real ns, the service it is owed.  An entity is
*eligible* when its lag is >= 0 (``v <= V``, tested as ``v * W <= S`` with
``S = sum(w*v)`` and ``W = sum(w)`` kept incrementally, so no division).  Its
virtual deadline is ``v + slice * 1024 / w`` when its slice starts.  ``pick``
returns the eligible entity with the earliest virtual deadline.  A running
entity keeps the CPU until its slice is used up (Linux's RUN_TO_PARITY), unless
an entity was woken meanwhile and EEVDF would now pick it instead (wake-up
preemption, decided at the next trap: "within one tick").  ``batch`` entities
never cause wake-up preemption (Linux SCHED_BATCH).

On sleep the lag is stored and clamped to +-2 slices (``vlag``), measured at
the moment of sleeping: a sleeper banks no credit while asleep and can owe at
most two slices.  On wake it is placed at ``V - vlag * (W + w) / W``, the
placement that leaves its lag exactly ``vlag`` once it is counted in ``V``.

O(log n).  Runnable fair entities live in an AVL tree ordered by (virtual
deadline, key), each node augmented with the minimum vruntime of its subtree
(Linux does the same on an rbtree).  The pick walks one root-to-leaf path: go
left if the left subtree holds an eligible entity (its min vruntime is
eligible), else take this node if eligible, else go right.  Insert and delete
are AVL operations whose height/min fix-up stops as soon as a node is
unchanged.  The running entity is out of the tree (its vruntime moves), but
still counted in ``S`` and ``W``.

Deadline class (SCHED_DEADLINE, ``sched-deadline.rst``).  Parameters runtime
<= deadline <= period, each >= 1024 ns.  Admission keeps ``sum(runtime /
period) <= 0.95 * ncpus`` exactly (fractions), else ``Busy``.  Each task is a
Constant Bandwidth Server: on wake, if its scheduling deadline has passed or
its remaining runtime would exceed its density (``q / (d - t) > runtime /
deadline``), it gets ``d = t + deadline, q = runtime`` (constrained tasks,
deadline < period, use Linux's revised rule and keep ``d`` with a scaled ``q``).
Running consumes ``q``; at ``q <= 0`` the task is throttled until its next
period (``d - deadline + period``), when ``d`` moves on by periods and ``q``
is refilled.  Queued deadline entities sit in a binary heap keyed by absolute
deadline with lazy deletion (tokens); throttled ones in a second heap keyed by
replenishment time, which is also :meth:`next_event_ns`.  Any queued deadline
entity beats every fair one.

Priority inheritance (used by :mod:`aios.kernel.sync`).  A priority is a pair
``(class, value)`` compared as a tuple, lower is stronger: ``(0, absolute
deadline)`` for the deadline class, ``(1, -weight)`` for the fair class.  A
boosted fair entity with a deadline donor runs in the deadline class at the
donor's deadline, unthrottled (Linux boosts the same way and does not throttle
boosted tasks); with a heavier fair donor it runs at the donor's weight, lag
preserved by Linux's reweight rule (Linux itself does not boost fair weights;
we do, so a heavy agent waiting on a light one's lock is not slowed to the
light one's share).

Preemption in-process happens only at traps: ``charge`` returns True and the
kernel switches at that trap.  A coroutine that never traps cannot be
preempted; untrusted code belongs in the isolated or Wasm executors.
"""

from __future__ import annotations

import heapq
from collections.abc import Callable
from enum import StrEnum
from fractions import Fraction
from typing import Final

from aios.abi.errors import Busy, IllegalTransition, InvalidArgument
from aios.abi.limits import ROOT_QUOTA_CPU_WEIGHT, SLICE_NS
from aios.kernel.clock import Clock
from aios.kernel.eevdf_tree import EevdfTree

# Linux kernel/sched/core.c ``sched_prio_to_weight``, nice -20 .. 19, verbatim.
SCHED_PRIO_TO_WEIGHT: Final[tuple[int, ...]] = (
    # -20
    88761, 71755, 56483, 46273, 36291,
    # -15
    29154, 23254, 18705, 14949, 11916,
    # -10
    9548, 7620, 6100, 4904, 3906,
    # -5
    3121, 2501, 1991, 1586, 1277,
    # 0
    1024, 820, 655, 526, 423,
    # 5
    335, 272, 215, 172, 137,
    # 10
    110, 87, 70, 56, 45,
    # 15
    36, 29, 23, 18, 15,
)  # fmt: skip

NICE_0_LOAD: Final = 1024
NICE_MIN: Final = -20
NICE_MAX: Final = 19
WEIGHT_MIN: Final = 1
WEIGHT_MAX: Final = ROOT_QUOTA_CPU_WEIGHT
SLICE_MIN_NS: Final = 100_000  # Linux clamps sched_attr.sched_runtime to 0.1 ms ..
SLICE_MAX_NS: Final = 100_000_000  # .. 100 ms for fair tasks
DL_MIN_NS: Final = 1024  # Linux: 1 << DL_SCALE
DL_MAX_NS: Final = 1 << 62
DL_BW_LIMIT: Final = Fraction(95, 100)  # sched_rt_runtime_us / sched_rt_period_us
LAG_LIMIT_SLICES: Final = 2

# Semantic hints -> (slice in ns, batch).  A shorter slice gives an earlier
# virtual deadline (lower latency) for the same share of CPU; batch entities
# take long slices and do not preempt on wake-up.
HINTS: Final[dict[str, tuple[int, bool]]] = {
    "default": (SLICE_NS, False),
    "interactive": (SLICE_NS // 2, False),
    "latency-critical": (SLICE_MIN_NS, False),
    "batch": (4 * SLICE_NS, True),
}

Prio = tuple[int, int]
"""``(0, absolute_deadline_ns)`` or ``(1, -weight)``; smaller is stronger."""


class SchedClass(StrEnum):
    FAIR = "fair"
    DEADLINE = "deadline"


class RunState(StrEnum):
    SLEEPING = "sleeping"
    RUNNABLE = "runnable"  # queued (or throttled while wanting to run)
    RUNNING = "running"  # picked: "current", out of the queue
    GONE = "gone"


_SLEEPING: Final = RunState.SLEEPING
_RUNNABLE: Final = RunState.RUNNABLE
_RUNNING: Final = RunState.RUNNING
_GONE: Final = RunState.GONE
_FAIR: Final = SchedClass.FAIR
_DEADLINE: Final = SchedClass.DEADLINE


def weight_of_nice(nice: int) -> int:
    """Linux's weight for ``nice`` (-20..19)."""
    if not isinstance(nice, int) or isinstance(nice, bool) or not NICE_MIN <= nice <= NICE_MAX:
        raise InvalidArgument(f"nice must be an int in [{NICE_MIN}, {NICE_MAX}]", nice=nice)
    return SCHED_PRIO_TO_WEIGHT[nice - NICE_MIN]


def nice_of_weight(weight: int) -> int | None:
    """The nice level whose weight is exactly ``weight``, or None."""
    try:
        return SCHED_PRIO_TO_WEIGHT.index(weight) + NICE_MIN
    except ValueError:
        return None


def clamp_weight(requested: int, quota_weight: int) -> int:
    """Weight an agent may get: ``requested`` capped by the CPU-weight quota.

    The kernel's syscall handler passes the caller's (or, for a child, the
    parent's) CPU-weight quota.  Out-of-range requests are refused, not clamped.
    """
    for name, v in (("weight", requested), ("quota", quota_weight)):
        if not isinstance(v, int) or isinstance(v, bool) or not WEIGHT_MIN <= v <= WEIGHT_MAX:
            raise InvalidArgument(f"{name} must be an int in [{WEIGHT_MIN}, {WEIGHT_MAX}]")
    return min(requested, quota_weight)


def clamp_slice(slice_ns: int) -> int:
    """Linux's clamp of a custom fair slice to 0.1 .. 100 ms."""
    return max(SLICE_MIN_NS, min(SLICE_MAX_NS, slice_ns))


def _check_int(name: str, v: object) -> int:
    if not isinstance(v, int) or isinstance(v, bool):
        raise InvalidArgument(f"{name} must be an int", **{name: v})
    return v


class SchedEntity:
    """Scheduling state of one agent.  Fields prefixed ``_`` belong to queues."""

    __slots__ = (
        "_dkey", "_dl_token", "_eclass", "_enq_ts", "_ew", "_h", "_l", "_minv", "_p",
        "_pi", "_r", "_thr_token", "_throttled", "_vrem", "_vslice", "batch", "deadline",
        "dl_abs", "dl_deadline", "dl_left", "dl_period", "dl_runtime", "key", "owner",
        "picks", "policy", "runtime_ns", "slice_left", "slice_ns", "state", "throttles",
        "vlag", "vruntime", "wait_ns", "waits", "weight",
    )  # fmt: skip

    def __init__(self, key: int, owner: object, weight: int) -> None:
        self.key = key
        self.owner = owner
        self.state = _SLEEPING
        self.policy = _FAIR
        self.weight = weight
        self.slice_ns = SLICE_NS
        self.batch = False
        # fair
        self.vruntime = 0
        self.deadline = 0
        self.vlag = 0
        self.slice_left = SLICE_NS
        self._vrem = 0
        self._ew = weight
        self._vslice = SLICE_NS * NICE_0_LOAD // weight
        # deadline
        self.dl_runtime = 0
        self.dl_deadline = 0
        self.dl_period = 0
        self.dl_left = 0
        self.dl_abs = 0
        self._throttled = False
        self._dl_token = 0
        self._thr_token = 0
        self._dkey = 0
        # inheritance
        self._pi: Prio | None = None
        self._eclass = _FAIR
        # tree links
        self._l: SchedEntity | None = None
        self._r: SchedEntity | None = None
        self._p: SchedEntity | None = None
        self._h = 0
        self._minv = 0
        # stats
        self.runtime_ns = 0
        self.wait_ns = 0
        self.waits = 0
        self.picks = 0
        self.throttles = 0
        self._enq_ts = 0

    def __repr__(self) -> str:
        return f"<SchedEntity {self.key} {self._eclass.value} {self.state.value}>"


class Scheduler:
    """The run queue: EEVDF for fair entities, EDF/CBS for deadline ones."""

    def __init__(self, clock: Clock, ncpus: int = 1, *, base_slice_ns: int = SLICE_NS) -> None:
        if _check_int("ncpus", ncpus) < 1:
            raise InvalidArgument("ncpus must be >= 1")
        self._clock = clock
        self.ncpus = ncpus
        self.base_slice_ns = clamp_slice(_check_int("base_slice_ns", base_slice_ns))
        self._tree = EevdfTree()
        self._S = 0  # sum(w * v) over fair entities queued or running
        self._W = 0  # sum(w)
        self._vbase = 0  # last V seen, placement point of an empty queue
        self._dl_heap: list[tuple[int, int, int, SchedEntity]] = []
        self._dl_nr = 0
        self._thr_heap: list[tuple[int, int, int, SchedEntity]] = []
        self._dl_bw = Fraction(0)
        self._check_preempt = False

    # -- entities -------------------------------------------------------------

    def new_entity(self, key: int, owner: object, *, weight: int = NICE_0_LOAD) -> SchedEntity:
        _check_int("key", key)
        if not isinstance(weight, int) or not WEIGHT_MIN <= weight <= WEIGHT_MAX:
            raise InvalidArgument(f"weight must be in [{WEIGHT_MIN}, {WEIGHT_MAX}]")
        ent = SchedEntity(key, owner, weight)
        self._set_slice(ent, self.base_slice_ns)
        return ent

    def __len__(self) -> int:
        """Runnable entities waiting in a queue (not running, not throttled)."""
        return self._tree.n + self._dl_nr

    # -- fair-class bookkeeping ---------------------------------------------------

    def _set_slice(self, ent: SchedEntity, slice_ns: int) -> None:
        ent.slice_ns = slice_ns
        ent._vslice = slice_ns * NICE_0_LOAD // ent._ew
        if ent.slice_left > slice_ns:
            ent.slice_left = slice_ns

    def _fair_in(self, ent: SchedEntity) -> None:
        """Count ``ent`` in V, placed with its stored lag; fresh slice."""
        w = ent._ew
        big_w = self._W
        if big_w > 0:
            lag = ent.vlag * (big_w + w) // big_w
            v = self._S // big_w - lag
        else:
            v = self._vbase
        ent.vruntime = v
        ent._vrem = 0
        ent.deadline = v + ent._vslice
        ent.slice_left = ent.slice_ns
        self._S += w * v
        self._W = big_w + w

    def _fair_out(self, ent: SchedEntity) -> None:
        """Stop counting ``ent`` in V; store its lag clamped to +-2 slices."""
        w = ent._ew
        vavg = self._S // self._W
        limit = LAG_LIMIT_SLICES * ent.slice_ns * NICE_0_LOAD // w
        ent.vlag = max(-limit, min(limit, vavg - ent.vruntime))
        self._S -= w * ent.vruntime
        self._W -= w
        self._vbase = vavg

    def _fair_reweight(self, ent: SchedEntity, new_w: int) -> None:
        """Change the weight of a counted entity keeping V and its lag (Linux reweight_eevdf)."""
        old_w = ent._ew
        vavg = self._S // self._W
        v = vavg - (vavg - ent.vruntime) * old_w // new_w
        d = vavg + (ent.deadline - vavg) * old_w // new_w
        self._S += new_w * v - old_w * ent.vruntime
        self._W += new_w - old_w
        ent.vruntime = v
        ent.deadline = d
        ent._vrem = 0
        ent._ew = new_w
        ent._vslice = ent.slice_ns * NICE_0_LOAD // new_w

    def vavg(self) -> int | None:
        """The fair queue's virtual time V (None if no fair entity is counted)."""
        return self._S // self._W if self._W else None

    def lag_ns(self, ent: SchedEntity) -> int:
        """Service owed to ``ent`` in real ns (stored lag while it sleeps)."""
        if ent._eclass is _FAIR and ent.state in (_RUNNABLE, _RUNNING) and self._W:
            return (self._S - ent.vruntime * self._W) * ent._ew // (self._W * NICE_0_LOAD)
        return ent.vlag * ent._ew // NICE_0_LOAD

    def eligible(self, ent: SchedEntity) -> bool:
        return ent.vruntime * self._W <= self._S

    # -- deadline-class bookkeeping ----------------------------------------------

    def _dl_push(self, ent: SchedEntity) -> None:
        ent._dl_token += 1
        heapq.heappush(self._dl_heap, (ent._dkey, ent.key, ent._dl_token, ent))
        self._dl_nr += 1

    def _dl_drop(self, ent: SchedEntity) -> None:
        ent._dl_token += 1
        self._dl_nr -= 1
        if len(self._dl_heap) > 2 * self._dl_nr + 64:
            self._dl_heap = [t for t in self._dl_heap if t[3]._dl_token == t[2]]
            heapq.heapify(self._dl_heap)

    def _dl_top(self) -> SchedEntity | None:
        h = self._dl_heap
        while h:
            _, _, tok, e = h[0]
            if e._dl_token == tok:
                return e
            heapq.heappop(h)
        return None

    def _dl_wake_rule(self, ent: SchedEntity, now: int) -> None:
        """CBS on wake: keep (d, q) unless using them would exceed the bandwidth."""
        if ent.policy is not _DEADLINE:
            return
        d, q = ent.dl_abs, ent.dl_left
        if d > now and q * ent.dl_deadline <= (d - now) * ent.dl_runtime:
            return
        if d > now and ent.dl_deadline < ent.dl_period:
            # revised rule for constrained tasks: keep d, cut q to the density
            ent.dl_left = (d - now) * ent.dl_runtime // ent.dl_deadline
        else:
            ent.dl_abs = now + ent.dl_deadline
            ent.dl_left = ent.dl_runtime

    def _dl_refill(self, ent: SchedEntity, now: int) -> None:
        while ent.dl_left <= 0:
            ent.dl_abs += ent.dl_period
            ent.dl_left += ent.dl_runtime
        if ent.dl_abs <= now:
            ent.dl_abs = now + ent.dl_deadline
            ent.dl_left = ent.dl_runtime

    def _throttle(self, ent: SchedEntity) -> None:
        ent._throttled = True
        ent.throttles += 1
        ent._thr_token += 1
        at = ent.dl_abs - ent.dl_deadline + ent.dl_period  # next period (dl_next_period)
        heapq.heappush(self._thr_heap, (at, ent.key, ent._thr_token, ent))

    def _unthrottle(self, ent: SchedEntity, now: int) -> None:
        ent._throttled = False
        ent._thr_token += 1
        self._dl_refill(ent, now)

    def _replenish(self, now: int) -> None:
        h = self._thr_heap
        while h and h[0][0] <= now:
            _, _, tok, e = heapq.heappop(h)
            if e._thr_token != tok or not e._throttled:
                continue
            self._unthrottle(e, now)
            self._recompute(e)
            if e.state is _RUNNABLE:
                self._dl_push(e)
                self._check_preempt = True

    def next_event_ns(self) -> int | None:
        """When a throttled deadline entity is next replenished (None: nothing pending)."""
        h = self._thr_heap
        while h:
            _, _, tok, e = h[0]
            if e._thr_token == tok and e._throttled:
                return h[0][0]
            heapq.heappop(h)
        return None

    # -- effective class ------------------------------------------------------------

    def _recompute(self, ent: SchedEntity, counted: bool = True) -> None:
        """Derive effective class, deadline key and weight from policy and boost.

        ``counted``: a fair entity that is runnable or running is in V (and the
        tree), so a weight change must go through the lag-keeping reweight."""
        pi = ent._pi
        if ent.policy is _DEADLINE:
            ent._eclass = _DEADLINE
            ent._dkey = ent.dl_abs if pi is None or pi[0] != 0 else min(ent.dl_abs, pi[1])
        elif pi is not None and pi[0] == 0:
            ent._eclass = _DEADLINE
            ent._dkey = pi[1]
        else:
            ent._eclass = _FAIR
        ew = ent.weight
        if pi is not None and pi[0] == 1 and -pi[1] > ew:
            ew = -pi[1]
        if counted and ew != ent._ew and ent._eclass is _FAIR and ent.state in (_RUNNABLE, _RUNNING):
            in_tree = ent.state is _RUNNABLE
            if in_tree:
                self._tree.remove(ent)
            self._fair_reweight(ent, ew)
            if in_tree:
                self._tree.insert(ent)
        else:
            ent._ew = ew
            ent._vslice = ent.slice_ns * NICE_0_LOAD // ew

    def _reclass(self, ent: SchedEntity, mutate: Callable[[], None]) -> None:
        """Apply ``mutate`` to ``ent``'s parameters, moving it between queues as needed."""
        st = ent.state
        active = st is _RUNNABLE or st is _RUNNING
        was = ent._eclass
        if active and was is _FAIR:
            if st is _RUNNABLE:
                self._tree.remove(ent)
            self._fair_out(ent)
        elif st is _RUNNABLE and not ent._throttled:
            self._dl_drop(ent)
        mutate()
        now = self._clock.now_ns()
        if ent._throttled and (ent.policy is not _DEADLINE or ent._pi is not None):
            self._unthrottle(ent, now)
        self._recompute(ent, counted=False)
        if not active:
            return
        if ent._eclass is _FAIR:
            self._fair_in(ent)
            if st is _RUNNABLE:
                self._tree.insert(ent)
        elif st is _RUNNABLE and not ent._throttled:
            self._dl_push(ent)
        self._check_preempt = True

    # -- the kernel's interface ------------------------------------------------

    def wake(self, ent: SchedEntity) -> None:
        """Make ``ent`` runnable (new or woken).  Waking a runnable entity is a no-op."""
        st = ent.state
        if st is not _SLEEPING:
            if st is _GONE:
                raise IllegalTransition("entity was removed", key=ent.key)
            return
        now = self._clock.now_ns()
        self._replenish(now)
        ent.state = _RUNNABLE
        ent._enq_ts = now
        if ent._eclass is _FAIR:
            self._fair_in(ent)
            self._tree.insert(ent)
            if not ent.batch:
                self._check_preempt = True
        else:
            if not ent._throttled:
                self._dl_wake_rule(ent, now)
                self._recompute(ent)
                self._dl_push(ent)
            self._check_preempt = True

    def block(self, ent: SchedEntity) -> None:
        """``ent`` sleeps: it leaves the queue; a fair one keeps its clamped lag."""
        st = ent.state
        if st is _SLEEPING:
            return
        if st is _GONE:
            raise IllegalTransition("entity was removed", key=ent.key)
        if ent._eclass is _FAIR:
            if st is _RUNNABLE:
                self._tree.remove(ent)
            self._fair_out(ent)
        elif st is _RUNNABLE and not ent._throttled:
            self._dl_drop(ent)
        ent.state = _SLEEPING

    def remove(self, ent: SchedEntity) -> None:
        """The agent is gone: forget the entity and release its bandwidth."""
        if ent.state is _GONE:
            return
        self.block(ent)
        if ent.policy is _DEADLINE:
            self._dl_bw -= Fraction(ent.dl_runtime, ent.dl_period)
        ent._thr_token += 1
        ent._throttled = False
        ent.state = _GONE

    def pick(self) -> SchedEntity | None:
        """Choose the next entity to run; it becomes current and leaves the queue."""
        now = self._clock.now_ns()
        self._replenish(now)
        ent = self._dl_top()
        if ent is not None:
            heapq.heappop(self._dl_heap)
            ent._dl_token += 1
            self._dl_nr -= 1
        else:
            tree = self._tree
            ent = tree.pick(self._S, self._W)
            if ent is None:
                ent = tree.leftmost_vruntime()  # SMP: the eligible ones are running
                if ent is None:
                    return None
            tree.remove(ent)
        ent.state = _RUNNING
        ent.picks += 1
        ent.waits += 1
        ent.wait_ns += now - ent._enq_ts
        self._check_preempt = False
        return ent

    def charge(self, ent: SchedEntity, delta_ns: int) -> bool:
        """Account ``delta_ns`` of CPU to the current ``ent``; True = preempt it now."""
        if ent.state is not _RUNNING:
            raise IllegalTransition("charge of an entity that is not running", key=ent.key)
        if delta_ns < 0:
            raise InvalidArgument("negative runtime", delta_ns=delta_ns)
        ent.runtime_ns += delta_ns
        if self._thr_heap and self._thr_heap[0][0] <= self._clock.now_ns():
            self._replenish(self._clock.now_ns())
        if ent._eclass is _DEADLINE:
            if ent.policy is _DEADLINE:
                ent.dl_left -= delta_ns
                if ent.dl_left <= 0:
                    if ent._pi is None:
                        self._throttle(ent)
                        return True
                    self._dl_refill(ent, self._clock.now_ns())  # boosted: never throttled
                    self._recompute(ent)
            top = self._dl_top()
            return top is not None and top._dkey < ent._dkey
        w = ent._ew
        x = delta_ns * NICE_0_LOAD + ent._vrem
        dv = x // w
        ent._vrem = x - dv * w
        ent.vruntime += dv
        self._S += w * dv
        if self._dl_nr:
            return True  # real-time beats fair
        ent.slice_left -= delta_ns
        if ent.slice_left <= 0:
            ent.slice_left = ent.slice_ns
            ent.deadline = ent.vruntime + ent._vslice
            return True
        if self._check_preempt:
            self._check_preempt = False
            best = self._tree.pick(self._S, self._W)
            if best is not None and (
                best.deadline < ent.deadline or ent.vruntime * self._W > self._S
            ):
                return True
        return False

    def put_prev(self, ent: SchedEntity) -> None:
        """The current entity goes back to the queue (preempted or yielded)."""
        if ent.state is not _RUNNING:
            raise IllegalTransition("put_prev of an entity that is not running", key=ent.key)
        ent.state = _RUNNABLE
        ent._enq_ts = self._clock.now_ns()
        if ent._eclass is _FAIR:
            self._tree.insert(ent)
        elif not ent._throttled:
            self._dl_push(ent)

    def yield_(self, ent: SchedEntity) -> None:
        """Give up the rest of the slice (fair: deadline moves one slice on; deadline
        class: the remaining runtime is dropped and the task waits for its next period)."""
        if ent.state is not _RUNNING:
            raise IllegalTransition("yield of an entity that is not running", key=ent.key)
        if ent._eclass is _FAIR:
            ent.deadline += ent._vslice
            ent.slice_left = ent.slice_ns
        elif ent.policy is _DEADLINE and ent._pi is None and not ent._throttled:
            ent.dl_left = 0
            self._throttle(ent)

    # -- parameters -----------------------------------------------------------------

    def set_fair(
        self,
        ent: SchedEntity,
        *,
        weight: int | None = None,
        nice: int | None = None,
        slice_ns: int | None = None,
        hint: str | None = None,
    ) -> None:
        """Set fair-class parameters (they apply while the entity is in the fair class)."""
        if ent.state is _GONE:
            raise IllegalTransition("entity was removed", key=ent.key)
        if weight is not None and nice is not None:
            raise InvalidArgument("give weight or nice, not both")
        new_w = ent.weight
        if nice is not None:
            new_w = weight_of_nice(nice)
        elif weight is not None:
            if not isinstance(weight, int) or isinstance(weight, bool) or not (
                WEIGHT_MIN <= weight <= WEIGHT_MAX
            ):
                raise InvalidArgument(f"weight must be an int in [{WEIGHT_MIN}, {WEIGHT_MAX}]")
            new_w = weight
        new_slice = ent.slice_ns
        new_batch = ent.batch
        if hint is not None:
            if hint not in HINTS:
                raise InvalidArgument(f"unknown hint {hint!r}; have {sorted(HINTS)}")
            new_slice, new_batch = HINTS[hint]
            if hint == "default":
                new_slice = self.base_slice_ns
        if slice_ns is not None:
            s = _check_int("slice_ns", slice_ns)
            if s < 0:
                raise InvalidArgument("slice_ns must be >= 0 (0 = default)")
            new_slice = clamp_slice(s) if s else self.base_slice_ns
        ent.batch = new_batch
        self._set_slice(ent, new_slice)
        if new_w != ent.weight:
            ent.weight = new_w
            self._recompute(ent)

    def set_deadline(
        self, ent: SchedEntity, *, runtime_ns: int, deadline_ns: int, period_ns: int
    ) -> None:
        """Move ``ent`` to the deadline class (or change its parameters), with admission."""
        if ent.state is _GONE:
            raise IllegalTransition("entity was removed", key=ent.key)
        r = _check_int("runtime_ns", runtime_ns)
        d = _check_int("deadline_ns", deadline_ns)
        p = _check_int("period_ns", period_ns)
        if not DL_MIN_NS <= r <= d <= p <= DL_MAX_NS:
            raise InvalidArgument(
                f"need {DL_MIN_NS} <= runtime <= deadline <= period <= 2**62 ns",
                runtime_ns=r, deadline_ns=d, period_ns=p,
            )  # fmt: skip
        old = Fraction(ent.dl_runtime, ent.dl_period) if ent.policy is _DEADLINE else Fraction(0)
        total = self._dl_bw - old + Fraction(r, p)
        if total > DL_BW_LIMIT * self.ncpus:
            raise Busy(
                f"deadline bandwidth {float(total):.4f} would exceed "
                f"{float(DL_BW_LIMIT * self.ncpus):.2f}",
            )
        self._dl_bw = total

        def mutate() -> None:
            ent.policy = _DEADLINE
            ent.dl_runtime, ent.dl_deadline, ent.dl_period = r, d, p
            ent.dl_abs = self._clock.now_ns() + d
            ent.dl_left = r
            ent._throttled = False
            ent._thr_token += 1

        self._reclass(ent, mutate)

    def set_fair_class(self, ent: SchedEntity) -> None:
        """Back from the deadline class to the fair class (releases bandwidth)."""
        if ent.state is _GONE:
            raise IllegalTransition("entity was removed", key=ent.key)
        if ent.policy is not _DEADLINE:
            return
        self._dl_bw -= Fraction(ent.dl_runtime, ent.dl_period)

        def mutate() -> None:
            ent.policy = _FAIR
            ent._throttled = False
            ent._thr_token += 1

        self._reclass(ent, mutate)

    def dl_bandwidth(self) -> Fraction:
        """Admitted deadline bandwidth, sum(runtime / period)."""
        return self._dl_bw

    # -- priority inheritance -------------------------------------------------------

    def base_prio(self, ent: SchedEntity) -> Prio:
        """``ent``'s own priority, ignoring any boost."""
        if ent.policy is _DEADLINE:
            return (0, ent.dl_abs)
        return (1, -ent.weight)

    def effective_prio(self, ent: SchedEntity) -> Prio:
        """The priority ``ent`` runs at now (boost included)."""
        if ent._eclass is _DEADLINE:
            return (0, ent._dkey)
        return (1, -ent._ew)

    def set_pi(self, ent: SchedEntity, donor: Prio | None) -> None:
        """Run ``ent`` at ``donor``'s priority if that is stronger than its own; None deboosts."""
        if ent.state is _GONE:
            return
        if donor is not None and donor >= self.base_prio(ent):
            donor = None
        if donor == ent._pi:
            return

        if ent._eclass is _FAIR and (donor is None or donor[0] == 1):
            ent._pi = donor  # fair -> fair: an in-place reweight keeps the lag
            self._recompute(ent)
            return

        def mutate() -> None:
            ent._pi = donor

        self._reclass(ent, mutate)

    # -- statistics -----------------------------------------------------------------

    def stats(self, ent: SchedEntity) -> dict[str, int | float | str]:
        out: dict[str, int | float | str] = {
            "key": ent.key,
            "class": ent.policy.value,
            "effective_class": ent._eclass.value,
            "state": ent.state.value,
            "weight": ent.weight,
            "effective_weight": ent._ew,
            "slice_ns": ent.slice_ns,
            "batch": int(ent.batch),
            "vruntime": ent.vruntime,
            "vdeadline": ent.deadline,
            "lag_ns": self.lag_ns(ent),
            "runtime_ns": ent.runtime_ns,
            "waits": ent.waits,
            "wait_ns": ent.wait_ns,
            "picks": ent.picks,
            "throttles": ent.throttles,
            "throttled": int(ent._throttled),
            "boosted": int(ent._pi is not None),
        }
        nice = nice_of_weight(ent.weight)
        if nice is not None:
            out["nice"] = nice
        if ent.policy is _DEADLINE:
            out.update(
                dl_runtime_ns=ent.dl_runtime,
                dl_deadline_ns=ent.dl_deadline,
                dl_period_ns=ent.dl_period,
                dl_left_ns=ent.dl_left,
                dl_abs_ns=ent.dl_abs,
            )
        return out
