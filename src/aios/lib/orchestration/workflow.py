"""Workflow definitions: a tree of steps, written as data, checked before it runs.

A workflow is a tree of six kinds of node, each with an ``id`` unique in the
workflow:

=============  ===============================================================
``task``       run a named handler (an agent's skill, a tool) with ``args``;
               ``retries`` (with ``backoff_s``) and ``timeout_s`` per attempt
``sequence``   ``steps`` one after another; its output is the last one's
``parallel``   ``branches`` at once (fan-out), done when all are (fan-in);
               its output maps each branch's id to its output
``branch``     the first ``when`` case whose ``if`` holds runs, else ``else``
``loop``       ``body`` again and again until ``until`` holds after an
               iteration, at most ``max_iterations`` times (required: every
               loop is bounded); then ``on_exhausted`` = ``fail`` or ``exit``
``approval``   wait for a person (``aios approve``) to approve or reject,
               optionally within ``timeout_s``
=============  ===============================================================

The format is plain data (JSON-shaped), so the same workflow is a Python
literal, a JSON file or a TOML file (:func:`load`), and the builder functions
(:func:`task`, :func:`seq`, :func:`par`, :func:`branch`, :func:`loop`,
:func:`approval`) only save typing.  A workflow is ``{"name", "root",
"output"?}``.

**Data.**  An argument string ``"${fetch}"`` is the output of node ``fetch``
(any type), ``"${fetch.items.0}"`` a path into it, ``"${input.topic}"`` a
workflow input, ``"${iteration}"`` the innermost loop's iteration number, and
``"report on ${input.topic}"`` splices text.  Conditions are data too:
``{"ref": "${grade.score}", "op": ">=", "value": 0.8}`` (ops ``== != < <= > >=
in not_in truthy falsy exists``), combined with ``{"all": [...]}``,
``{"any": [...]}``, ``{"not": ...}``; no code is evaluated.

**Checked before it runs** (:func:`parse`): ids unique and well-formed, kinds
and fields known, numbers in range, and every reference **guaranteed to have
a value** where it is used: a node may refer to the input and to nodes that
always finish before it starts (earlier steps of its sequences, with
everything inside them that always runs; never a sibling branch of a
parallel, never inside a branch's arms from outside).  That rule is what
makes a resumed workflow take the same path as the one that crashed: every
condition sees the same outputs.
"""

from __future__ import annotations

import hashlib
import json
import re
import tomllib
from collections.abc import Iterator, Mapping, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Final

from aios.abi.errors import InvalidArgument, NoSuchObject

KINDS: Final = ("task", "sequence", "parallel", "branch", "loop", "approval")
OPS: Final = ("==", "!=", "<", "<=", ">", ">=", "in", "not_in", "truthy", "falsy", "exists")
ID: Final = re.compile(r"^[A-Za-z_][A-Za-z0-9_-]{0,63}$")
REF: Final = re.compile(r"\$\{([^}]*)\}")
WHOLE: Final = re.compile(r"^\$\{([^}]*)\}$")
MAX_NODES: Final = 1000
MAX_ITERATIONS: Final = 10_000
MAX_RETRIES: Final = 100
RESERVED: Final = frozenset({"input", "iteration"})


@dataclass(frozen=True, slots=True)
class Node:
    id: str
    kind: str
    run: str = ""  # task: the handler's name
    args: Mapping[str, Any] = field(default_factory=dict)
    retries: int = 0
    backoff_s: float = 0.0
    timeout_s: float | None = None
    children: tuple[Node, ...] = ()  # sequence steps, parallel branches, loop body (one)
    cases: tuple[tuple[Any, Node], ...] = ()  # branch: (condition, node)
    otherwise: Node | None = None  # branch: else
    until: Any = None  # loop: the exit condition
    max_iterations: int = 0
    on_exhausted: str = "fail"
    prompt: str = ""  # approval

    def walk(self) -> Iterator[Node]:
        yield self
        for c in self.children:
            yield from c.walk()
        for _, c in self.cases:
            yield from c.walk()
        if self.otherwise is not None:
            yield from self.otherwise.walk()


