"""Bad input to the observe API, against the real process tree on the simulated venue: missing
or wrong tokens, malformed JSON, wrong types, unknown fields, oversized bodies (with and without
Content-Length), bad query parameters, foreign origins and hosts, unauthenticated WebSockets, and
hypothesis-generated bodies. Every answer is a 4xx with a JSON error naming the problem, and
nothing changes: not the running config, not the config file, not the risk state."""

from __future__ import annotations

import json
from collections.abc import Iterator
from typing import Any

import httpx
import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st
from websockets.exceptions import ConnectionClosed
from websockets.sync.client import connect as ws_connect

from common.config import StrategyConfig
from tests.chaos.chaos_harness import API_TOKEN, Tree, running_tree
from tests.conftest import wait_for

pytestmark = pytest.mark.whole_system  # starts a supervisord tree (pyproject markers)

AUTH = {"Authorization": f"Bearer {API_TOKEN}"}
POSTS = ["/api/config", "/api/emergency-stop", "/api/emergency-stop/clear", "/api/force-exit"]
FIELDS = set(StrategyConfig.__struct_fields__)


@pytest.fixture(scope="module")
def tree() -> Iterator[Tree]:
    with running_tree({"stake_per_trade_usd": 3.0, "max_trades_per_day": 0}, window_s=60) as t:
        # the API's config view is strategy's once strategy has been heard (it republishes it),
        # and its history once observe's recorder has written strategy's startup snapshot (a
        # moment later, from its own thread): a state taken between the two is not a baseline
        def ready() -> bool:
            doc = t.get("/api/config").json()
            return doc.get("source", "").startswith("strategy") and bool(doc.get("history"))

        wait_for(ready, 20, what="observe to hear and record strategy's config")
        yield t


def state(tree: Tree) -> dict[str, Any]:
    """Everything a bad request must leave alone. Not observe's `source` of its config view:
    it names the last message observe took the config from (strategy's periodic snapshot or a
    control reply) and changes with no change to the system."""
    cfg = tree.get("/api/config").json()
    cfg.pop("source", None)
    persisted = tree.strategy_state()
    return {
        "config": cfg,
        "file": (tree.root / "strategy.json").read_bytes(),
        "emergency_stop": persisted.get("emergency_stop"),
        "config_version": persisted.get("config_version"),
        "position": persisted.get("position"),
    }


@pytest.fixture
def unchanged(tree: Tree) -> Iterator[None]:
    before = state(tree)
    assert before["config"]["version"] >= 1
    yield
    after = state(tree)
    changed = {k: (before[k], after[k]) for k in before if before[k] != after[k]}
    if "config" in changed:
        changed["config"] = {
            k: (before["config"].get(k), after["config"].get(k))
            for k in set(before["config"]) | set(after["config"])
            if before["config"].get(k) != after["config"].get(k)
        }
    assert not changed, f"a refused request changed the system: {changed}"


def post_raw(
    tree: Tree, path: str, content: bytes, headers: dict[str, str] | None = None
) -> httpx.Response:
    h = {"Content-Type": "application/json", **AUTH, **(headers or {})}
    return httpx.post(tree.api + path, content=content, headers=h, timeout=10)


def assert_error(r: httpx.Response, status: int | tuple[int, ...], *words: str) -> dict[str, Any]:
    statuses = (status,) if isinstance(status, int) else status
    assert r.status_code in statuses, (r.status_code, r.text[:300])
    doc = r.json()
    assert isinstance(doc, dict) and isinstance(doc.get("error"), str) and doc["error"], doc
    text = json.dumps(doc).lower()
    for w in words:
        assert w.lower() in text, f"{w!r} not named in {doc}"
    return doc


# --- authentication ---------------------------------------------------------------------------------
BAD_AUTH = {
    "none": {},
    "wrong": {"Authorization": "Bearer wrong-token"},
    "prefix": {"Authorization": f"Bearer {API_TOKEN[:-1]}"},
    "suffix": {"Authorization": f"Bearer {API_TOKEN}x"},
    "basic": {"Authorization": f"Basic {API_TOKEN}"},
    "no_scheme": {"Authorization": API_TOKEN},
    "bare_bearer": {"Authorization": "Bearer"},
    "latin1": {"Authorization": b"Bearer \xe9\xe9\xe9"},  # type: ignore[dict-item]
    "query": {},  # the token in the query string does not count for HTTP
}


