"""A campaign: the ledger first, then batches through the provider, resumable after a crash.

The main thread owns the database: it writes a pending row per recipient, claims
due rows (marking them in flight in a committed transaction), hands them to
worker threads (one provider connection each, sharing one rate limiter), and
records every answer. Nothing is handed to a provider before it is written down,
and a row the provider may have seen is never put back to pending by itself.
"""

from __future__ import annotations

import queue
import random
import re
import secrets
import threading
import time
from collections import Counter
from collections.abc import Callable, Sequence
from dataclasses import dataclass, field
from datetime import datetime, timedelta
from typing import Any

from sqlalchemy.engine import Engine

from .config import Settings
from .content import Issue, Library
from .errors import ProviderError, ProviderUnavailable, SendError
from .message import MessageFactory, sample_values, test_copy
from .providers import load_provider
from .providers.base import Fate, OutgoingMessage, Provider, Result
from .ratelimit import RateLimiter

SENDABLE = ("approved", "sent")
RETRY_BASE = 30.0  # seconds before the first retry of a transient failure
RETRY_CAP = 1800.0  # never wait more than half an hour between two tries
OUTAGE_CAP = 300.0  # while the provider is unreachable, look again at least this often
HEARTBEAT_EVERY = 10.0
LEFT = "not sent: no longer in the audience (unsubscribed, suppressed or erased)"
_SLOW = re.compile(r"\b429\b|rate limit|too many|slow down|throttl", re.I)


@dataclass(frozen=True)
class Progress:
    """Where a send stands, for a progress bar."""

    total: int
    sent: int
    failed: int
    unknown: int
    pending: int
    rate: float  # messages a second in this run


@dataclass(frozen=True)
class CampaignReport:
    """The outcome of one ``send_campaign`` call."""

    issue_number: int
    list_name: str
    provider: str
    state: str  # sent | paused
    reason: str | None
    total: int
    sent: int
    failed: int
    unknown: int
    pending: int
    sent_now: int
    elapsed: float
    rate: float
    found_inflight: int = 0
    failures: tuple[tuple[str, bool, int], ...] = field(default=())

    @property
    def paused(self) -> bool:
        return self.state == "paused"


def delivery_key(issue_number: int, subscriber_id: int) -> str:
    """The stable key of one delivery: idempotency key, outbox file name, Message-ID stem."""
    return f"issue-{issue_number:03d}.subscriber-{subscriber_id}"


def backoff(attempt: int, base: float = RETRY_BASE, cap: float = RETRY_CAP) -> float:
    """Seconds before try ``attempt + 1``: exponential, capped, with jitter in [50%, 100%]."""
    delay = min(cap, base * (2 ** max(0, attempt - 1)))
    return delay * (0.5 + random.random() / 2)


def check_sendable(issue: Issue, force: bool) -> None:
    """Refuse an issue the editor has not approved (unless forced)."""
    if issue.status not in SENDABLE and not force:
        raise SendError(
            f"issue {issue.label} is {issue.status}, not approved: set 'status: approved' in "
            f"{issue.path.name} (or pass --force)"
        )


def render(issue: Issue, library: Library, settings: Settings) -> Any:
    """Render the issue once (imported here so sending alone stays light)."""
    from .render import render_issue

    return render_issue(issue, library, settings)


# ---------------------------------------------------------------------------
# Workers


@dataclass
class _Chunk:
    rows: list  # list[tuple[Claimed, Recipient]]
    results: list[Result] | None = None
    built: int = 0
    error: ProviderError | None = None


