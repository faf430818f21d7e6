"""The non-public pieces of py-clob-client-v2 the live adapter relies on. If an upgrade moves one,
this fails with a message saying what broke, before a live session finds out.

- `ClobClient._resolve_transactions_hashes(response)`: called by `post_order` on every answer; the
  adapter overrides it to skip the SDK's wait (up to 30 s) for settlement hashes after a match.
- `http_helpers.helpers._http_client`: the module-level httpx client every request goes through;
  the adapter replaces it to bound how long a venue answer may take.
"""

from __future__ import annotations

import inspect
from importlib.metadata import version

import httpx
from py_clob_client_v2 import ClobClient
from py_clob_client_v2.http_helpers import helpers as clob_http

from services.execution.live import _Client


def test_exec_sdk_version_is_the_pinned_one() -> None:
    v = tuple(int(x) for x in version("py_clob_client_v2").split(".")[:3])
    assert (1, 2, 1) <= v < (1, 3), f"py-clob-client-v2 {v}: re-check the hooks below, then re-pin"


def test_exec_sdk_post_order_still_resolves_hashes_through_the_overridden_hook() -> None:
    assert hasattr(ClobClient, "_resolve_transactions_hashes"), (
        "py-clob-client-v2 renamed ClobClient._resolve_transactions_hashes: the adapter's override "
        "no longer skips the after-post settlement wait (services/execution/live.py _Client)"
    )
    src = inspect.getsource(ClobClient.post_order)
    assert "self._resolve_transactions_hashes(" in src, (
        "ClobClient.post_order no longer calls _resolve_transactions_hashes: check whether it now "
        "waits for settlement some other way"
    )
    sig = inspect.signature(ClobClient._resolve_transactions_hashes)
    assert list(sig.parameters) == ["self", "response"]
    assert _Client._resolve_transactions_hashes(object.__new__(_Client), {"a": 1}) == {"a": 1}


def test_exec_sdk_requests_go_through_the_module_http_client() -> None:
    assert isinstance(getattr(clob_http, "_http_client", None), httpx.Client), (
        "py-clob-client-v2 moved its module-level httpx client: the adapter's timeout is not applied"
    )
    assert "_http_client.request(" in inspect.getsource(clob_http), (
        "py-clob-client-v2 requests no longer use helpers._http_client"
    )
