"""The one money module, all in `Decimal`: the venue's tick grid, its taker fee, the amounts of a
signed order exactly as the venue accepts them, and the fill of a marketable order.

The paper executor, the strategy's sizing, the backtest and the simulated venue's matching call
these functions, so for the same order and book they agree to the unit (tests/common/test_money.py
walks random books through both paths). Units: prices are USD (pUSD collateral) per share in
(0, 1); sizes are shares; amounts and fees are USD. Inputs are read from their shortest decimal
text (`dec`), so 0.1 is Decimal("0.1"), never 0.1000000000000000055.

Tick grid: a limit price must be a multiple of the market's tick within [tick, 1 - tick]
(PROTOCOLS.md section 4; py-clob-client-v2 `price_valid`). `snap_price` snaps never worse for the
trader: a BUY's limit down, a SELL's up.

Fee (PROTOCOLS.md section 4; docs.polymarket.com/trading/fees): the taker pays
`shares * rate * (p * (1 - p)) ** exponent` USD per trade, from the market's `feeSchedule`
(`rate`, `exponent`, `takerOnly`), set at match time, to 5 decimals. The rounding direction is in
no official SDK; NautilusTrader's Polymarket adapter (`compute_commission`) floors to 5 decimals
"matching the venue charge", which we follow (`FEE_ROUNDING`); older official docs said 4 decimals
(for the 2025 schedule). The V2 exchange charges both sides' fee in pUSD: a BUY taker gets every
share it bought and pays the fee from its balance on top of the notional (py-clob-client-v2 #107,
a live fill on 2026-08-04: "the fee is charged in USDC out of the balance — not deducted in
shares": 25 shares received, 3.39 spent = 3.25 notional + 0.14 fee; the V2 SDKs' own
`adjust_market_buy_amount` reserves `amount + amount / price * rate * (p (1 - p)) ** exponent`
of the balance), a SELL taker receives the notional less the fee. The older docs' "fees are
collected in shares on buy orders" (docs.polymarket.com trading/fees, py-clob-client #311) was
the V1 exchange. So a BUY needs notional + fee of pUSD; the ledger books full shares and the
USD fee.

Order amounts. A signed V2 order carries integer `makerAmount` / `takerAmount` in base units
(pUSD and outcome tokens both have 6 decimals): a BUY gives collateral and takes shares, a SELL
gives shares and takes collateral. The venue refuses amounts with more decimals than it supports,
with different rules for marketable (FOK/FAK) and resting (GTC/GTD) orders:

- marketable BUY: maker (pUSD) <= 2 decimals, taker (shares) <= 4 decimals, else 400 "invalid
  amounts, the market buy orders maker amount supports a max accuracy of 2 decimals, taker amount
  a max of 4 decimals" (py-clob-client-v2 #99, rs-clob-client #114, rs-clob-client-v2 #59);
- marketable SELL: shares <= 2 decimals (the SDKs' `size` rounding); the collateral taken is kept
  to <= 4 decimals here too, else "invalid amounts, the sell orders maker amount supports a max
  accuracy of 2 decimals, taker amount a max of 4 decimals": the text py-clob-client #121 got
  for a FOK order (no public report has a "market sell orders" text). The 4-decimal collateral
  rule is NOT confirmed by a public report: the symmetric rule is the stricter reading, and an
  order that meets it also meets the looser one;
- resting BUY: maker (pUSD) <= 4 decimals, taker (shares) <= 2 decimals, else "invalid amounts,
  the buy orders maker amount supports a max accuracy of 4 decimals, taker amount a max of 2
  decimals" (py-clob-client #305, #253); a resting SELL the mirror image.

Minimums (PROTOCOLS.md section 4 and 7): a marketable BUY >= $1 of collateral; a resting order
>= the market's `orderMinSize` (5) shares. Both SDKs' market-order builders sign 5-decimal share
amounts on 0.001 ticks (py-clob-client-v2 #99, `ROUNDING_CONFIG["0.001"].amount == 5`), which the
venue refuses; `marketable_amounts` never does.

Matching (`fill_marketable`): levels are walked best first while their price is at or better than
the limit; the taker gets each maker's price, so a collateral-sized BUY gets more shares when the
book is better than its limit. FOK fills completely or not at all, FAK fills what is there. How
the venue rounds the shares a collateral amount buys at one level is not documented: we buy whole
hundredths of a share (resting sizes are 2-decimal) and leave what cannot buy a hundredth unspent.
That rule is ours, unconfirmed; the simulated venue applies the same one. Evidence both ways: a
FAK BUY for 5 shares at 0.99 against a best ask of 0.98 was reported filled for 5.051019 shares
(py-clob-client-v2 #89: 6 decimals, so the venue likely keeps the base-unit remainder of a
price-improved fill); the recorded market-channel books (data/real/clob_books: 29 windows, 11.9
million levels) never show a size with more than 2 decimals. Either way the difference is under a
hundredth of a share per level walked (under 1 cent); the remainder a 6-decimal fill would leave
cannot be sold (SELL amounts are 2-decimal) and settles with the window.
"""

