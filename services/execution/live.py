"""THE one adapter between execution and the venue: every py-clob-client-v2 call lives here, so a
later move to the unified SDK touches this file only.

What it does: derives the API credentials at start (kept in memory only); signs FOK/FAK orders
offline with the strategy's limit and the tick size / neg-risk from the market info (no round trip
on the hot path); posts them and maps every answer to accepted / rejected (with a clear reason) /
unknown (timeout, transport failure, 5xx: the order may be placed, so it is reconciled, never
re-sent); keeps the exchange heartbeat alive once an order has been sent; refreshes the
conditional-token balance before a sell; follows order and trade status on the user channel, with
REST polling as the fallback. The private key and API secrets never leave this object: not in a
log line, an exception, a return value or the ledger.
"""

from __future__ import annotations

import json
import logging
import threading
import time
from collections.abc import Callable, Mapping
from datetime import datetime
from decimal import Decimal
from typing import Any

import httpx
import msgspec
from py_clob_client_v2 import ClobClient
from py_clob_client_v2.clob_types import (
    ApiCreds,
    AssetType,
    BalanceAllowanceParams,
    OrderMarketCancelParams,
    TradeParams,
)
from py_clob_client_v2.config import get_contract_config
from py_clob_client_v2.constants import BYTES32_ZERO
from py_clob_client_v2.exceptions import PolyApiException, PolyException
from py_clob_client_v2.http_helpers import helpers as clob_http
from py_clob_client_v2.order_utils import OrderDataV2, Side, SignatureTypeV2
from py_clob_client_v2.order_utils.exchange_order_builder_v2 import ExchangeOrderBuilderV2
from py_clob_client_v2.order_utils.model.order_data_v2 import order_to_json_v2

from common import money
from common.config import Secret
from common.liveness import DataLiveness
from common.schema import OrderIntent
from services.execution import fills as fm
from services.execution.core import SignedOrder, VenueError, VenueResult, VenueTrade

POLYGON = 137
DEFAULT_TIMEOUT_S = 5.0
HEARTBEAT_INTERVAL_S = 5.0  # the venue cancels everything ~10 s after the last heartbeat
USER_PING_INTERVAL_S = 10.0
# The user channel carries data only about our own orders, so its data is judged while an
# answer is owed: an accepted order with no order/trade event within this long means the socket
# is dead for us even if it answers PING (its PLACEMENT arrives within ~1 s on the venue).
USER_DATA_SILENCE_S = 10.0
USER_KEEPALIVE_S = 30.0  # no frame at all (not even PONG) for this long: dead
RECONNECT_MAX_S = 30.0
DEFAULT_GRACE_S = 10.0  # after this long with no trace at the venue, an order was not placed
MATCH_TIME_SLACK_S = 2.0
# engine restarts (weekly, Monday ~20:00 ET, and ad hoc): ~90 s of HTTP 425 "service not ready",
# then ~2 minutes in which only post-only orders are accepted (PROTOCOLS.md section 7)
NOT_READY_BACKOFF_S = (5.0, 60.0)  # first and longest back-off after a 425, doubling while it lasts
POST_ONLY_AFTER_RESTART_S = 120.0

# redemption (PROTOCOLS.md section 7; polymarket-client 0.14 `ctf_redeem_positions_call`):
# redeemPositions(pUSD, 0x0, conditionId, [1, 2]) on the collateral adapter (neg-risk markets:
# the neg-risk collateral adapter); Polygon addresses from polymarket-client's PRODUCTION config
PUSD = "0xC011a7E12a19f7B1f670d46F03B03f3342E82DFB"
COLLATERAL_ADAPTER = "0xAdA100Db00Ca00073811820692005400218FcE1f"
NEG_RISK_COLLATERAL_ADAPTER = "0xadA2005600Dec949baf300f4C6120000bDB6eAab"
REDEEM_SELECTOR = bytes.fromhex(
    "01b7037c"
)  # keccak("redeemPositions(address,bytes32,bytes32,uint256[])")[:4]
GAS_HEADROOM = 1.25
# trading approvals of an EOA wallet (polymarket-client 0.14 `_required_trading_approvals`, the
# subset a binary market needs): pUSD allowance and the CTF operator approval for the exchange,
# and the CTF operator approval for the collateral adapter (redemption)
CTF = "0x4D97DCd97eC945f40cF65F87097ACe5EA0476045"
CTF_EXCHANGE_V2 = "0xE111180000d2663C0091e4f400237545B87B996B"
APPROVE_SELECTOR = bytes.fromhex("095ea7b3")  # approve(address,uint256)
SET_APPROVAL_FOR_ALL_SELECTOR = bytes.fromhex("a22cb465")  # setApprovalForAll(address,bool)
MAX_UINT256 = 2**256 - 1
ALLOWANCE_SELECTOR = bytes.fromhex("dd62ed3e")  # allowance(address,address)
IS_APPROVED_FOR_ALL_SELECTOR = bytes.fromhex("e985e9c5")  # isApprovedForAll(address,address)


class Approval(msgspec.Struct, frozen=True):
    """One approval the funder wallet needs: `contract` (pUSD or CTF) lets `spender` (named
    `spender_name`) move its pUSD (`kind` "allowance") or its outcome tokens ("operator");
    `calldata` grants it; `granted` True/False once read on chain, None when unknown."""

    name: str
    contract: str
    spender: str
    spender_name: str
    kind: str
    calldata: bytes
    granted: bool | None = None

    def describe(self) -> str:
        what = "pUSD approve" if self.kind == "allowance" else "CTF setApprovalForAll"
        return f"{self.name}: {what} {self.spender_name} {self.spender} (on {self.contract})"


# venue error text -> (code, clear reason); first match wins, lower-cased substring match
ERROR_MAP: tuple[tuple[str, str, str], ...] = (
    # "invalid amounts, the market buy orders maker amount supports a max accuracy of 2 decimals,
    # taker amount a max of 4 decimals" (py-clob-client-v2 #99, rs-clob-client #114)
    ("max accuracy", "amount_precision", "the order's amounts have more decimals than allowed"),
    (
        "not enough balance",
        "insufficient_balance",
        "not enough collateral or token balance, or a missing approval (`polyedge doctor`)",
    ),
    # py-clob-client-v2 #50, #111: new API users must trade through a deposit wallet
    (
        "deposit wallet flow",
        "maker_not_allowed",
        "the venue refuses this wallet as maker: use a deposit wallet (SIGNATURE_TYPE=3, FUNDER)",
    ),
    # post-only refusals (docs.polymarket.com resources/error-codes): before the post-only-mode
    # entry, whose needle "post-only" they also contain
    ("crosses book", "post_only_would_cross", "a post-only order would have matched at once"),
    ("only gtc and gtd", "post_only_type", "post-only is for GTC/GTD orders only"),
    ("invalid expiration", "invalid_expiration", "GTD expiration too soon (>= 3 minutes ahead)"),
    ("post-only", "venue_post_only", "the venue accepts only post-only orders after a restart"),
    ("fully filled or killed", "fok_killed", "FOK killed: not enough liquidity at the limit"),
    ("no orders found to match", "fak_unmatched", "FAK found nothing to match at the limit"),
    ("invalid signature", "auth", "the venue rejected the order signature"),
    ("owner", "auth", "order owner does not match the API key"),
    ("min size", "below_minimum", "below the venue's minimum order"),
    ("lower than the minimum", "below_minimum", "below the venue's minimum order size"),
    ("tick size", "invalid_price", "price breaks the market's tick size"),
    ("market is closed", "market_closed", "the market no longer accepts orders"),
    ("closed only", "closed_only", "the account is in closed-only mode"),
    ("already exists", "duplicate", "the venue already has this order"),
    ("invalid order payload", "invalid_order", "the venue could not parse the order"),
)

LogFn = Callable[..., None]


# REST serialises the venue's raw prefixed constants, the user channel plain words: GET
# /data/order(s) answer `ORDER_STATUS_LIVE | ORDER_STATUS_INVALID |
# ORDER_STATUS_CANCELED_MARKET_RESOLVED | ORDER_STATUS_CANCELED | ORDER_STATUS_MATCHED`
# (docs.polymarket.com api-spec/clob-openapi.yaml, api-reference/trade/get-user-orders; also
# ORDER_STATUS_DELAYED / ORDER_STATUS_UNMATCHED seen live), /data/trades `TRADE_STATUS_CONFIRMED`
# (Polymarket/py-sdk src/polymarket/models/clob/account.py: "REST endpoints serialize the raw
# prefixed constants ... while stream events use plain values"; REST-only
# MATCHED_NOT_BROADCASTED, not final). Both forms are accepted everywhere.
STATUS_PREFIXES = ("ORDER_STATUS_", "TRADE_STATUS_")


def venue_status(word: Any) -> str:
    """The venue's order or trade status as one plain upper-case word: `ORDER_STATUS_LIVE`,
    `live` and `LIVE` are all `LIVE`; `TRADE_STATUS_CONFIRMED` is `CONFIRMED`; `CANCELLED` is
    spelt `CANCELED` as the venue does. "" for a missing status. Every status read from REST,
    a POST answer or the user channel goes through here (STATUS_PREFIXES for the sources)."""
    s = str(word or "").strip().upper()
    for prefix in STATUS_PREFIXES:
        if s.startswith(prefix):
            s = s[len(prefix) :]
            break
    return "CANCELED" if s == "CANCELLED" else s


