"""Every bus message round-trips through the one encoder/decoder; bad payloads are rejected."""

from __future__ import annotations

import math
import types
import typing

import msgspec
import pytest

from common import schema
from common.schema import Envelope


def sample(tp: object) -> object:
    """A valid value of an annotated type (inside the Meta constraints)."""
    origin = typing.get_origin(tp)
    if origin is typing.Annotated:
        base, *metas = typing.get_args(tp)
        meta = metas[0]
        if base is float:
            lo = meta.ge if meta.ge is not None else (meta.gt if meta.gt is not None else 0.0)
            hi = meta.le if meta.le is not None else (meta.lt if meta.lt is not None else lo + 2)
            return (lo + hi) / 2 if hi - lo < 10 else lo + 1.5
        return sample(base)
    if origin in (types.UnionType, typing.Union):
        return sample(next(a for a in typing.get_args(tp) if a is not type(None)))
    if origin is typing.Literal:
        return typing.get_args(tp)[-1]
    if origin is list:
        return [sample(typing.get_args(tp)[0])]
    if origin is tuple:
        return tuple(sample(a) for a in typing.get_args(tp))
    if origin is dict:
        value_type = typing.get_args(tp)[1]
        return {"a": 1.25 if value_type is typing.Any else sample(value_type)}
    if isinstance(tp, type) and issubclass(tp, msgspec.Struct):
        hints = typing.get_type_hints(tp, include_extras=True)
        return tp(**{f: sample(hints[f]) for f in tp.__struct_fields__})
    return {int: 7, float: 1.5, str: "x", bool: True}[tp]  # type: ignore[index]


@pytest.mark.parametrize("cls", schema.MESSAGE_TYPES, ids=lambda c: c.__name__)
def test_every_message_round_trips(cls: type[schema.Msg]) -> None:
    msg = sample(cls)
    env = Envelope(seq=3, epoch=99, msg=msg)
    back = schema.decode_envelope(schema.encode(env))
    assert back == env
    assert type(back.msg) is cls
    d = schema.to_dict(back.msg)
    assert d["kind"] == schema.kind_of(msg) == cls.__struct_config__.tag


def test_kinds_are_unique_and_complete() -> None:
    assert len(schema.KINDS) == len(schema.MESSAGE_TYPES) >= 26
    # a price_change is ingest's parser event; only whole books go on the bus
    assert "book_delta" not in schema.KINDS and "book" in schema.KINDS


def _raw(msg_fields: dict) -> bytes:
    return msgspec.msgpack.encode([1, 1, msg_fields])


@pytest.mark.parametrize("price", [math.nan, -0.01, math.inf * -1])
def test_bad_prices_are_rejected(price: float) -> None:
    bad = {"kind": "btc_trade", "price": price, "size": 1.0, "ts_exchange_ns": 1, "ts_recv_ns": 1}
    with pytest.raises(msgspec.ValidationError, match="price"):
        schema.decode_envelope(_raw(bad))


def test_unknown_kind_is_rejected() -> None:
    with pytest.raises(msgspec.ValidationError, match="kind"):
        schema.decode_envelope(_raw({"kind": "teleport", "x": 1}))


def test_probability_and_limit_price_bounds() -> None:
    sig = schema.to_dict(sample(schema.SignalScore))
    sig["p_up"] = 1.5
    with pytest.raises(msgspec.ValidationError, match="p_up"):
        schema.decode_envelope(_raw(sig))
    intent = schema.to_dict(sample(schema.OrderIntent))
    intent["limit_price"] = 1.0
    with pytest.raises(msgspec.ValidationError, match="limit_price"):
        schema.decode_envelope(_raw(intent))


def test_messages_grow_unknown_fields_are_ignored() -> None:
    d = schema.to_dict(sample(schema.ClockTick))
    d["added_in_a_later_version"] = 1
    assert isinstance(schema.decode_envelope(_raw(d)).msg, schema.ClockTick)
