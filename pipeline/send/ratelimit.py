"""A token bucket shared by the send workers, with a temporary slow-down.

Reservations rather than polling: each ``acquire(n)`` books the next ``n/rate``
seconds of the schedule under a lock and then sleeps outside it until its turn,
so any number of threads together never exceed ``rate`` messages a second
(beyond a burst of ``burst`` messages), and nobody spins.
"""

from __future__ import annotations

import threading
import time
from collections.abc import Callable


class RateLimiter:
    """At most ``rate`` per second across all threads; ``rate == 0`` means no limit."""

    def __init__(
        self,
        rate: float,
        *,
        burst: float | None = None,
        clock: Callable[[], float] = time.monotonic,
        sleep: Callable[[float], None] = time.sleep,
    ):
        if rate < 0:
            raise ValueError("rate must be zero or more")
        self.base_rate = float(rate)
        self._rate = float(rate)
        # No burst by default: "rate_per_second" is honoured to the message.
        self.burst = max(1.0, burst if burst is not None else 1.0)
        self._clock = clock
        self._sleep = sleep
        self._lock = threading.Lock()
        self._next_free = clock()
        self._slow_until = 0.0
        self.slowdowns = 0

    @property
    def rate(self) -> float:
        """The rate in force now (lower than the configured one during a slow-down)."""
        with self._lock:
            self._recover(self._clock())
            return self._rate

    def _recover(self, now: float) -> None:
        if self._rate != self.base_rate and now >= self._slow_until:
            self._rate = self.base_rate

    def reserve(self, n: float = 1) -> float:
        """Book ``n`` messages; returns how many seconds to wait before sending them."""
        with self._lock:
            now = self._clock()
            self._recover(now)
            if self._rate == 0:
                return 0.0
            # Unused time earns at most `burst` messages of credit.
            start = max(self._next_free, now - (self.burst - 1) / self._rate)
            self._next_free = start + n / self._rate
            return max(0.0, start - now)

    def acquire(self, n: float = 1) -> None:
        """Wait until ``n`` messages may go."""
        wait = self.reserve(n)
        if wait > 0:
            self._sleep(wait)

    def slow_down(self, factor: float = 0.5, seconds: float = 60.0, floor: float = 1.0) -> None:
        """Lower the rate for a while after a 429 or "slow down" answer.

        With no configured limit, the slow-down starts from the given ``floor`` times
        ten: there is no measured rate to halve, and some pause is better than none.
        """
        with self._lock:
            now = self._clock()
            current = self._rate if self._rate else floor * 10
            self._rate = max(floor, current * factor)
            self._slow_until = now + seconds
            self._next_free = max(self._next_free, now)
            self.slowdowns += 1