def _num(x: Any) -> float:
    try:
        return float(x)
    except (TypeError, ValueError):
        return 0.0


FIXED_MATH = 1_000_000  # base units per share / per pUSD (6 decimals)


def order_quantities(doc: Mapping[str, Any], size: float) -> tuple[float, float]:
    """`(original_size, size_matched)` in shares of a venue order document (GET /data/order,
    a user-channel `order` event) for our order of `size` shares (0: unknown).

    The venue's documents disagree on the unit: the CLOB OpenAPI and the single-order reference
    give both as fixed-math with 6 decimals (`original_size: "100000000"` for 100 shares), the
    order-management guide and every captured user-channel message as decimal shares
    (`"size_matched": "5"`; Polymarket/ts-sdk #350 asks which holds). Both fields share one
    unit, so the order's own `original_size` decides: more than 1,000x the shares we signed
    means fixed-math, and both are divided by 1e6. A missing or unparseable field reads 0."""
    original, matched = _num(doc.get("original_size")), _num(doc.get("size_matched"))
    if size > 0 and original > 1000 * size:
        return original / FIXED_MATH, matched / FIXED_MATH
    return original, matched


def _ts_seconds(x: Any) -> float:
    """Unix seconds from a venue time: seconds, milliseconds (numbers or strings) or ISO text."""
    if x is None or x == "":
        return 0.0
    try:
        v = float(x)
        return v / 1000.0 if v > 1e11 else v
    except (TypeError, ValueError):
        pass
    try:
        return datetime.fromisoformat(str(x).replace("Z", "+00:00")).timestamp()
    except ValueError:
        return 0.0


# a 503 that is a definite refusal, not a fault (docs.polymarket.com resources/error-codes; the
# official TS SDK's transport, Polymarket/ts-sdk `#detectTradingRestriction`): post-only mode comes
# with `{"code": "post_only_mode", "error": ..., "retry_after_seconds": N}`; cancel-only ("Trading
# is currently cancel-only. New orders are not accepted, but cancels are allowed.") and disabled
# ("Trading is currently disabled. ... No orders (including cancels) are accepted.") carry only
# their text. Either way the order was not placed.
POST_ONLY_CODE = "post_only_mode"
NOT_ACCEPTING_NEEDLES = ("cancel-only", "cancel only", "currently disabled")


def map_error(
    status: int | None, message: str, body: dict[str, Any] | None = None
) -> tuple[str, str, str]:
    """(outcome, code, reason) for a failed POST; outcome is `rejected` (the order was not
    placed) or `unknown` (it may have been). `message` is the venue's error text, `body` its
    whole JSON error answer when there was one (its `code` is matched too). A 503 in post-only
    mode is `venue_post_only`, in cancel-only or disabled mode `venue_not_accepting` (both
    refusals); any other 5xx is unknown."""
    low = message.lower()
    code_word = str((body or {}).get("code") or "").lower()
    if status is None:
        return "unknown", "timeout", f"no answer from the venue ({message}); outcome unknown"
    if status == 503 and (code_word == POST_ONLY_CODE or "post-only mode" in low):
        # the engine's post-only minutes after a restart (see POST_ONLY_CODE)
        return (
            "rejected",
            "venue_post_only",
            f"the venue accepts only post-only orders now ({message})",
        )
    if status == 503 and (
        "cancel_only" in code_word
        or "disabled" in code_word
        or any(n in low for n in NOT_ACCEPTING_NEEDLES)
    ):
        return (
            "rejected",
            "venue_not_accepting",
            f"the venue is not accepting orders now (cancel-only or disabled; {message}); "
            "not placed",
        )
    if status >= 500:
        return "unknown", "venue_5xx", f"venue error {status} ({message}); outcome unknown"
    if status == 425:  # "too early": the matching engine is restarting, nothing was processed
        return "rejected", "venue_not_ready", f"venue restarting: 425 ({message})"
    for needle, code, reason in ERROR_MAP:
        if needle in low:
            return "rejected", code, f"{reason} (venue: {message})"
    if status == 401:
        return "rejected", "auth", f"authentication failed (venue: {message})"
    if status == 429:
        return "rejected", "rate_limited", f"rate limited (venue: {message})"
    return "rejected", "venue_rejected", f"venue rejected the order ({status}: {message})"


# the SDK logs venue answers itself; execution logs them once, mapped, in its own stream
logging.getLogger("py_clob_client_v2").setLevel(logging.CRITICAL)


class _Client(ClobClient):
    """The SDK client without its after-post wait for settlement hashes (up to 30 s)."""

    def _resolve_transactions_hashes(self, response: Any) -> Any:
        return response


