"""Keep the interpreter's recursion limit where Python sets it, whatever the Ethereum libraries do.

`py_ecc`, which eth-account and web3 import, raises the limit to 100,000 when it is imported. With that
limit a deeply nested input no longer stops at RecursionError: the C stack overflows first and the
process dies with SIGSEGV. dms needs no deep recursion (its JSON is bounded, see `dms.boundedjson`), so
the daemon imports py_ecc's package once at start-up (its `__init__` only: ~30 ms, no curve tables,
neither web3 nor eth-account) with the limit saved and restored. Every later import of eth-account or
web3 finds py_ecc already imported and leaves the limit alone.
"""

from __future__ import annotations

import importlib
import sys


def keep_recursion_limit() -> int:
    """Import py_ecc's package with the current recursion limit kept; return that limit."""
    limit = sys.getrecursionlimit()
    try:
        importlib.import_module("py_ecc")
    except ImportError:  # not installed: then nothing can raise the limit through it
        pass
    finally:
        sys.setrecursionlimit(limit)
    return limit
