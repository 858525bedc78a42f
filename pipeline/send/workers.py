"""Send workers: one thread and one provider connection each, asking before every hand-over.

A worker takes a chunk of claimed rows, builds each provider call's messages, and
then asks the desk (the thread that owns the database) for a go: the desk writes
the previous call's answers and marks this call's rows ``inflight`` in one
committed transaction, and only then may the worker push. So at any moment at
most one provider call per worker is in doubt, whatever the chunk size; and when
the desk says no (a stop, a pause), the worker gives the rest back untouched. A
provider that can stage a message (SMTP: everything but the final dot) stages it
while the desk commits, and finishes it only on the go.
"""

from __future__ import annotations

import queue
import threading
from collections.abc import Callable
from dataclasses import dataclass, field
from functools import partial
from typing import Any, Protocol, TypeVar, runtime_checkable

from pipeline.errors import ProviderError, ProviderUnavailable, SendError
from pipeline.providers.base import Fate, OutgoingMessage, Provider, Result
from pipeline.send.message import MessageFactory
from pipeline.send.ratelimit import RateLimiter
from pipeline.store.audience import Recipient
from pipeline.store.ledger import Claimed

T = TypeVar("T")


@runtime_checkable
class Staging(Protocol):
    """A provider of one message a call that can hand a message over in two stages:
    everything the server may not deliver yet (``stage``: SMTP's envelope and body),
    then what makes it deliverable (``finish``: the final dot), or ``abort``.

    The worker stages while the desk commits the row in flight and finishes only
    after that commit, so the commit overlaps the conversation instead of standing
    before it, and still no server can hold a message whose row is not in flight.
    """

    def stage(self, msg: OutgoingMessage) -> Any:
        """Start handing ``msg`` over, short of the step that lets the server deliver it."""

    def finish(self, staged: Any) -> Result:
        """Complete a staged hand-over and return the provider's answer."""

    def abort(self, staged: Any) -> None:
        """Leave a staged message undelivered."""


def delivery_key(issue_number: int, subscriber_id: int) -> str:
    """The stable key of one delivery: idempotency key, outbox file name, Message-ID stem."""
    return f"issue-{issue_number:03d}.subscriber-{subscriber_id}"


@dataclass(frozen=True)
class Chunk:
    """Claimed rows for one worker, with the recipients they are for."""

    rows: tuple[tuple[Claimed, Recipient], ...]


@dataclass(frozen=True)
class Answer:
    """A provider's answer for one claimed row."""

    claimed: Claimed
    recipient: Recipient
    result: Result


@dataclass
class Step:
    """One turn between a worker and the desk.

    ``answered`` are the answers since the last step; ``handover`` the rows the worker
    wants to push next (the desk marks them in flight before saying go); ``returned``
    rows it gives back without handing them over; ``done`` ends the chunk.
    """

    answered: list[Answer]
    handover: list[Claimed] = field(default_factory=list)
    returned: list[Claimed] = field(default_factory=list)
    done: bool = False
    fatal: str | None = None  # the provider failed in a way nobody expected: pause
    go: bool = False
    ready: threading.Event = field(default_factory=threading.Event)