@pytest.mark.parametrize("path", POSTS)
@pytest.mark.parametrize("case", sorted(BAD_AUTH))
def test_post_without_the_right_token_is_refused(
    tree: Tree, unchanged: None, path: str, case: str
) -> None:
    # bodies that WOULD change something if the request got through
    body = {"/api/config": {"stake_per_trade_usd": 9.0}, "/api/emergency-stop": {"reason": "x"}}
    url = tree.api + path + (f"?token={API_TOKEN}" if case == "query" else "")
    r = httpx.post(url, json=body.get(path), headers=BAD_AUTH[case], timeout=10)
    assert_error(r, 401, "token")
    assert r.headers.get("www-authenticate", "").lower().startswith("bearer")


@pytest.mark.parametrize("token", [None, "wrong-token"])
def test_live_websocket_without_the_right_token_is_closed(tree: Tree, token: str | None) -> None:
    url = tree.api.replace("http", "ws", 1) + "/ws/live" + (f"?token={token}" if token else "")
    with ws_connect(url, open_timeout=5) as ws:
        with pytest.raises(ConnectionClosed) as closed:
            ws.recv(timeout=5)
    assert closed.value.rcvd is not None and closed.value.rcvd.code == 4401


def test_live_websocket_with_the_token_gets_state(tree: Tree) -> None:
    url = tree.api.replace("http", "ws", 1) + f"/ws/live?token={API_TOKEN}"
    with ws_connect(url, open_timeout=5) as ws:
        doc = json.loads(ws.recv(timeout=10))
    assert isinstance(doc, dict) and doc  # the control case: the refusals above are about auth


# --- malformed and wrong bodies ---------------------------------------------------------------------
BAD_CONFIG_BODIES: dict[str, tuple[bytes, int, tuple[str, ...]]] = {
    "truncated": (b'{"stake_per_trade_usd": 5', 400, ("json",)),
    "not_json": (b"stake=5", 400, ("json",)),
    "binary": (b"\xff\xfe\x00\x01", 400, ("json",)),
    "trailing_garbage": (b'{"stake_per_trade_usd": 5} x', 400, ("json",)),
    "nan_literal": (b'{"stake_per_trade_usd": NaN}', 400, ("json",)),
    # named in JSON's terms, never Python's ("got NoneType", BREAKER2 finding 10)
    "array": (b"[1, 2]", 422, ("object", "got an array")),
    "string": (b'"stake"', 422, ("object", "got a string")),
    "null": (b"null", 422, ("object", "got null")),
    "empty": (b"", 422, ("an empty body", "expected a JSON object like")),
    "string_for_number": (b'{"stake_per_trade_usd": "5"}', 422, ("stake_per_trade_usd",)),
    "bool_for_number": (b'{"max_trades_per_day": true}', 422, ("max_trades_per_day",)),
    "float_for_int": (b'{"max_trades_per_day": 1.5}', 422, ("max_trades_per_day",)),
    "negative": (b'{"stake_per_trade_usd": -1}', 422, ("stake_per_trade_usd",)),
    "infinite": (b'{"stake_per_trade_usd": 1e999}', 400, ("out of range",)),
    "out_of_range_pct": (b'{"min_edge_pct": 1.5}', 422, ("min_edge_pct",)),
    "bad_enum": (b'{"order_type": "GTC"}', 422, ("order_type",)),
    "unknown_field": (b'{"stake_per_trade_usd": 5, "leverage": 100}', 422, ("leverage",)),
    "nested": (b'{"stake_per_trade_usd": {"$gt": 0}}', 422, ("stake_per_trade_usd",)),
    # JSON parsers keep the last of two equal keys silently; which did the operator mean?
    "duplicate_key": (
        b'{"stake_per_trade_usd": 5, "stake_per_trade_usd": 6}',
        400,
        ("'stake_per_trade_usd' twice", "nothing was applied"),
    ),
    "duplicate_key_in_a_market": (
        b'{"markets": [{"asset": "btc", "window": "5m", "enabled": true, "enabled": false}]}',
        400,
        ("'enabled' twice",),
    ),
    "every_bad_field_named": (
        b'{"stake_per_trade_usd": -1, "max_trades_per_day": 1.5, "order_type": "GTC", "bogus": 1}',
        422,
        ("stake_per_trade_usd", "max_trades_per_day", "order_type", "bogus"),
    ),
}