@dataclass(frozen=True, slots=True)
class Workflow:
    name: str
    root: Node
    output: Any = None  # a value with ${...} references; default: the root's output
    source: Mapping[str, Any] = field(default_factory=dict)

    def nodes(self) -> dict[str, Node]:
        return {n.id: n for n in self.root.walk()}

    def canonical(self) -> dict[str, Any]:
        """The definition with every default filled in (what the digest covers)."""
        return {"name": self.name, "root": _canon(self.root), "output": self.output}

    @property
    def digest(self) -> str:
        blob = json.dumps(self.canonical(), sort_keys=True, separators=(",", ":"),
                          ensure_ascii=False)
        return hashlib.blake2b(blob.encode(), digest_size=12).hexdigest()


def _cond(c: Any) -> Any:
    if "all" in c or "any" in c:
        k = "all" if "all" in c else "any"
        return {k: [_cond(x) for x in c[k]]}
    if "not" in c:
        return {"not": _cond(c["not"])}
    return {"ref": c["ref"], "op": c["op"], "value": c.get("value")}


def _canon(n: Node) -> dict[str, Any]:
    return {"id": n.id, "kind": n.kind, "run": n.run, "args": n.args, "retries": n.retries,
            "backoff_s": n.backoff_s, "timeout_s": n.timeout_s,
            "children": [_canon(c) for c in n.children],
            "cases": [[_cond(c), _canon(x)] for c, x in n.cases],
            "otherwise": _canon(n.otherwise) if n.otherwise is not None else None,
            "until": _cond(n.until) if n.until is not None else None, "max_iterations": n.max_iterations,
            "on_exhausted": n.on_exhausted, "prompt": n.prompt}


# -- builders ---------------------------------------------------------------------------


def task(id: str, run: str, args: Mapping[str, Any] | None = None, *, retries: int = 0,
         backoff_s: float = 0.0, timeout_s: float | None = None) -> dict[str, Any]:
    d: dict[str, Any] = {"kind": "task", "id": id, "run": run, "args": dict(args or {})}
    if retries:
        d["retries"] = retries
    if backoff_s:
        d["backoff_s"] = backoff_s
    if timeout_s is not None:
        d["timeout_s"] = timeout_s
    return d


def seq(id: str, *steps: Mapping[str, Any]) -> dict[str, Any]:
    return {"kind": "sequence", "id": id, "steps": list(steps)}


def par(id: str, *branches: Mapping[str, Any]) -> dict[str, Any]:
    return {"kind": "parallel", "id": id, "branches": list(branches)}


def branch(id: str, *cases: tuple[Mapping[str, Any], Mapping[str, Any]],
           otherwise: Mapping[str, Any] | None = None) -> dict[str, Any]:
    d: dict[str, Any] = {"kind": "branch", "id": id,
                         "when": [{"if": c, "then": n} for c, n in cases]}
    if otherwise is not None:
        d["else"] = otherwise
    return d


def loop(id: str, body: Mapping[str, Any], *, until: Mapping[str, Any],
         max_iterations: int, on_exhausted: str = "fail") -> dict[str, Any]:
    return {"kind": "loop", "id": id, "body": body, "until": until,
            "max_iterations": max_iterations, "on_exhausted": on_exhausted}


def approval(id: str, prompt: str, *, timeout_s: float | None = None) -> dict[str, Any]:
    d: dict[str, Any] = {"kind": "approval", "id": id, "prompt": prompt}
    if timeout_s is not None:
        d["timeout_s"] = timeout_s
    return d


def when(ref: str, op: str, value: Any = None) -> dict[str, Any]:
    return {"ref": ref, "op": op, "value": value}


def workflow(name: str, root: Mapping[str, Any], output: Any = None) -> dict[str, Any]:
    d: dict[str, Any] = {"name": name, "root": root}
    if output is not None:
        d["output"] = output
    return d