class Worker(threading.Thread):
    """Pushes chunks through one provider instance, one provider call at a time."""

    def __init__(
        self,
        index: int,
        provider: Provider,
        factory: MessageFactory,
        limiter: RateLimiter,
        issue_number: int,
        inbox: queue.Queue,
        desk: queue.Queue,
    ):
        super().__init__(name=f"brief-send-{index}", daemon=True)
        self.provider = provider
        self.factory = factory
        self.limiter = limiter
        self.issue_number = issue_number
        self.inbox = inbox
        self.desk = desk
        self._opened = False

    def run(self) -> None:
        try:
            while (chunk := self.inbox.get()) is not None:
                try:
                    self._chunk(chunk)
                except Exception as exc:  # noqa: BLE001 - a bug must pause, not hang, the send
                    # The desk waits for every chunk to end. Give all its rows back: those
                    # still claimed go back to pending, those in flight stay in flight (the
                    # next start finds them unknown), those answered are recorded already.
                    why = f"send worker failed: {type(exc).__name__}: {exc}"
                    back = [c for c, _ in chunk.rows]
                    self.desk.put(Step([], returned=back, done=True, fatal=why))
        finally:
            self._close()

    def _chunk(self, chunk: Chunk) -> None:
        size = max(1, int(self.provider.max_batch))
        if size == 1 and isinstance(self.provider, Staging):
            return self._chunk_staged(chunk, self.provider)
        rows = list(chunk.rows)
        answered: list[Answer] = []
        i = 0
        while i < len(rows):
            group = rows[i : i + size]
            i += len(group)
            built: list[tuple[Claimed, Recipient, OutgoingMessage]] = []
            for claimed, rcpt in group:
                key = delivery_key(self.issue_number, claimed.subscriber_id)
                try:
                    built.append((claimed, rcpt, self.factory.for_recipient(key, rcpt)))
                except SendError as exc:  # an address no header can carry
                    answered.append(
                        Answer(claimed, rcpt, Result.permanent(key, str(exc), "address"))
                    )
            if not built:
                continue
            # Wait for the rate limit before asking: a stop while waiting leaves nothing
            # in flight.
            self.limiter.acquire(len(built))
            step = Step(answered, handover=[c for c, _, _ in built])
            answered = []
            self.desk.put(step)
            step.ready.wait()
            if not step.go:
                back = [c for c, _, _ in built] + [c for c, _ in rows[i:]]
                self.desk.put(Step([], returned=back, done=True))
                return
            results, fatal = self._push([m for _, _, m in built])
            if self._after(answered, rows, i, built, results, fatal):
                return
        self.desk.put(Step(answered, done=True))

    def _chunk_staged(self, chunk: Chunk, provider: Staging) -> None:
        """One message a call, staged while the desk marks it in flight (``Staging``)."""
        rows = list(chunk.rows)
        answered: list[Answer] = []
        for i, (claimed, rcpt) in enumerate(rows):
            key = delivery_key(self.issue_number, claimed.subscriber_id)
            try:
                msg = self.factory.for_recipient(key, rcpt)
            except SendError as exc:  # an address no header can carry
                answered.append(Answer(claimed, rcpt, Result.permanent(key, str(exc), "address")))
                continue
            self.limiter.acquire(1)
            step = Step(answered, handover=[claimed])
            answered = []
            self.desk.put(step)
            staged, failed, fatal = self._guard([msg], partial(provider.stage, msg))
            step.ready.wait()
            if not step.go:
                if staged is not None:
                    self._guard([msg], partial(provider.abort, staged))
                self.desk.put(Step([], returned=[c for c, _ in rows[i:]], done=True))
                return
            if staged is not None:
                result, failed, fatal = self._guard([msg], partial(provider.finish, staged))
                results = failed if result is None else [result]
            else:
                results = failed
            if self._after(answered, rows, i + 1, [(claimed, rcpt, msg)], results, fatal):
                return
        self.desk.put(Step(answered, done=True))

    def _after(
        self,
        answered: list[Answer],
        rows: list[tuple[Claimed, Recipient]],
        rest: int,
        built: list[tuple[Claimed, Recipient, OutgoingMessage]],
        results: list[Result],
        fatal: str | None,
    ) -> bool:
        """Add one call's answers to ``answered``; when the provider is unreachable or
        failed, end the chunk (rows from ``rest`` on) and say so."""
        answered.extend(Answer(c, r, res) for (c, r, _), res in zip(built, results, strict=True))
        down = next((res for res in results if res.fate is Fate.NOT_TAKEN), None)
        if down is not None:
            # Unreachable: the rest of the chunk waits out the outage with it instead
            # of trying the provider once per message.
            answered.extend(
                Answer(
                    c,
                    r,
                    Result.not_taken(
                        delivery_key(self.issue_number, c.subscriber_id), down.reason, down.code
                    ),
                )
                for c, r in rows[rest:]
            )
            self.desk.put(Step(answered, done=True))
            return True
        if fatal is not None:
            self.desk.put(
                Step(answered, returned=[c for c, _ in rows[rest:]], done=True, fatal=fatal)
            )
            return True
        return False

    def _guard(
        self, messages: list[OutgoingMessage], call: Callable[[], T]
    ) -> tuple[T | None, list[Result], str | None]:
        """``call``'s value, or the results its failure means for ``messages`` and, for a
        failure nobody expected, why (the send pauses)."""
        try:
            if not self._opened:
                self.provider.open()
                self._opened = True
            return call(), [], None
        except ProviderUnavailable as exc:
            self._close()
            return None, [Result.not_taken(m.key, str(exc), "unreachable") for m in messages], None
        except ProviderError as exc:
            self._close()
            why = str(exc)
            return None, [Result.sender_problem(m.key, why, "provider") for m in messages], None
        except Exception as exc:  # noqa: BLE001 - a provider bug: nobody knows what it sent
            self._close()
            why = f"{self.provider.name}: {type(exc).__name__}: {exc}"
            return None, [Result.unknown(m.key, why, "provider-crash") for m in messages], why

    def _push(self, messages: list[OutgoingMessage]) -> tuple[list[Result], str | None]:
        """The provider's results for ``messages``, one each in order, whatever happens."""
        pushed, failed, fatal = self._guard(messages, lambda: list(self.provider.push(messages)))
        if pushed is None:
            return failed, fatal
        results = pushed
        by_key = {r.key: r for r in results}
        # A provider that answered for fewer messages than it was given: the missing
        # ones may or may not have gone.
        return [
            by_key.get(m.key) or Result.unknown(m.key, "the provider gave no answer", "no-answer")
            for m in messages
        ], None

    def _close(self) -> None:
        self._opened = False
        try:
            self.provider.close()  # safe to call twice, by the protocol
        except Exception:  # noqa: BLE001 - closing a broken provider
            pass
