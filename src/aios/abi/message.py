"""The binary IPC message as both sides of the trap see it, and how it crosses the wire."""

from __future__ import annotations

from typing import Any, NamedTuple


class Message(NamedTuple):
    """A delivered message.  ``badge`` is the sender's endpoint badge (set by
    whoever minted that endpoint, so receivers can tell clients apart);
    ``call`` is non-zero when the sender waits for a reply; ``cap`` is the
    receiver-side slot of a capability transferred with the message, or -1."""

    seq: int
    sender: int
    badge: int
    payload: bytes
    call: int = 0
    cap: int = -1


# How a Message crosses the trap wire to an agent in another process: as a
# one-key map (msgpack has no named tuples); the SDK turns it back.
WIRE_MESSAGE = "__aios_message__"


def to_wire(v: Any) -> Any:
    """A syscall result as plain msgpack-able data."""
    t = type(v)
    if t is Message:
        return {WIRE_MESSAGE: list(v)}
    if t is list and v and type(v[0]) is Message:
        return [{WIRE_MESSAGE: list(m)} for m in v]
    if t is tuple:
        return [to_wire(x) for x in v]
    return v


def from_wire(v: Any) -> Any:
    """A received message as a :class:`Message`, whichever executor delivered it."""
    if type(v) is dict and WIRE_MESSAGE in v:
        return Message(*v[WIRE_MESSAGE])
    return v