# -- parsing ------------------------------------------------------------------------------


def _bad(where: str, why: str) -> InvalidArgument:
    return InvalidArgument(f"workflow {where}: {why}")


def _num(d: Mapping[str, Any], key: str, where: str, lo: float, hi: float,
         default: float | None) -> float | None:
    v = d.get(key, default)
    if v is None:
        return None
    if isinstance(v, bool) or not isinstance(v, int | float) or not lo <= v <= hi:
        raise _bad(where, f"{key} must be a number in [{lo}, {hi}]")
    return float(v)


def _node(d: Any, path: str, seen: set[str]) -> Node:
    if not isinstance(d, Mapping):
        raise _bad(path, "a node is an object")
    nid, kind = d.get("id"), d.get("kind")
    if not isinstance(nid, str) or not ID.match(nid) or nid in RESERVED:
        raise _bad(path, f"id {nid!r} must match {ID.pattern} and not be input/iteration")
    where = f"node {nid!r}"
    if nid in seen:
        raise _bad(where, "the id is used twice")
    seen.add(nid)
    if len(seen) > MAX_NODES:
        raise _bad(where, f"more than {MAX_NODES} nodes")
    if kind not in KINDS:
        raise _bad(where, f"kind must be one of {', '.join(KINDS)}")
    allowed = {"id", "kind", "timeout_s"} | {
        "task": {"run", "args", "retries", "backoff_s"}, "sequence": {"steps"},
        "parallel": {"branches"}, "branch": {"when", "else"},
        "loop": {"body", "until", "max_iterations", "on_exhausted"},
        "approval": {"prompt"}}[kind]
    extra = set(d) - allowed
    if extra:
        raise _bad(where, f"unknown field(s) {', '.join(sorted(extra))} for a {kind}")
    timeout = _num(d, "timeout_s", where, 1e-6, 1e9, None)
    if kind == "task":
        run, args = d.get("run"), d.get("args", {})
        if not isinstance(run, str) or not ID.match(run):
            raise _bad(where, "a task names the handler it runs (run)")
        if not isinstance(args, Mapping):
            raise _bad(where, "args must be an object")
        retries = int(_num(d, "retries", where, 0, MAX_RETRIES, 0) or 0)
        if d.get("retries", 0) != retries:
            raise _bad(where, "retries must be an integer")
        return Node(nid, kind, run, dict(args), retries,
                    _num(d, "backoff_s", where, 0, 1e6, 0.0) or 0.0, timeout)
    if kind in ("sequence", "parallel"):
        key = "steps" if kind == "sequence" else "branches"
        items = d.get(key)
        if not isinstance(items, list) or not items:
            raise _bad(where, f"a {kind} needs a non-empty list of {key}")
        kids = tuple(_node(c, f"{where}.{key}[{i}]", seen) for i, c in enumerate(items))
        return Node(nid, kind, timeout_s=timeout, children=kids)
    if kind == "branch":
        cases = d.get("when")
        if not isinstance(cases, list) or not cases:
            raise _bad(where, "a branch needs a non-empty list of when cases")
        out = []
        for i, c in enumerate(cases):
            if not isinstance(c, Mapping) or set(c) != {"if", "then"}:
                raise _bad(where, f"when[{i}] is {{if: condition, then: node}}")
            check_condition(c["if"], f"{where}.when[{i}]")
            out.append((c["if"], _node(c["then"], f"{where}.when[{i}]", seen)))
        other = _node(d["else"], f"{where}.else", seen) if "else" in d else None
        return Node(nid, kind, timeout_s=timeout, cases=tuple(out), otherwise=other)
    if kind == "loop":
        mx = d.get("max_iterations")
        if not isinstance(mx, int) or isinstance(mx, bool) or not 1 <= mx <= MAX_ITERATIONS:
            raise _bad(where, f"a loop needs max_iterations in [1, {MAX_ITERATIONS}]: every "
                              "loop is bounded")
        if "until" not in d:
            raise _bad(where, "a loop needs an until condition (its exit)")
        check_condition(d["until"], f"{where}.until")
        ex = d.get("on_exhausted", "fail")
        if ex not in ("fail", "exit"):
            raise _bad(where, "on_exhausted is fail or exit")
        body = _node(d.get("body"), f"{where}.body", seen)
        return Node(nid, kind, timeout_s=timeout, children=(body,), until=d["until"],
                    max_iterations=mx, on_exhausted=ex)
    prompt = d.get("prompt", "")
    if not isinstance(prompt, str) or not prompt.strip():
        raise _bad(where, "an approval needs a prompt for the person asked")
    return Node(nid, kind, timeout_s=timeout, prompt=prompt)


