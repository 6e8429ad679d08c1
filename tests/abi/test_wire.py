from __future__ import annotations

import struct

import msgpack
import pytest
from hypothesis import given
from hypothesis import strategies as st

from aios.abi import wire
from aios.abi.errors import ProtocolError
from aios.abi.wire import FrameDecoder, Kind, RawDecoder


def test_request_roundtrip_args_are_tuples() -> None:
    dec = FrameDecoder(Kind.REQUEST)
    frames = dec.feed(wire.encode_request(1, 20, (1, [2, 3], b"x", "s", None)))
    assert frames == [(1, 20, (1, (2, 3), b"x", "s", None))]
    assert isinstance(frames[0][2], tuple)
    assert dec.in_flight() == 1
    dec.settle()
    assert dec.in_flight() == 0


def test_reply_roundtrip_results_are_lists() -> None:
    dec = FrameDecoder(Kind.REPLY)
    dec.expect(1)
    dec.expect(2)
    out = dec.feed(
        wire.encode_batch([wire.encode_reply(2, 0, [1, 2]), wire.encode_reply(1, 3, "gone")])
    )
    assert out == [(2, 0, [1, 2]), (1, 3, "gone")]
    assert dec.in_flight() == 0


def test_byte_at_a_time_and_batches() -> None:
    data = wire.encode_batch(wire.encode_request(i, 7, (i,)) for i in range(1, 51))
    dec = FrameDecoder(Kind.REQUEST)
    got = []
    for b in data:
        got.extend(dec.feed(bytes([b])))
    assert [f[0] for f in got] == list(range(1, 51))
    assert dec.buffered == 0


@given(st.lists(st.integers(min_value=1, max_value=40), min_size=1, max_size=20))
def test_arbitrary_split_points(cuts: list[int]) -> None:
    data = wire.encode_batch(wire.encode_request(i, i, ("a" * i,)) for i in range(1, 11))
    dec = FrameDecoder(Kind.REQUEST)
    got, pos = [], 0
    for c in cuts:
        got.extend(dec.feed(data[pos : pos + c]))
        pos += c
    got.extend(dec.feed(data[pos:]))
    assert [f[0] for f in got] == list(range(1, 11))


def test_control_frames_bypass_seq() -> None:
    dec = FrameDecoder(Kind.REQUEST)
    out = dec.feed(
        wire.encode_control(wire.Control.EXIT, (0, "ok", "")) + wire.encode_request(1, 1, ())
    )
    assert out[0] == (0, int(wire.Control.EXIT), (0, "ok", ""))
    assert out[1][0] == 1


@pytest.mark.parametrize(
    "payload, msg",
    [
        (struct.pack(">I", 3) + b"\xc1\xc1\xc1", "malformed"),
        (struct.pack(">I", wire.MAX_FRAME + 1), "exceeds"),
        (struct.pack(">I", 0), "empty"),
        (wire.encode_frame((1, 2)), "3-element"),
        (wire.encode_frame({"seq": 1}), "3-element"),
        (wire.encode_frame(("1", 2, ())), "integers"),
        (wire.encode_frame((1, 2, "notarray")), "arguments"),
        (wire.encode_frame((2, 2, ())), "out-of-order"),
        (wire.encode_frame((-1, 2, ())), "out of range"),
        (struct.pack(">I", 3) + msgpack.packb(msgpack.ExtType(5, b"x")), "malformed"),
    ],
)
def test_bad_request_frames_raise_protocol_error(payload: bytes, msg: str) -> None:
    dec = FrameDecoder(Kind.REQUEST)
    if msg == "malformed" and payload[4:5] != b"\xc1":
        payload = struct.pack(">I", len(payload) - 4) + payload[4:]
    with pytest.raises(ProtocolError, match=msg):
        dec.feed(payload)
    # poisoned: even a good frame is refused afterwards
    with pytest.raises(ProtocolError, match="already failed"):
        dec.feed(wire.encode_request(1, 1, ()))


