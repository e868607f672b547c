"""Token buckets for requests and tokens per minute, and retry backoff."""

from __future__ import annotations

import asyncio
import datetime
import email.utils
import math
import random
import time


class TokenBucket:
    """`per_minute` units a minute, in bursts of at most `per_minute / 6` (10 seconds' worth)."""

    def __init__(self, per_minute: float, clock=time.monotonic, sleep=asyncio.sleep):
        self.rate = per_minute / 60.0
        self.capacity = max(1.0, per_minute / 6.0)
        self.clock, self.sleep = clock, sleep  # (a test gives a clock of its own)
        self.tokens = self.capacity
        self.updated = clock()
        self._lock = asyncio.Lock()

    async def take(self, amount: float = 1.0) -> None:
        amount = min(amount, self.capacity)  # a request larger than a burst waits for a full bucket
        async with self._lock:
            while True:
                now = self.clock()
                self.tokens = min(self.capacity, self.tokens + (now - self.updated) * self.rate)
                self.updated = now
                if self.tokens >= amount:
                    self.tokens -= amount
                    return
                await self.sleep((amount - self.tokens) / self.rate)


def backoff_seconds(
    attempt: int,
    retry_after: float | None,
    base: float = 0.5,
    cap: float = 30.0,
    max_retry_after: float = 60.0,
) -> float:
    """Exponential backoff with full jitter; the server's Retry-After wins when it says more,
    up to `max_retry_after` (a server that asks for an hour does not get to stall the run)."""
    jittered = random.uniform(0, min(cap, base * 2**attempt))
    return max(jittered, min(retry_after or 0.0, max_retry_after))


def parse_retry_after(headers: object) -> float | None:
    """Seconds from `retry-after-ms`, `retry-after` (seconds or an HTTP date). Anything else
    (a word, 'inf', 'nan', a malformed date) counts as absent: the usual backoff applies."""
    get = getattr(headers, "get", None)
    if get is None:
        return None
    milliseconds = _seconds(get("retry-after-ms"))
    if milliseconds is not None:
        return milliseconds / 1000
    value = get("retry-after")
    if not value:
        return None
    seconds = _seconds(value)
    if seconds is not None:
        return seconds
    try:
        when = email.utils.parsedate_to_datetime(str(value))
    except (TypeError, ValueError, IndexError, OverflowError):
        return None
    if when.tzinfo is None:  # an HTTP date is GMT; one without a zone is read as such
        when = when.replace(tzinfo=datetime.timezone.utc)
    return max(0.0, when.timestamp() - time.time())


def _seconds(value: object) -> float | None:
    """A finite, non-negative number of seconds, or None."""
    if value is None:
        return None
    try:
        number = float(str(value).strip())
    except ValueError:
        return None
    return max(0.0, number) if math.isfinite(number) else None
