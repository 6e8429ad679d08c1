"""The unit dependency graph: requirement edges, ordering edges and the checks made at load.

systemd keeps two graphs over the same units and so does initd:

* **requirement** (what a start pulls in, what a stop or a crash takes
  with it): ``Wants``, ``Requires``, ``BindsTo`` pull units into a start
  transaction, and so do ``WantedBy``/``RequiredBy`` read backwards (a target
  wants what is installed into it); ``Requires``, ``BindsTo`` and ``PartOf``
  read backwards say whose stop or restart reaches a unit; ``Conflicts``
  holds in both directions.
* **ordering** (in what sequence jobs run): ``After`` and, read backwards,
  ``Before``.  A target with ``DefaultDependencies`` (the default) is also
  ordered after everything it pulls in, so a target is reached only when its
  members have settled, which is what makes a target a boot stage.

Only ordering must be acyclic: two units may require each other and be
started in parallel, but "A after B after A" can never be scheduled.
:meth:`UnitGraph.check` refuses such a set at load and names the cycle.
Names in ``Requires``/``BindsTo``/``PartOf``/``RequiredBy`` must exist (a
hard dependency on nothing cannot be satisfied); ``Wants``, ``WantedBy``,
``After``, ``Before`` and ``Conflicts`` may name units that are not installed
(the planner, say) and are then ignored, as systemd does.
"""

from __future__ import annotations

from collections.abc import Iterable

from aios.abi.errors import AlreadyExists, InvalidArgument
from aios.kmod.initd.units import Unit, UnitKind


class UnitGraph:
    """Edges among a fixed set of units; built once, read by the engine."""

    def __init__(self, units: Iterable[Unit], disabled: Iterable[str] = ()) -> None:
        self.units: dict[str, Unit] = {}
        for u in units:
            if u.name in self.units:
                raise AlreadyExists(f"{u.source}: unit {u.name} is defined twice")
            self.units[u.name] = u
        self.disabled = frozenset(disabled)
        self._check_references()
        names = self.units
        # pulled in by a start of the key
        self.pulls: dict[str, set[str]] = {n: set() for n in names}
        # hard requirement (Requires, BindsTo) of the key
        self.needs: dict[str, set[str]] = {n: set() for n in names}
        # units the key is ordered after / units ordered after the key
        self.after: dict[str, set[str]] = {n: set() for n in names}
        self.before: dict[str, set[str]] = {n: set() for n in names}
        # units a stop (or restart) of the key reaches: Requires, BindsTo, PartOf read backwards
        self.propagates_to: dict[str, set[str]] = {n: set() for n in names}
        # units stopped when the key goes down on its own: BindsTo read backwards
        self.bound_by: dict[str, set[str]] = {n: set() for n in names}
        self.conflicts: dict[str, set[str]] = {n: set() for n in names}
        for u in self.units.values():
            n = u.name
            for d in (*u.wants, *u.requires, *u.binds_to):
                if d in names:
                    self.pulls[n].add(d)
            for d in (*u.requires, *u.binds_to):
                self.needs[n].add(d)
            if n not in self.disabled:
                for t in u.wanted_by:
                    if t in names:
                        self.pulls[t].add(n)
                for t in u.required_by:
                    self.pulls[t].add(n)
                    self.needs[t].add(n)
                    self.propagates_to[n].add(t)
            for d in (*u.requires, *u.binds_to, *u.part_of):
                self.propagates_to[d].add(n)
            for d in u.binds_to:
                self.bound_by[d].add(n)
            for c in u.conflicts:
                if c in names:
                    self.conflicts[n].add(c)
                    self.conflicts[c].add(n)
            for d in u.after:
                if d in names:
                    self._order(n, d)
            for d in u.before:
                if d in names:
                    self._order(d, n)
        for u in self.units.values():
            if u.kind is UnitKind.TARGET and u.default_dependencies:
                for d in self.pulls[u.name]:
                    self._order(u.name, d)
        self.check_cycles()

    def _order(self, later: str, earlier: str) -> None:
        self.after[later].add(earlier)
        self.before[earlier].add(later)

    def _check_references(self) -> None:
        for u in self.units.values():
            for key, names in (("Requires", u.requires), ("BindsTo", u.binds_to),
                               ("PartOf", u.part_of)):  # fmt: skip
                for d in names:
                    if d not in self.units:
                        raise InvalidArgument(f"{u.source}: [Unit] {key}: no unit named {d}")
            for d in u.required_by:
                if d not in self.units:
                    raise InvalidArgument(f"{u.source}: [Install] RequiredBy: no unit named {d}")

    def check_cycles(self) -> None:
        """Refuse an ordering cycle, naming it: ``a after b after c after a``."""
        white, grey, black = 0, 1, 2
        color = dict.fromkeys(self.units, white)
        for root in sorted(self.units):
            if color[root] != white:
                continue
            path: list[str] = [root]
            iters = [iter(sorted(self.after[root]))]
            color[root] = grey
            while iters:
                nxt = next(iters[-1], None)
                if nxt is None:
                    color[path.pop()] = black
                    iters.pop()
                    continue
                if color[nxt] == grey:
                    cycle = [*path[path.index(nxt) :], nxt]
                    srcs = sorted({self.units[c].source for c in cycle[:-1]})
                    raise InvalidArgument(
                        f"ordering cycle: {' after '.join(cycle)} (in {', '.join(srcs)})",
                        cycle=cycle,
                    )
                if color[nxt] == white:
                    color[nxt] = grey
                    path.append(nxt)
                    iters.append(iter(sorted(self.after[nxt])))

    def start_closure(self, name: str) -> set[str]:
        """``name`` and everything a start of it pulls in."""
        seen: set[str] = set()
        todo = [name]
        while todo:
            n = todo.pop()
            if n not in seen:
                seen.add(n)
                todo.extend(self.pulls[n])
        return seen

    def stop_closure(self, name: str) -> set[str]:
        """``name`` and every unit its stop reaches (Requires/BindsTo/PartOf, transitively)."""
        seen: set[str] = set()
        todo = [name]
        while todo:
            n = todo.pop()
            if n not in seen:
                seen.add(n)
                todo.extend(self.propagates_to[n])
        return seen

    def start_order(self, names: Iterable[str]) -> list[list[str]]:
        """``names`` in layers: each layer depends (by ordering) only on earlier ones."""
        left = set(names)
        layers: list[list[str]] = []
        while left:
            layer = sorted(n for n in left if not (self.after[n] & left))
            if not layer:  # unreachable: cycles are refused at load
                raise InvalidArgument(f"ordering cycle among {sorted(left)}")
            layers.append(layer)
            left -= set(layer)
        return layers