from __future__ import annotations

from collections.abc import Iterable, Sequence
from dataclasses import dataclass
from decimal import ROUND_CEILING, ROUND_DOWN, ROUND_FLOOR, Decimal
from typing import Literal

ZERO = Decimal(0)
ONE = Decimal(1)
SHARE_STEP = Decimal("0.01")  # resting sizes, SELL amounts and our fill grid: 2 decimals
FEE_QUANTUM = Decimal("0.00001")  # fees are charged to 5 decimals of USD
FEE_ROUNDING = ROUND_FLOOR  # see the module docstring for the source and its doubt
MIN_MARKETABLE_BUY_USD = ONE  # the venue's minimum for a FOK/FAK BUY, in pUSD

Side = Literal["BUY", "SELL"]
OrderType = Literal["FOK", "FAK"]
FillStatus = Literal["filled", "partial", "killed", "unmatched", "rejected"]
Num = float | int | str | Decimal


def dec(x: Num) -> Decimal:
    """A Decimal from the shortest decimal text of `x` (0.1 -> Decimal("0.1")).

    Raises ValueError for NaN, infinities and text that is not a number."""
    if isinstance(x, Decimal):
        d = x
    elif isinstance(x, float):
        d = Decimal(repr(x))
    elif isinstance(x, bool):
        raise ValueError(f"not a number: {x!r}")
    else:
        try:
            d = Decimal(x)
        except ArithmeticError:
            raise ValueError(f"not a number: {x!r}") from None
    if not d.is_finite():
        raise ValueError(f"not a finite number: {x!r}")
    return d


# --- tick grid --------------------------------------------------------------------------------
def snap_price(price: Num, tick: Num, side: Side) -> Decimal:
    """`price` on the `tick` grid, never worse for the trader: a BUY limit rounds down, a SELL
    limit up. Raises ValueError for a tick outside (0, 1)."""
    t = dec(tick)
    if not ZERO < t < ONE:
        raise ValueError(f"tick size must be in (0, 1), got {tick!r}")
    steps = (dec(price) / t).to_integral_value(
        rounding=ROUND_FLOOR if side == "BUY" else ROUND_CEILING
    )
    return (steps * t).quantize(t)


def on_tick_grid(price: Num, tick: Num) -> bool:
    """True when `price` is a whole number of ticks."""
    return dec(price) % dec(tick) == 0


def check_price(price: Num, tick: Num) -> str:
    """'' when `price` is a valid limit for a market of `tick` (on the grid, within
    [tick, 1 - tick]: PROTOCOLS.md section 4, py-clob-client-v2 `price_valid`), else the reason."""
    p, t = dec(price), dec(tick)
    if not ZERO < t < ONE:
        return f"invalid tick size {tick}"
    if not on_tick_grid(p, t):
        return f"price {p} is not on the {t} tick grid"
    if not t <= p <= ONE - t:
        return f"price {p} outside [{t}, {ONE - t}] for tick {t}"
    return ""