@pytest.mark.parametrize("case", sorted(BAD_CONFIG_BODIES))
def test_bad_config_body_is_refused_and_nothing_applied(
    tree: Tree, unchanged: None, case: str
) -> None:
    body, status, words = BAD_CONFIG_BODIES[case]
    doc = assert_error(post_raw(tree, "/api/config", body), status, *words)
    assert not any(t in json.dumps(doc) for t in ("NoneType", "got list", "got str")), doc
    if doc.get("field_errors") and case == "every_bad_field_named":
        assert {"stake_per_trade_usd", "max_trades_per_day", "order_type", "bogus"} <= set(
            doc["field_errors"]
        )


@pytest.mark.parametrize("path", ["/api/emergency-stop", "/api/force-exit"])
@pytest.mark.parametrize(
    ("body", "words"),
    [
        (b'{"reason": 5}', ("reason",)),
        (b'["stop"]', ("reason",)),
        (b'{"reason": "x"', ("json",)),
        (b"\x00\x01", ("json",)),
        (b'{"reason": "a", "reason": "b"}', ("'reason' twice",)),
        # BREAKER3 finding 9: a 60 KB reason was accepted into the risk state and the logs
        (json.dumps({"reason": "x" * 60_000}).encode(), ("'reason'", "60000", "at most 500")),
        (json.dumps({"reason": "é" * 501}).encode(), ("'reason'", "501", "at most 500")),
    ],
    ids=["number_reason", "array", "truncated", "binary", "duplicate_key", "60kb", "501"],
)
def test_bad_control_body_is_refused(
    tree: Tree, unchanged: None, path: str, body: bytes, words: tuple[str, ...]
) -> None:
    assert_error(post_raw(tree, path, body), 400, *words)


@pytest.mark.parametrize("path", POSTS[1:])
def test_a_null_control_body_is_refused_not_every_market(
    tree: Tree, unchanged: None, path: str
) -> None:
    """BREAKER2 finding 10: the body `null` acted on every market (read as no body) while `[]`
    was refused; it is not an object, so it is refused like `[]`, naming it, nothing sent. An
    empty body still means every market (the control below)."""
    assert_error(post_raw(tree, path, b"null"), 400, "JSON object", "got null", "nothing was sent")
    assert_error(post_raw(tree, path, b"[]"), 400, "JSON object", "got an array")


def test_a_reason_at_the_limit_is_accepted_and_kept(tree: Tree) -> None:
    """The control for the long-reason refusals above: 500 characters are taken."""
    reason = "é" * 499 + "!"
    try:
        r = post_raw(tree, "/api/emergency-stop", json.dumps({"reason": reason}).encode())
        assert r.status_code == 200 and r.json()["risk"]["emergency_stop"] is True, r.text
    finally:
        r = post_raw(tree, "/api/emergency-stop/clear", b"")
        assert r.status_code == 200 and r.json()["risk"]["emergency_stop"] is False, r.text


def test_an_empty_control_body_still_means_every_market(tree: Tree) -> None:
    """The control for the test above: no body at all is every market (README)."""
    try:
        r = post_raw(tree, "/api/emergency-stop", b"")
        assert r.status_code == 200 and r.json()["risk"]["emergency_stop"] is True, r.text
    finally:
        r = post_raw(tree, "/api/emergency-stop/clear", b"")
        assert r.status_code == 200 and r.json()["risk"]["emergency_stop"] is False, r.text


