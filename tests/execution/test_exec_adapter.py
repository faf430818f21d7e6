"""The live adapter's parsing and error mapping on real venue frames (fixtures), no network."""

from __future__ import annotations

import json
from decimal import Decimal as D

from eth_account import Account

from common.config import Secret
from common.schema import OrderIntent
from services.execution.live import (
    LiveVenue,
    _ts_seconds,
    map_error,
    order_quantities,
    venue_status,
)
from tests.conftest import FIXTURES

NT = FIXTURES / "nautilus_trader"


def venue(logs: list | None = None) -> LiveVenue:
    sink = logs if logs is not None else []
    return LiveVenue(
        "http://127.0.0.1:9/clob",
        Secret(Account.create().key.hex()),
        log=lambda *a, **k: sink.append((a, k)),
    )


def intent_for(asset: str, side: str = "BUY") -> OrderIntent:
    return OrderIntent(
        client_order_id="c",
        slug="s",
        asset_id=asset,
        outcome="Up",
        side=side,
        order_type="FOK",
        limit_price=0.6,
        size=10,
        expires_ns=0,
        ts_intent_ns=0,
        fee_rate=0.07,
    )


def test_exec_error_mapping() -> None:
    assert map_error(None, "Request exception!")[0:2] == ("unknown", "timeout")
    assert map_error(503, "upstream")[0:2] == ("unknown", "venue_5xx")
    out, code, reason = map_error(400, "not enough balance / allowance")
    assert (out, code) == ("rejected", "insufficient_balance") and "balance" in reason
    assert (
        map_error(400, "order couldn't be fully filled. FOK orders are fully filled or killed.")[1]
        == "fok_killed"
    )
    assert (
        map_error(400, "invalid amount for a marketable BUY order ($0.5), min size: $1")[1]
        == "below_minimum"
    )
    assert map_error(400, "Size (3) lower than the minimum: 5")[1] == "below_minimum"
    assert map_error(401, "Unauthorized/Invalid api key")[1] == "auth"
    assert map_error(429, "Too Many Requests")[1] == "rate_limited"
    assert map_error(400, "something new")[1] == "venue_rejected"


def test_exec_503_refusals_by_code_and_text() -> None:
    """docs.polymarket.com resources/error-codes and Polymarket/ts-sdk's transport: post-only mode
    is a 503 with `code: post_only_mode` (matched on the code, whatever the text), cancel-only and
    disabled are 503s with only their text; all three are refusals (not placed). Other 503s stay
    "outcome unknown"."""
    body = {"code": "post_only_mode", "error": "try later", "retry_after_seconds": 30}
    assert map_error(503, "try later", body)[:2] == ("rejected", "venue_post_only")
    assert map_error(503, "post-only mode: only post-only orders")[:2] == (
        "rejected",
        "venue_post_only",
    )
    cancel_only = (
        "Trading is currently cancel-only. New orders are not accepted, but cancels are allowed."
    )
    out, code, reason = map_error(503, cancel_only, {"error": cancel_only})
    assert (out, code) == ("rejected", "venue_not_accepting") and "not placed" in reason
    disabled = "Trading is currently disabled. Check polymarket.com for updates"
    assert map_error(503, disabled)[:2] == ("rejected", "venue_not_accepting")
    assert map_error(503, "upstream", {"error": "upstream"})[:2] == ("unknown", "venue_5xx")


def test_exec_status_words_rest_and_stream_spellings() -> None:
    """REST: ORDER_STATUS_* (docs.polymarket.com api-spec/clob-openapi.yaml, get-user-orders)
    and TRADE_STATUS_* (Polymarket/py-sdk models/clob/account.py); the user channel and POST
    answers: plain words in either case. INVALID, CANCELED and CANCELED_MARKET_RESOLVED end an
    order without a fill (Polymarket/ts-sdk PR #264, orders/settlement.ts)."""
    assert venue_status("ORDER_STATUS_LIVE") == venue_status("live") == "LIVE"
    assert venue_status("ORDER_STATUS_DELAYED") == "DELAYED"
    assert venue_status("ORDER_STATUS_CANCELED_MARKET_RESOLVED") == "CANCELED_MARKET_RESOLVED"
    assert venue_status("ORDER_STATUS_INVALID") == "INVALID"
    assert venue_status("ORDER_STATUS_UNMATCHED") == "UNMATCHED"
    assert venue_status("TRADE_STATUS_CONFIRMED") == venue_status("CONFIRMED") == "CONFIRMED"
    assert venue_status("TRADE_STATUS_MATCHED_NOT_BROADCASTED") == "MATCHED_NOT_BROADCASTED"
    assert venue_status("cancelled") == "CANCELED"
    assert venue_status(None) == venue_status("") == ""
    v = venue()
    it = intent_for("a")
    # a REST order document: a live FAK is followed, a resolved-market cancel or INVALID is final
    live = v._from_post({"success": True, "orderID": "0x1", "status": "ORDER_STATUS_LIVE"}, it)
    assert (live.venue_status, live.terminal) == ("live", False)
    v.ws_orders["0x2"] = {"id": "0x2", "status": "ORDER_STATUS_LIVE", "size_matched": "0"}
    assert v.resting_state("0x2", rest=False) == ("LIVE", 0.0)
    v.ws_orders["0x3"] = {"id": "0x3", "status": "ORDER_STATUS_CANCELED_MARKET_RESOLVED"}
    assert v.resting_state("0x3", rest=False) == ("CANCELED_MARKET_RESOLVED", 0.0)
    v.ws_trades["t1"] = {"id": "t1", "status": "TRADE_STATUS_MATCHED_NOT_BROADCASTED"}
    v.ws_trades["t2"] = {"id": "t2", "status": "TRADE_STATUS_FAILED"}
    assert v.trade_states(["t1", "t2"]) == {"t1": "MATCHED_NOT_BROADCASTED", "t2": "FAILED"}


