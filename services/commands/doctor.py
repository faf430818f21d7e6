"""`polyedge doctor [--json] [--fix-approvals]`: is this setup ready to trade real money? Checks
the settings, the key's address, the signature type and funder, the venue (reachable, geoblock,
clock skew), the API credentials, the pUSD balance, the approvals the exchange needs and an
exchange heartbeat, and prints a pass/fail table with the fix for each failure. Exit 0: ready (warnings allowed); 1: at
least one blocker; 2: the settings cannot even be read. `--fix-approvals` lists the approval
transactions the wallet needs, asks for confirmation, sends them (EOA wallets, on chain) and
checks again; it is never done automatically.

Every venue call goes through the one adapter, `services/execution/live.py`. The key is used to
derive the address and sign, and is never printed.
"""

from __future__ import annotations

import argparse
import json
import sys
import time
from collections.abc import Sequence
from dataclasses import asdict, dataclass
from typing import Any

from common.config import ConfigError, Settings, dotenv_path, load_settings, settings_source

MAX_CLOCK_SKEW_S = 3.0  # signed orders and L1 headers carry our clock; the venue checks theirs
GEOBLOCK_URL = "https://polymarket.com/api/geoblock"
# what a binary (not neg-risk) market like the BTC 5-minute ones needs from the funder wallet:
# pUSD allowance for the CTF Exchange V2 (BUY). Source: polymarket-client 0.14
# `_required_trading_approvals` (which also lists neg-risk, router and perps spenders this bot
# never uses) and PROTOCOLS.md section 4 for the addresses.
REQUIRED_ALLOWANCES = {"CTF Exchange V2": "0xE111180000d2663C0091e4f400237545B87B996B"}
OPTIONAL_ALLOWANCES = {"Neg-Risk Exchange V2": "0xe2222d279d744050d28e00520010520000310F59"}


@dataclass
class Check:
    """One line of the report. `status` is PASS, WARN or FAIL; a FAIL is a blocker."""

    name: str
    status: str
    detail: str
    fix: str = ""


def geoblock_url(settings: Settings) -> str:
    """polymarket.com's geoblock answer, or the simulated venue's own."""
    if settings.venue == "sim":
        return f"http://127.0.0.1:{settings.sim.port}/api/geoblock"
    return GEOBLOCK_URL


def switch_checks(settings: Settings) -> list[Check]:
    """The three switches that let real orders go (DRY_RUN=false, ENABLE_REAL_TRADING=true,
    PRIVATE_KEY set; services/execution/switches.py): the `switches` check, and the `key` check
    when no key is set (FAIL). With DRY_RUN=false and a switch missing, execution blocks every
    order, paper and real: nothing trades (`blocked_switches`)."""
    switches = (
        ("DRY_RUN", not settings.dry_run, "DRY_RUN=false"),
        ("ENABLE_REAL_TRADING", settings.enable_real_trading, "ENABLE_REAL_TRADING=true"),
    )
    off = [want for _, ok, want in switches if not ok]
    if not off:
        detail = "real orders enabled"
    elif settings.dry_run:
        detail = "paper trading: real orders blocked"
    else:  # DRY_RUN=false: execution does not paper trade either
        detail = "DRY_RUN=false without ENABLE_REAL_TRADING=true: every order blocked, paper too"
    out = [
        Check(
            "switches",
            "PASS" if not off else "WARN",
            detail,
            "" if not off else "set " + " and ".join(off) + " to trade real money",
        )
    ]
    if settings.private_key is None:
        out.append(
            Check("key", "FAIL", "PRIVATE_KEY is not set", "set PRIVATE_KEY (64 hex digits)")
        )
    return out


def blocked_switches(settings: Settings) -> str | None:
    """Why no order at all would go with these settings, or None: DRY_RUN=false turns paper
    trading off, and without ENABLE_REAL_TRADING=true and PRIVATE_KEY real trading stays off
    too, so execution blocks every order (`REAL_TRADING_BLOCKED_*`) and strategy halts the
    market (`real_trading_blocked`). Names the missing switches (the `switch_checks` that are
    not PASS), e.g. "DRY_RUN=false, but ENABLE_REAL_TRADING is not true and PRIVATE_KEY is not
    set: ..."."""
    if settings.dry_run:
        return None
    missing = []
    for check in switch_checks(settings):
        if check.status == "PASS":
            continue
        if check.name == "key":
            missing.append("PRIVATE_KEY is not set")
        else:
            missing.append("ENABLE_REAL_TRADING is not true")
    if not missing:
        return None
    return (
        f"DRY_RUN=false, but {' and '.join(missing)}: execution would block every order, paper "
        "and real, so nothing would trade (`polyedge doctor` checks the switches). Set DRY_RUN="
        "true to paper trade, or ENABLE_REAL_TRADING=true and PRIVATE_KEY to trade real money"
    )


