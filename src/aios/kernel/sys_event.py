"""Syscall shims for the event bus: publish, subscribe, receive, unsubscribe."""

from __future__ import annotations

from typing import TYPE_CHECKING, Any

import msgpack

from aios.abi import limits
from aios.abi.errors import (
    InvalidArgument,
    NoSuchObject,
    PermissionDenied,
    QuotaExceeded,
    WouldBlock,
)
from aios.abi.rights import ObjKind, Rights
from aios.kernel.accounts import EventAccount
from aios.kernel.agents import Agent
from aios.kernel.args import as_dict, as_int, as_opts, as_plain
from aios.kernel.events import EVENT_HISTORY, check_topic
from aios.kernel.waits import WaitQueue

if TYPE_CHECKING:
    from aios.kernel.kernel import Kernel

SUB_OPTS = frozenset({"priority", "depth", "overflow", "filter", "backlog", "since_s"})


def sys_event_publish(k: Kernel, a: Agent, slot: Any, topic: Any, data: Any = None) -> int:
    """Publish ``data`` on ``topic``; kernel topics need ADMIN.  Returns the event's sequence."""
    from aios.abi.topics import KERNEL_TOPIC_PREFIXES

    cap = a.cspace.lookup(slot, ObjKind.TOPIC, Rights.WRITE)
    topic = check_topic(topic)
    prefix: str = cap.obj.payload
    if prefix and not (topic == prefix or topic.startswith(prefix + ".")):
        raise PermissionDenied(f"this capability publishes under {prefix!r} only")
    if topic.startswith(KERNEL_TOPIC_PREFIXES) and not cap.rights & Rights.ADMIN:
        raise PermissionDenied(f"{topic!r} is a kernel topic")
    data = {} if data is None else as_dict(data, "data")
    blob = as_plain(data, "data", limits.EVENT_MAX_PAYLOAD)
    ev = k.bus.publish(topic, msgpack.unpackb(blob, raw=False, strict_map_key=False), a.aid, len(blob))
    return ev.seq if ev is not None else k.bus.seq


def sys_event_subscribe(k: Kernel, a: Agent, slot: Any, pattern: Any, opts: Any = None) -> int:
    cap = a.cspace.lookup(slot, ObjKind.TOPIC, Rights.READ)
    pattern = check_topic(pattern, pattern=True)
    prefix: str = cap.obj.payload
    if prefix and not (pattern == prefix or pattern.startswith(prefix + ".")):
        raise PermissionDenied(f"this capability subscribes under {prefix!r} only")
    o = as_opts(opts, SUB_OPTS)
    if len(k.bus.subscriptions(a.aid)) >= limits.EVENT_SUBSCRIPTIONS_MAX:
        raise QuotaExceeded("too many subscriptions")
    past = _history_request(k, o)  # checked before anything is made
    sub = k.bus.subscribe(
        pattern,
        owner=a.aid,
        priority=o.get("priority", 0),
        depth=o.get("depth", limits.EVENT_QUEUE_DEPTH),
        overflow=o.get("overflow", "drop_oldest"),
        filter=o.get("filter"),
    )
    sub.waiters = WaitQueue()
    sub.account = EventAccount(k.ledger, a.aid)  # queued events count against its quota
    if past:
        k.bus.backfill(sub, past)
    return sub.sid


def _history_request(k: Kernel, o: dict[str, Any]) -> list[Any]:
    """The recent events a subscriber asked for (``backlog``: a count, ``since_s``: seconds back)."""
    backlog, since_s = o.get("backlog"), o.get("since_s")
    if backlog is None and since_s is None:
        return []
    if backlog is not None:
        backlog = as_int(backlog, "backlog", 0, limits.EVENT_HISTORY_DEPTH)
    if since_s is not None and (type(since_s) not in (int, float) or not 0 <= since_s <= 10 * 365 * 86400):
        raise InvalidArgument("since_s must be a number of seconds, 0 to ten years")
    hist = k.ext.get(EVENT_HISTORY)
    if hist is None:
        raise NoSuchObject("this kernel keeps no event history (the daemon, `aios up`, does)")
    return hist.recent(since_s, backlog)


def _own_sub(k: Kernel, a: Agent, sid: Any) -> Any:
    sid = as_int(sid, "sid", 1)
    sub = k.bus.get(sid)
    if sub is None or sub.owner != a.aid:
        raise NoSuchObject(f"no subscription {sid}")
    return sub


def sys_event_recv(k: Kernel, a: Agent, sid: Any, timeout: Any = None) -> Any:
    sub = _own_sub(k, a, sid)
    if sub.queue:
        return sub.pop().to_dict()
    if timeout == 0:
        raise WouldBlock("no event queued")
    return k.park(a, sub.waiters, timeout)


def sys_event_unsubscribe(k: Kernel, a: Agent, sid: Any) -> dict[str, Any]:
    sub = _own_sub(k, a, sid)
    k.bus.unsubscribe(sub.sid)
    for w in sub.waiters.drain():
        k.wake(w, exc=NoSuchObject("subscription closed"))
    stats: dict[str, Any] = sub.final or sub.statistics()
    return stats