def test_exec_trade_levels_from_a_real_user_trade() -> None:
    doc = json.loads((NT / "polymarket_ws_py" / "user_trade1.json").read_text())
    trades = LiveVenue._trades([doc], intent_for(doc["asset_id"]))
    makers = doc["maker_orders"]
    assert len(trades) == len(makers)
    # the first maker sat on the complementary token at 0.482: the taker paid 1 - 0.482
    assert trades[0].price == 0.518 and trades[0].size == 10.0
    assert all(t.price == 0.518 for t in trades)
    assert sum(D(str(t.size)) for t in trades) == sum(D(m["matched_amount"]) for m in makers)
    # fee per level: 10 * 0.07 * 0.518 * 0.482 = 0.1747732 -> 0.17477
    assert trades[0].fee == 0.17477


def test_exec_user_channel_frames_arrays_objects_and_garbage() -> None:
    v = venue()
    trade = (NT / "polymarket_rs" / "ws_user_trade_msg.json").read_text()
    killed = (NT / "polymarket_rs" / "ws_user_order_fok_killed.json").read_text()
    v._on_user_frame(trade)
    v._on_user_frame("[" + killed + "," + json.dumps({"event_type": "brand_new"}) + "]")
    v._on_user_frame("PONG")
    v._on_user_frame("{not json")
    v._on_user_frame(json.dumps([1, "x", None]))
    assert list(v.ws_trades) == ["trade-0xabcdef1234"]
    assert list(v.ws_orders) == ["0x78xx"]
    assert v.counts["user_ws_garbage"] == 1 and v.counts["user_ws_unknown"] == 1


def test_exec_venue_times_in_every_spelling() -> None:
    assert _ts_seconds("1725868859") == 1725868859.0
    assert _ts_seconds("1703875200000") == 1703875200.0
    assert _ts_seconds(1703875200000) == 1703875200.0
    assert _ts_seconds("2024-01-01T00:00:00Z") == 1704067200.0
    assert _ts_seconds("") == 0.0 and _ts_seconds(None) == 0.0 and _ts_seconds("soon") == 0.0


def test_exec_venue_unreachable_is_not_fatal_and_never_shows_the_key() -> None:
    logs: list = []
    v = venue(logs)
    assert v.start() is False  # nothing listens on port 9
    assert v.counts["start_failed"] == 1
    key = v._key.reveal().lower().removeprefix("0x")
    assert key not in repr(v).lower() and key not in json.dumps(logs, default=str).lower()


# --- issue 13: answers, 425, heartbeat ---------------------------------------------------------
def test_exec_post_answers_live_delayed_unmatched_and_soft_errors() -> None:
    v = venue()
    it = intent_for("a", side="BUY")
    live = v._from_post({"success": True, "orderID": "0x1", "status": "live"}, it)
    assert (live.outcome, live.terminal) == ("accepted", False)  # clob-client #317
    delayed = v._from_post(
        {"success": True, "orderID": "0x1", "status": "delayed", "makingAmount": ""}, it
    )
    assert (delayed.outcome, delayed.terminal, delayed.trades) == ("accepted", False, [])
    un = v._from_post({"success": True, "orderID": "0x1", "status": "unmatched"}, it)
    assert (un.outcome, un.terminal, un.trades) == ("accepted", True, [])
    m = v._from_post(
        {
            "success": True,
            "orderID": "0x1",
            "status": "matched",
            "makingAmount": "5",
            "takingAmount": "9.4339",
            "tradeIDs": ["t1"],
        },
        it,
    )
    assert m.terminal and m.trades[0].size == 9.4339
    # rs-clob-client #114: success true, an error text, no order id: refused, mapped
    soft = v._from_post(
        {
            "success": True,
            "orderID": "",
            "status": "",
            "errorMsg": "invalid amounts, the market buy orders maker amount supports a max "
            "accuracy of 2 decimals, taker amount a max of 4 decimals",
        },
        it,
    )
    assert (soft.outcome, soft.code) == ("rejected", "amount_precision")
    assert map_error(425, "service not ready")[:2] == ("rejected", "venue_not_ready")
    eoa = "maker address not allowed, please use the deposit wallet flow"
    assert map_error(400, eoa)[1] == "maker_not_allowed"
    assert "SIGNATURE_TYPE=3" in map_error(400, eoa)[2]