def run_checks(settings: Settings, *, now: float | None = None) -> list[Check]:
    """Every check, in order; later ones are skipped (FAIL "not checked") when what they need
    failed."""
    from eth_account import Account

    from common.wallets import SIGNATURE_TYPES, wallet_type_of
    from services.execution.core import VenueError
    from services.execution.live import LiveVenue

    out: list[Check] = [Check("settings", "PASS", f"{settings_source(dotenv_path())} read")]
    out += switch_checks(settings)
    if settings.private_key is None:
        return out
    address = Account.from_key(settings.private_key.reveal()).address
    out.append(Check("key", "PASS", f"PRIVATE_KEY -> address {address}"))

    sig_type, funder = settings.signature_type, settings.funder or ""
    name = SIGNATURE_TYPES.get(sig_type, "?")
    wallet_ok = True
    if sig_type == 0:
        if funder and funder.lower() != address.lower():
            wallet_ok = False
            actual = wallet_type_of(address, funder)
            out.append(
                Check(
                    "wallet",
                    "FAIL",
                    f"SIGNATURE_TYPE=0 (EOA) but FUNDER {funder} is not the key's address",
                    f"set SIGNATURE_TYPE={actual} (FUNDER is this key's "
                    f"{SIGNATURE_TYPES[actual]} wallet)"
                    if actual
                    else "clear FUNDER, or set the SIGNATURE_TYPE of the wallet it is",
                )
            )
        else:
            out.append(Check("wallet", "PASS", f"SIGNATURE_TYPE=0 (EOA): funds at {address}"))
    elif not funder:
        wallet_ok = False
        out.append(
            Check(
                "wallet",
                "FAIL",
                f"missing FUNDER: SIGNATURE_TYPE={sig_type} ({name}) trades for a wallet",
                "set FUNDER to the Polymarket wallet that holds your pUSD (your profile's "
                "deposit address)",
            )
        )
    else:
        actual = wallet_type_of(address, funder)
        if actual == sig_type:
            out.append(
                Check("wallet", "PASS", f"SIGNATURE_TYPE={sig_type} ({name}), FUNDER {funder}")
            )
        elif actual is not None:
            wallet_ok = False
            out.append(
                Check(
                    "wallet",
                    "FAIL",
                    f"wrong signature type: FUNDER {funder} is this key's "
                    f"{SIGNATURE_TYPES[actual]} wallet, SIGNATURE_TYPE is {sig_type} ({name})",
                    f"set SIGNATURE_TYPE={actual}",
                )
            )
        elif sig_type == 3:  # a deposit wallet may be signed for by a session key
            out.append(
                Check(
                    "wallet",
                    "WARN",
                    f"FUNDER {funder} is not this key's own deposit wallet (a session key?)",
                    "if orders are refused as 'invalid signature', set FUNDER to the key's "
                    "deposit wallet",
                )
            )
        else:
            wallet_ok = False
            out.append(
                Check(
                    "wallet",
                    "FAIL",
                    f"FUNDER {funder} is not this key's {name} wallet",
                    "use the key that owns FUNDER, or the FUNDER this key owns",
                )
            )

    # winning tokens pay nothing until redeemed (PROTOCOLS.md section 7): EOAs on chain, the
    # other wallets gasless through the relayer, which needs a relayer API key
    if sig_type == 0:
        via = f"on chain through {settings.urls['POLYGON_RPC_URL']} (gas in POL)"
        out.append(Check("redemption", "PASS", f"winnings redeemed {via}"))
    elif settings.relayer_api_key is not None and settings.relayer_api_key_address:
        via = f"gasless through the relayer {settings.urls['RELAYER_URL']}"
        out.append(Check("redemption", "PASS", f"winnings redeemed {via}"))
    else:
        out.append(
            Check(
                "redemption",
                "WARN",
                f"no RELAYER_API_KEY / RELAYER_API_KEY_ADDRESS: a {name} wallet redeems through "
                "the relayer, so winnings stay 'awaiting redemption'",
                "create a relayer API key on polymarket.com and set RELAYER_API_KEY and "
                "RELAYER_API_KEY_ADDRESS (or redeem on polymarket.com)",
            )
        )

    host = settings.urls["CLOB_API_URL"]
    try:
        venue = LiveVenue(
            host,
            settings.private_key,
            log=lambda *a, **k: None,
            signature_type=sig_type if wallet_ok else 0,
            funder=funder if wallet_ok else "",
            rpc_url=settings.urls["POLYGON_RPC_URL"],  # the approvals are read on chain
        )
    except ValueError as e:
        out.append(Check("venue", "FAIL", str(e), "fix the wallet settings above"))
        return out
    reachable, detail = venue.probe()
    out.append(
        Check(
            "venue",
            "PASS" if reachable else "FAIL",
            f"{host}: {detail}",
            "" if reachable else "check CLOB_API_URL and the network (or start the venue)",
        )
    )
    if not reachable:
        return out
    gurl = geoblock_url(settings)
    try:
        geo = LiveVenue.geoblock(gurl, venue.timeout_s)
        blocked = bool(geo.get("blocked"))
        where = "/".join(str(geo.get(k)) for k in ("country", "region") if geo.get(k))
        out.append(
            Check(
                "geoblock",
                "FAIL" if blocked else "PASS",
                f"{'blocked' if blocked else 'not blocked'} ({where or 'no location given'})",
                "the venue refuses orders from this location" if blocked else "",
            )
        )
    except VenueError as e:
        out.append(Check("geoblock", "WARN", e.reason, "check that polymarket.com answers"))
    try:
        local = time.time() if now is None else now
        skew = local - venue.server_time()
        ok = abs(skew) <= MAX_CLOCK_SKEW_S
        out.append(
            Check(
                "clock",
                "PASS" if ok else "FAIL",
                f"local clock {skew:+.1f} s from the venue's /time",
                "" if ok else "synchronise the clock (chrony / systemd-timesyncd)",
            )
        )
    except VenueError as e:
        out.append(Check("clock", "FAIL", e.reason, "check CLOB_API_URL"))
    if not venue.start():
        out.append(
            Check(
                "api_credentials",
                "FAIL",
                f"cannot derive API credentials: {venue.start_error}",
                "check PRIVATE_KEY and that the venue accepts it",
            )
        )
        return out
    out.append(Check("api_credentials", "PASS", "derived (kept in memory only)"))
    try:
        balance, allowances = venue.collateral()
    except VenueError as e:
        out.append(Check("balance", "FAIL", e.reason, "check the venue"))
        return out
    who = venue.funder or address
    out.append(
        Check(
            "balance",
            "PASS" if balance > 0 else "FAIL",
            f"{balance:.2f} pUSD at {who}",
            "" if balance > 0 else f"empty balance: deposit pUSD to {who}",
        )
    )
    out.append(approvals_check(venue, allowances))
    try:
        venue.heartbeat_once()
        out.append(Check("heartbeat", "PASS", "an exchange heartbeat was accepted"))
    except VenueError as e:
        out.append(Check("heartbeat", "FAIL", e.reason, "check the API key and the venue"))
    venue.close()
    return out