# --- fee --------------------------------------------------------------------------------------
@dataclass(frozen=True)
class FeeSchedule:
    """A market's Gamma `feeSchedule`: taker fee `rate`, curve `exponent`, `taker_only`.

    `rate` 0 means no fee. The BTC 5-minute market (PROTOCOLS.md section 3) has rate 0.07,
    exponent 1, takerOnly true."""

    rate: Decimal = ZERO
    exponent: Decimal = ONE
    taker_only: bool = True
    rebate_rate: Decimal = ZERO  # `rebateRate`: the maker's share of the fee equivalent

    @classmethod
    def of(
        cls, rate: Num = 0, exponent: Num = 1, taker_only: bool = True, rebate_rate: Num = 0
    ) -> FeeSchedule:
        """From numbers or decimal text; raises ValueError for a negative rate or exponent, or a
        rebate rate outside [0, 1]."""
        r, e, rb = dec(rate), dec(exponent), dec(rebate_rate)
        if r < 0 or e < 0:
            raise ValueError(f"fee rate and exponent must be >= 0, got {rate!r}, {exponent!r}")
        if not ZERO <= rb <= ONE:
            raise ValueError(f"fee rebate rate must be in [0, 1], got {rebate_rate!r}")
        return cls(r, e, taker_only, rb)


NO_FEE = FeeSchedule()


def fee_per_share(price: Num, fee: FeeSchedule) -> Decimal:
    """The taker fee of one share at `price`, unrounded: rate * (p * (1 - p)) ** exponent."""
    p = dec(price)
    if fee.rate <= 0 or not ZERO < p < ONE:
        return ZERO
    base = p * (ONE - p)
    return fee.rate * (base if fee.exponent == ONE else base**fee.exponent)


def taker_fee(shares: Num, price: Num, fee: FeeSchedule) -> Decimal:
    """The USD fee of one trade of `shares` at `price`, to 5 decimals as the venue charges it
    (rounding: `FEE_ROUNDING`, see the module docstring). 0 for no shares or no fee."""
    s = dec(shares)
    if s <= 0:
        return ZERO.quantize(FEE_QUANTUM)
    return (s * fee_per_share(price, fee)).quantize(FEE_QUANTUM, rounding=FEE_ROUNDING)


def maker_rebate(shares: Num, price: Num, fee: FeeSchedule) -> Decimal:
    """The USD rebate a maker fill of `shares` at `price` earns: `rebate_rate` x the fee
    equivalent (the taker fee those shares would pay, `shares * rate * (p (1 - p)) ** exponent`),
    to 5 decimals, rounded down like the fee. A maker fill itself pays no fee (`takerOnly`).

    What we model, and how the venue does it (docs.polymarket.com "Maker Rebates Program"; Gamma
    `feeSchedule.rebateRate`, 0.2 on the BTC 5-minute markets, PROTOCOLS.md section 3): the venue
    pays rebates once a day, in pUSD, from a pool of `rebateRate` x the taker fees collected in a
    market, split among that market's makers pro rata to the fee equivalent of their filled maker
    volume. The per-fill figure here is that share assuming our maker volume is matched by fees
    paid at the same rate (NautilusTrader's `PolymarketFeeModel` makes the same per-fill
    approximation). It is an estimate: the real payment arrives the next day and depends on the
    other makers. 0 for no shares, no fee or no rebate."""
    s = dec(shares)
    if s <= 0 or fee.rebate_rate <= 0:
        return ZERO.quantize(FEE_QUANTUM)
    equivalent = s * fee_per_share(price, fee)
    return (equivalent * fee.rebate_rate).quantize(FEE_QUANTUM, rounding=FEE_ROUNDING)


