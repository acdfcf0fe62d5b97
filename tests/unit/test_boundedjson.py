"""dms.boundedjson: hostile shapes are refused before `json.loads` recurses; ordinary JSON parses as usual."""

from __future__ import annotations

import json
import sys

import pytest

from dms.boundedjson import MAX_DEPTH, MAX_DIGITS, JSONRefused, loads

ORDINARY = [
    '{"image": "busybox", "resources": {"gpus": [{"vendor": "nvidia", "vram_mb": 24576}]}, "max_price": 1.5e3}',
    '"[[[[ brackets in a string {{{{"',
    '{"k\\"[": "\\\\", "n": -0.5, "t": true, "f": false, "z": null}',
    "[" * MAX_DEPTH + "]" * MAX_DEPTH,
    str(2**256 - 1),
    '{"digits in a string": "' + "9" * 10_000 + '"}',
]


@pytest.mark.parametrize("text", ORDINARY)
def test_ordinary_json_parses_as_json_does(text: str) -> None:
    assert loads(text) == json.loads(text)
    assert loads(text.encode()) == json.loads(text)


REFUSED = [
    ("[" * 100_000 + "]" * 100_000, "nested 100000 levels deep"),
    ('{"a":' * 1000 + "1" + "}" * 1000, "nested 1000 levels deep"),
    ("[" * (MAX_DEPTH + 1) + "]" * (MAX_DEPTH + 1), f"nested {MAX_DEPTH + 1} levels deep"),
    ("[" * 100_000, "nested 100000 levels deep"),  # unbalanced: still refused before parsing
    ('["unterminated ' + "[" * 100, "nested 101 levels deep"),  # a bad string cannot hide brackets
    ("[" + "1" * 5000 + "]", "a number of 5000 digits"),
    ("1" * (MAX_DIGITS + 1), f"a number of {MAX_DIGITS + 1} digits"),
    ("0." + "1" * 200, "a number of 200 digits"),
    ("[NaN]", "NaN is not a JSON number"),
    ("-Infinity", "-Infinity is not a JSON number"),
    ("1e999", "out of range"),
    ("]]][[[", "closing bracket without its opening one"),
    ('{"a": 1', "not valid JSON: line 1 column 8"),
    ("", "not valid JSON"),
]


@pytest.mark.parametrize(("text", "why"), REFUSED, ids=[w for _, w in REFUSED])
def test_hostile_shapes_are_refused_with_a_reason(text: str, why: str) -> None:
    with pytest.raises(JSONRefused, match=why):
        loads(text)


def test_refused_even_where_the_recursion_limit_is_raised() -> None:
    """What py_ecc does on import: the scan itself never recurses, so the limit does not matter."""
    old = sys.getrecursionlimit()
    sys.setrecursionlimit(100_000)
    try:
        with pytest.raises(JSONRefused, match="nested 200000 levels"):
            loads("[" * 200_000 + "]" * 200_000)
    finally:
        sys.setrecursionlimit(old)


def test_bytes_must_be_utf8_and_refusal_is_a_value_error() -> None:
    with pytest.raises(JSONRefused, match="not UTF-8"):
        loads(b'"\xff"')
    assert issubclass(JSONRefused, ValueError)


def test_limits_can_be_chosen_per_call() -> None:
    assert loads("[[1]]", max_depth=2) == [[1]]
    with pytest.raises(JSONRefused, match="nested 3 levels"):
        loads("[[[1]]]", max_depth=2)
    with pytest.raises(JSONRefused, match="a number of 4 digits"):
        loads("1234", max_digits=3)


def test_peer_messages_are_bounded() -> None:
    """Records and deployment-protocol lines come from peers: the same scan guards both."""
    from dms.jobs.protocol import ProtocolError, decode_to_provider, decode_to_requester
    from dms.network.records import RecordError, RejectReason, open_record

    deep = b"[" * 3000 + b"]" * 3000
    with pytest.raises(RecordError, match="nested 3000 levels") as rec:
        open_record(deep)
    assert rec.value.reason == RejectReason.MALFORMED
    for decode in (decode_to_provider, decode_to_requester):
        with pytest.raises(ProtocolError, match="nested 3000 levels"):
            decode(deep)
        with pytest.raises(ProtocolError, match="a number of 5000 digits"):
            decode(b'{"type": "cancel", "job_id": ' + b"1" * 5000 + b"}")


def test_the_daemon_keeps_the_recursion_limit_after_eth_account() -> None:
    """py_ecc raises the limit on import; `keep_recursion_limit` (called first thing by the daemon) undoes it."""
    import subprocess

    code = (
        "import sys\n"
        "from dms.payments.ethlib import keep_recursion_limit\n"
        "before = keep_recursion_limit()\n"
        "import eth_account\n"
        "print(before, sys.getrecursionlimit(), 'py_ecc' in sys.modules)\n"
    )
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, check=True, timeout=60)
    before, after, imported = out.stdout.split()
    assert (after, imported) == (before, "True") and int(before) < 10_000
