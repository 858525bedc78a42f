"""A campaign: the ledger first, then provider calls through workers, resumable after a crash.

The calling thread is the desk: it owns the database. It claims rows a few chunks
ahead (``claimed``, not handed over), gives chunks to workers, and serves their
steps: each step writes the answers a worker got and marks the rows of its next
provider call ``inflight`` in one transaction, before the worker may push them.
Steps from several workers that arrive together share one commit.

What a crash can leave in doubt is therefore what providers held at that moment:
at most ``concurrency`` provider calls (one message each for SMTP). Claimed rows
go back to pending on the next start by themselves.

The audience is frozen at the first start: a resume sends to the rows written
then, and people who joined since only with ``include_new``.
"""

from __future__ import annotations

import queue
import threading
import time
from collections.abc import Callable
from dataclasses import dataclass
from datetime import timedelta
from typing import Any

from sqlalchemy.engine import Engine

from pipeline.config import Settings
from pipeline.content.fingerprint import content_hash
from pipeline.content.library import Issue, Library
from pipeline.errors import SendError
from pipeline.providers import load_provider
from pipeline.providers.base import Provider
from pipeline.send.message import MessageFactory, sample_values
from pipeline.send.outcomes import RETRY_BASE, Guard, Judge
from pipeline.send.ratelimit import RateLimiter
from pipeline.send.workers import Answer, Chunk, Step, Worker, delivery_key
from pipeline.store import audience, audience_count, suppress
from pipeline.store import ledger as lg
from pipeline.store.audience import recipients_by_id
from pipeline.store.clicks import record_links
from pipeline.store.db import utcnow
from pipeline.store.ledger import CampaignState, DeliveryState, FailureGroup, Outcome, PauseKind

SENDABLE = ("approved", "sent")
HEARTBEAT_EVERY = 10.0
CLAIM_IDLE = 0.5  # seconds between claims once nothing more was due
PROGRESS_EVERY = 0.1  # seconds between two progress reports
LEFT = "not sent: no longer in the audience (unsubscribed, suppressed or erased)"
STOPPED = "stopped before the end; run the send again to resume"


@dataclass(frozen=True)
class Progress:
    """Where a send stands, for a progress bar."""

    total: int
    sent: int
    failed: int
    unknown: int
    pending: int
    rate: float  # messages a second in this run
    retrying: int = 0  # rows waiting for a retry
    next_retry_in: float | None = None  # seconds until the earliest retry is due


@dataclass(frozen=True)
class CampaignReport:
    """The outcome of one ``send_campaign`` call."""

    issue_number: int
    list_name: str
    provider: str
    state: CampaignState
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
    failures: tuple[FailureGroup, ...] = ()
    pause_kind: PauseKind | None = None
    joined_since: int = 0  # confirmed since the first start, not included
    written_off: int = 0

    @property
    def paused(self) -> bool:
        return self.state is CampaignState.PAUSED

    @property
    def stopped(self) -> bool:
        return self.paused and self.pause_kind is PauseKind.STOPPED


def check_sendable(issue: Issue, force: bool) -> None:
    """Refuse an issue the editor has not approved (unless forced)."""
    if issue.status not in SENDABLE and not force:
        raise SendError(
            f"issue {issue.label} is {issue.status}, not approved: run brief approve "
            f"{issue.label} (or pass --force)"
        )


def render(issue: Issue, library: Library, settings: Settings) -> Any:
    """Render the issue once. Imported here, not at the top: the package's modules
    (message, workers) must not load Jinja2 and MJML into a send worker."""
    from pipeline.render.issue import render_issue

    return render_issue(issue, library, settings)