FIX_HINT = (
    "`polyedge doctor --fix-approvals` (EOA: on chain; proxy, Safe, deposit wallet: "
    "through the relayer, needs RELAYER_API_KEY)"
)


def approvals_check(venue: Any, allowances: dict[str, int]) -> Check:
    """Every approval the funder wallet needs (`LiveVenue.required_approvals`: pUSD allowance
    to the CTF Exchange V2, CTF operator approvals for the exchange and the collateral adapter),
    read on chain through POLYGON_RPC_URL. Without an answer from the chain only the pUSD
    allowance can be told (from the CLOB's balance-allowance, `allowances`), and the CTF
    operators are a WARN, never a PASS."""
    from services.execution.core import VenueError

    try:
        state = venue.approval_state()
    except VenueError as e:
        missing = [n for n, a in REQUIRED_ALLOWANCES.items() if allowances.get(a.lower(), 0) <= 0]
        if missing:
            return Check(
                "approvals",
                "FAIL",
                f"missing approval: pUSD allowance for {', '.join(missing)}",
                FIX_HINT,
            )
        return Check(
            "approvals",
            "WARN",
            "pUSD allowance for " + ", ".join(REQUIRED_ALLOWANCES) + " is set; the CTF operator "
            f"approvals (selling, redemption) could not be read: {e.reason}",
            "set POLYGON_RPC_URL to a Polygon JSON-RPC endpoint",
        )
    missing = [a for a in state if not a.granted]
    if missing:
        return Check(
            "approvals",
            "FAIL",
            "missing approval: "
            + "; ".join(f"{a.name} ({a.spender_name} {a.spender})" for a in missing),
            FIX_HINT,
        )
    return Check(
        "approvals", "PASS", "; ".join(f"{a.name} ({a.spender_name})" for a in state) + " set"
    )