def _work(
    provider: Provider,
    factory: MessageFactory,
    limiter: RateLimiter,
    issue_number: int,
    inbox: queue.Queue,
    outbox: queue.Queue,
) -> None:
    opened = False
    while True:
        chunk = inbox.get()
        if chunk is None:
            break
        results: list[Result] = []
        by_key: dict[str, Result] = {}
        try:
            if not opened:
                provider.open()
                opened = True
            msgs: list[OutgoingMessage] = []
            for claimed, rcpt in chunk.rows:
                key = delivery_key(issue_number, claimed.subscriber_id)
                try:
                    msgs.append(factory.for_recipient(key, rcpt))
                except SendError as exc:  # an address no header can carry
                    by_key[key] = Result.failed(key, str(exc), transient=False)
            chunk.built = len(msgs)
            step = max(1, provider.max_batch)
            for i in range(0, len(msgs), step):
                part = msgs[i : i + step]
                limiter.acquire(len(part))
                for r in provider.push(part):
                    by_key[r.key] = r
            results = [by_key[delivery_key(issue_number, c.subscriber_id)] for c, _ in chunk.rows]
        except ProviderError as exc:
            # Whatever was pushed before the error has its answer; the rest was never
            # handed over, so it may go back to pending.
            chunk.error = exc
            results = [
                by_key.get(delivery_key(issue_number, c.subscriber_id)) for c, _ in chunk.rows
            ]
            opened = False
            try:
                provider.close()
            except Exception:  # noqa: BLE001 - closing a broken provider
                pass
        except Exception as exc:  # noqa: BLE001 - reported to the main thread, not lost
            chunk.error = ProviderError(f"{provider.name}: {type(exc).__name__}: {exc}")
            results = [
                by_key.get(delivery_key(issue_number, c.subscriber_id)) for c, _ in chunk.rows
            ]
        chunk.results = results
        outbox.put(chunk)
    if opened:
        provider.close()


# ---------------------------------------------------------------------------
# The campaign


class _Guard:
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


def send_campaign(
    engine: Engine,
    settings: Settings,
    library: Library,
    issue: Issue,
    list_name: str,
    *,
    force: bool = False,
    retry_unknown: bool = False,
    stop: threading.Event | None = None,
    progress: Callable[[Progress], None] | None = None,
    rendered: Any = None,
    retry_base: float = RETRY_BASE,
) -> CampaignReport:
    """Send ``issue`` to ``list_name`` through the configured provider, resuming if started.

    Never mails a recipient whose delivery is recorded sent; rows left in flight by
    a crash become "unknown" and go again only with ``retry_unknown`` or an
    idempotent provider. Returns when nothing is pending, or paused (guard, stop,
    provider refusal) with the reason.
    """
    from .assemble import mark_status
    from .store import audience, suppress
    from .store import ledger as lg

    check_sendable(issue, force)
    stop = stop or threading.Event()
    pset = settings.provider
    providers = [load_provider(settings) for _ in range(pset.concurrency)]
    first = providers[0]
    rendered = rendered if rendered is not None else render(issue, library, settings)
    factory = MessageFactory(rendered, settings, list_name=list_name)
    holder = lg.holder_name()
    campaign = lg.start_campaign(
        engine,
        issue.number,
        list_name,
        provider=first.name,
        subject=rendered.subject,
        content_commit=factory.commit,
        holder=holder,
    )
    started = time.monotonic()
    try:
        found, _ = lg.settle_inflight(
            engine, campaign.id, retry_unknown=retry_unknown or bool(first.idempotent)
        )
        ids: list[int] = []
        for r in audience(engine, list_name, batch_size=1000):
            ids.append(r.subscriber_id)
            if len(ids) >= 1000:
                lg.enqueue(engine, campaign.id, issue.number, ids)
                ids = []
        lg.enqueue(engine, campaign.id, issue.number, ids)
        counts = lg.state_counts(engine, campaign.id)
        total = sum(counts.values())
        if total == 0:
            raise SendError(f"list {list_name!r} has nobody to send to")
        # A guard pause is the operator's to judge: running again means "go on".
        guard_armed = not (
            campaign.state == "paused"
            and (campaign.pause_reason or "").startswith("reputation guard")
        )
        lg.set_state(engine, campaign.id, "sending", total=total)
        guard = _Guard(
            settings.send.guard_ratio,
            settings.send.guard_window,
            total,
            counts["sent"] + counts["failed"],
            lg.permanent_failures(engine, campaign.id),
            guard_armed,
        )
        reason, sent_now = _run(
            engine,
            settings,
            campaign,
            issue,
            list_name,
            providers,
            factory,
            guard,
            stop,
            progress,
            counts,
            retry_base,
            suppress,
        )
    finally:
        lg.release(engine, campaign.id, holder)
    counts = lg.state_counts(engine, campaign.id)
    state = "sent" if counts["pending"] == 0 and reason is None else "paused"
    lg.set_state(engine, campaign.id, state, reason)
    if state == "sent" and issue.status != "sent" and issue.path.exists():
        mark_status(issue.path, "sent")
    elapsed = time.monotonic() - started
    return CampaignReport(
        issue_number=issue.number,
        list_name=list_name,
        provider=first.name,
        state=state,
        reason=reason,
        total=sum(counts.values()),
        sent=counts["sent"],
        failed=counts["failed"],
        unknown=counts["unknown"],
        pending=counts["pending"],
        sent_now=sent_now,
        elapsed=elapsed,
        rate=sent_now / elapsed if elapsed > 0 else 0.0,
        found_inflight=found,
        failures=tuple(lg.failures(engine, campaign.id)),
    )


