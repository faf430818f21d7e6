"""`polyedge doctor` as the operator runs it (the real command in a subprocess) against the
simulated venue: a correct setup passes, each seeded misconfiguration is named with its fix, and
the exit status says whether anything blocks. The key never appears in the output."""

from __future__ import annotations

import json
import os
import subprocess
import sys
from collections.abc import Iterator

import pytest
from eth_account import Account

from tests.conftest import REPO, free_port, short_tmpdir
from tests.execution.test_exec_live import Sim


@pytest.fixture(scope="module")
def sim() -> Iterator[Sim]:
    s = Sim(short_tmpdir(), free_port())
    yield s
    s.stop()


def doctor(env: dict[str, str], *args: str, stdin: str = "") -> tuple[int, dict, str]:
    root = short_tmpdir()
    full = {
        k: v for k, v in os.environ.items() if not k.startswith(("POLYEDGE_", "SIM_", "PRIVATE"))
    }
    full.update(
        {
            "PYTHONPATH": str(REPO),
            "POLYEDGE_DATA_DIR": str(root / "data"),
            "LOG_DIR": str(root / "logs"),
            **env,
        }
    )
    p = subprocess.run(
        [sys.executable, "-m", "services.commands.cli", "doctor", *(args or ("--json",))],
        cwd=root,
        env=full,
        capture_output=True,
        text=True,
        timeout=60,
        input=stdin,
    )
    doc = json.loads(p.stdout) if p.stdout.strip().startswith("{") else {}
    return p.returncode, doc, p.stdout + p.stderr


def by_name(doc: dict) -> dict[str, dict]:
    return {c["name"]: c for c in doc["checks"]}


def live_env(sim: Sim, key: str, **kw: str) -> dict[str, str]:
    return {
        "POLYEDGE_VENUE": "sim",
        "SIM_PORT": str(sim.port),
        "PRIVATE_KEY": key,
        "DRY_RUN": "false",
        "ENABLE_REAL_TRADING": "true",
        **kw,
    }


def test_doctor_passes_a_correct_setup(sim: Sim) -> None:
    key = Account.create().key.hex()
    code, doc, text = doctor(live_env(sim, key))
    checks = by_name(doc)
    assert code == 0 and doc["ok"], text
    for name in (
        "key",
        "wallet",
        "venue",
        "clock",
        "api_credentials",
        "balance",
        "approvals",
        "heartbeat",
        "geoblock",
    ):
        assert checks[name]["status"] == "PASS", checks[name]
    assert Account.from_key(key).address in checks["key"]["detail"]
    assert key.removeprefix("0x") not in text


def test_doctor_names_an_unreachable_venue(sim: Sim) -> None:
    key = Account.create().key.hex()
    code, doc, text = doctor(live_env(sim, key, CLOB_API_URL=f"http://127.0.0.1:{free_port()}"))
    venue = by_name(doc)["venue"]
    assert code == 1 and venue["status"] == "FAIL" and "CLOB_API_URL" in venue["fix"]
    assert key.removeprefix("0x") not in text


def test_doctor_without_a_key_is_a_blocker(sim: Sim) -> None:
    code, doc, _ = doctor({"POLYEDGE_VENUE": "sim", "SIM_PORT": str(sim.port)})
    checks = by_name(doc)
    assert code == 1 and checks["key"]["status"] == "FAIL"
    assert checks["switches"]["status"] == "WARN"


def test_doctor_bad_settings_exit_2() -> None:
    code, doc, _ = doctor({"DRY_RUN": "maybe"})
    assert code == 2 and by_name(doc)["settings"]["status"] == "FAIL"
    assert "DRY_RUN" in by_name(doc)["settings"]["detail"]