def test_duplicate_seq() -> None:
    dec = FrameDecoder(Kind.REQUEST)
    dec.feed(wire.encode_request(1, 1, ()))
    with pytest.raises(ProtocolError, match="duplicate"):
        dec.feed(wire.encode_request(1, 1, ()))


def test_in_flight_bound() -> None:
    dec = FrameDecoder(Kind.REQUEST, max_in_flight=3)
    dec.feed(wire.encode_batch(wire.encode_request(i, 1, ()) for i in (1, 2, 3)))
    with pytest.raises(ProtocolError, match="in flight"):
        dec.feed(wire.encode_request(4, 1, ()))


def test_in_flight_settle_allows_more() -> None:
    dec = FrameDecoder(Kind.REQUEST, max_in_flight=1)
    dec.feed(wire.encode_request(1, 1, ()))
    dec.settle()
    assert dec.feed(wire.encode_request(2, 1, ()))[0][0] == 2


def test_reply_not_in_flight_and_duplicate() -> None:
    dec = FrameDecoder(Kind.REPLY)
    with pytest.raises(ProtocolError, match="not in flight"):
        dec.feed(wire.encode_reply(1, 0, None))
    dec2 = FrameDecoder(Kind.REPLY)
    dec2.expect(1)
    dec2.feed(wire.encode_reply(1, 0, None))
    with pytest.raises(ProtocolError, match="not in flight"):
        dec2.feed(wire.encode_reply(1, 0, None))


def test_error_reply_needs_message() -> None:
    dec = FrameDecoder(Kind.REPLY)
    dec.expect(1)
    with pytest.raises(ProtocolError, match="message"):
        dec.feed(wire.encode_reply(1, 22, 5))


def test_mux_seq_per_agent() -> None:
    dec = FrameDecoder(Kind.REQUEST, mux=True)
    out = dec.feed(
        wire.encode_batch(
            [
                wire.encode_mux_request(7, 1, 20, ()),
                wire.encode_mux_request(9, 1, 20, ()),
                wire.encode_mux_request(7, 2, 20, ("x",)),
            ]
        )
    )
    assert [(f[0], f[1]) for f in out] == [(7, 1), (9, 1), (7, 2)]
    assert dec.in_flight(7) == 2
    with pytest.raises(ProtocolError, match="duplicate"):
        dec.feed(wire.encode_mux_request(9, 1, 20, ()))


def test_mux_reply_and_forget() -> None:
    dec = FrameDecoder(Kind.REPLY, mux=True)
    dec.expect(1, agent=5)
    assert dec.feed(wire.encode_mux_reply(5, 1, 0, "ok")) == [(5, 1, 0, "ok")]
    dec.expect(2, agent=5)
    dec.forget(5)
    with pytest.raises(ProtocolError):
        dec.feed(wire.encode_mux_reply(5, 2, 0, "ok"))


def test_encode_limits() -> None:
    big = b"x" * wire.MAX_FRAME
    with pytest.raises(ProtocolError, match="exceeds"):
        wire.encode_request(1, 1, (big,))
    # a payload at the IPC limit fits
    ok = wire.encode_request(1, 1, (b"x" * wire.IPC_MAX_PAYLOAD,))
    assert len(FrameDecoder(Kind.REQUEST).feed(ok)) == 1
    with pytest.raises(ProtocolError, match="encode"):
        wire.encode_request(1, 1, (object(),))


def test_unencodable_reply_becomes_eproto() -> None:
    dec = FrameDecoder(Kind.REPLY)
    dec.expect(3)
    assert dec.feed(wire.encode_reply(3, 0, object()))[0][1] == ProtocolError.code


def test_raw_decoder_use_list() -> None:
    raw = RawDecoder(use_list=True)
    assert raw.feed(wire.encode_frame(("a", (1, 2)))) == [["a", [1, 2]]]
