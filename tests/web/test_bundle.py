"""The dashboard's bundle without a browser: what the wheel carries, the page's headers, the escrow call."""

from __future__ import annotations

import json
import re
from pathlib import Path

import aiohttp
from eth_utils.crypto import keccak

from dms.api.dashboard import VENDORED, WEB_DIR, missing_files
from dms.app import Daemon


def test_the_vendored_libraries_are_built_and_reported_when_missing(tmp_path: Path) -> None:
    assert missing_files() == [], "run maint-scripts/build-web.sh"
    assert missing_files(tmp_path) == list(VENDORED)
    # The one bare import of the vendored modules was made relative: the page needs no import map.
    assert 'from"preact"' not in (WEB_DIR / "vendor" / "hooks.module.js").read_text()


def test_the_deposit_call_matches_the_escrow_abi() -> None:
    abi = json.loads((WEB_DIR.parent / "payments" / "escrow.json").read_text())["abi"]
    deposit = next(f for f in abi if f.get("type") == "function" and f["name"] == "deposit")
    signature = f"deposit({','.join(i['type'] for i in deposit['inputs'])})"
    match = re.search(r"DEPOSIT_SELECTOR = '(0x[0-9a-f]{8})'", (WEB_DIR / "wallet.js").read_text())
    assert match is not None
    assert match.group(1) == "0x" + keccak(text=signature)[:4].hex()


async def test_the_page_is_served_with_a_strict_policy(daemon: Daemon) -> None:
    async with aiohttp.ClientSession(base_url=daemon.url) as http:
        async with http.get("/") as r:
            assert r.status == 200
            page = await r.text()
            csp = r.headers["Content-Security-Policy"]
        assert "script-src 'self'" in csp and "frame-ancestors 'none'" in csp
        assert "http" not in page.replace("http-equiv", "")  # nothing from another host
        for src in re.findall(r'(?:src|href)="([^"]+)"', page):
            async with http.get(src) as r:
                assert r.status == 200, src
        async with http.get("/web/vendor/uPlot.esm.js") as r:
            assert r.status == 200 and "javascript" in r.content_type
        async with http.get("/web/../config.py") as r:
            assert r.status in (403, 404)