def send_campaign(
    engine: Engine,
    settings: Settings,
    library: Library,
    issue: Issue,
    list_name: str,
    *,
    force: bool = False,
    retry_unknown: bool = False,
    write_off_unknown: bool = False,
    include_new: bool = False,
    join: bool = False,
    stop: threading.Event | None = None,
    progress: Callable[[Progress], None] | None = None,
    rendered: Any = None,
    retry_base: float = RETRY_BASE,
) -> CampaignReport:
    """Send ``issue`` to ``list_name`` through the configured provider, resuming if started.

    Never mails a recipient whose delivery is recorded sent. Rows a crash left in a
    provider's hands are ``unknown`` and go again only with ``retry_unknown`` (or an
    idempotent provider); ``write_off_unknown`` records them as not sent. Returns when
    nothing is pending (``sent``, or ``unresolved`` while unknown rows remain) or
    paused (stop, guard, provider refusal) with the reason. The caller marks the issue
    file sent.

    ``join`` (PostgreSQL): take rows of a campaign another process is sending, through
    the same claims, instead of refusing; the send may then end ``sending`` (other
    senders still hold rows, and the last one to finish writes the final state).
    """
    check_sendable(issue, force)
    pset = settings.provider
    providers = [load_provider(settings) for _ in range(pset.concurrency)]
    first = providers[0]
    rendered = rendered if rendered is not None else render(issue, library, settings)
    factory = MessageFactory(rendered, settings, list_name=list_name)
    # The links before any mail goes: a click on the first message finds its target.
    record_links(engine, issue.number, factory.links)
    holder = lg.holder_name()
    if join:
        campaign = lg.join_campaign(engine, issue.number, list_name, holder)
    else:
        campaign = lg.start_campaign(
            engine,
            issue.number,
            list_name,
            provider=first.name,
            subject=rendered.subject,
            content_commit=factory.commit,
            holder=holder,
            content_hash=content_hash(issue, library),
        )
    started = time.monotonic()
    written_off = 0
    joined = 0
    try:
        # Rows of senders that are gone: claimed ones back to pending, handed-over ones
        # unknown. An idempotent provider takes a message twice as once: nothing is in
        # doubt, so unknown rows go again.
        found, _ = lg.settle(
            engine,
            campaign.id,
            retry_unknown=not join and (retry_unknown or bool(first.idempotent)),
        )
        if write_off_unknown and not join:
            written_off = lg.write_off_unknown(engine, campaign.id)
        # The audience is written down once, at the first start (total is set when
        # that finished); a resume adds nobody unless asked.
        if join:
            pass
        elif campaign.total == 0 or include_new:
            lg.enqueue_audience(engine, campaign)
        else:
            joined = lg.joined_since(engine, campaign)
        counts = lg.state_counts(engine, campaign.id)
        total = sum(counts.values())
        if total == 0:
            raise SendError(f"list {list_name!r} has nobody to send to")
        # A guard pause is the operator's to judge: running again means "go on".
        guard_armed = campaign.pause_kind is not PauseKind.GUARD
        if not join:
            lg.set_state(engine, campaign.id, CampaignState.SENDING, total=total)
        guard = Guard(
            settings.send.guard_ratio,
            settings.send.guard_window,
            total,
            counts["sent"] + counts["failed"],
            lg.permanent_failures(engine, campaign.id),
            guard_armed,
        )
        desk = _Desk(
            engine,
            settings,
            campaign,
            issue,
            list_name,
            providers,
            factory,
            Judge(guard, pset.max_retries, retry_base),
            stop or threading.Event(),
            progress,
            counts,
            holder,
        )
        kind, reason = desk.run()
    finally:
        lg.release(engine, campaign.id, holder)
    counts = lg.state_counts(engine, campaign.id)
    state = CampaignState.PAUSED
    others = counts["claimed"] + counts["inflight"]  # rows with other live senders
    if kind is PauseKind.STOPPED and not (counts["pending"] or others):
        # Stopped with nothing left to send (another sender did the rest): not a pause.
        kind, reason = None, None
    if others and kind not in (PauseKind.GUARD, PauseKind.PROVIDER):
        # Other senders are at work: the last one to finish writes the final state.
        state, kind, reason = CampaignState.SENDING, None, None
    elif kind is None and counts["pending"]:
        kind, reason = PauseKind.STOPPED, STOPPED
    elif kind is None and counts["unknown"]:
        state, kind = CampaignState.UNRESOLVED, PauseKind.UNKNOWN
        reason = (
            f"{counts['unknown']} deliveries unknown: the provider may have them; "
            "resend with --retry-unknown or record them not sent with --write-off-unknown"
        )
    elif kind is None:
        state = CampaignState.SENT
    if state is not CampaignState.SENDING:
        lg.set_state(engine, campaign.id, state, reason, kind=kind)
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
        sent_now=desk.sent_now,
        elapsed=elapsed,
        rate=desk.sent_now / elapsed if elapsed > 0 else 0.0,
        found_inflight=found,
        failures=tuple(lg.failures(engine, campaign.id)),
        pause_kind=kind,
        joined_since=joined,
        written_off=written_off,
    )