@pytest.mark.parametrize("path", POSTS)
def test_oversized_body_is_refused(tree: Tree, unchanged: None, path: str) -> None:
    big = json.dumps({"reason": "x" * 200_000, "stake_per_trade_usd": 9.0}).encode()
    assert_error(post_raw(tree, path, big), 413, "larger than")


def test_oversized_chunked_body_without_length_is_refused(tree: Tree, unchanged: None) -> None:
    def chunks() -> Iterator[bytes]:
        yield b'{"stake_per_trade_usd": 9.0, "pad": "'
        for _ in range(100):
            yield b"x" * 4096
        yield b'"}'

    r = httpx.post(
        tree.api + "/api/config",
        content=chunks(),
        headers={"Content-Type": "application/json", **AUTH},
        timeout=10,
    )
    assert "content-length" not in {k.lower() for k in r.request.headers}
    assert_error(r, 413, "larger than")


# --- queries, methods, hosts, origins ---------------------------------------------------------------
@pytest.mark.parametrize(
    ("query", "word"),
    [
        ("limit=abc", "limit"),
        ("limit=0", "limit"),
        ("limit=100000", "limit"),
        ("offset=-1", "offset"),
        ("since_ns=yesterday", "since_ns"),
        ("dry_run=maybe", "dry_run"),
        ("bogus=1", "bogus"),
        ("limit=1&limit=x&drop_table=1", "drop_table"),
    ],
)
def test_bad_trades_query_is_refused(tree: Tree, query: str, word: str) -> None:
    assert_error(tree.get("/api/trades?" + query), 400, word)


def test_wrong_method_is_refused(tree: Tree, unchanged: None) -> None:
    for method, path in [
        ("GET", "/api/emergency-stop"),
        ("PUT", "/api/config"),
        ("DELETE", "/api/config"),
    ]:
        r = httpx.request(method, tree.api + path, headers=AUTH, timeout=5)
        assert r.status_code == 405, (method, path, r.status_code)


def test_foreign_origin_post_is_refused_even_with_the_token(tree: Tree, unchanged: None) -> None:
    r = httpx.post(
        tree.api + "/api/emergency-stop",
        json={"reason": "csrf"},
        headers={**AUTH, "Origin": "http://evil.example"},
        timeout=5,
    )
    assert_error(r, 403, "evil.example")


def test_foreign_host_header_is_refused(tree: Tree) -> None:
    r = httpx.get(tree.api + "/api/status", headers={"Host": "evil.example"}, timeout=5)
    assert r.status_code == 400, r.status_code


# --- fuzzing: hypothesis-generated bodies, always refused with a 4xx JSON error ----------------------
json_values = st.recursive(
    st.none() | st.booleans() | st.integers() | st.floats(allow_nan=False) | st.text(max_size=20),
    lambda c: st.lists(c, max_size=3) | st.dictionaries(st.text(max_size=8), c, max_size=3),
    max_leaves=8,
)
unknown_keys = st.text(min_size=1, max_size=20).filter(lambda k: k not in FIELDS)
invalid_docs = st.builds(
    lambda bad, known: {**known, **bad},
    st.dictionaries(unknown_keys, json_values, min_size=1, max_size=3),
    st.dictionaries(st.sampled_from(sorted(FIELDS)), json_values, max_size=4),
)
bodies = st.one_of(
    invalid_docs.map(lambda d: json.dumps(d).encode()),
    st.binary(max_size=300).filter(lambda b: b.strip() != b"{}"),
    json_values.filter(lambda v: not isinstance(v, dict)).map(lambda v: json.dumps(v).encode()),
)


@settings(
    max_examples=60,
    deadline=None,
    derandomize=True,
    suppress_health_check=[HealthCheck.function_scoped_fixture, HealthCheck.too_slow],
)
@given(body=bodies)
def test_fuzzed_config_bodies_are_refused(tree: Tree, unchanged: None, body: bytes) -> None:
    r = post_raw(tree, "/api/config", body)
    assert r.status_code in (400, 413, 422), (r.status_code, body[:200], r.text[:300])
    doc = r.json()
    assert isinstance(doc.get("error"), str) and doc["error"]
    assert tree.get("/api/config").json()["version"] == state(tree)["config"]["version"]