def fix_approvals(settings: Settings, ask: Any = input) -> int:
    """Send the approvals trading and redemption need, after the operator confirms; 0 when they
    were sent and confirmed."""
    from services.execution.core import VenueError
    from services.execution.live import LiveVenue

    if settings.private_key is None:
        print("polyedge doctor: PRIVATE_KEY is not set", file=sys.stderr)
        return 1
    venue = LiveVenue(
        settings.urls["CLOB_API_URL"],
        settings.private_key,
        log=lambda *a, **k: None,
        signature_type=settings.signature_type,
        funder=settings.funder or "",
        rpc_url=settings.urls["POLYGON_RPC_URL"],
        relayer_url=settings.urls["RELAYER_URL"],
        relayer_api_key=settings.relayer_api_key,
        relayer_api_key_address=settings.relayer_api_key_address or "",
    )
    plan = venue.approvals_to_send()  # only the missing ones, when the chain can tell
    if not plan:
        print("nothing to send: every approval is already set")
        return 0
    # EOAs send transactions (gas in POL); proxy, Safe and deposit wallets one gasless batch
    # through Polymarket's relayer (polymarket-client 0.14 `setup_trading_approvals`)
    relayed = settings.signature_type != 0
    via = settings.urls["RELAYER_URL" if relayed else "POLYGON_RPC_URL"]
    print(f"from {settings.funder or 'the key'} through {via}:")
    for name, _to, _ in plan:
        print(f"  - {name}")
    what = (
        f"these {len(plan)} approvals as one relayer transaction"
        if relayed
        else f"these {len(plan)} transactions"
    )
    if str(ask(f"send {what}? [y/N] ")).strip().lower() not in ("y", "yes"):
        print("nothing sent")
        return 1
    try:
        sent = venue.set_approvals()
    except VenueError as e:
        print(f"polyedge doctor: {e.reason}", file=sys.stderr)
        return 1
    deadline = time.monotonic() + 120
    for name, tx in sent:
        while (status := venue.redemption_status(tx)) == "pending" and time.monotonic() < deadline:
            time.sleep(1)
        print(f"  {name}: {tx} {status}")
        if status != "confirmed":
            return 1
    return 0


def render(checks: list[Check]) -> str:
    rows = [("check", "result", "detail", "fix")] + [
        (c.name, c.status, c.detail, c.fix) for c in checks
    ]
    widths = [max(len(r[i]) for r in rows) for i in range(3)]
    lines = []
    for r in rows:
        lines.append(
            "  ".join(r[i].ljust(widths[i]) for i in range(3)) + ("  " + r[3] if r[3] else "")
        )
    return "\n".join(lines)


def main(argv: Sequence[str] | None = None) -> int:
    parser = argparse.ArgumentParser(prog="polyedge doctor", description=__doc__)
    parser.add_argument("--json", action="store_true", help="one JSON document")
    parser.add_argument(
        "--fix-approvals",
        action="store_true",
        help="send the approvals the wallet lacks (asks for confirmation first)",
    )
    args = parser.parse_args(argv)
    try:
        settings = load_settings()
    except ConfigError as e:
        checks = [
            Check(
                "settings",
                "FAIL",
                f"{field}: {msg}",
                f"fix {field} in .env or the environment",
            )
            for field, msg in e.errors.items()
        ]
        code = 2
    else:
        if args.fix_approvals and fix_approvals(settings) != 0:
            return 1
        checks = run_checks(settings)
        code = 1 if any(c.status == "FAIL" for c in checks) else 0
    if args.json:
        doc: dict[str, Any] = {"ok": code == 0, "checks": [asdict(c) for c in checks]}
        sys.stdout.write(json.dumps(doc) + "\n")
    else:
        sys.stdout.write(render(checks) + "\n")
        sys.stdout.write("ready to trade\n" if code == 0 else "NOT ready: fix every FAIL above\n")
    return code


if __name__ == "__main__":
    raise SystemExit(main())