def fill_fee_and_rebate(
    liquidity: Literal["maker", "taker"], shares: Num, price: Num, fee: FeeSchedule
) -> tuple[Decimal, Decimal]:
    """(fee, rebate) in USD of one fill: a taker pays `taker_fee` and earns nothing; a maker pays
    nothing and earns `maker_rebate`. Raises ValueError for another `liquidity`."""
    if liquidity == "taker":
        return taker_fee(shares, price, fee), ZERO.quantize(FEE_QUANTUM)
    if liquidity == "maker":
        return ZERO.quantize(FEE_QUANTUM), maker_rebate(shares, price, fee)
    raise ValueError(f"liquidity must be 'maker' or 'taker', got {liquidity!r}")


# --- order amounts ----------------------------------------------------------------------------
def round_shares(shares: Num) -> Decimal:
    """Shares down to the venue's 2-decimal size grid (a SELL's amount, a resting order's size)."""
    return dec(shares).quantize(SHARE_STEP, rounding=ROUND_DOWN)


UNITS_PER_TOKEN = 1_000_000  # pUSD and conditional tokens: 6 decimals on chain
MARKET_BUY_COLLATERAL_DECIMALS = 2
MARKET_BUY_SHARE_DECIMALS = 4
MARKET_SELL_SHARE_DECIMALS = 2
MARKET_SELL_COLLATERAL_DECIMALS = 4
RESTING_SHARE_DECIMALS = 2
RESTING_COLLATERAL_DECIMALS = 4

# the venue's own error texts (see the module docstring for where each was seen)
ERR_MARKET_BUY_PRECISION = (
    "invalid amounts, the market buy orders maker amount supports a max accuracy of 2 decimals, "
    "taker amount a max of 4 decimals"
)
# py-clob-client #121 (a FOK order): the same text as a resting SELL's
ERR_MARKET_SELL_PRECISION = (
    "invalid amounts, the sell orders maker amount supports a max accuracy of 2 decimals, "
    "taker amount a max of 4 decimals"
)
ERR_RESTING_BUY_PRECISION = (
    "invalid amounts, the buy orders maker amount supports a max accuracy of 4 decimals, "
    "taker amount a max of 2 decimals"
)
ERR_RESTING_SELL_PRECISION = (
    "invalid amounts, the sell orders maker amount supports a max accuracy of 2 decimals, "
    "taker amount a max of 4 decimals"
)

# a marketable order that cannot match (POST /order 400: third-party clients quote it as
# "PolyApiException[status_code=400, error_message={'error': 'no orders found to match with FAK
# order. ...'}]"; polymarket-client 0.14, Polymarket/py-sdk src/polymarket/models/clob/
# order_response.py, maps the two texts to `fok_not_filled` / `fak_not_filled`): a FOK that cannot
# fill whole, a FAK with nothing at all at or better than its limit (a FAK with anything to match
# fills that and the venue kills the rest: docs.polymarket.com concepts/order-lifecycle "Order
# Types": "FAK Fill And Kill: fill what is available, cancel the rest")
ERR_FOK_NOT_FILLED = "order couldn't be fully filled. FOK orders are fully filled or killed."
ERR_FAK_NOT_FILLED = (
    "no orders found to match with FAK order. FAK orders are partially filled or "
    "killed if no match is found."
)


def _floor(x: Decimal, decimals: int) -> Decimal:
    return x.quantize(Decimal(1).scaleb(-decimals), rounding=ROUND_DOWN)


def to_units(x: Decimal) -> int:
    """Decimal tokens -> integer base units (6 decimals); raises ValueError if not exact."""
    units = x * UNITS_PER_TOKEN
    if units != units.to_integral_value():
        raise ValueError(f"{x} has more than 6 decimals")
    return int(units)


def units_decimals(units: int) -> int:
    """How many decimals (0-6) the token amount `units / 1e6` has."""
    if units % UNITS_PER_TOKEN == 0:
        return 0
    n, u = 6, units
    while u % 10 == 0:
        u //= 10
        n -= 1
    return n


