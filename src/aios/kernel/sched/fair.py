"""The fair class: EEVDF, as Linux ``sched-eevdf.rst`` describes it.

Each entity has a weight taken verbatim from Linux's ``sched_prio_to_weight``
(nice 0 = 1024, each nice step is ~10 % of CPU) and a virtual runtime advanced
by ``delta * 1024 / weight`` (exactly: the integer remainder is carried per
entity, so no time is lost to rounding).  The queue's virtual time ``V`` is the
weight-averaged vruntime of every fair entity that is queued or running; an
entity's lag is ``w * (V - v) / 1024`` real ns, the service it is owed.  An
entity is *eligible* when its lag is >= 0 (``v <= V``, tested as ``v * W <= S``
with ``S = sum(w*v)`` and ``W = sum(w)`` kept incrementally, so no division).
Its virtual deadline is ``v + slice * 1024 / w`` when its slice starts.  The
pick returns the eligible entity with the earliest virtual deadline.  A running
entity keeps the CPU until its slice is used up (Linux's RUN_TO_PARITY), unless
an entity was woken meanwhile and EEVDF would now pick it instead (wake-up
preemption, decided at the next trap: "within one tick").  ``batch`` entities
never cause wake-up preemption (Linux SCHED_BATCH).

On sleep the lag is stored and clamped to +-2 slices (``vlag``), measured at
the moment of sleeping: a sleeper banks no credit while asleep and can owe at
most two slices.  On wake it is placed at ``V - vlag * (W + w) / W``, the
placement that leaves its lag exactly ``vlag`` once it is counted in ``V``.

A weight change of a counted entity (a ``nice`` call, or a priority-inheritance
boost from :mod:`aios.kernel.sched.core`) goes through Linux's
``reweight_eevdf``: ``V`` does not move, and the entity's lag and distance to
its virtual deadline are rescaled by ``old_w / new_w`` so the service it is
owed, in real ns, is unchanged.

O(log n).  Runnable fair entities live in the augmented tree of
:mod:`aios.kernel.sched.tree`, ordered by virtual deadline, each node holding
the minimum vruntime of its subtree; the pick walks one root-to-leaf path.  The
running entity is out of the tree (its vruntime moves) but still counted in
``S`` and ``W``.

This module owns ``V`` and the tree.  It does not know about entity states or
the deadline class: :class:`~aios.kernel.sched.core.Scheduler` decides when an
entity enters or leaves the fair queue, and this class keeps the arithmetic.
"""

from __future__ import annotations

from typing import TYPE_CHECKING, Final

from aios.abi.errors import InvalidArgument
from aios.abi.limits import ROOT_QUOTA_CPU_WEIGHT, SLICE_NS
from aios.kernel.sched.tree import EevdfTree

if TYPE_CHECKING:
    from aios.kernel.sched.core import SchedEntity

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


def set_slice(ent: SchedEntity, slice_ns: int) -> None:
    """Give ``ent`` a new request size (its virtual slice follows its effective weight)."""
    ent.slice_ns = slice_ns
    ent._vslice = slice_ns * NICE_0_LOAD // ent._ew
    if ent.slice_left > slice_ns:
        ent.slice_left = slice_ns


class FairQueue:
    """``V`` (as ``S / W``) and the tree of runnable fair entities."""

    __slots__ = ("S", "W", "tree", "vbase")

    def __init__(self) -> None:
        self.tree = EevdfTree()
        self.S = 0  # sum(w * v) over fair entities queued or running
        self.W = 0  # sum(w)
        self.vbase = 0  # last V seen, placement point of an empty queue

    def enter(self, ent: SchedEntity) -> None:
        """Count ``ent`` in V, placed with its stored lag; fresh slice."""
        w = ent._ew
        big_w = self.W
        if big_w > 0:
            lag = ent.vlag * (big_w + w) // big_w
            v = self.S // big_w - lag
        else:
            v = self.vbase
        ent.vruntime = v
        ent._vrem = 0
        ent.deadline = v + ent._vslice
        ent.slice_left = ent.slice_ns
        self.S += w * v
        self.W = big_w + w

    def leave(self, ent: SchedEntity) -> None:
        """Stop counting ``ent`` in V; store its lag clamped to +-2 slices."""
        w = ent._ew
        vavg = self.S // self.W
        limit = LAG_LIMIT_SLICES * ent.slice_ns * NICE_0_LOAD // w
        ent.vlag = max(-limit, min(limit, vavg - ent.vruntime))
        self.S -= w * ent.vruntime
        self.W -= w
        self.vbase = vavg

    def reweight(self, ent: SchedEntity, new_w: int) -> None:
        """Change the weight of a counted entity keeping V and its lag (Linux reweight_eevdf)."""
        old_w = ent._ew
        vavg = self.S // self.W
        v = vavg - (vavg - ent.vruntime) * old_w // new_w
        d = vavg + (ent.deadline - vavg) * old_w // new_w
        self.S += new_w * v - old_w * ent.vruntime
        self.W += new_w - old_w
        ent.vruntime = v
        ent.deadline = d
        ent._vrem = 0
        ent._ew = new_w
        ent._vslice = ent.slice_ns * NICE_0_LOAD // new_w

    def vavg(self) -> int | None:
        """The fair queue's virtual time V (None if no fair entity is counted)."""
        return self.S // self.W if self.W else None

    def lag_ns(self, ent: SchedEntity, counted: bool) -> int:
        """Service owed to ``ent`` in real ns (its stored lag unless it is ``counted``)."""
        if counted and self.W:
            return (self.S - ent.vruntime * self.W) * ent._ew // (self.W * NICE_0_LOAD)
        return ent.vlag * ent._ew // NICE_0_LOAD

    def eligible(self, ent: SchedEntity) -> bool:
        return ent.vruntime * self.W <= self.S

    def pick(self) -> SchedEntity | None:
        """Remove and return the entity EEVDF runs next (None: the queue is empty)."""
        tree = self.tree
        ent = tree.pick(self.S, self.W)
        if ent is None:
            ent = tree.leftmost_vruntime()  # SMP: the eligible ones are running
            if ent is None:
                return None
        tree.remove(ent)
        return ent

    def update_curr(self, ent: SchedEntity, delta_ns: int) -> None:
        """Advance the running ``ent``'s vruntime by ``delta_ns`` of real time."""
        w = ent._ew
        x = delta_ns * NICE_0_LOAD + ent._vrem
        dv = x // w
        ent._vrem = x - dv * w
        ent.vruntime += dv
        self.S += w * dv

    @staticmethod
    def slice_used(ent: SchedEntity, delta_ns: int) -> bool:
        """Charge ``delta_ns`` to the running ``ent``'s slice; True = it is used up.

        A used-up slice starts the next one: the virtual deadline moves on."""
        ent.slice_left -= delta_ns
        if ent.slice_left <= 0:
            ent.slice_left = ent.slice_ns
            ent.deadline = ent.vruntime + ent._vslice
            return True
        return False

    def wakeup_preempts(self, ent: SchedEntity) -> bool:
        """Would EEVDF now pick a queued entity over the running ``ent``?"""
        best = self.tree.pick(self.S, self.W)
        return best is not None and (
            best.deadline < ent.deadline or ent.vruntime * self.W > self.S
        )

    @staticmethod
    def yield_(ent: SchedEntity) -> None:
        """The running ``ent`` gives up its slice: its deadline moves one slice on."""
        ent.deadline += ent._vslice
        ent.slice_left = ent.slice_ns