def test_exec_size_matched_decides_when_an_order_is_final() -> None:
    v = venue()
    v.client = object()  # no REST call: the trades come from the user channel
    trade = json.loads((NT / "polymarket_ws_py" / "user_trade1.json").read_text())
    v.ws_trades[trade["id"]] = trade
    matched = sum(D(m["matched_amount"]) for m in trade["maker_orders"])
    doc = {
        "id": "0xo",
        "status": "MATCHED",
        "associate_trades": [trade["id"]],
        "size_matched": str(matched),
    }
    it = intent_for(trade["asset_id"])
    assert v._from_order_doc(doc, it).terminal
    # the venue says more matched than the trades seen so far: keep following
    doc["size_matched"] = str(matched + 5)
    assert not v._from_order_doc(doc, it).terminal
    assert not v._from_order_doc({**doc, "status": "LIVE"}, it).terminal
    # the same answers in fixed-math base units (6 decimals), as the CLOB OpenAPI and the
    # single-order reference document them (Polymarket/ts-sdk #350: the docs disagree with
    # the captured messages): read by the order's own original_size, not taken as shares
    fixed = {
        **doc,
        "original_size": str(int(D(str(it.size)) * 1_000_000)),
        "size_matched": str(int(matched * 1_000_000)),
    }
    assert v._from_order_doc(fixed, it).terminal
    fixed["size_matched"] = str(int((matched + 5) * 1_000_000))
    assert not v._from_order_doc(fixed, it).terminal
    assert order_quantities(fixed, it.size) == (it.size, float(matched + 5))
    assert order_quantities({**doc, "original_size": str(it.size)}, it.size)[1] == float(
        matched + 5
    )
    v.ws_orders["0x9"] = {
        "id": "0x9",
        "status": "LIVE",
        "original_size": "10000000",
        "size_matched": "2500000",
    }
    assert v.resting_state("0x9", rest=False, size=10.0) == ("LIVE", 2.5)


def test_exec_425_backs_off_then_post_only_minutes_hold_entries() -> None:
    v = venue()
    assert v.gate("BUY") == ("", "")
    v._note_status(425)
    assert v.gate("BUY")[0] == "venue_not_ready" and v.gate("SELL")[0] == "venue_not_ready"
    v._not_ready_last -= 6  # the 5 s back-off is over: exits go, entries wait out post-only
    assert v.gate("SELL") == ("", "") and v.gate("BUY")[0] == "venue_post_only"
    v._note_status(425)  # again within the episode: the back-off doubles
    assert v._not_ready_backoff == 10.0
    v._not_ready_last -= 10 + 121
    assert v.gate("BUY") == ("", "")


def test_exec_heartbeat_thread_survives_any_exception() -> None:
    logs: list = []
    v = venue(logs)

    class Flaky:  # the SDK client's heartbeat call failing in a way nobody planned for
        def __init__(self) -> None:
            self.n = 0

        def post_heartbeat(self, hb_id: str) -> dict:
            self.n += 1
            if self.n == 1:
                raise RuntimeError("surprise")
            if self.n == 2:
                raise KeyError("heartbeat_id")
            return {"heartbeat_id": "h"}

    v.client = Flaky()  # type: ignore[assignment]
    import services.execution.live as live

    saved = live.HEARTBEAT_INTERVAL_S
    live.HEARTBEAT_INTERVAL_S = 0.01
    try:
        v._ensure_heartbeat()
        from tests.conftest import wait_for

        wait_for(lambda: v.counts.get("heartbeats", 0) >= 2, 10, what="heartbeats after errors")
    finally:
        v.close()
        live.HEARTBEAT_INTERVAL_S = saved
    assert v.counts["heartbeat_failed"] == 2 and v._hb_thread is not None
    assert [k["error"] for a, k in logs if a[1] == "heartbeat_failed"][0].startswith("RuntimeError")