def test_doctor_names_missing_approval_empty_balance_and_skewed_clock(sim: Sim) -> None:
    key = Account.create().key.hex()
    address = Account.from_key(key).address
    env = live_env(sim, key)
    sim.fault(name="revoke_approval", address=address)
    sim.fault(name="set_balance", address=address, usd=0)
    sim.fault(name="clock_skew", seconds=30)
    try:
        code, doc, text = doctor(env)
    finally:
        sim.fault(name="clock_skew", seconds=0)
    checks = by_name(doc)
    assert code == 1 and not doc["ok"]
    assert checks["approvals"]["status"] == "FAIL"
    assert "missing approval" in checks["approvals"]["detail"]
    assert "CTF Exchange V2" in checks["approvals"]["detail"]
    assert checks["balance"]["status"] == "FAIL" and "empty balance" in checks["balance"]["fix"]
    assert checks["clock"]["status"] == "FAIL" and "synchronise" in checks["clock"]["fix"]
    assert checks["geoblock"]["status"] == "PASS"
    sim.fault(name="geoblock")
    try:
        code, doc, _ = doctor(env)
    finally:
        sim.fault(name="geoblock", on=False)
    assert code == 1 and by_name(doc)["geoblock"]["status"] == "FAIL"


def test_doctor_names_wallet_misconfigurations(sim: Sim) -> None:
    from common.wallets import deposit_wallets, proxy_wallet, safe_wallet

    acct = Account.create()
    key, address = acct.key.hex(), acct.address
    # a correct deposit-wallet setup passes
    code, doc, text = doctor(
        live_env(sim, key, SIGNATURE_TYPE="3", FUNDER=deposit_wallets(address)[0])
    )
    assert code == 0, text
    assert by_name(doc)["wallet"]["status"] == "PASS"
    # without a relayer API key the wallet cannot redeem: said, not a blocker
    red = by_name(doc)["redemption"]
    assert red["status"] == "WARN" and "RELAYER_API_KEY" in red["fix"]
    # missing funder: the settings themselves are refused, naming it
    code, doc, _ = doctor(live_env(sim, key, SIGNATURE_TYPE="1"))
    assert code == 2 and "FUNDER" in by_name(doc)["settings"]["detail"]
    # wrong signature type: FUNDER is this key's Safe, SIGNATURE_TYPE says proxy
    code, doc, _ = doctor(live_env(sim, key, SIGNATURE_TYPE="1", FUNDER=safe_wallet(address)))
    wallet = by_name(doc)["wallet"]
    assert code == 1 and wallet["status"] == "FAIL" and "wrong signature type" in wallet["detail"]
    assert wallet["fix"] == "set SIGNATURE_TYPE=2"
    # somebody else's proxy
    other = Account.create().address
    code, doc, _ = doctor(live_env(sim, key, SIGNATURE_TYPE="1", FUNDER=proxy_wallet(other)))
    assert code == 1 and "not this key's" in by_name(doc)["wallet"]["detail"]
    # a FUNDER with SIGNATURE_TYPE=0 that is not the key's address: refused at load
    code, doc, _ = doctor(live_env(sim, key, FUNDER=proxy_wallet(address)))
    assert code == 2 and "FUNDER" in by_name(doc)["settings"]["detail"]


def test_doctor_fix_approvals_asks_then_sends_them(sim: Sim) -> None:
    key = Account.create().key.hex()
    address = Account.from_key(key).address
    env = live_env(sim, key)
    sim.fault(name="revoke_approval", address=address)
    code, doc, _ = doctor(env)
    assert code == 1 and by_name(doc)["approvals"]["status"] == "FAIL"
    # refused at the prompt: nothing sent
    code, _, text = doctor(env, "--fix-approvals", stdin="n\n")
    assert code == 1 and "nothing sent" in text and "pUSD allowance" in text
    acct = sim.state()["accounts"][address.lower()]
    assert acct["approvals"]["pusd_ctf_exchange"] is False
    # confirmed: sent on chain (the simulated venue's JSON-RPC), then every check passes
    code, _, text = doctor(env, "--fix-approvals", stdin="y\n")
    assert code == 0, text
    assert text.count(" confirmed") == 3 and "ready to trade" in text
    approvals = sim.state()["accounts"][address.lower()]["approvals"]
    assert approvals["pusd_ctf_exchange"] is True
    assert "0xe111180000d2663c0091e4f400237545b87b996b" in approvals["ctf_operators"]
    assert key.removeprefix("0x") not in text