class LiveVenue:
    def __init__(
        self,
        host: str,
        private_key: Secret,
        *,
        log: LogFn,
        user_ws_url: str = "",
        timeout_s: float = DEFAULT_TIMEOUT_S,
        grace_s: float = DEFAULT_GRACE_S,
        chain_id: int = POLYGON,
        signature_type: int = 0,
        funder: str = "",
        rpc_url: str = "",
        relayer_url: str = "",
        relayer_api_key: Secret | None = None,
        relayer_api_key_address: str = "",
    ) -> None:
        """`signature_type` 0 EOA, 1 POLY_PROXY, 2 POLY_GNOSIS_SAFE, 3 POLY_1271 (deposit wallet);
        `funder` the wallet that holds pUSD and the tokens (the order's maker): required for 1-3,
        the key's own address for 0 (PROTOCOLS.md section 7). Validated by the settings loader.
        `relayer_url`, `relayer_api_key` and `relayer_api_key_address`: Polymarket's relayer and
        the relayer API key (created on polymarket.com) through which wallets of types 1-3
        redeem and approve gasless; EOAs use `rpc_url` (Polygon JSON-RPC)."""
        if signature_type not in (0, 1, 2, 3):
            raise ValueError(f"SIGNATURE_TYPE must be 0, 1, 2 or 3, got {signature_type!r}")
        if signature_type != 0 and not funder:
            raise ValueError(f"FUNDER is required with SIGNATURE_TYPE={signature_type}")
        self.host = host.rstrip("/")
        self._key = private_key
        self.signature_type = signature_type
        self.funder = funder
        self.rpc_url = rpc_url
        self.relayer_url = relayer_url.rstrip("/")
        self._relayer_key = relayer_api_key
        self.relayer_api_key_address = relayer_api_key_address
        self.log = log
        self.user_ws_url = user_ws_url
        self.timeout_s = timeout_s
        self.grace_s = grace_s
        self.chain_id = chain_id
        self.client: _Client | None = None
        self._creds: ApiCreds | None = None
        self.address = ""
        self._stop = threading.Event()
        self._hb_thread: threading.Thread | None = None
        self._ws_thread: threading.Thread | None = None
        self.ws_trades: dict[str, dict[str, Any]] = {}  # trade id -> latest user-channel trade
        self.ws_orders: dict[str, dict[str, Any]] = {}  # order id -> latest user-channel order
        # our maker order id -> ids of the user-channel trades that list it in `maker_orders`
        self.ws_maker: dict[str, set[str]] = {}
        self.counts: dict[str, int] = {}
        self.ws_connected = False
        self._start_error = ""
        self._not_ready_last = 0.0  # monotonic time of the latest 425 answer, 0 = none
        self._not_ready_backoff = 0.0
        # a 503 refusal's code and the monotonic time its retry_after_seconds ends
        self._refused: tuple[str, float] = ("", 0.0)
        self.user_data_silence_s = USER_DATA_SILENCE_S
        self.user_keepalive_s = USER_KEEPALIVE_S
        self._user_owed_since: float | None = None  # an accepted order awaits its user events

    def __repr__(self) -> str:
        return (
            f"LiveVenue(host={self.host!r}, address={self.address!r}, "
            f"signature_type={self.signature_type}, funder={self.funder!r})"
        )

    def _count(self, k: str) -> None:
        self.counts[k] = self.counts.get(k, 0) + 1

    def _scrub(self, text: str) -> str:
        """Belt and braces: no secret survives into a reason or log line, whatever the SDK said."""
        secrets = [self._key.reveal(), self._key.reveal().removeprefix("0x")]
        if self._creds is not None:
            secrets += [self._creds.api_secret, self._creds.api_passphrase]
        if self._relayer_key is not None:
            secrets.append(self._relayer_key.reveal())
        for s in secrets:
            if s:
                text = text.replace(s, "***")
        return text

    # --- lifecycle ----------------------------------------------------------------------------
    def start(self) -> bool:
        """Derive API credentials (kept in memory only) and open the user channel. Retried by
        `sign` while the venue is unreachable; never raises for an external fault."""
        if self.client is not None and self._creds is not None:
            return True
        # the SDK's shared HTTP client, with our bound on how long an answer may take
        clob_http._http_client = httpx.Client(http2=True, timeout=self.timeout_s)
        try:
            # retry_on_error stays off: an order POST is never re-sent blindly
            client = _Client(
                self.host,
                self.chain_id,
                key=self._key.reveal(),
                signature_type=self.signature_type,
                funder=self.funder or None,
                retry_on_error=False,
            )
            self.address = client.get_address()
            self.funder = self.funder or self.address
            creds = client.create_or_derive_api_key()
            client.set_api_creds(creds)
        except (PolyException, httpx.HTTPError, KeyError, TypeError, ValueError) as e:
            self._count("start_failed")
            self._start_error = self._describe(e)
            self.log("execution", "venue_start_failed", "WARNING", error=self._start_error)
            return False
        self.client, self._creds = client, creds
        self.log("execution", "venue_ready", host=self.host, address=self.address)
        if self.user_ws_url and self._ws_thread is None:
            self._ws_thread = threading.Thread(target=self._user_loop, daemon=True, name="user-ws")
            self._ws_thread.start()
        return True

    def close(self) -> None:
        self._stop.set()

    # --- engine restarts (HTTP 425) -------------------------------------------------------------
    def _note_status(self, status: int | None) -> None:
        """Remember a 425: a new episode backs off `NOT_READY_BACKOFF_S[0]`, a 425 within the
        current one doubles the back-off up to `NOT_READY_BACKOFF_S[1]`."""
        if status != 425:
            return
        now = time.monotonic()
        lo, hi = NOT_READY_BACKOFF_S
        in_episode = (
            now - self._not_ready_last < self._not_ready_backoff + POST_ONLY_AFTER_RESTART_S
        )
        self._not_ready_backoff = (
            min(hi, self._not_ready_backoff * 2) if self._not_ready_last and in_episode else lo
        )
        self._not_ready_last = now
        self._count("venue_not_ready")
        self.log("execution", "venue_not_ready", "WARNING", backoff_s=self._not_ready_backoff)

    def _note_refusal(self, code: str, body: dict[str, Any] | None) -> None:
        """Honour a 503 refusal's `retry_after_seconds` (docs.polymarket.com resources/
        error-codes; Polymarket/ts-sdk reads it from the body, as the Retry-After header): after
        `venue_post_only` no entry is sent for that long, after `venue_not_accepting`
        (cancel-only, disabled) no order at all. Without the field nothing is held back (each
        order is refused by the venue itself)."""
        if code not in ("venue_post_only", "venue_not_accepting") or body is None:
            return
        wait = body.get("retry_after_seconds")
        if isinstance(wait, bool) or not isinstance(wait, (int, float)) or not 0 < wait < 3600:
            return
        self._refused = (code, time.monotonic() + float(wait))
        self._count("venue_refusal_backoffs")
        self.log("execution", "venue_refusal_backoff", "WARNING", code=code, seconds=wait)

    def gate(self, side: str) -> tuple[str, str]:
        """(code, reason) when an order of `side` must not be sent now, else ("", "").

        After a 425 nothing is sent for the back-off; then, for the venue's post-only minutes,
        no entries (a FOK/FAK BUY would be refused) while exits are still tried. A 503 with
        `retry_after_seconds` holds back entries (post-only mode) or every order (cancel-only,
        disabled) that long (`_note_refusal`)."""
        code, until = self._refused
        left = until - time.monotonic()
        if code and left > 0 and (code == "venue_not_accepting" or side == "BUY"):
            return code, (
                f"the venue refused orders with 503 {code} and asked to retry after its "
                f"retry_after_seconds: {left:.1f} s left, nothing sent"
            )
        if not self._not_ready_last:
            return "", ""
        since = time.monotonic() - self._not_ready_last
        if since < self._not_ready_backoff:
            return "venue_not_ready", (
                f"venue answered 425 (engine restarting) {since:.1f} s ago: backing off "
                f"{self._not_ready_backoff:g} s, nothing sent"
            )
        if side == "BUY" and since < self._not_ready_backoff + POST_ONLY_AFTER_RESTART_S:
            return "venue_post_only", (
                f"the venue accepts only post-only orders for ~{POST_ONLY_AFTER_RESTART_S:g} s "
                f"after a restart (last 425 {since:.0f} s ago): no entries"
            )
        return "", ""

    def _describe(self, e: BaseException) -> str:
        if isinstance(e, PolyApiException):
            return self._scrub(f"{e.status_code}: {e.error_msg}")
        if isinstance(e, PolyException):
            return self._scrub(str(e.msg))
        return self._scrub(f"{type(e).__name__}: {e}")

    # --- orders -------------------------------------------------------------------------------
    def sign(self, intent: OrderIntent, limit: Decimal, size: Decimal) -> SignedOrder:
        """Sign a FOK/FAK order offline with amounts the venue accepts (`common.money`): a BUY
        sized in collateral (2 decimals) taking shares (4 decimals), a SELL giving shares (2
        decimals). The SDK's own builders are not used for the amounts: they sign 5-decimal shares
        on 0.001 ticks, which the venue refuses (py-clob-client-v2 #99). Raises VenueError with a
        named code when the order cannot be sent (`below_min_buy_notional`, ...)."""
        if not self.start():
            raise VenueError("venue unavailable: API credentials not derived yet")
        assert self.client is not None and self._creds is not None
        amounts = money.marketable_amounts(intent.side, limit, size)
        if amounts.skip:
            raise VenueError(
                f"not sent: {amounts.skip} ({intent.side} {size} at {limit} = "
                f"${amounts.collateral} after the venue's rounding)",
                amounts.skip,
            )
        try:
            order = self._builder(intent.neg_risk).build_signed_order(
                OrderDataV2(
                    maker=self.funder,
                    # a deposit wallet (POLY_1271) signs as itself: signer is the wallet
                    signer=self.funder if self.signature_type == 3 else self.address,
                    tokenId=intent.asset_id,
                    makerAmount=str(amounts.maker_units),
                    takerAmount=str(amounts.taker_units),
                    side=Side.BUY if intent.side == "BUY" else Side.SELL,
                    signatureType=SignatureTypeV2(self.signature_type),
                    timestamp=str(time.time_ns() // 1_000_000),
                    metadata=BYTES32_ZERO,
                    builder=BYTES32_ZERO,
                    expiration="0",
                )
            )
        except (KeyError, ValueError, PolyException) as e:
            raise VenueError(
                f"cannot build the order: {self._describe(e)}", "invalid_order"
            ) from None
        payload = order_to_json_v2(order, self._creds.api_key, intent.order_type, False, False)
        return SignedOrder(self._order_hash(order, intent.neg_risk), json.dumps(payload), order)

    # --- resting (maker) orders: post-only GTC/GTD, cancels (issue 18) ---------------------------
    def sign_resting(
        self,
        asset_id: str,
        side: str,
        price: Decimal,
        size: Decimal,
        *,
        tick: Decimal,
        order_type: str = "GTC",
        expiration_s: int = 0,
        neg_risk: bool = False,
        min_size: Decimal = Decimal(5),
    ) -> SignedOrder:
        """Sign a GTC/GTD limit order offline (`common.money.resting_amounts`: price on the tick
        grid, 2-decimal shares, exact 4-decimal collateral, >= `min_size` shares). A GTD needs
        `expiration_s` (unix seconds) at least 3 minutes ahead; the venue takes it off the book a
        minute before it (docs.polymarket.com trading/place-orders). Raises VenueError with a
        named code (`invalid_price`, `below_min_size`, `invalid_order`)."""
        if order_type not in ("GTC", "GTD"):
            raise VenueError(f"not a resting order type: {order_type!r}", "invalid_order")
        if (order_type == "GTD") != (expiration_s > 0):
            raise VenueError("a GTD order needs an expiration, a GTC none", "invalid_order")
        if not self.start():
            raise VenueError("venue unavailable: API credentials not derived yet")
        assert self.client is not None and self._creds is not None
        a = money.resting_amounts(side, price, size, tick, min_size)  # type: ignore[arg-type]
        if a.skip:
            raise VenueError(f"not sent: {a.skip} ({side} {size} at {price}, tick {tick})", a.skip)
        try:
            order = self._builder(neg_risk).build_signed_order(
                OrderDataV2(
                    maker=self.funder,
                    signer=self.funder if self.signature_type == 3 else self.address,
                    tokenId=asset_id,
                    makerAmount=str(a.maker_units),
                    takerAmount=str(a.taker_units),
                    side=Side.BUY if side == "BUY" else Side.SELL,
                    signatureType=SignatureTypeV2(self.signature_type),
                    timestamp=str(time.time_ns() // 1_000_000),
                    metadata=BYTES32_ZERO,
                    builder=BYTES32_ZERO,
                    expiration=str(expiration_s),
                )
            )
        except (KeyError, ValueError, PolyException) as e:
            raise VenueError(
                f"cannot build the order: {self._describe(e)}", "invalid_order"
            ) from None
        payload = order_to_json_v2(order, self._creds.api_key, order_type, True, False)
        return SignedOrder(self._order_hash(order, neg_risk), json.dumps(payload), order)

    def _post_order(self, order: SignedOrder, order_type: str, post_only: bool) -> Any:
        """POST `order` through the official client: the venue's answer (a dict, usually), or a
        VenueResult when there was none to read: `rejected`/... mapped from the venue's error
        (`map_error`), or `unknown` when the request failed in flight (it may have been placed).
        Starts the heartbeat either way."""
        assert self.client is not None
        self._count("posts")
        try:
            return self.client.post_order(order.payload, order_type, post_only)
        except PolyApiException as e:
            self._note_status(e.status_code)
            body = e.error_msg if isinstance(e.error_msg, dict) else None
            msg = body.get("error", body) if body is not None else e.error_msg
            outcome, code, reason = map_error(e.status_code, self._scrub(str(msg)), body)
            self._note_refusal(code, body)
            self._count(outcome)
            return VenueResult(outcome, reason=reason, code=code)
        except (PolyException, httpx.HTTPError) as e:
            self._count("unknown")
            return VenueResult(
                "unknown", reason=f"send failed ({self._describe(e)})", code="timeout"
            )
        finally:
            self._ensure_heartbeat()

    def post_resting(self, order: SignedOrder, order_type: str = "GTC") -> VenueResult:
        """POST a signed resting order as post-only: `accepted` with venue status `live` (not
        terminal: it fills later, as a maker), or `rejected` with a code (`post_only_would_cross`
        when it would have matched at once, ...), or `unknown` (no answer: it may rest). Starts
        the heartbeat (the venue's dead-man switch: a crash leaves nothing resting for more than
        ~10 s)."""
        res = self._post_order(order, order_type, post_only=True)
        if isinstance(res, VenueResult):
            return res
        if not isinstance(res, dict) or not res.get("success", False):
            err = str(res.get("errorMsg", "")) if isinstance(res, dict) else str(res)
            outcome, code, reason = map_error(400, self._scrub(err))
            return VenueResult(outcome, reason=reason, code=code)
        self.expect_user_data()
        status = venue_status(res.get("status")).lower()
        return VenueResult(
            "accepted",
            venue_status=status,
            terminal=status not in ("live", "delayed"),
            venue_order_id=str(res.get("orderID", "")),
            ack_ns=time.time_ns(),
        )

    def cancel(self, order_ids: list[str]) -> dict[str, Any]:
        """Cancel orders by venue id (DELETE /orders); the venue's `{canceled, not_canceled}`.
        Cancels may be retried (STYLE rule 5); raises VenueError when the venue refuses."""
        return self._cancel(lambda c: c.cancel_orders(list(order_ids)))

    def cancel_all(self) -> dict[str, Any]:
        """Cancel every open order of this API key (DELETE /cancel-all)."""
        return self._cancel(lambda c: c.cancel_all())

    def cancel_market(self, market: str = "", asset_id: str = "") -> dict[str, Any]:
        """Cancel this key's open orders in one market (condition id) or token."""
        params = OrderMarketCancelParams(market=market or None, asset_id=asset_id or None)
        return self._cancel(lambda c: c.cancel_market_orders(params))

    def resting_fills(self, order_id: str, asset_id: str, rest: bool = True) -> list[VenueTrade]:
        """The maker fills of our resting order `order_id` (on token `asset_id`) so far: one per
        venue trade that lists it in `maker_orders`, at the order's own price, with no fee (the
        taker pays it). Read from the user channel's trade events (`trader_side` MAKER,
        tests/fixtures/nautilus_trader/polymarket_ws_py/user_trade3.json) and, with `rest`, from
        REST too (the reconcile path: events the socket missed): `/data/trades` first pages and
        every trade in the order's `associate_trades` (GET /data/order). FAILED trades
        are left out (the match was undone; one booked already is reversed by the trade-status
        check). Trade ids are `<trade id>:m:<order id>`: one trade can fill several of our
        orders, each fill counted once. The order's `size_matched` (`resting_state`) stays the
        authority for how much filled (PROTOCOLS.md section 7). Raises PolyException /
        httpx.HTTPError when REST fails."""
        seen: dict[str, dict[str, Any]] = {}
        for tid in list(self.ws_maker.get(order_id, ())):
            t = self.ws_trades.get(tid)
            if t is not None:
                seen[tid] = t
        if rest:
            assert self.client is not None
            for t in self.client.get_trades(TradeParams(asset_id=asset_id), only_first_page=True):
                if isinstance(t, dict):
                    seen.setdefault(str(t.get("id")), t)
            # the maker side of a trade is listed on the taker's token: look beyond it too
            for t in self.client.get_trades(TradeParams(), only_first_page=True):
                if isinstance(t, dict):
                    seen.setdefault(str(t.get("id")), t)
            # older trades fall off those first pages: the order's own `associate_trades`
            # (GET /data/order) names every trade it was part of, each looked up by id
            doc = self.client.get_order(order_id)
            for tid in (doc.get("associate_trades") or []) if isinstance(doc, dict) else []:
                if str(tid) not in seen:
                    got = self.client.get_trades(TradeParams(id=str(tid)), only_first_page=True)
                    for t in got:
                        if isinstance(t, dict) and str(t.get("id")) == str(tid):
                            seen[str(tid)] = t
        out = []
        for tid, t in seen.items():
            if venue_status(t.get("status")) == "FAILED":
                continue
            for m in t.get("maker_orders") or []:
                if isinstance(m, dict) and str(m.get("order_id")) == order_id:
                    p, n = (
                        fm.dec(str(m.get("price", "0"))),
                        fm.dec(str(m.get("matched_amount", "0"))),
                    )
                    if n > 0:
                        out.append(VenueTrade(f"{tid}:m:{order_id}", float(p), float(n), 0.0))
        return out

    def resting_state(
        self, order_id: str, rest: bool = True, size: float = 0.0
    ) -> tuple[str, float] | None:
        """`(status, size_matched shares)` of our resting order `order_id` of `size` shares (for
        the unit of `size_matched`: `order_quantities`): the user channel's
        latest `order` event (PLACEMENT/UPDATE/CANCELLATION, PROTOCOLS.md section 2) and, with
        `rest`, GET /data/order (the reconcile path, authoritative). Status is the venue's word
        as one plain upper-case word (`venue_status`: REST's `ORDER_STATUS_LIVE` is LIVE): LIVE,
        DELAYED, MATCHED, CANCELED, CANCELED_MARKET_RESOLVED, INVALID, ... (a venue-initiated
        cancel: the heartbeat's dead-man switch, a GTD's expiry, the market closing); every word
        but LIVE/DELAYED means the order left the book. None when nothing is known yet.
        Raises PolyException / httpx.HTTPError when REST fails."""
        doc = self.ws_orders.get(order_id)
        if rest:
            assert self.client is not None
            got = self.client.get_order(order_id)
            if isinstance(got, dict) and got.get("id"):
                doc = got
        if not doc:
            return None
        status = venue_status(doc.get("status"))
        if str(doc.get("type") or "").upper() == "CANCELLATION" and not status.startswith("CANCEL"):
            status = "CANCELED"
        return status, order_quantities(doc, size)[1]

    def _cancel(self, call: Callable[[ClobClient], Any]) -> dict[str, Any]:
        if not self.start():
            raise VenueError("venue unavailable: API credentials not derived yet")
        assert self.client is not None
        self._count("cancels")
        try:
            res = call(self.client)
        except (PolyException, httpx.HTTPError) as e:
            self._count("cancel_failed")
            raise VenueError(f"cancel failed: {self._describe(e)}", "cancel_failed") from None
        return res if isinstance(res, dict) else {"canceled": [], "not_canceled": {}}

    def _builder(self, neg_risk: bool) -> ExchangeOrderBuilderV2:
        cfg = get_contract_config(self.chain_id)
        exchange = cfg.neg_risk_exchange_v2 if neg_risk else cfg.exchange_v2
        assert self.client is not None
        return ExchangeOrderBuilderV2(exchange, self.chain_id, self.client.signer)

    def _order_hash(self, order: Any, neg_risk: bool) -> str:
        b = self._builder(neg_risk)
        return b.build_order_hash(b.build_order_typed_data(order))

    def post(self, order: SignedOrder, intent: OrderIntent) -> VenueResult:
        res = self._post_order(order, intent.order_type, post_only=False)
        if isinstance(res, VenueResult):
            return res
        ack_ns = time.time_ns()
        r = self._from_post(res, intent)
        r.ack_ns = ack_ns
        if r.outcome == "accepted":
            self.expect_user_data()
        if r.trades and isinstance(res, dict) and res.get("tradeIDs"):
            exact = self._exact_trades([str(t) for t in res["tradeIDs"] if t], intent)
            if exact and abs(sum(t.size for t in exact) - sum(t.size for t in r.trades)) < 0.005:
                r.trades = exact
        return r

    def _exact_trades(self, trade_ids: list[str], intent: OrderIntent) -> list[VenueTrade]:
        """Per-level fills (price, size, fee) of a matched order, from the venue's trade records;
        [] when they cannot be had now (the amounts in the POST answer stand in)."""
        assert self.client is not None
        docs: list[dict[str, Any]] = []
        try:
            for tid in trade_ids:
                t = self.ws_trades.get(tid)
                if t is None:
                    got = self.client.get_trades(TradeParams(id=tid), only_first_page=True)
                    t = next(
                        (x for x in got if isinstance(x, dict) and str(x.get("id")) == tid), None
                    )
                if t is None:
                    return []
                docs.append(t)
        except (PolyException, httpx.HTTPError, KeyError, TypeError):
            return []
        return self._trades(docs, intent)

    def _from_post(self, res: Any, intent: OrderIntent) -> VenueResult:
        if not isinstance(res, dict):
            return VenueResult(
                "unknown",
                reason=f"unreadable venue answer {str(res)[:200]!r}",
                code="venue_garbage",
            )
        if (
            not res.get("success", True)
            or res.get("error")
            # `success: true` with an error and no order id: refused (rs-clob-client #114)
            or (res.get("errorMsg") and not res.get("orderID"))
        ):
            msg = str(res.get("errorMsg") or res.get("error") or "order not accepted")
            outcome, code, reason = map_error(400, self._scrub(msg))
            return VenueResult(outcome, reason=reason, code=code)
        status = venue_status(res.get("status")).lower()
        making, taking = _num(res.get("makingAmount")), _num(res.get("takingAmount"))
        shares, collateral = (taking, making) if intent.side == "BUY" else (making, taking)
        trades: list[VenueTrade] = []
        if shares > 0:
            avg = collateral / shares
            tids = [str(t) for t in (res.get("tradeIDs") or []) if t]
            fee = fm.taker_fee(
                fm.dec(round(shares, 6)),
                fm.dec(round(avg, 6)),
                fm.dec(intent.fee_rate),
                fm.dec(intent.fee_exponent),
            )
            trades.append(
                VenueTrade(
                    tids[0] if tids else f"{res.get('orderID')}:0",
                    round(avg, 6),
                    round(shares, 6),
                    float(fee),
                )
            )
        # matched: done (a FAK's rest is cancelled); unmatched: done, no fill; live (a FAK may
        # still match later: clob-client #317) and delayed (the ~250 ms taker delay of these
        # markets): not final, followed until they are (PROTOCOLS.md section 7)
        terminal = status in ("matched", "unmatched")
        return VenueResult(
            "accepted",
            status or "matched",
            trades=trades,
            terminal=terminal,
            venue_order_id=str(res.get("orderID") or ""),
        )

    def lookup(
        self,
        order_id: str,
        intent: OrderIntent,
        sent_ns: int = 0,
        claimed: frozenset[str] = frozenset(),
    ) -> VenueResult:
        """What the venue knows about an order: user channel first, then REST (reads only)."""
        assert self.client is not None
        self._count("lookups")
        try:
            doc = self.client.get_order(order_id) if order_id else None
            if isinstance(doc, dict) and doc.get("id"):
                return self._from_order_doc(doc, intent)
            mine = self._find_taker_trades(intent, sent_ns, claimed)
        except (PolyException, httpx.HTTPError, KeyError, TypeError) as e:
            return VenueResult(
                "unknown", reason=f"lookup failed ({self._describe(e)})", code="lookup_failed"
            )
        if mine:
            oid = str(mine[0].get("taker_order_id") or "")
            trades = [t for t in mine if str(t.get("taker_order_id") or "") == oid]
            return VenueResult(
                "accepted", "matched", trades=self._trades(trades, intent), venue_order_id=oid
            )
        seen = self._find_order_event(intent, sent_ns, claimed)
        if seen is not None:  # placed but never matched (a killed FOK, an unmatched FAK)
            status = venue_status(seen.get("status"))
            return VenueResult(
                "accepted",
                status.lower(),
                reason=status,
                terminal=status not in ("LIVE", "DELAYED"),
                venue_order_id=str(seen.get("id")),
            )
        if sent_ns and time.time_ns() - sent_ns < self.grace_s * 1e9:
            return VenueResult("unknown", reason="not visible at the venue yet", code="pending")
        return VenueResult("missing", reason="the venue has no such order", code="not_placed")

    def _find_taker_trades(
        self, intent: OrderIntent, sent_ns: int, claimed: frozenset[str]
    ) -> list[dict[str, Any]]:
        """Our taker trades on this asset since the order was sent that no other order owns."""
        assert self.client is not None
        seen: dict[str, dict[str, Any]] = {}
        for t in self.ws_trades.values():
            seen[str(t.get("id"))] = t
        for t in self.client.get_trades(
            TradeParams(asset_id=intent.asset_id), only_first_page=True
        ):
            if isinstance(t, dict):
                seen[str(t.get("id"))] = t
        since = sent_ns / 1e9 - MATCH_TIME_SLACK_S if sent_ns else 0.0
        out = []
        for t in seen.values():
            if (
                str(t.get("asset_id")) == intent.asset_id
                and str(t.get("side", "")).upper() == intent.side
                and str(t.get("trader_side", "TAKER")).upper() == "TAKER"
                and str(t.get("taker_order_id") or "") not in claimed
                and venue_status(t.get("status")) != "FAILED"
                and _ts_seconds(t.get("match_time")) >= since
                # a trade record's `maker_address` is the order's maker: the funder wallet, not
                # the signer (Polymarket/real-time-data-client README: "maker_address ... Maker's
                # address (funder)"); they differ for signature types 1-3
                and (
                    not t.get("maker_address")
                    or not self.funder
                    or str(t["maker_address"]).lower() == self.funder.lower()
                )
            ):
                out.append(t)
        out.sort(key=lambda t: _ts_seconds(t.get("match_time")))
        return out

    def _find_order_event(
        self, intent: OrderIntent, sent_ns: int, claimed: frozenset[str]
    ) -> dict[str, Any] | None:
        """A user-channel order event that can only be this order (same asset, side, size)."""
        since = sent_ns / 1e9 - MATCH_TIME_SLACK_S if sent_ns else 0.0
        for o in self.ws_orders.values():
            if (
                str(o.get("asset_id")) == intent.asset_id
                and str(o.get("side", "")).upper() == intent.side
                and str(o.get("id")) not in claimed
                and abs(order_quantities(o, intent.size)[0] - intent.size) < 0.01
                and _ts_seconds(o.get("timestamp") or o.get("created_at")) >= since
            ):
                return o
        return None

    def _from_order_doc(self, doc: dict[str, Any], intent: OrderIntent) -> VenueResult:
        assert self.client is not None
        status = venue_status(doc.get("status"))
        trades: list[dict[str, Any]] = []
        for tid in doc.get("associate_trades") or []:
            t = self.ws_trades.get(str(tid))
            if t is None:
                got = self.client.get_trades(TradeParams(id=str(tid)), only_first_page=True)
                t = next((x for x in got if isinstance(x, dict)), None)
            if t is not None:
                trades.append(t)
        fills = self._trades(trades, intent)
        terminal = status not in ("LIVE", "DELAYED", "")
        # size_matched is the authority for how much filled: while the trades seen add up to
        # less, the order is followed until they appear
        matched = order_quantities(doc, intent.size)[1]
        if terminal and matched > sum(t.size for t in fills) + 0.005:
            terminal = False
        return VenueResult(
            "accepted",
            status.lower() or "unknown",
            trades=fills,
            terminal=terminal,
            venue_order_id=str(doc.get("id")),
        )

    @staticmethod
    def _trades(raw: list[dict[str, Any]], intent: OrderIntent) -> list[VenueTrade]:
        """Venue trades as fills: one per maker level when listed (exact fees), else the trade."""
        out: list[VenueTrade] = []
        rate, expo = fm.dec(intent.fee_rate), fm.dec(intent.fee_exponent)
        for t in raw:
            tid = str(t.get("id"))
            makers = [m for m in (t.get("maker_orders") or []) if isinstance(m, dict)]
            if makers:
                for i, m in enumerate(makers):
                    p, s = (
                        fm.dec(str(m.get("price", "0"))),
                        fm.dec(str(m.get("matched_amount", "0"))),
                    )
                    if m.get("asset_id") and str(m["asset_id"]) != str(t.get("asset_id")):
                        p = fm.ONE - p  # matched against the complementary token's order
                    out.append(
                        VenueTrade(
                            f"{tid}:{i}", float(p), float(s), float(fm.taker_fee(s, p, rate, expo))
                        )
                    )
            else:
                p, s = fm.dec(str(t.get("price", "0"))), fm.dec(str(t.get("size", "0")))
                out.append(
                    VenueTrade(tid, float(p), float(s), float(fm.taker_fee(s, p, rate, expo)))
                )
        return [x for x in out if x.size > 0]

    def trade_states(self, trade_ids: list[str]) -> dict[str, str]:
        """Venue trade id -> status (MATCHED, MINED, CONFIRMED, RETRYING, FAILED; REST's
        TRADE_STATUS_* and MATCHED_NOT_BROADCASTED as plain words by `venue_status`) for the trades
        asked about: the user channel's latest word, else one REST lookup each (reads only; a
        trade the venue cannot be asked about now is left out, to be asked again)."""
        out: dict[str, str] = {}
        for tid in trade_ids:
            t = self.ws_trades.get(tid)
            if t is None and self.client is not None:
                try:
                    got = self.client.get_trades(TradeParams(id=tid), only_first_page=True)
                except (PolyException, httpx.HTTPError, KeyError, TypeError) as e:
                    self._count("trade_lookup_failed")
                    self.log(
                        "execution",
                        "trade_lookup_failed",
                        "WARNING",
                        trade_id=tid,
                        error=self._describe(e),
                    )
                    continue
                t = next((x for x in got if isinstance(x, dict) and str(x.get("id")) == tid), None)
            if t is not None and venue_status(t.get("status")):
                out[tid] = venue_status(t.get("status"))
        return out

    # --- setup checks (`polyedge doctor`) --------------------------------------------------------
    def probe(self) -> tuple[bool, str]:
        """Whether the CLOB answers at all (GET /, no auth): (reachable, detail)."""
        try:
            r = httpx.get(self.host + "/", timeout=self.timeout_s)
        except httpx.HTTPError as e:
            return False, self._scrub(f"{type(e).__name__}: {e}")
        if r.status_code >= 500:
            return False, f"HTTP {r.status_code}"
        self._note_status(r.status_code)
        return True, f"HTTP {r.status_code}"

    def server_time(self) -> float:
        """The venue's clock (GET /time), unix seconds. Raises VenueError."""
        try:
            r = httpx.get(self.host + "/time", timeout=self.timeout_s)
            r.raise_for_status()
            return float(r.json())
        except (httpx.HTTPError, ValueError, TypeError) as e:
            raise VenueError(f"no server time: {self._scrub(str(e))}") from None

    @staticmethod
    def geoblock(url: str, timeout_s: float = DEFAULT_TIMEOUT_S) -> dict[str, Any]:
        """The venue's geoblock answer for this machine's IP: {"blocked": bool, "country": ...}
        (polymarket.com/api/geoblock). Raises VenueError when it cannot be had."""
        try:
            r = httpx.get(url, timeout=timeout_s)
            if r.status_code != 200:
                raise VenueError(f"no geoblock answer from {url}: HTTP {r.status_code}")
            doc = r.json()
        except (httpx.HTTPError, ValueError) as e:
            raise VenueError(f"no geoblock answer from {url}: {type(e).__name__}") from None
        if not isinstance(doc, dict) or "blocked" not in doc:
            raise VenueError(f"unreadable geoblock answer {str(doc)[:200]!r}")
        return doc

    def collateral(self) -> tuple[float, dict[str, int]]:
        """(pUSD balance, allowance by spender address in base units) of the configured wallet,
        from the CLOB's balance-allowance endpoint (it takes the signature type). Raises
        VenueError."""
        if not self.start():
            raise VenueError("venue unavailable: API credentials not derived")
        assert self.client is not None
        try:
            doc = self.client.get_balance_allowance(
                BalanceAllowanceParams(asset_type=AssetType.COLLATERAL)
            )
        except (PolyException, httpx.HTTPError) as e:
            raise VenueError(f"balance lookup failed: {self._describe(e)}") from None
        if not isinstance(doc, dict):
            raise VenueError(f"unreadable balance answer {str(doc)[:200]!r}")
        allowances: dict[str, int] = {}
        for spender, amount in (doc.get("allowances") or {}).items():
            try:
                allowances[str(spender).lower()] = int(str(amount))
            except ValueError:
                allowances[str(spender).lower()] = 0
        return _num(doc.get("balance")) / 1e6, allowances

    def heartbeat_once(self) -> str:
        """One exchange heartbeat; returns its id. Raises VenueError when it is refused. (It
        arms the venue's cancel-all-on-silence for this API key: any resting order of this key
        is cancelled ~10 s later unless the bot's own heartbeat runs.)"""
        if not self.start():
            raise VenueError("venue unavailable: API credentials not derived")
        assert self.client is not None
        try:
            res = self.client.post_heartbeat("")
        except (PolyException, httpx.HTTPError) as e:
            raise VenueError(f"heartbeat refused: {self._describe(e)}") from None
        return str(res.get("heartbeat_id", "")) if isinstance(res, dict) else ""

    # --- redemption (EOA: on chain through Polygon JSON-RPC) ------------------------------------
    def _rpc(self, method: str, params: list[Any]) -> Any:
        try:
            r = httpx.post(
                self.rpc_url,
                json={"jsonrpc": "2.0", "id": 1, "method": method, "params": params},
                timeout=self.timeout_s,
            )
            doc = r.json()
        except (httpx.HTTPError, ValueError) as e:
            raise VenueError(f"Polygon RPC {method} failed: {type(e).__name__}") from None
        if not isinstance(doc, dict) or doc.get("error"):
            err = doc.get("error") if isinstance(doc, dict) else doc
            raise VenueError(f"Polygon RPC {method} refused: {self._scrub(str(err))[:200]}")
        return doc.get("result")

    def redeem(self, condition_id: str, neg_risk: bool = False) -> str:
        """Send `redeemPositions` for a resolved market's whole position (both outcomes; the
        losing one pays 0) and return its reference: the transaction hash (EOA, on chain through
        `rpc_url`) or `relayer:<transaction id>` (types 1-3, gasless through the relayer).
        Redeeming twice is harmless: the second pays nothing. Raises VenueError
        (`redeem_unsupported` when the path's URL or relayer key is missing)."""
        to, data = self.redeem_call(condition_id, neg_risk)
        if self.signature_type != 0:
            ref = self._relayer_submit([(to, data)], f"Redeem {condition_id}")
            self._count("redemptions_sent")
            return ref
        if not self.rpc_url:
            raise VenueError("no POLYGON_RPC_URL to redeem through", "redeem_unsupported")
        if not self.start():
            raise VenueError("venue unavailable: API credentials not derived")
        tx_hash = self._send_tx(to, data)
        self._count("redemptions_sent")
        return tx_hash

    @staticmethod
    def redeem_call(condition_id: str, neg_risk: bool = False) -> tuple[str, bytes]:
        """(contract, calldata) of `redeemPositions(pUSD, 0x0, conditionId, [1, 2])` on the
        collateral adapter (neg-risk: the neg-risk collateral adapter), as polymarket-client 0.14
        `ctf_redeem_positions_call` builds it."""
        from eth_abi.abi import encode as abi_encode

        cid = bytes.fromhex(condition_id.removeprefix("0x").rjust(64, "0"))
        data = REDEEM_SELECTOR + abi_encode(
            ["address", "bytes32", "bytes32", "uint256[]"], [PUSD, b"\0" * 32, cid, [1, 2]]
        )
        return (NEG_RISK_COLLATERAL_ADAPTER if neg_risk else COLLATERAL_ADAPTER), data

    # --- Polymarket's relayer (gasless calls of proxy, Safe and deposit wallets) ----------------
    # Endpoints, payloads and what the key signs: polymarket-client 0.14
    # `_internal/actions/relayer/` (gasless.py, nonce.py, submit.py, poll.py, auth.py); the
    # signed structures are in common/wallets.py. Authentication: a relayer API key
    # (`RELAYER_API_KEY`, `RELAYER_API_KEY_ADDRESS` headers); builder keys are not supported here.
    RELAYER_TYPES = {1: "PROXY", 2: "SAFE", 3: "WALLET"}
    PROXY_DEFAULT_GAS_LIMIT = 200_000  # the SDK's fallback when the estimate fails
    DEPOSIT_WALLET_DEADLINE_S = 600

    def _relayer_call(
        self, method: str, path: str, params: dict[str, str] | None = None, body: Any = None
    ) -> Any:
        """One relayer request; its JSON. Raises VenueError naming the endpoint."""
        if not self.relayer_url:
            raise VenueError(
                "no RELAYER_URL to send wallet transactions through", "redeem_unsupported"
            )
        if self._relayer_key is None or not self.relayer_api_key_address:
            raise VenueError(
                "RELAYER_API_KEY and RELAYER_API_KEY_ADDRESS are needed for gasless redemption "
                "and approvals of proxy, Safe and deposit wallets (create one on polymarket.com)",
                "redeem_unsupported",
            )
        headers = {
            "RELAYER_API_KEY": self._relayer_key.reveal(),
            "RELAYER_API_KEY_ADDRESS": self.relayer_api_key_address,
        }
        try:
            r = httpx.request(
                method,
                self.relayer_url + path,
                params=params,
                json=body,
                headers=headers,
                timeout=self.timeout_s,
            )
        except httpx.HTTPError as e:
            raise VenueError(f"relayer {path} failed: {type(e).__name__}") from None
        try:
            doc = r.json()
        except ValueError:
            doc = r.text
        if r.status_code >= 400:
            err = doc.get("error", doc) if isinstance(doc, dict) else doc
            raise VenueError(
                f"relayer {path} refused ({r.status_code}): {self._scrub(str(err))[:300]}"
            )
        return doc

    def _relayer_nonce(self, path: str, kind: str) -> tuple[str, int]:
        doc = self._relayer_call("GET", path, {"address": self._signer(), "type": kind})
        try:
            return str(doc["address"]), int(str(doc["nonce"]))
        except (KeyError, TypeError, ValueError):
            raise VenueError(f"relayer {path}: unreadable answer {str(doc)[:200]!r}") from None

    def _signer(self) -> str:
        from eth_account import Account

        if not self.address:
            self.address = Account.from_key(self._key.reveal()).address
        return self.address

    def _relayer_submit(self, calls: list[tuple[str, bytes]], metadata: str) -> str:
        """Sign `calls` for this wallet type and POST them to the relayer's `/submit`; returns
        `relayer:<transaction id>`. Nothing is retried here: the caller's ledger row decides."""
        from common import wallets

        kind = self.RELAYER_TYPES[self.signature_type]
        relay, gas_limit = "", 0
        if self.signature_type == 1:
            relay, nonce = self._relayer_nonce("/relay-payload", kind)
            gas_limit = self.PROXY_DEFAULT_GAS_LIMIT
            if self.rpc_url:
                data = wallets.proxy_call_data(calls)
                call = {
                    "from": self._signer(),
                    "to": wallets.PROXY_FACTORY,
                    "data": "0x" + data.hex(),
                }
                try:
                    gas_limit = int(self._rpc("eth_estimateGas", [call]), 16)
                except (VenueError, TypeError, ValueError):
                    pass
        else:
            _addr, nonce = self._relayer_nonce("/v1/account/transactions/params", kind)
        body = self.relayer_body(
            calls,
            metadata,
            nonce=nonce,
            relay=relay,
            gas_limit=gas_limit,
            deadline=int(time.time()) + self.DEPOSIT_WALLET_DEADLINE_S,
        )
        doc = self._relayer_call("POST", "/submit", body=body)
        tx_id = (
            str(doc.get("transactionID") or doc.get("transactionId") or "")
            if isinstance(doc, dict)
            else ""
        )
        if not tx_id:
            raise VenueError(f"relayer /submit: no transactionID in {str(doc)[:200]!r}")
        self.log(
            "execution",
            "relayer_submitted",
            transaction_id=tx_id,
            type=kind,
            state=str(doc.get("state", "")),
        )
        return "relayer:" + tx_id

    def relayer_body(
        self,
        calls: list[tuple[str, bytes]],
        metadata: str,
        *,
        nonce: int,
        relay: str = "",
        gas_limit: int = 0,
        deadline: int = 0,
    ) -> dict[str, Any]:
        """The signed `/submit` body of `calls` (target, calldata) for this wallet type, as
        polymarket-client 0.14 `gasless.py` builds it: proxy (1) the personal-signed "rlx:" hash
        with the relay's `nonce` and `relay`, `gas_limit`; Safe (2) the SafeTx digest,
        personal-signed, v + 4 (one call direct, several through MultiSend); deposit wallet (3)
        the EIP-712 Batch with `deadline` (unix s). Offline; the key never leaves here."""
        from eth_account import Account
        from eth_account.messages import encode_defunct, encode_typed_data

        from common import wallets

        signer, key = self._signer(), self._key.reveal()
        kind = self.RELAYER_TYPES[self.signature_type]
        if self.signature_type == 1:
            data = wallets.proxy_call_data(calls)
            h = wallets.proxy_relay_hash(
                signer, wallets.PROXY_FACTORY, data, gas_limit, nonce, relay
            )
            sig = bytes(Account.sign_message(encode_defunct(primitive=h), key).signature)
            return {
                "type": kind,
                "from": signer,
                "to": wallets.PROXY_FACTORY,
                "proxyWallet": self.funder,
                "data": "0x" + data.hex(),
                "nonce": str(nonce),
                "signature": "0x" + sig.hex(),
                "metadata": metadata,
                "signatureParams": {
                    "gasLimit": str(gas_limit),
                    "gasPrice": "0",
                    "relay": relay,
                    "relayHub": wallets.RELAY_HUB,
                    "relayerFee": "0",
                },
            }
        if self.signature_type == 2:
            if len(calls) == 1:
                (target, data), operation = calls[0], 0
            else:
                target, operation = wallets.SAFE_MULTISEND, 1
                data = wallets.safe_multisend_data(calls)
            digest = wallets.safe_tx_digest(
                wallets.safe_tx_typed_data(
                    self.funder, target, data, operation, nonce, self.chain_id
                )
            )
            raw = bytes(Account.sign_message(encode_defunct(primitive=digest), key).signature)
            v = raw[64]
            sig = raw[:64] + bytes([v + 31 if v in (0, 1) else v + 4 if v in (27, 28) else v])
            return {
                "type": kind,
                "from": signer,
                "to": target,
                "proxyWallet": self.funder,
                "data": "0x" + data.hex(),
                "nonce": str(nonce),
                "signature": "0x" + sig.hex(),
                "metadata": metadata,
                "signatureParams": {
                    "baseGas": "0",
                    "gasPrice": "0",
                    "gasToken": wallets.ZERO_ADDRESS,
                    "operation": str(operation),
                    "refundReceiver": wallets.ZERO_ADDRESS,
                    "safeTxnGas": "0",
                },
            }
        typed = wallets.deposit_wallet_batch_typed_data(
            self.funder, calls, nonce, deadline, self.chain_id
        )
        sig = bytes(Account.sign_message(encode_typed_data(full_message=typed), key).signature)
        return {
            "type": kind,
            "from": signer,
            "to": wallets.DEPOSIT_WALLET_FACTORY,
            "nonce": str(nonce),
            "signature": "0x" + sig.hex(),
            "metadata": metadata,
            "depositWalletParams": {
                "depositWallet": self.funder,
                "deadline": str(deadline),
                "calls": [{"target": t, "value": "0", "data": "0x" + d.hex()} for t, d in calls],
            },
        }

    def relayer_state(self, tx_id: str) -> tuple[str, str, str]:
        """(state, transaction hash, error) of a relayer transaction: state `pending`,
        `confirmed` or `failed` (the relayer's STATE_NEW/EXECUTED/MINED are pending,
        STATE_CONFIRMED confirmed, STATE_FAILED/INVALID failed: SDK `poll.py`)."""
        doc = self._relayer_call("GET", f"/v1/account/transactions/{tx_id}")
        if isinstance(doc, list):  # the TypeScript client reads a list of one
            doc = doc[0] if doc else {}
        if not isinstance(doc, dict):
            raise VenueError(f"relayer transaction {tx_id}: unreadable {str(doc)[:200]!r}")
        state = str(doc.get("state", "")).upper().removeprefix("STATE_")
        tx_hash = str(doc.get("transaction_hash") or doc.get("transactionHash") or "")
        err = str(doc.get("error_msg") or doc.get("errorMsg") or "")
        if state == "CONFIRMED":
            return "confirmed", tx_hash, err
        if state in ("FAILED", "INVALID"):
            return "failed", tx_hash, err or f"relayer state {state}"
        return "pending", tx_hash, err

    def _send_tx(self, to: str, data: bytes) -> str:
        """Sign and send one legacy transaction from the key's address; its hash."""
        from eth_account import Account

        call = {"from": self.address, "to": to, "data": "0x" + data.hex()}
        nonce = int(self._rpc("eth_getTransactionCount", [self.address, "pending"]), 16)
        gas_price = int(self._rpc("eth_gasPrice", []), 16)
        gas = int(int(self._rpc("eth_estimateGas", [call]), 16) * GAS_HEADROOM)
        tx = {
            "nonce": nonce,
            "gasPrice": gas_price,
            "gas": gas,
            "to": to,
            "value": 0,
            "data": call["data"],
            "chainId": self.chain_id,
        }
        signed = Account.sign_transaction(tx, self._key.reveal())
        raw = "0x" + signed.raw_transaction.hex().removeprefix("0x")
        return str(self._rpc("eth_sendRawTransaction", [raw]))

    def required_approvals(self) -> list[Approval]:
        """Every approval the funder wallet needs to trade a binary (not neg-risk) market and
        redeem it (polymarket-client 0.14 `_required_trading_approvals`, the binary subset;
        PROTOCOLS.md section 7): pUSD allowance to the CTF Exchange V2 (buying), CTF
        `setApprovalForAll` for the CTF Exchange V2 (selling outcome tokens) and for the
        collateral adapter (redemption). `granted` is None here (see `approval_state`)."""
        from eth_abi.abi import encode as abi_encode

        def entry(name: str, contract: str, spender: str, who: str, kind: str) -> Approval:
            if kind == "allowance":
                data = APPROVE_SELECTOR + abi_encode(["address", "uint256"], [spender, MAX_UINT256])
            else:
                data = SET_APPROVAL_FOR_ALL_SELECTOR + abi_encode(
                    ["address", "bool"], [spender, True]
                )
            return Approval(name, contract, spender, who, kind, data)

        return [
            entry("pUSD allowance (buy)", PUSD, CTF_EXCHANGE_V2, "CTF Exchange V2", "allowance"),
            entry("CTF operator (sell)", CTF, CTF_EXCHANGE_V2, "CTF Exchange V2", "operator"),
            entry(
                "CTF operator (redeem)", CTF, COLLATERAL_ADAPTER, "collateral adapter", "operator"
            ),
        ]

    def approval_owner(self) -> str:
        """The wallet that holds funds and tokens, whose approvals count: FUNDER, else the key's
        own address (EOA)."""
        if self.funder:
            return self.funder
        from eth_account import Account

        return str(Account.from_key(self._key.reveal()).address)

    def approval_state(self) -> list[Approval]:
        """`required_approvals` with `granted` read on chain through `rpc_url` (eth_call of pUSD
        `allowance(owner, spender)` > 0 and CTF `isApprovedForAll(owner, operator)`), for the
        funder wallet (`approval_owner`). Raises VenueError without `rpc_url` or when the RPC
        fails."""
        from eth_abi.abi import encode as abi_encode

        if not self.rpc_url:
            raise VenueError("no POLYGON_RPC_URL to read the approvals from")
        owner = self.approval_owner()
        out = []
        for a in self.required_approvals():
            if a.kind == "allowance":
                data = ALLOWANCE_SELECTOR + abi_encode(["address", "address"], [owner, a.spender])
            else:
                data = IS_APPROVED_FOR_ALL_SELECTOR + abi_encode(
                    ["address", "address"], [owner, a.spender]
                )
            raw = self._rpc("eth_call", [{"to": a.contract, "data": "0x" + data.hex()}, "latest"])
            try:
                value = int(str(raw), 16)
            except ValueError:
                raise VenueError(f"unreadable eth_call answer {str(raw)[:80]!r}") from None
            out.append(msgspec.structs.replace(a, granted=value > 0))
        return out

    def approvals_to_send(self) -> list[tuple[str, str, bytes]]:
        """(name naming the spender, contract, calldata) of every approval the wallet still
        lacks (`approval_state`; all of them when no RPC is configured to tell)."""
        try:
            todo = [a for a in self.approval_state() if not a.granted]
        except VenueError:
            todo = self.required_approvals()
        return [(a.describe(), a.contract, a.calldata) for a in todo]

    def set_approvals(self, wait_s: float = 60.0) -> list[tuple[str, str]]:
        """Send every approval; [(name, transaction hash or `relayer:<id>`)]. EOA wallets
        send one transaction each through `rpc_url`; proxy, Safe and deposit wallets send them
        as one gasless relayer transaction (the SDK's `setup_trading_approvals` does the same)
        and this waits up to `wait_s` for it to be confirmed. Raises VenueError."""
        if self.signature_type != 0:
            todo = self.approvals_to_send()
            if not todo:
                return []
            ref = self._relayer_submit([(to, data) for _n, to, data in todo], "Set approvals")
            deadline = time.monotonic() + wait_s
            while True:
                state, tx_hash, err = self.relayer_state(ref.removeprefix("relayer:"))
                if state == "confirmed":
                    return [(name, ref) for name, _to, _d in todo]
                if state == "failed":
                    raise VenueError(f"relayer transaction {ref} failed: {err}")
                if time.monotonic() > deadline:
                    raise VenueError(f"relayer transaction {ref} not confirmed in {wait_s:g} s")
                time.sleep(1.0)
        if not self.rpc_url:
            raise VenueError("no POLYGON_RPC_URL to send the approvals through")
        if not self.start():
            raise VenueError("venue unavailable: API credentials not derived")
        return [(name, self._send_tx(to, data)) for name, to, data in self.approvals_to_send()]

    def redemption_status(self, tx_hash: str) -> str:
        """`pending`, `confirmed` or `failed` for a redemption sent here: the relayer's state for
        a `relayer:<id>` reference, else the transaction's receipt."""
        if tx_hash.startswith("relayer:"):
            return self.relayer_state(tx_hash.removeprefix("relayer:"))[0]
        receipt = self._rpc("eth_getTransactionReceipt", [tx_hash])
        if not receipt:
            return "pending"
        return "confirmed" if str(receipt.get("status")) in ("0x1", "1") else "failed"

    @property
    def start_error(self) -> str:
        return self._start_error

    # --- market data and balances ---------------------------------------------------------------
    def rest_book(self, asset_id: str) -> tuple[list[list[float]], list[list[float]]] | None:
        assert self.client is not None
        try:
            doc = self.client.get_order_book(asset_id)
        except (PolyException, httpx.HTTPError) as e:
            self.log(
                "execution",
                "rest_book_failed",
                "WARNING",
                asset_id=asset_id,
                error=self._describe(e),
            )
            return None
        if not isinstance(doc, dict):
            return None

        def side(levels: Any) -> list[list[float]]:
            out = []
            for lv in levels if isinstance(levels, list) else []:
                if isinstance(lv, dict):
                    out.append([_num(lv.get("price")), _num(lv.get("size"))])
                elif isinstance(lv, list | tuple) and len(lv) >= 2:
                    out.append([_num(lv[0]), _num(lv[1])])
            return out

        return side(doc.get("bids")), side(doc.get("asks"))

    def before_sell(self, asset_id: str) -> None:
        """Selling right after a buy fails until the venue refreshes the token balance."""
        if self.client is None:
            return
        try:
            self.client.update_balance_allowance(
                BalanceAllowanceParams(asset_type=AssetType.CONDITIONAL, token_id=asset_id)
            )
        except (PolyException, httpx.HTTPError) as e:
            self.log(
                "execution",
                "balance_refresh_failed",
                "WARNING",
                asset_id=asset_id,
                error=self._describe(e),
            )

    # --- heartbeat and user channel ---------------------------------------------------------------
    def _ensure_heartbeat(self) -> None:
        if self._hb_thread is None:
            self._hb_thread = threading.Thread(
                target=self._heartbeat_loop, daemon=True, name="heartbeat"
            )
            self._hb_thread.start()

    def _heartbeat_loop(self) -> None:
        hb_id = ""
        while not self._stop.is_set():
            try:
                assert self.client is not None
                res = self.client.post_heartbeat(hb_id)
                hb_id = str(res.get("heartbeat_id", "")) if isinstance(res, dict) else ""
                self._count("heartbeats")
            except Exception as e:  # noqa: BLE001 - the heartbeat thread must never die
                if isinstance(e, PolyApiException):
                    self._note_status(e.status_code)
                    if e.status_code == 400:  # a stale id: the venue wants a new chain
                        hb_id = ""
                self._count("heartbeat_failed")
                try:
                    self.log("execution", "heartbeat_failed", "WARNING", error=self._describe(e))
                except Exception:  # noqa: BLE001, S110 - not even a logging fault stops it
                    pass
            self._stop.wait(HEARTBEAT_INTERVAL_S)

    def expect_user_data(self) -> None:
        """An order was accepted: the user channel owes us its events (liveness by data)."""
        if self._user_owed_since is None:
            self._user_owed_since = time.monotonic()

    def _user_loop(self) -> None:
        from websockets.sync.client import connect

        backoff = 0.5
        while not self._stop.is_set():
            try:
                assert self._creds is not None
                with connect(self.user_ws_url, open_timeout=self.timeout_s) as ws:
                    ws.send(
                        json.dumps(
                            {
                                "auth": {
                                    "apiKey": self._creds.api_key,
                                    "secret": self._creds.api_secret,
                                    "passphrase": self._creds.api_passphrase,
                                },
                                "markets": [],
                                "type": "user",
                            }
                        )
                    )
                    self.ws_connected, backoff = True, 0.5
                    live = DataLiveness("user", self.user_data_silence_s, self.user_keepalive_s)
                    next_ping = time.monotonic() + min(
                        USER_PING_INTERVAL_S, self.user_keepalive_s / 3
                    )
                    while not self._stop.is_set():
                        try:
                            text = ws.recv(timeout=min(1.0, self.user_data_silence_s / 4))
                        except TimeoutError:
                            text = None
                        if time.monotonic() >= next_ping:
                            ws.send("PING")
                            next_ping = time.monotonic() + min(
                                USER_PING_INTERVAL_S, self.user_keepalive_s / 3
                            )
                        if text is not None:
                            live.frame()
                            if self._on_user_frame(
                                text if isinstance(text, str) else text.decode()
                            ):
                                live.data()
                                self._user_owed_since = None
                        why = self._user_dead(live)
                        if why:
                            self._count("user_ws_replaced")
                            # the owed events went with the old socket: REST polling has them
                            self._user_owed_since = None
                            raise ConnectionError(why)
            except Exception as e:  # noqa: BLE001 - an external fault: counted, logged, retried
                self._count("user_ws_errors")
                self.log("execution", "user_channel_error", "WARNING", error=self._describe(e))
            self.ws_connected = False
            self._stop.wait(backoff)
            backoff = min(RECONNECT_MAX_S, backoff * 2)

    def _user_dead(self, live: DataLiveness) -> str:
        """Why the user socket must be replaced ("" while alive): no frame at all for
        `user_keepalive_s`, or an accepted order's events overdue by `user_data_silence_s`
        while only keep-alives come back."""
        now = time.monotonic()
        if now - live.last_frame > self.user_keepalive_s:
            return f"user: no frame at all for {now - live.last_frame:.1f} s"
        owed = self._user_owed_since
        if owed is not None and live.last_data < owed and now - owed > self.user_data_silence_s:
            return (
                f"user: no order/trade event {now - owed:.1f} s after an accepted order "
                "(bound {:g} s); keep-alives still answered".format(self.user_data_silence_s)
            )
        return ""

    def _on_user_frame(self, text: str) -> bool:
        """Record one user-channel frame; True when it carried order or trade data."""
        if text.strip().upper() in ("PONG", "PING", ""):
            return False
        try:
            doc = json.loads(text)
        except ValueError:
            self._count("user_ws_garbage")
            return False
        data = False
        for ev in doc if isinstance(doc, list) else [doc]:
            if not isinstance(ev, dict):
                continue
            kind = str(ev.get("event_type") or ev.get("type") or "").lower()
            if kind == "trade" and ev.get("id"):
                self.ws_trades[str(ev["id"])] = ev
                for m in ev.get("maker_orders") or []:
                    if isinstance(m, dict) and m.get("order_id"):
                        self.ws_maker.setdefault(str(m["order_id"]), set()).add(str(ev["id"]))
                data = True
            elif kind == "order" and ev.get("id"):
                self.ws_orders[str(ev["id"])] = ev
                data = True
            else:
                self._count("user_ws_unknown")
        return data

    def status(self) -> dict[str, Any]:
        return {"ready": self._creds is not None, "user_channel": self.ws_connected, **self.counts}