@dataclass(frozen=True)
class OrderAmounts:
    """A signable order's amounts. `maker_units`/`taker_units` go into the signed struct as they
    are; `shares` and `collateral` are the same in tokens; `price` is collateral / shares (what the
    venue matches against: >= the ask for a BUY, <= the bid for a SELL). `skip` is empty when the
    order can be sent, else a named reason (`below_min_buy_notional`, `amount_rounds_to_zero`)."""

    side: Side
    maker_units: int
    taker_units: int
    shares: Decimal
    collateral: Decimal
    skip: str = ""

    @property
    def price(self) -> Decimal:
        return self.collateral / self.shares if self.shares else Decimal(0)


def marketable_amounts(side: Side, limit: Decimal, shares: Decimal) -> OrderAmounts:
    """The amounts of a FOK/FAK order for `shares` at limit price `limit` (on the tick grid).

    BUY: sized in collateral. The collateral is shares x limit cut to whole cents (the stake the
    strategy sized), and the shares taken are collateral / limit cut to 4 decimals, so the price
    the venue derives (collateral / shares) is at or just above the limit, never a full tick
    above it while the collateral is >= $1 (the excess is < limit^2 x 1e-4 / collateral < 1e-4).
    On 0.001 ticks this is how an amount that cannot meet the rule exactly is lowered to the
    nearest one that can. Below $1 after the cut the order is skipped (`below_min_buy_notional`).
    SELL: sized in shares cut to 2 decimals; the collateral asked is shares x limit cut to 4
    decimals (a hair below the limit, so still marketable at it).
    """
    if side == "BUY":
        collateral = _floor(shares * limit, MARKET_BUY_COLLATERAL_DECIMALS)
        if collateral < MIN_MARKETABLE_BUY_USD:
            return OrderAmounts(side, 0, 0, Decimal(0), collateral, "below_min_buy_notional")
        taken = _floor(collateral / limit, MARKET_BUY_SHARE_DECIMALS)
        if taken <= 0:
            return OrderAmounts(side, 0, 0, taken, collateral, "amount_rounds_to_zero")
        return OrderAmounts(side, to_units(collateral), to_units(taken), taken, collateral)
    given = _floor(shares, MARKET_SELL_SHARE_DECIMALS)
    asked = _floor(given * limit, MARKET_SELL_COLLATERAL_DECIMALS)
    if given <= 0 or asked <= 0:
        return OrderAmounts(side, 0, 0, given, asked, "amount_rounds_to_zero")
    return OrderAmounts(side, to_units(given), to_units(asked), given, asked)


def resting_amounts(
    side: Side, price: Num, shares: Num, tick: Num, min_size: Num = 5
) -> OrderAmounts:
    """The amounts of a resting (GTC/GTD) limit order of `shares` at `price`, as the venue
    accepts them: price on the tick grid, shares to 2 decimals, the collateral (shares x price)
    exact to 4 decimals (`ERR_RESTING_BUY_PRECISION` / `_SELL_`). On a 0.001 tick the shares are
    lowered by hundredths until shares x price is exact (at most 0.09 shares), so the venue's
    price (collateral / shares) is the limit itself, on the grid. `skip` names why it cannot be
    sent: `invalid_price` (off the grid or outside [tick, 1 - tick]), `below_min_size` (fewer than
    `min_size` shares, the market's orderMinSize)."""
    p = dec(price)
    if check_price(p, tick):
        return OrderAmounts(side, 0, 0, ZERO, ZERO, "invalid_price")
    n = round_shares(shares)
    step = SHARE_STEP
    while n > 0 and (n * p) != _floor(n * p, RESTING_COLLATERAL_DECIMALS):
        n -= step
    if n < dec(min_size):
        return OrderAmounts(side, 0, 0, n, n * p, "below_min_size")
    cash = n * p
    if side == "BUY":
        return OrderAmounts(side, to_units(cash), to_units(n), n, cash)
    return OrderAmounts(side, to_units(n), to_units(cash), n, cash)