def check_condition(c: Any, where: str) -> None:
    if not isinstance(c, Mapping):
        raise _bad(where, "a condition is an object")
    if "all" in c or "any" in c:
        k = "all" if "all" in c else "any"
        if set(c) != {k} or not isinstance(c[k], list) or not c[k]:
            raise _bad(where, f"{k} takes a non-empty list of conditions")
        for i, x in enumerate(c[k]):
            check_condition(x, f"{where}.{k}[{i}]")
        return
    if "not" in c:
        if set(c) != {"not"}:
            raise _bad(where, "not takes one condition")
        check_condition(c["not"], f"{where}.not")
        return
    if set(c) - {"ref", "op", "value"} or not isinstance(c.get("ref"), str) \
            or not WHOLE.match(c["ref"]):
        raise _bad(where, 'a comparison is {ref: "${node.path}", op, value}')
    if c.get("op") not in OPS:
        raise _bad(where, f"op must be one of {', '.join(OPS)}")


def refs(value: Any) -> Iterator[str]:
    """The root names referred to in a value (``input``, ``iteration`` or node ids)."""
    if isinstance(value, str):
        for m in REF.finditer(value):
            yield m.group(1).split(".", 1)[0]
    elif isinstance(value, Mapping):
        for v in value.values():
            yield from refs(v)
    elif isinstance(value, list | tuple):
        for v in value:
            yield from refs(v)


def done_set(n: Node) -> frozenset[str]:
    """The nodes that have always finished once ``n`` has."""
    if n.kind in ("task", "approval", "branch"):
        return frozenset({n.id})
    out = {n.id}
    for c in n.children:  # sequence, parallel, and a loop's body (it runs at least once)
        out |= done_set(c)
    return frozenset(out)


def _guaranteed(n: Node, before: frozenset[str], in_loop: bool) -> None:
    def need(value: Any, what: str) -> None:
        for r in refs(value):
            if r == "iteration" and not in_loop:
                raise _bad(f"node {n.id!r}", f"{what} uses ${{iteration}} outside a loop")
            if r not in before and r not in RESERVED:
                raise _bad(f"node {n.id!r}", f"{what} refers to {r!r}, which has not always "
                                             "finished when this runs (only earlier steps of "
                                             "its sequences can be referred to)")

    need(n.args, "args")
    if n.kind == "sequence":
        acc = before
        for c in n.children:
            _guaranteed(c, acc, in_loop)
            acc = acc | done_set(c)
    elif n.kind == "parallel":
        for c in n.children:
            _guaranteed(c, before, in_loop)
    elif n.kind == "branch":
        for cond, c in n.cases:
            need(cond, "a when condition")
            _guaranteed(c, before, in_loop)
        if n.otherwise is not None:
            _guaranteed(n.otherwise, before, in_loop)
    elif n.kind == "loop":
        body = n.children[0]
        _guaranteed(body, before, True)
        after_body = before | done_set(body)  # until is checked after each iteration
        for r in refs(n.until):
            if r not in after_body and r not in RESERVED:
                raise _bad(f"node {n.id!r}", f"the until condition refers to {r!r}, which "
                                             "the body does not always produce")


