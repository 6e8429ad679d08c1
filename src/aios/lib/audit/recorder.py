"""From kernel events to audit records: the event-bus subscriber.

Design
------
The kernel does not call the audit log from its syscall handlers.  It
publishes events on its bus, and :class:`AuditRecorder` is one subscriber:
``on_event(topic, data)`` keeps the security-relevant topics (by prefix:
``security.``, ``agent.lifecycle.``, ``cap.``, ``policy.``, ...), turns
each into an :class:`AuditRecord` (who, what, which capability, policy
decision, result, time, and the rest of the event as ``detail``), encodes
it as canonical JSON and appends it to the :class:`AuditLog`.  The kernel
calls ``flush()`` on a timer and at shutdown; only then are records durable.

Canonical JSON: keys sorted, no spaces, UTF-8, integers as integers.  Bytes
become ``"b64:<base64>"`` and anything else JSON lacks becomes its ``str``,
so encoding never fails and the same event always yields the same leaf.
Well-known field names are accepted in a few spellings (``agent`` /
``agent_id`` / ``who``, ``cap`` / ``capability``, ...) so producers need
not agree on one.
"""

from __future__ import annotations

import base64
import json
import time
from collections.abc import Callable, Mapping
from dataclasses import dataclass, field
from typing import Any, Final

from aios.abi.errors import InvalidArgument
from aios.abi.topics import AUDIT_PREFIXES
from aios.lib.audit.log import AuditLog

_AGENT_KEYS: Final = ("agent", "agent_id", "who", "pid")
_CAP_KEYS: Final = ("cap", "capability", "slot")
_DECISION_KEYS: Final = ("decision", "policy_decision", "allowed")
_RESULT_KEYS: Final = ("result", "errno", "error", "status")
_MAX_DEPTH: Final = 8


_EXACT: Final = frozenset({type(None), bool, int, str})


def _plain(value: Any, depth: int = 0) -> Any:
    """A JSON-able copy of ``value`` (bytes as ``b64:``, unknown types as str)."""
    t = type(value)
    if t in _EXACT:
        return value
    if t is dict and depth < _MAX_DEPTH:  # the common case, without a call per scalar
        exact = _EXACT
        return {k if type(k) is str else str(k): v if type(v) in exact else _plain(v, depth + 1)
                for k, v in value.items()}
    if value is None or isinstance(value, bool | int | str):
        return value
    if isinstance(value, float):
        return value if value == value and abs(value) != float("inf") else str(value)
    if isinstance(value, bytes | bytearray | memoryview):
        return "b64:" + base64.b64encode(bytes(value)).decode()
    if depth >= _MAX_DEPTH:
        return str(value)
    if isinstance(value, Mapping):
        return {str(k): _plain(v, depth + 1) for k, v in value.items()}
    if isinstance(value, list | tuple | set | frozenset):
        items = [_plain(v, depth + 1) for v in value]
        return sorted(items, key=repr) if isinstance(value, set | frozenset) else items
    return str(value)


def canonical_json(obj: Any) -> bytes:
    return json.dumps(
        _plain(obj), sort_keys=True, separators=(",", ":"), ensure_ascii=False
    ).encode()


@dataclass(frozen=True, slots=True)
class AuditRecord:
    """One audited fact."""

    ts_ns: int
    kind: str
    agent: int | None = None
    capability: Any = None
    decision: Any = None
    result: Any = None
    detail: Mapping[str, Any] = field(default_factory=dict)

    def encode(self) -> bytes:
        return canonical_json(
            {
                "t": self.ts_ns,
                "type": self.kind,
                "agent": self.agent,
                "cap": self.capability,
                "decision": self.decision,
                "result": self.result,
                "detail": dict(self.detail),
            }
        )

    @classmethod
    def decode(cls, raw: bytes) -> AuditRecord:
        try:
            obj = json.loads(raw)
            return cls(
                ts_ns=int(obj["t"]),
                kind=str(obj["type"]),
                agent=obj.get("agent"),
                capability=obj.get("cap"),
                decision=obj.get("decision"),
                result=obj.get("result"),
                detail=obj.get("detail") or {},
            )
        except (ValueError, KeyError, TypeError) as exc:
            raise InvalidArgument(f"not an audit record: {exc}") from None


def _take(data: dict[str, Any], keys: tuple[str, ...]) -> Any:
    for k in keys:
        if k in data:
            return data.pop(k)
    return None


def _agent_id(value: Any) -> int | None:
    if isinstance(value, bool):
        return None
    if isinstance(value, int):
        return value
    try:
        return int(value)
    except (TypeError, ValueError):
        return None


class AuditRecorder:
    """Subscribe with ``bus.subscribe(prefix..., recorder.on_event)``; call ``flush()``."""

    def __init__(
        self,
        log: AuditLog,
        prefixes: tuple[str, ...] = AUDIT_PREFIXES,
        wall_ns: Callable[[], int] = time.time_ns,
    ) -> None:
        self.log = log
        self.prefixes = prefixes
        self.wall_ns = wall_ns
        self.recorded = 0
        self.ignored = 0

    def relevant(self, topic: str, data: Mapping[str, Any] | None = None) -> bool:
        if data is not None and data.get("audit") is True:
            return True
        return topic.startswith(self.prefixes)

    def record_of(self, topic: str, data: Mapping[str, Any]) -> AuditRecord:
        rest = dict(data)
        rest.pop("audit", None)
        raw_agent = _take(rest, _AGENT_KEYS)
        agent = _agent_id(raw_agent)
        if raw_agent is not None and agent is None:
            rest["agent_name"] = raw_agent
        ts = rest.pop("ts_ns", None)
        return AuditRecord(
            ts_ns=ts if isinstance(ts, int) and not isinstance(ts, bool) else self.wall_ns(),
            kind=topic,
            agent=agent,
            capability=_plain(_take(rest, _CAP_KEYS)),
            decision=_plain(_take(rest, _DECISION_KEYS)),
            result=_plain(_take(rest, _RESULT_KEYS)),
            detail=_plain(rest),
        )

    def on_event(self, topic: str, data: dict[str, Any]) -> int | None:
        """Append the event if it is security-relevant; returns at once (buffered)
        with the record's log index, or None when the topic is not audited."""
        if not isinstance(topic, str) or not self.relevant(
            topic, data if isinstance(data, Mapping) else None
        ):
            self.ignored += 1
            return None
        rec = self.record_of(topic, data if isinstance(data, Mapping) else {"data": data})
        idx = self.log.append(rec.encode(), kind=rec.kind, agent=rec.agent, ts_ns=rec.ts_ns)
        self.recorded += 1
        return idx

    def record(self, rec: AuditRecord) -> int:
        """Append a record built by the caller; returns its index."""
        self.recorded += 1
        return self.log.append(rec.encode(), kind=rec.kind, agent=rec.agent, ts_ns=rec.ts_ns)

    def flush(self) -> int:
        """Commit buffered records (and a checkpoint if due); the acknowledged size."""
        return self.log.commit()

    def close(self) -> None:
        self.log.close()