def _run(
    engine,
    settings,
    campaign,
    issue,
    list_name,
    providers,
    factory,
    guard,
    stop,
    progress,
    counts,
    retry_base,
    suppress,
) -> tuple[str | None, int]:
    """The work loop; returns (None when done or why it paused, messages sent)."""
    from .store import ledger as lg
    from .store.audience import recipients_by_id

    pset = settings.provider
    limiter = RateLimiter(pset.rate_per_second)
    inbox: queue.Queue = queue.Queue()
    done_q: queue.Queue = queue.Queue()
    threads = [
        threading.Thread(
            target=_work,
            args=(p, factory, limiter, issue.number, inbox, done_q),
            name=f"brief-send-{i}",
            daemon=True,
        )
        for i, p in enumerate(providers)
    ]
    for t in threads:
        t.start()
    tally = Counter({k: counts[k] for k in ("sent", "failed", "unknown")})
    total = sum(counts.values())
    run_start = time.monotonic()
    sent_run = 0
    in_flight = 0
    reason: str | None = None
    outage = 0.0
    last_beat = time.monotonic()
    ahead = max(2, 2 * len(providers))
    try:
        while True:
            # Beat while waiting too (for a slow batch, for a retry that is not due yet):
            # a holder silent for STALE_AFTER is taken for dead and another send may start.
            if time.monotonic() - last_beat > HEARTBEAT_EVERY:
                lg.heartbeat(engine, campaign.id, campaign.holder)
                last_beat = time.monotonic()
            if stop.is_set() and reason is None:
                reason = "stopped before the end; run the send again to resume"
            while reason is None and in_flight < ahead:
                now = _now()
                claimed = lg.claim(engine, campaign.id, pset.batch_size, now)
                if not claimed:
                    break
                recipients = recipients_by_id(engine, list_name, [c.subscriber_id for c in claimed])
                gone = [c for c in claimed if c.subscriber_id not in recipients]
                if gone:
                    lg.record(engine, [lg.Outcome(c.id, "failed", error=LEFT) for c in gone])
                    tally["failed"] += len(gone)
                rows = [(c, recipients[c.subscriber_id]) for c in claimed if c not in gone]
                if rows:
                    inbox.put(_Chunk(rows))
                    in_flight += 1
            if in_flight == 0:
                if reason is not None:
                    break
                due = lg.next_due(engine, campaign.id)
                if due is None:
                    break
                wait = (due - _now()).total_seconds()
                if wait > 0 and stop.wait(min(wait, 1.0)):
                    continue
                continue
            try:
                chunk = done_q.get(timeout=HEARTBEAT_EVERY)
            except queue.Empty:
                continue
            in_flight -= 1
            outcomes, suppressions, sent, outage_hit, fatal = _judge(
                chunk, settings, limiter, retry_base, guard
            )
            if outage_hit:
                outage = min(OUTAGE_CAP, max(retry_base / 6, outage * 2))
                later = _now() + timedelta(seconds=outage)
                lg.release_claims(engine, [c.id for c, _ in outage_hit], later)
            elif sent:
                outage = 0.0
            lg.record(engine, outcomes)
            for email in suppressions:
                suppress(engine, email, "hard_bounce", f"send:issue-{issue.label}")
            sent_run += sent
            for o in outcomes:
                tally[o.state if o.state != "pending" else "retrying"] += 1
            if fatal is not None and reason is None:
                reason = f"provider refused: {fatal}"
            if guard.tripped and reason is None:
                reason = guard.reason()
            if reason is not None:
                _drain(inbox, engine)
            if progress is not None:
                elapsed = time.monotonic() - run_start
                progress(
                    Progress(
                        total=total,
                        sent=tally["sent"],
                        failed=tally["failed"],
                        unknown=tally["unknown"],
                        pending=max(0, total - tally["sent"] - tally["failed"] - tally["unknown"]),
                        rate=sent_run / elapsed if elapsed > 0 else 0.0,
                    )
                )
    finally:
        _drain(inbox, engine)
        for _ in threads:
            inbox.put(None)
        # Chunks already with a worker finish and are recorded: never lose an answer.
        while in_flight > 0:
            chunk = done_q.get()
            in_flight -= 1
            outcomes, suppressions, _sent, outage_hit, _fatal = _judge(
                chunk, settings, limiter, retry_base, guard
            )
            if outage_hit:
                lg.release_claims(engine, [c.id for c, _ in outage_hit], None)
            lg.record(engine, outcomes)
            for email in suppressions:
                suppress(engine, email, "hard_bounce", f"send:issue-{issue.label}")
            sent_run += _sent
        for t in threads:
            t.join(timeout=30)
    return reason, sent_run