class _Desk:
    """The thread that owns the database during a send: claims, serves workers' steps."""

    def __init__(
        self,
        engine: Engine,
        settings: Settings,
        campaign: lg.Campaign,
        issue: Issue,
        list_name: str,
        providers: list[Provider],
        factory: MessageFactory,
        judge: Judge,
        stop: threading.Event,
        progress: Callable[[Progress], None] | None,
        counts: dict[str, int],
        holder: str,
    ):
        self.engine = engine
        self.holder = holder
        self.campaign = campaign
        self.issue = issue
        self.list_name = list_name
        self.judge = judge
        self.stop = stop
        self.progress = progress
        self.batch_size = settings.provider.batch_size
        self.limiter = RateLimiter(settings.provider.rate_per_second)
        self.writer = lg.StepWriter(engine)
        self.inbox: queue.Queue = queue.Queue()
        self.steps: queue.Queue = queue.Queue()
        self.workers = [
            Worker(i, p, factory, self.limiter, issue.number, self.inbox, self.steps)
            for i, p in enumerate(providers)
        ]
        self.ahead = max(2, 2 * len(self.workers))
        self.outstanding = 0  # chunks given to workers and not done yet
        self.kind: PauseKind | None = None
        self.closing = False  # no more hand-overs: the loop is ending
        self.claim_after = 0.0  # monotonic time before which claiming finds nothing due
        self.reason: str | None = None
        self.total = sum(counts.values())
        self.tally = {k: counts[k] for k in ("sent", "failed", "unknown")}
        self.sent_now = 0
        self.retrying = 0
        self.started = time.monotonic()
        self.last_beat = time.monotonic()
        self.last_report = 0.0

    def run(self) -> tuple[PauseKind | None, str | None]:
        """Send until nothing is due or a pause; returns (pause kind, reason) or (None, None)."""
        for w in self.workers:
            w.start()
        try:
            while True:
                self._beat()
                if self.stop.is_set():
                    self._pause(PauseKind.STOPPED, STOPPED)
                if self.kind is None:
                    self._refill()
                if self.outstanding == 0:
                    if self.kind is not None or not self._wait_for_due():
                        break
                    continue
                self._serve(timeout=1.0)
        finally:
            self._finish()
            self._report(final=True)
        return self.kind, self.reason

    # -- claiming ------------------------------------------------------------

    def _refill(self) -> None:
        while self.outstanding < self.ahead and time.monotonic() >= self.claim_after:
            claimed = lg.claim(
                self.engine, self.campaign.id, self.batch_size, utcnow(), sender=self.holder
            )
            if len(claimed) < self.batch_size:
                # Nothing more is due now: claiming again at every turn would be a write
                # transaction per answer. Look again in a moment (retries come due).
                self.claim_after = time.monotonic() + CLAIM_IDLE
            if not claimed:
                return
            found = recipients_by_id(
                self.engine, self.list_name, [c.subscriber_id for c in claimed]
            )
            gone = [c for c in claimed if c.subscriber_id not in found]
            if gone:
                lg.record(
                    self.engine,
                    [Outcome(c.id, DeliveryState.FAILED, error=LEFT, code="left") for c in gone],
                )
                self.tally["failed"] += len(gone)
            rows = tuple((c, found[c.subscriber_id]) for c in claimed if c.subscriber_id in found)
            if rows:
                self.inbox.put(Chunk(rows))
                self.outstanding += 1

    def _wait_for_due(self) -> bool:
        """Nothing with a worker: wait for the next retry; False when nothing is pending."""
        due = lg.next_due(self.engine, self.campaign.id)
        if due is None:
            # Nothing pending: rows of senders that died go back first; while other
            # senders are still at work, stay to settle theirs should they die too.
            lg.settle(self.engine, self.campaign.id, retry_unknown=False)
            due = lg.next_due(self.engine, self.campaign.id)
            if due is None:
                if not lg.busy_elsewhere(self.engine, self.campaign.id, self.holder):
                    return False
                due = utcnow() + timedelta(seconds=1)
        wait = (due - utcnow()).total_seconds()
        self._report(next_retry_in=max(0.0, wait))
        if wait > 0:
            self.stop.wait(min(wait, 1.0))
        self.claim_after = 0.0  # nothing is with a worker: claim at once
        return True

    # -- serving workers -------------------------------------------------------

    def _serve(self, timeout: float) -> None:
        """Take the steps waiting (at least one, within ``timeout``) and answer them with
        one commit."""
        try:
            steps = [self.steps.get(timeout=timeout)]
        except queue.Empty:
            return
        while True:
            try:
                steps.append(self.steps.get_nowait())
            except queue.Empty:
                break
        try:
            self._turn(steps)
        except BaseException:
            for s in steps:  # the write failed: nobody may hand anything over
                s.go = False
                s.ready.set()
            raise

    def _turn(self, steps: list[Step]) -> None:
        now = utcnow()
        answers: list[Answer] = [a for s in steps for a in s.answered]
        verdict = self.judge.judge(
            [
                (
                    a.claimed.id,
                    a.claimed.attempts,
                    a.recipient.email,
                    a.result,
                )
                for a in answers
            ],
            now,
        )
        for s in steps:
            if s.fatal:
                self._pause(PauseKind.PROVIDER, f"provider failed: {s.fatal}")
        if verdict.sender_problem:
            self._pause(PauseKind.PROVIDER, f"provider refused: {verdict.sender_problem}")
        if self.judge.guard.tripped:
            self._pause(PauseKind.GUARD, self.judge.guard.reason())
        go = self.kind is None and not self.closing
        handover = [c.id for s in steps for c in s.handover] if go else []
        returned = [c.id for s in steps for c in s.returned]
        self.writer.step(verdict.outcomes, inflight=handover, release=returned, now=now)
        for s in steps:
            if s.handover:
                s.go = go
                s.ready.set()
            if s.done:
                self.outstanding -= 1
        for address in verdict.suppress:
            suppress(self.engine, address, "hard_bounce", f"send:issue-{self.issue.label}")
        if verdict.slow:
            self.limiter.slow_down()
        self.sent_now += verdict.sent
        for o in verdict.outcomes:
            if o.state in self.tally:
                self.tally[o.state] += 1
        self.retrying = max(0, self.retrying + verdict.retrying)
        self._report()

    def _pause(self, kind: PauseKind, reason: str) -> None:
        if self.kind is None:
            self.kind, self.reason = kind, reason

    def _finish(self) -> None:
        """Give back what no worker took, let every worker finish its provider call and
        record the answer, then stop the workers. Never loses an answer."""
        self.closing = True
        back: list[int] = []
        while True:
            try:
                chunk = self.inbox.get_nowait()
            except queue.Empty:
                break
            back.extend(c.id for c, _ in chunk.rows)
            self.outstanding -= 1
        if back:
            self.writer.step(release=back)
        while self.outstanding > 0:
            self._beat()
            self._serve(timeout=1.0)
        for _ in self.workers:
            self.inbox.put(None)
        for w in self.workers:
            w.join(timeout=30)
        self.writer.close()

    def _beat(self) -> None:
        # Beat while waiting too (a slow provider call, a retry that is not due yet): a
        # holder silent for STALE_AFTER is taken for dead and another send may start.
        if time.monotonic() - self.last_beat <= HEARTBEAT_EVERY:
            return
        lg.heartbeat(self.engine, self.campaign.id, self.holder)
        self.last_beat = time.monotonic()
        # A joined sender that died leaves rows claimed or in flight: settle them now
        # (its claimed rows go back to pending), not only at the next start.
        lg.settle(self.engine, self.campaign.id, retry_unknown=False)
        # Another sender's guard or provider pause holds for everyone.
        state, kind = lg.campaign_state(self.engine, self.campaign.id)
        if state is CampaignState.PAUSED and kind in (PauseKind.GUARD, PauseKind.PROVIDER):
            self._pause(kind, "paused by another sender of this campaign; see brief status")

    def _report(self, next_retry_in: float | None = None, *, final: bool = False) -> None:
        # A progress bar redrawn per provider answer costs the desk more than the answer:
        # ten times a second is what a person sees.
        if self.progress is None:
            return
        if not final and time.monotonic() - self.last_report < PROGRESS_EVERY:
            return
        self.last_report = time.monotonic()
        elapsed = time.monotonic() - self.started
        done = self.tally["sent"] + self.tally["failed"] + self.tally["unknown"]
        self.progress(
            Progress(
                total=self.total,
                sent=self.tally["sent"],
                failed=self.tally["failed"],
                unknown=self.tally["unknown"],
                pending=max(0, self.total - done),
                rate=self.sent_now / elapsed if elapsed > 0 else 0.0,
                retrying=self.retrying,
                next_retry_in=next_retry_in,
            )
        )