def parse(data: Mapping[str, Any]) -> Workflow:
    """A checked workflow from its data (see the module essay)."""
    if not isinstance(data, Mapping):
        raise _bad("definition", "a workflow is an object {name, root, output?}")
    name = data.get("name")
    if not isinstance(name, str) or not ID.match(name):
        raise _bad("definition", f"name {name!r} must match {ID.pattern}")
    extra = set(data) - {"name", "root", "output"}
    if extra:
        raise _bad("definition", f"unknown field(s) {', '.join(sorted(extra))}")
    root = _node(data.get("root"), "root", set())
    _guaranteed(root, frozenset(), False)
    out = data.get("output")
    for r in refs(out):
        if r not in done_set(root) and r != "input":
            raise _bad("output", f"refers to {r!r}, which has not always finished at the end")
    return Workflow(name, root, out, json.loads(json.dumps(dict(data))))


def load(path: str | Path) -> Workflow:
    """A workflow from a ``.toml`` or ``.json`` file."""
    p = Path(path)
    if not p.is_file():
        raise NoSuchObject(f"no workflow file {p}")
    try:
        if p.suffix == ".toml":
            data: Any = tomllib.loads(p.read_text())
        else:
            data = json.loads(p.read_text())
    except (tomllib.TOMLDecodeError, json.JSONDecodeError, UnicodeDecodeError) as e:
        raise InvalidArgument(f"{p}: {e}") from None
    return parse(data)


# -- values -----------------------------------------------------------------------------------


def lookup(path: str, scope: Mapping[str, Any]) -> Any:
    """``node.a.0.b`` in ``scope`` (node outputs, ``input``, ``iteration``)."""
    head, *rest = path.split(".")
    if head not in scope:
        raise InvalidArgument(f"${{{path}}}: {head!r} has no value yet")
    v = scope[head]
    for part in rest:
        if isinstance(v, Mapping) and part in v:
            v = v[part]
        elif isinstance(v, list) and part.lstrip("-").isdigit() and -len(v) <= int(part) < len(v):
            v = v[int(part)]
        else:
            raise InvalidArgument(f"${{{path}}}: no {part!r} in {type(v).__name__}")
    return v


def resolve(value: Any, scope: Mapping[str, Any]) -> Any:
    if isinstance(value, str):
        m = WHOLE.match(value)
        if m:
            return lookup(m.group(1), scope)

        def text(mm: re.Match[str]) -> str:
            v = lookup(mm.group(1), scope)
            return v if isinstance(v, str) else json.dumps(v, ensure_ascii=False)

        return REF.sub(text, value)
    if isinstance(value, Mapping):
        return {k: resolve(v, scope) for k, v in value.items()}
    if isinstance(value, list | tuple):
        return [resolve(v, scope) for v in value]
    return value


def evaluate(cond: Mapping[str, Any], scope: Mapping[str, Any]) -> bool:
    if "all" in cond:
        return all(evaluate(c, scope) for c in cond["all"])
    if "any" in cond:
        return any(evaluate(c, scope) for c in cond["any"])
    if "not" in cond:
        return not evaluate(cond["not"], scope)
    op = cond["op"]
    m = WHOLE.match(cond["ref"])
    assert m
    if op == "exists":
        try:
            lookup(m.group(1), scope)
            return True
        except InvalidArgument:
            return False
    left = lookup(m.group(1), scope)
    right: Any = cond.get("value")
    try:
        if op == "truthy":
            return bool(left)
        if op == "falsy":
            return not left
        if op == "==":
            return bool(left == right)
        if op == "!=":
            return bool(left != right)
        if op == "in":
            return left in right
        if op == "not_in":
            return left not in right
        cmp = {"<": left < right, "<=": left <= right, ">": left > right, ">=": left >= right}
        return bool(cmp[op])
    except TypeError as e:
        raise InvalidArgument(f"condition {cond['ref']} {op} {right!r}: {e}") from None


__all__: Sequence[str] = (
    "Node", "Workflow", "approval", "branch", "evaluate", "load", "loop", "par", "parse",
    "resolve", "seq", "task", "when", "workflow",
)
