"""Judging provider answers: the one path from a ``Result`` to what the ledger records,
who is suppressed, and what the reputation guard counts.

Every answer, from a campaign's workers or after a stop, goes through ``Judge.judge``;
nothing else decides what a fate means.
"""

from __future__ import annotations

import random
import re
from dataclasses import dataclass, field
from datetime import UTC, datetime, timedelta

from pipeline.providers.base import Fate, Result, scrub
from pipeline.store.ledger import DeliveryState, Outcome

RETRY_BASE = 30.0  # seconds before the first retry of a transient failure
RETRY_CAP = 1800.0  # never wait more than half an hour between two tries
OUTAGE_CAP = 300.0  # while the provider is unreachable, look again at least this often
_SLOW = re.compile(r"\b429\b|rate limit|too many|slow down|throttl", re.I)


def backoff(attempt: int, base: float = RETRY_BASE, cap: float = RETRY_CAP) -> float:
    """Seconds before try ``attempt + 1``: exponential, capped, with jitter in [50%, 100%]."""
    delay = min(cap, base * (2 ** max(0, attempt - 1)))
    return delay * (0.5 + random.random() / 2)


class Guard:
    """Pause when permanent failures among the first ``window`` results pass ``ratio``."""

    def __init__(self, ratio: float, window: int, total: int, done: int, perm: int, armed: bool):
        self.ratio, self.window = ratio, window
        self.limit = ratio * max(1, min(window, total))
        self.done, self.perm, self.armed = done, perm, armed

    def add(self, permanent: bool) -> None:
        if self.done < self.window:
            self.done += 1
            self.perm += permanent

    @property
    def tripped(self) -> bool:
        return self.armed and self.perm > self.limit

    def reason(self) -> str:
        return (
            f"reputation guard: {self.perm} permanent failures in the first {self.done} "
            f"(over {self.ratio:.0%}); check the list, then run the send again to resume"
        )


@dataclass
class Verdict:
    """What one turn's answers mean, beyond the rows themselves."""

    outcomes: list[Outcome] = field(default_factory=list)
    suppress: list[str] = field(default_factory=list)  # addresses with no such mailbox
    sent: int = 0
    retrying: int = 0
    sender_problem: str | None = None  # the provider refused the sender or account
    unreachable: bool = False
    slow: bool = False


class Judge:
    """Turns results into ledger outcomes, keeping the outage backoff and the guard."""

    def __init__(self, guard: Guard, max_retries: int, retry_base: float = RETRY_BASE):
        self.guard = guard
        self.max_retries = max_retries
        self.retry_base = retry_base
        self.outage = 0.0  # seconds to wait before trying an unreachable provider again
        self.outage_until = datetime.min.replace(tzinfo=UTC)

    def judge(self, answers: list[tuple[int, int, str, Result]], now: datetime) -> Verdict:
        """``answers``: (delivery id, attempts so far, address, result) per message."""
        fates = {r.fate for *_, r in answers}
        if Fate.SENT in fates:
            self.outage = 0.0
        if Fate.NOT_TAKEN in fates and now >= self.outage_until:
            # Still unreachable after the last wait: wait longer. Failures that arrive
            # within the wait (other connections, the rest of a chunk) wait with it.
            self.outage = min(OUTAGE_CAP, max(self.retry_base / 6, self.outage * 2))
            self.outage_until = now + timedelta(seconds=self.outage)
        v = Verdict()
        for row_id, attempts, address, result in answers:
            self._one(v, row_id, attempts, address, result, now)
        return v

    def _one(
        self, v: Verdict, row_id: int, attempts: int, address: str, r: Result, now: datetime
    ) -> None:
        # The cause without the address: failures group by it (a provider may have
        # quoted the recipient back, as most SMTP servers do).
        if r.fate is Fate.SENT:
            v.outcomes.append(Outcome(row_id, DeliveryState.SENT, provider_id=r.provider_id))
            v.sent += 1
            self.guard.add(False)
            return
        code, reason = r.code, scrub(r.reason, address)
        if r.fate is Fate.UNKNOWN:
            v.outcomes.append(Outcome(row_id, DeliveryState.UNKNOWN, error=reason, code=code))
        elif r.fate is Fate.TRANSIENT:
            v.slow = v.slow or bool(_SLOW.search(f"{code} {reason}"))
            tries = attempts + 1
            if tries > self.max_retries:
                v.outcomes.append(
                    Outcome(
                        row_id,
                        DeliveryState.FAILED,
                        error=f"gave up after {tries} tries: {reason}",
                        code=code,
                    )
                )
            else:
                at = now + timedelta(seconds=backoff(tries, self.retry_base))
                v.outcomes.append(
                    Outcome(
                        row_id, DeliveryState.PENDING, error=reason, code=code, next_attempt_at=at
                    )
                )
                v.retrying += 1
        elif r.fate is Fate.PERMANENT:
            v.outcomes.append(
                Outcome(row_id, DeliveryState.FAILED, error=reason, code=code, permanent=True)
            )
            self.guard.add(True)
            if r.suppress:
                v.suppress.append(address)
        elif r.fate is Fate.SENDER:  # not taken, and no use trying before a human looks
            v.outcomes.append(
                Outcome(row_id, DeliveryState.PENDING, error=reason, code=code, counted=False)
            )
            v.sender_problem = v.sender_problem or " ".join(p for p in (code, reason) if p)
        else:  # NOT_TAKEN: unreachable; try again after the outage backoff, no try counted
            later = max(now, self.outage_until)
            v.outcomes.append(
                Outcome(
                    row_id,
                    DeliveryState.PENDING,
                    error=reason,
                    code=code,
                    counted=False,
                    next_attempt_at=later,
                )
            )
            v.unreachable = True
