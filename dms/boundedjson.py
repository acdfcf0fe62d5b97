"""JSON parsing that refuses hostile shapes before the recursive parser sees them.

Python's `json` module parses nested arrays and objects by recursion: `[[[[...` 100,000 deep raises
RecursionError at the default limit, and crashes the process (SIGSEGV, C stack) once something has
raised the limit (py_ecc does, on import). Integers past 4,300 digits raise a bare ValueError.

`loads` therefore scans the text first, without recursion and in C-speed passes (regular expressions,
`itertools.accumulate`), and refuses it when it is nested deeper than `max_depth` or holds a run of more
than `max_digits` digits outside strings; only then does it call `json.loads`. It also refuses the
non-standard constants `NaN`, `Infinity` and `-Infinity` and floats that overflow to infinity.
Every refusal is a `JSONRefused` (a ValueError) whose message says what was wrong. Pure: no I/O.
"""

from __future__ import annotations

import functools
import json
import math
import operator
import re
from itertools import accumulate, count
from typing import Any

# Deep enough for every document dms reads (config, job specs, records, frames: at most ~6 levels),
# shallow enough that pydantic, json.dumps and our own code never recurse far.
MAX_DEPTH = 32
# 2**256 - 1 (the largest EVM word) has 78 digits: 100 leaves room without allowing absurd numbers.
MAX_DIGITS = 100

# A JSON string token, as the parser reads it (the unrolled form does not backtrack).
_STRING = re.compile(r'"[^"\\]*(?:\\.[^"\\]*)*"', re.DOTALL)
# Opening brackets weigh 2 and closing ones 0, so after i brackets the depth is (their sum) - i;
# every other byte is deleted by the same `bytes.translate`.
_WEIGHT = bytes.maketrans(b"[{]}", b"\x02\x02\x00\x00")
_NOT_BRACKET = bytes(c for c in range(256) if c not in b"[]{}")


@functools.cache
def _digit_run(longer_than: int) -> re.Pattern[str]:
    return re.compile(f"[0-9]{{{longer_than + 1},}}")


class JSONRefused(ValueError):
    """The text is not JSON, or is JSON of a shape dms refuses (too deep, too long a number)."""


def check_shape(text: str, max_depth: int = MAX_DEPTH, max_digits: int = MAX_DIGITS) -> None:
    """Raise JSONRefused if `text` nests deeper than `max_depth` or has a number longer than `max_digits`.

    Strings are blanked first, so brackets and digits inside them do not count. Where the text is not
    valid JSON the scan may see more than the parser would, never less: any prefix the parser accepts
    is tokenised the same way here, so the parser cannot reach a depth this scan did not.
    """
    bare = _STRING.sub('""', text)
    long_number = _digit_run(max_digits).search(bare)
    if long_number:
        raise JSONRefused(f"a number of {len(long_number[0])} digits is over the limit of {max_digits} digits")
    brackets = bare.encode("utf-8", "surrogatepass").translate(_WEIGHT, _NOT_BRACKET)
    if not brackets:
        return
    depths = list(map(operator.sub, accumulate(brackets), count(1)))
    deepest = max(depths)
    if deepest > max_depth:
        raise JSONRefused(f"nested {deepest} levels deep, over the limit of {max_depth}")
    if min(depths) < 0:
        raise JSONRefused("a closing bracket without its opening one")


def _constant(name: str) -> Any:
    raise JSONRefused(f"{name} is not a JSON number")


def _float(text: str) -> float:
    value = float(text)
    if math.isinf(value):
        raise JSONRefused(f"the number {text[:20]} is out of range")
    return value


def loads(data: str | bytes, max_depth: int = MAX_DEPTH, max_digits: int = MAX_DIGITS) -> Any:
    """Parse JSON text (bytes must be UTF-8) after `check_shape`; JSONRefused for anything wrong."""
    if isinstance(data, bytes | bytearray):
        try:
            text = data.decode("utf-8")
        except UnicodeDecodeError as exc:
            raise JSONRefused(f"not UTF-8 text: {exc}") from None
    else:
        text = data
    check_shape(text, max_depth, max_digits)
    try:
        return json.loads(text, parse_constant=_constant, parse_float=_float)
    except JSONRefused:
        raise
    except json.JSONDecodeError as exc:
        raise JSONRefused(f"not valid JSON: line {exc.lineno} column {exc.colno}: {exc.msg}") from None
    except (ValueError, RecursionError) as exc:  # defence in depth: the scan should have caught these
        raise JSONRefused(f"not valid JSON: {exc}") from None