def _now() -> datetime:
    from .store.db import utcnow

    return utcnow()


def _drain(inbox: queue.Queue, engine: Engine) -> None:
    """Chunks no worker took yet were never handed over: back to pending."""
    from .store import ledger as lg

    ids: list[int] = []
    while True:
        try:
            chunk = inbox.get_nowait()
        except queue.Empty:
            break
        if chunk is None:
            continue
        ids.extend(c.id for c, _ in chunk.rows)
    lg.release_claims(engine, ids, None)


def _judge(chunk: _Chunk, settings: Settings, limiter: RateLimiter, retry_base: float, guard):
    """Turn a chunk's results into ledger outcomes, suppressions and counters."""
    from .store import ledger as lg

    outcomes = []
    suppressions: list[str] = []
    outage_rows = []
    sent = 0
    slow = False
    max_retries = settings.provider.max_retries
    now = _now()
    for (claimed, rcpt), result in zip(chunk.rows, chunk.results or [], strict=False):
        if result is None:  # never handed over (the provider failed as a whole)
            outage_rows.append((claimed, rcpt))
            continue
        if result.ok:
            outcomes.append(lg.Outcome(claimed.id, "sent", provider_id=result.provider_id))
            guard.add(False)
            sent += 1
        elif result.fate is Fate.UNKNOWN:
            outcomes.append(lg.Outcome(claimed.id, "unknown", error=result.reason))
        elif result.transient:
            slow = slow or bool(_SLOW.search(result.reason))
            tries = claimed.attempts + 1
            if tries > max_retries:
                outcomes.append(
                    lg.Outcome(
                        claimed.id, "failed", error=f"gave up after {tries} tries: {result.reason}"
                    )
                )
            else:
                at = now + timedelta(seconds=backoff(tries, retry_base))
                outcomes.append(
                    lg.Outcome(claimed.id, "pending", error=result.reason, next_attempt_at=at)
                )
        else:
            outcomes.append(lg.Outcome(claimed.id, "failed", error=result.reason, permanent=True))
            guard.add(True)
            if result.suppress:
                suppressions.append(rcpt.email)
    if len(chunk.results or []) < len(chunk.rows):
        outage_rows.extend(chunk.rows[len(chunk.results or []) :])
    if slow:
        limiter.slow_down()
    # Unreachable: try the untouched rows later. Refused as a whole: pause the send.
    fatal = None
    if chunk.error is not None and not isinstance(chunk.error, ProviderUnavailable):
        fatal = chunk.error
    return outcomes, suppressions, sent, outage_rows, fatal


