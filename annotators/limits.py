"""Token buckets for requests and tokens per minute, and retry backoff."""

from __future__ import annotations

import asyncio
import email.utils
import random
import time


class TokenBucket:
    """`per_minute` units a minute, in bursts of at most `per_minute / 6` (10 seconds' worth)."""

    def __init__(self, per_minute: float):
        self.rate = per_minute / 60.0
        self.capacity = max(1.0, per_minute / 6.0)
        self.tokens = self.capacity
        self.updated = time.monotonic()
        self._lock = asyncio.Lock()

    async def take(self, amount: float = 1.0) -> None:
        amount = min(amount, self.capacity)  # a request larger than a burst waits for a full bucket
        async with self._lock:
            while True:
                now = time.monotonic()
                self.tokens = min(self.capacity, self.tokens + (now - self.updated) * self.rate)
                self.updated = now
                if self.tokens >= amount:
                    self.tokens -= amount
                    return
                await asyncio.sleep((amount - self.tokens) / self.rate)


def backoff_seconds(attempt: int, retry_after: float | None, base: float = 0.5, cap: float = 30.0) -> float:
    """Exponential backoff with full jitter; the server's Retry-After wins when it says more."""
    jittered = random.uniform(0, min(cap, base * 2**attempt))
    return max(jittered, retry_after or 0.0)


def parse_retry_after(headers: object) -> float | None:
    """Seconds from `retry-after-ms`, `retry-after` (seconds or an HTTP date)."""
    get = getattr(headers, "get", None)
    if get is None:
        return None
    milliseconds = get("retry-after-ms")
    if milliseconds:
        try:
            return max(0.0, float(milliseconds) / 1000)
        except ValueError:
            pass
    value = get("retry-after")
    if not value:
        return None
    try:
        return max(0.0, float(value))
    except ValueError:
        when = email.utils.parsedate_to_datetime(value)
        return None if when is None else max(0.0, when.timestamp() - time.time())