@dataclass(frozen=True)
class Plan:
    """What ``brief send`` would do now, without doing it."""

    issue: int
    list_name: str
    subject: str
    recipients: int  # who would be mailed by this run
    first: tuple[str, ...]
    message_bytes: int
    resume: bool  # a campaign exists: this run resumes it
    total: int  # rows written at the first start (0 for a new send)
    left: int  # rows still to send in a resume
    unknown: int
    joined_since: int  # confirmed since the first start, not included

    def line(self) -> str:
        """The one line that tells a resume from a new send."""
        if not self.resume:
            return f"new send: {self.recipients} recipient(s)"
        return (
            f"resume: {self.left} left of {self.total}; {self.joined_since} joined since "
            "(not included)" + (f"; {self.unknown} unknown" if self.unknown else "")
        )


def plan(
    engine: Engine,
    settings: Settings,
    issue: Issue,
    list_name: str,
    *,
    rendered: Any,
    first: int = 5,
    include_new: bool = False,
) -> Plan:
    """The count, the first recipients and one message's size of the next run of a send."""
    factory = MessageFactory(rendered, settings, list_name=list_name)
    camp = lg.find_campaign(engine, issue.number, list_name)
    resume = camp is not None and camp.total > 0
    counts = lg.state_counts(engine, camp.id) if camp is not None else {}
    left = counts.get("pending", 0) + counts.get("claimed", 0) if resume else 0
    joined = lg.joined_since(engine, camp) if camp is not None and resume else 0
    recipients = (
        left + (joined if include_new else 0) if resume else audience_count(engine, list_name)
    )
    shown: list[str] = []
    size = 0
    for r in audience(engine, list_name, batch_size=max(1, first)):
        if not size:
            size = len(factory.for_recipient(delivery_key(issue.number, r.subscriber_id), r).raw)
        shown.append(r.email)
        if len(shown) >= first or resume:
            break
    if not size:
        size = len(
            factory.build("issue-sample", "reader@example.com", None, sample_values(settings)).raw
        )
    return Plan(
        issue=issue.number,
        list_name=list_name,
        subject=rendered.subject,
        recipients=recipients,
        first=tuple(shown) if not resume else (),
        message_bytes=size,
        resume=resume,
        total=camp.total if camp is not None else 0,
        left=left,
        unknown=counts.get("unknown", 0),
        joined_since=joined,
    )


def dry_run(
    engine: Engine,
    settings: Settings,
    library: Library,
    issue: Issue,
    list_name: str,
    *,
    first: int = 5,
    rendered: Any = None,
    include_new: bool = False,
) -> dict[str, Any]:
    """What a send would do, as a dict (``brief send --dry-run --json``)."""
    rendered = rendered if rendered is not None else render(issue, library, settings)
    p = plan(
        engine, settings, issue, list_name, rendered=rendered, first=first, include_new=include_new
    )
    return {
        "issue": p.issue,
        "list": p.list_name,
        "recipients": p.recipients,
        "first": list(p.first),
        "message_bytes": p.message_bytes,
        "subject": p.subject,
        "resume": p.resume,
        "total": p.total,
        "left": p.left,
        "unknown": p.unknown,
        "joined_since": p.joined_since,
        "summary": p.line(),
    }
