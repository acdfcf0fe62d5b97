"""A logger wrapper that says each kind of bad input at most once a minute.

A hostile or broken peer can send garbage as fast as the network carries it; logging each one would
turn that into a disk-filling attack. Counting is the metrics' job; the log only needs an example.
"""

from __future__ import annotations

import logging
import time
from collections.abc import Callable


class RateLimitedLog:
    def __init__(
        self, logger: logging.Logger, interval_s: float = 60.0, clock: Callable[[], float] = time.monotonic
    ) -> None:
        self._logger = logger
        self._interval_s = interval_s
        self._clock = clock
        self._last: dict[str, float] = {}
        self._suppressed: dict[str, int] = {}

    def warning(self, kind: str, msg: str, *args: object) -> bool:
        """Log `msg` unless a `kind` line was logged less than interval_s ago; True when logged.

        `kind` should come from a small fixed set (a reject reason), never from the peer's input.
        """
        now = self._clock()
        last = self._last.get(kind)
        if last is not None and now - last < self._interval_s:
            self._suppressed[kind] = self._suppressed.get(kind, 0) + 1
            return False
        self._last[kind] = now
        suppressed = self._suppressed.pop(kind, 0)
        if suppressed:
            self._logger.warning(msg + " (%d more like it not logged)", *args, suppressed)
        else:
            self._logger.warning(msg, *args)
        return True