# ---------------------------------------------------------------------------
# One message, outside the ledger


@dataclass(frozen=True)
class _Single:
    """A rendered stand-in for one transactional mail."""

    issue_number: int
    subject: str
    preheader: str
    html: str
    text: str
    web_url: str = ""


def _push_one(settings: Settings, msg: OutgoingMessage) -> Result:
    provider = load_provider(settings)
    provider.open()
    try:
        results = provider.push([msg])
    finally:
        provider.close()
    return results[0]


def send_one(
    settings: Settings,
    to_address: str,
    to_name: str | None,
    subject: str,
    html: str,
    text: str,
    headers: dict[str, str] | None = None,
) -> Result:
    """One transactional mail (confirmation, welcome) through the provider, outside the ledger."""
    factory = MessageFactory(
        _Single(0, subject, "", html, text), settings, commit="n/a", transactional=True
    )
    msg = factory.build(
        f"single.{secrets.token_hex(8)}", to_address, to_name, {"name": to_name or ""}
    )
    if headers:
        msg = _with_headers(msg, headers)
    return _push_one(settings, msg)


def _with_headers(msg: OutgoingMessage, headers: dict[str, str]) -> OutgoingMessage:
    from .message import _header_text

    extra = b"".join(_header_text(k, v) for k, v in headers.items())
    return OutgoingMessage(
        key=msg.key,
        to_address=msg.to_address,
        to_name=msg.to_name,
        content=msg.content,
        values=msg.values,
        headers={**msg.headers, **headers},
        raw=extra + msg.raw,
        html=msg.html,
        text=msg.text,
    )


def send_test(
    settings: Settings, library: Library, issue: Issue, to_address: str, *, rendered: Any = None
) -> Result:
    """A ``[TEST]`` copy of an issue to one editor, outside the ledger (any status)."""
    rendered = rendered if rendered is not None else render(issue, library, settings)
    factory = MessageFactory(test_copy(rendered), settings)
    msg = factory.build(
        f"issue-{issue.label}.test-{secrets.token_hex(4)}",
        to_address,
        None,
        sample_values(settings),
    )
    return _push_one(settings, msg)


def dry_run(
    engine: Engine,
    settings: Settings,
    library: Library,
    issue: Issue,
    list_name: str,
    *,
    first: int = 5,
    rendered: Any = None,
) -> dict[str, Any]:
    """What a send would do: recipient count, the first few, and one message's size."""
    from .store import audience, audience_count

    rendered = rendered if rendered is not None else render(issue, library, settings)
    factory = MessageFactory(rendered, settings, list_name=list_name)
    count = audience_count(engine, list_name)
    shown: list[str] = []
    size = 0
    for r in audience(engine, list_name, batch_size=max(1, first)):
        if not size:
            size = len(factory.for_recipient(delivery_key(issue.number, r.subscriber_id), r).raw)
        shown.append(r.email)
        if len(shown) >= first:
            break
    if not size:
        size = len(
            factory.build("issue-sample", "reader@example.com", None, sample_values(settings)).raw
        )
    return {
        "issue": issue.number,
        "list": list_name,
        "recipients": count,
        "first": shown,
        "message_bytes": size,
        "subject": rendered.subject,
    }


__all__: Sequence[str] = (
    "CampaignReport",
    "Progress",
    "backoff",
    "delivery_key",
    "dry_run",
    "send_campaign",
    "send_one",
    "send_test",
)
