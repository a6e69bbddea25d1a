"""Commands per sender per second: a token bucket for each caller (Caller.key).

Quotas bound the songs a person makes; this bounds the commands anybody sends, so that one
client looping on the broker (a buggy automation, a hostile guest) is answered
`rate_limited` cheaply while everybody else is served at full speed. A sender is what the
household can tell apart: a member or guest proven by token or MQTT login has a bucket of
their own; anonymous requests (and unproven names) share one - they cannot be told apart,
and the members who prove themselves are never slowed down by them.
"""

from __future__ import annotations

import time
from collections import OrderedDict
from collections.abc import Callable

from cassetted.contract import errors

_MAX_SENDERS = 4096  # buckets kept; the least recently used goes first


class RateLimiter:
    """`rate` commands per second per sender, bursts up to `burst`; rate None = no limit."""

    def __init__(self, rate: float | None, burst: int,
                 clock: Callable[[], float] = time.monotonic) -> None:
        self._rate = rate
        self._burst = float(burst)
        self._clock = clock
        self._buckets: OrderedDict[str, tuple[float, float]] = OrderedDict()

    def check(self, sender: str) -> None:
        """Take one command from `sender`'s bucket, or raise RateLimited."""
        if self._rate is None:
            return
        now = self._clock()
        tokens, then = self._buckets.pop(sender, (self._burst, now))
        tokens = min(self._burst, tokens + (now - then) * self._rate)
        if tokens < 1.0:
            self._buckets[sender] = (tokens, now)
            wait = (1.0 - tokens) / self._rate
            raise errors.RateLimited(f"too many commands; try again in {wait:.1f} s")
        self._buckets[sender] = (tokens - 1.0, now)
        while len(self._buckets) > _MAX_SENDERS:
            self._buckets.popitem(last=False)