def test_doctor_fix_approvals_of_a_deposit_wallet_go_through_the_relayer(sim: Sim) -> None:
    """Type 3: the approvals are one gasless relayer transaction (polymarket-client 0.14
    `setup_trading_approvals`), signed by the key for its deposit wallet and verified by the
    simulated relayer; afterwards every check passes."""
    from common.wallets import deposit_wallets

    key = Account.create().key.hex()
    address = Account.from_key(key).address
    funder = deposit_wallets(address)[0]
    env = live_env(
        sim,
        key,
        SIGNATURE_TYPE="3",
        FUNDER=funder,
        RELAYER_API_KEY="sim-relayer-key",
        RELAYER_API_KEY_ADDRESS=address,
    )
    sim.fault(name="revoke_approval", address=funder)
    code, doc, _ = doctor(env)
    assert code == 1 and by_name(doc)["approvals"]["status"] == "FAIL"
    assert by_name(doc)["redemption"]["status"] == "PASS"
    code, _, text = doctor(env, "--fix-approvals", stdin="y\n")
    assert code == 0, text
    assert "as one relayer transaction" in text and "/relayer" in text
    assert text.count(" confirmed") == 3 and "ready to trade" in text
    st = sim.state()
    assert st["accounts"][funder.lower()]["approvals"]["pusd_ctf_exchange"] is True
    (tx,) = [x for x in st["relayer_transactions"] if x["wallet"].lower() == funder.lower()]
    assert tx["state"] == "STATE_CONFIRMED" and tx["type"] == "WALLET"
    assert key.removeprefix("0x") not in text and "sim-relayer-key" not in text


def test_doctor_checks_every_approval_and_fixes_only_the_missing_one(sim: Sim) -> None:
    """The CTF operator approval for the exchange (selling) is missing, the pUSD allowance and
    the adapter's operator approval are set: doctor FAILs naming that spender (read on chain
    through the simulated venue's JSON-RPC, eth_call isApprovedForAll), and --fix-approvals
    proposes and sends that one approval alone (it used to pass and propose all three)."""
    exchange = "0xE111180000d2663C0091e4f400237545B87B996B"
    adapter = "0xAdA100Db00Ca00073811820692005400218FcE1f"
    key = Account.create().key.hex()
    address = Account.from_key(key).address
    env = live_env(sim, key)
    sim.fault(name="revoke_approval", address=address, operator=exchange)
    acct = sim.state()["accounts"][address.lower()]["approvals"]
    assert acct["pusd_ctf_exchange"] is True and acct["ctf_operators"] == [adapter.lower()]
    code, doc, text = doctor(env)
    ap = by_name(doc)["approvals"]
    assert code == 1 and ap["status"] == "FAIL", text
    assert "CTF operator (sell)" in ap["detail"] and exchange in ap["detail"], ap
    assert "pUSD" not in ap["detail"] and "redeem" not in ap["detail"], ap
    code, _, text = doctor(env, "--fix-approvals", stdin="y\n")
    assert code == 0, text
    assert "these 1 transactions" in text and text.count(" confirmed") == 1, text
    # the listing names the spender, not only the contract
    assert f"CTF setApprovalForAll CTF Exchange V2 {exchange}" in text, text
    ops = sim.state()["accounts"][address.lower()]["approvals"]["ctf_operators"]
    assert set(ops) == {exchange.lower(), adapter.lower()}
    # all set: doctor passes naming all three, and there is nothing to send
    code, doc, text = doctor(env)
    ap = by_name(doc)["approvals"]
    assert ap["status"] == "PASS" and "CTF operator (redeem)" in ap["detail"], ap
    code, _, text = doctor(env, "--fix-approvals", stdin="")
    assert code == 0 and "nothing to send" in text, text
