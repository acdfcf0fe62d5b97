"""The boundary's pure rules (dms.origins), without a daemon."""

from __future__ import annotations

import pytest

from dms.origins import BadOrigin, Boundary, bearer, canonical_origin, changes_state, is_loopback, parse_origin


def test_origins_compare_as_scheme_host_and_port() -> None:
    assert parse_origin("http://LocalHost:9991") == ("http", "localhost", 9991)
    assert parse_origin("https://example.org") == ("https", "example.org", 443)
    assert parse_origin("http://[::1]:9999") == ("http", "::1", 9999)
    assert canonical_origin("HTTP://localhost:80/") == "http://localhost"
    assert canonical_origin("http://[::1]:9999") == "http://[::1]:9999"
    for bad in ("null", "localhost:9991", "ftp://x", "http://x/path", "http://u@x", "http://x:99999", ""):
        with pytest.raises(BadOrigin):
            parse_origin(bad)


def test_own_names_and_origins() -> None:
    b = Boundary.from_settings("127.0.0.1", ["dms.lan"], ["http://localhost:9991"], None)
    assert all(b.host_ok(h) for h in ("127.0.0.1:9999", "localhost", "LOCALHOST.:1", "dms.lan:9999", "[::1]:9999"))
    assert not any(b.host_ok(h) for h in (None, "", "evil.example", "10.0.0.1:9999", "dms.lan.evil:9999", "a b"))
    assert b.origin_kind("http://127.0.0.1:9999", 9999) == "own"
    assert b.origin_kind("http://localhost:9999", 9999) == "own"
    assert b.origin_kind("http://localhost:9991", 9999) == "allowed"
    for foreign in ("http://127.0.0.1:9998", "https://127.0.0.1:9999", "http://evil.example:9999", "null", "x"):
        assert b.origin_kind(foreign, 9999) == "foreign", foreign
    anywhere = Boundary.from_settings("0.0.0.0", [], [], "t" * 16)
    assert anywhere.host_ok("192.168.1.5:9999") and not anywhere.host_ok("evil.example:9999")
    lan = Boundary.from_settings("10.1.1.1", [], [], "t" * 16)
    assert lan.host_ok("10.1.1.1:9999") and not lan.host_ok("10.1.1.2:9999") and not lan.host_ok("127.0.0.1")


def test_methods_tokens_and_loopback() -> None:
    assert not changes_state("GET", None) and not changes_state("head", None) and not changes_state("OPTIONS", "")
    assert changes_state("POST", None) and changes_state("DELETE", None) and changes_state("PATCH", None)
    assert changes_state("GET", "WebSocket")
    assert bearer("Bearer abc") == "abc" and bearer("bearer  abc ") == "abc"
    assert bearer("Basic abc") is None and bearer(None) is None and bearer("Bearer") is None
    b = Boundary.from_settings("127.0.0.1", [], [], "right-token-right-token")
    assert b.token_ok("right-token-right-token") and not b.token_ok("wrong") and not b.token_ok(None)
    assert Boundary.from_settings("127.0.0.1", [], [], None).token_ok(None)
    assert is_loopback("127.0.0.2") and is_loopback("::1") and is_loopback("localhost")
    assert not is_loopback("0.0.0.0") and not is_loopback("::") and not is_loopback("10.0.0.1")
