"""Talking to a venue politely: a token bucket at its published rate that honours its rate-limit
headers (``RateLimiter``), and retries of transient failures with exponential backoff and jitter
(``with_retries``, on tenacity). Used by the live adapters' trading calls and by the market-data
fetchers alike (SPEC §11)."""

from __future__ import annotations

import threading
import time
from dataclasses import dataclass
from typing import Callable

from framework.errors import TransientBrokerError


class RateLimiter:
    """A token bucket at the venue's published rate that also honours the venue's own headers."""

    def __init__(self, rate: float, per_seconds: float, clock: Callable[[], float] = time.monotonic,
                 sleep: Callable[[float], None] = time.sleep):
        self.capacity = float(rate)
        self.refill = rate / per_seconds
        self.tokens = float(rate)
        self.clock, self.sleep = clock, sleep
        self.last = clock()
        self.blocked_until = 0.0
        self.lock = threading.Lock()
        self.waited = 0.0
        # True once an HTTP session takes one token per request (brokers/*/client.py); then a logical
        # call that makes several requests (a submit and its read-back, pages) pays for each of them.
        self.per_request = False

    def acquire(self) -> None:
        while True:
            with self.lock:
                now = self.clock()
                self.tokens = min(self.capacity, self.tokens + (now - self.last) * self.refill)
                self.last = now
                wait = max(self.blocked_until - now, 0.0)
                if wait == 0.0 and self.tokens >= 1.0:
                    self.tokens -= 1.0
                    return
                if wait == 0.0:
                    wait = (1.0 - self.tokens) / self.refill
            self.waited += wait
            self.sleep(wait)

    # A reset this close is waited for right here (see ``observe``); a longer one by the next acquire.
    inline_wait_max: float = 2.0

    def observe(self, remaining: int | None, reset_in: float | None) -> None:
        """Feed the venue's rate-limit headers (called for every answer): with nothing left, nothing
        more goes out until the window resets.

        A reset due within ``inline_wait_max`` (Coinbase's one-second windows) is waited for here,
        not only at the next ``acquire``: one limiter token can cover several HTTP requests (a
        Coinbase submit and its read-back, a lookup of several ids, the pages of a listing), and
        the next of those would otherwise go out into the empty window and come back 429. A longer
        wait (Alpaca's minute) is left to the next ``acquire``, so a call that failed is not held."""
        if remaining is None:
            return
        wait = 0.0
        with self.lock:
            self.tokens = min(self.tokens, float(remaining))
            if remaining <= 0 and reset_in is not None and reset_in > 0:
                self.blocked_until = max(self.blocked_until, self.clock() + min(reset_in, 60.0))
                wait = self.blocked_until - self.clock()
        if 0 < wait <= self.inline_wait_max:
            self.waited += wait
            self.sleep(wait)


@dataclass(frozen=True, slots=True)
class RetryPolicy:
    attempts: int = 6          # total tries
    base: float = 0.25         # first backoff in seconds
    cap: float = 8.0           # longest single backoff


def with_retries(fn: Callable[[], object], limiter: RateLimiter, policy: RetryPolicy = RetryPolicy(),
                 sleep: Callable[[float], None] = time.sleep):
    """Call ``fn`` through the limiter; retry TransientBrokerError with exponential backoff and jitter."""
    from tenacity import Retrying, retry_if_exception_type, stop_after_attempt, wait_random_exponential

    def before(_state) -> None:
        if not limiter.per_request:      # sessions that take a token per HTTP request need none here
            limiter.acquire()

    for attempt in Retrying(retry=retry_if_exception_type(TransientBrokerError),
                            wait=wait_random_exponential(multiplier=policy.base, max=policy.cap),
                            stop=stop_after_attempt(policy.attempts), sleep=sleep, reraise=True, before=before):
        with attempt:
            return fn()
    raise AssertionError("unreachable")
