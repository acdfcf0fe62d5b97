"""Small HTTP probes for the demo, in the standard library only (a call costs ~30 ms; web3 or dms would cost seconds).

  python maint-scripts/probe.py wait URL TEXT [TEXT ...] [--timeout S] [--what WORDS]
      GETs URL every 0.1 s until its body contains every TEXT; exits 1 naming WHAT after S seconds (default 30).
  python maint-scripts/probe.py json URL EXPR [EXPR ...]
      GETs URL and prints each EXPR evaluated on its JSON body as `j` (e.g. "j['addrs'][0]"), space-separated.
  python maint-scripts/probe.py balance RPC_URL ADDRESS
      prints ADDRESS's balance in wei (eth_getBalance); waits up to 10 s for the node to answer.
"""

from __future__ import annotations

import argparse
import json
import sys
import time
import urllib.error
import urllib.request
from typing import Any


def fetch(url: str, body: Any = None) -> bytes:
    data = None if body is None else json.dumps(body).encode()
    headers = {"Content-Type": "application/json"} if data else {}
    with urllib.request.urlopen(urllib.request.Request(url, data=data, headers=headers), timeout=2) as r:
        out: bytes = r.read()
        return out


def wait(url: str, texts: list[str], timeout: float, what: str) -> int:
    deadline = time.monotonic() + timeout
    start = time.monotonic()
    while True:
        try:
            body = fetch(url).decode(errors="replace")
            if all(t in body for t in texts):
                print(f"{what}: after {time.monotonic() - start:.1f} s")
                return 0
        except (OSError, urllib.error.URLError):
            pass
        if time.monotonic() > deadline:
            print(f"not within {timeout:g} s: {what} ({url} lacks {texts})", file=sys.stderr)
            return 1
        time.sleep(0.1)


def balance(rpc: str, address: str) -> int:
    call = {"jsonrpc": "2.0", "id": 1, "method": "eth_getBalance", "params": [address, "latest"]}
    deadline = time.monotonic() + 10
    while True:
        try:
            print(int(json.loads(fetch(rpc, call))["result"], 16))
            return 0
        except (OSError, urllib.error.URLError):
            if time.monotonic() > deadline:
                print(f"no Ethereum node answers at {rpc}", file=sys.stderr)
                return 1
            time.sleep(0.1)


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    sub = parser.add_subparsers(dest="cmd", required=True)
    w = sub.add_parser("wait")
    w.add_argument("url")
    w.add_argument("texts", nargs="+")
    w.add_argument("--timeout", type=float, default=30)
    w.add_argument("--what", default="ready")
    j = sub.add_parser("json")
    j.add_argument("url")
    j.add_argument("exprs", nargs="+")
    b = sub.add_parser("balance")
    b.add_argument("rpc")
    b.add_argument("address")
    args = parser.parse_args()
    if args.cmd == "wait":
        return wait(args.url, args.texts, args.timeout, args.what)
    if args.cmd == "json":
        doc = json.loads(fetch(args.url))
        print(*(eval(expr, {}, {"j": doc}) for expr in args.exprs))
        return 0
    return balance(args.rpc, args.address)


if __name__ == "__main__":
    sys.exit(main())