def amounts_error(
    side: Side, maker_units: int, taker_units: int, marketable: bool, min_size: Decimal = Decimal(5)
) -> str:
    """The venue's error text for a signed order's amounts, or "" when the venue accepts them.

    Checks the decimal rules above and the minimums: a marketable BUY below $1 (the venue's
    text: "invalid amount for a marketable BUY order ($x), min size: $1"), a resting order below
    `min_size` shares ("Size (x) lower than the minimum: 5").
    """
    if maker_units <= 0 or taker_units <= 0:
        return "invalid amounts, maker and taker amounts must be positive"
    md, td = units_decimals(maker_units), units_decimals(taker_units)
    if marketable:
        if side == "BUY":
            if md > MARKET_BUY_COLLATERAL_DECIMALS or td > MARKET_BUY_SHARE_DECIMALS:
                return ERR_MARKET_BUY_PRECISION
            if Decimal(maker_units) / UNITS_PER_TOKEN < MIN_MARKETABLE_BUY_USD:
                usd = Decimal(maker_units) / UNITS_PER_TOKEN
                return f"invalid amount for a marketable BUY order (${usd:f}), min size: $1"
            return ""
        if md > MARKET_SELL_SHARE_DECIMALS or td > MARKET_SELL_COLLATERAL_DECIMALS:
            return ERR_MARKET_SELL_PRECISION
        return ""
    shares_units = taker_units if side == "BUY" else maker_units
    if side == "BUY" and (md > RESTING_COLLATERAL_DECIMALS or td > RESTING_SHARE_DECIMALS):
        return ERR_RESTING_BUY_PRECISION
    if side == "SELL" and (md > RESTING_SHARE_DECIMALS or td > RESTING_COLLATERAL_DECIMALS):
        return ERR_RESTING_SELL_PRECISION
    shares = Decimal(shares_units) / UNITS_PER_TOKEN
    if shares < min_size:
        return f"Size ({shares:f}) lower than the minimum: {min_size:f}"
    return ""


# --- the fill of a marketable order -------------------------------------------------------------
@dataclass(frozen=True)
class Trade:
    """One matched level: `shares` at `price` (USD/share), paying `fee` USD."""

    price: Decimal
    shares: Decimal
    fee: Decimal

    @property
    def cost(self) -> Decimal:
        """USD paid (BUY) or received (SELL) before the fee: price * shares."""
        return self.price * self.shares


@dataclass(frozen=True)
class MarketableFill:
    """What a FOK/FAK order got. `shares` filled, `cost` USD before fees, `fee` USD, `unspent`
    what is left of the amount (USD for a BUY, shares for a SELL). `status`: filled, partial
    (FAK), killed (FOK that could not fill whole: no trades), unmatched (nothing at or better
    than the limit), rejected (`fill_order`: amounts the venue would refuse, no trades)."""

    status: FillStatus
    trades: tuple[Trade, ...] = ()
    shares: Decimal = ZERO
    cost: Decimal = ZERO
    fee: Decimal = ZERO
    unspent: Decimal = ZERO
    reason: str = ""

    @property
    def avg_price(self) -> Decimal:
        return self.cost / self.shares if self.shares else ZERO


def fill_marketable(
    side: Side,
    amount: Num,
    limit: Num,
    levels: Iterable[Sequence[Num]],
    fee: FeeSchedule = NO_FEE,
    order_type: OrderType = "FOK",
    *,
    buy_in_shares: bool = False,
    shown_limit: Num | None = None,
) -> MarketableFill:
    """Fill a marketable order against the levels it takes from, as the venue does.

    side: BUY takes asks, SELL takes bids. amount: a BUY's collateral (USD) to spend, a SELL's
    shares to sell. limit: the worst price accepted. levels: (price, shares) of the side taken,
    BEST FIRST (asks ascending for a BUY, bids descending for a SELL; `common.book.Book`'s
    `taker_levels` gives them so). fee: the market's schedule, charged per level (trade).
    buy_in_shares: a BUY stated in shares (a resting limit BUY that crosses the book), not in
    collateral. shown_limit: the limit as the reasons name it (default `limit`).
    Amount rules (`marketable_amounts`, ...) are the caller's: this only matches.
    Raises ValueError for an unknown side or order type or a non-positive amount."""
    if side not in ("BUY", "SELL"):
        raise ValueError(f"unknown side {side!r} (BUY or SELL)")
    if order_type not in ("FOK", "FAK"):
        raise ValueError(f"unsupported order type {order_type!r} (FOK or FAK)")
    remaining = dec(amount)
    if remaining <= 0:
        raise ValueError(f"amount must be > 0, got {amount!r}")
    lim = dec(limit)
    shown = dec(shown_limit) if shown_limit is not None else lim
    buy = side == "BUY"
    by_cash = buy and not buy_in_shares  # a collateral amount, else a share amount
    plan: list[tuple[Decimal, Decimal]] = []
    last_price = ZERO
    for lv in levels:
        price, size = dec(lv[0]), dec(lv[1])
        if size <= 0:
            continue
        if price > lim if buy else price < lim:
            break
        if by_cash:
            take = min(size, (remaining / price).quantize(SHARE_STEP, rounding=ROUND_DOWN))
            if take > 0:
                remaining -= take * price
        else:
            take = min(size, remaining.quantize(SHARE_STEP, rounding=ROUND_DOWN))
            remaining -= take
        if take > 0:
            plan.append((price, take))
            last_price = price
        # a BUY stops where its collateral cannot buy a hundredth more (later levels cost more)
        if remaining < (price * SHARE_STEP if by_cash else SHARE_STEP):
            break
    if not plan:
        return MarketableFill(
            "unmatched", unspent=dec(amount), reason=f"no liquidity at or better than {shown}"
        )
    done = remaining < (last_price * SHARE_STEP if by_cash else SHARE_STEP)
    if order_type == "FOK" and not done:
        left = f"${remaining}" if by_cash else f"{remaining} shares"
        return MarketableFill(
            "killed",
            unspent=dec(amount),
            reason=f"FOK killed: {left} of the order cannot fill at or better than {shown}",
        )
    trades = tuple(Trade(p, s, taker_fee(s, p, fee)) for p, s in plan)
    shares = sum((t.shares for t in trades), ZERO)
    return MarketableFill(
        "filled" if done else "partial",
        trades,
        shares,
        sum((t.cost for t in trades), ZERO),
        sum((t.fee for t in trades), ZERO),
        remaining,
        "" if done else f"FAK partial: {remaining} of {dec(amount)} left unfilled",
    )


def fill_order(
    side: Side,
    shares: Num,
    limit: Num,
    levels: Iterable[Sequence[Num]],
    fee: FeeSchedule = NO_FEE,
    order_type: OrderType = "FOK",
) -> MarketableFill:
    """Fill an order stated as `shares` at `limit` the way the venue fills its signed form
    (`marketable_amounts`): a BUY spends its collateral (shares x limit cut to cents), a SELL
    sells its shares (cut to 2 decimals), both at the signed price (collateral / shares). An order whose amounts cannot be signed comes back
    "rejected" with the reason (`below_min_buy_notional`, `amount_rounds_to_zero`). This is the
    one path paper trading, the backtest and the simulated venue share."""
    a = marketable_amounts(side, dec(limit), dec(shares))
    if a.skip:
        return MarketableFill("rejected", unspent=dec(shares), reason=a.skip)
    amount = a.collateral if side == "BUY" else a.shares
    # the venue matches the signed order's own price (collateral / shares), which the amounts'
    # rounding moves a hair off the limit: a BUY's up by < 1e-4, a SELL's down by < 1e-4 / shares
    return fill_marketable(side, amount, a.price, levels, fee, order_type, shown_limit=dec(limit))
