"""The daemon's decisions: what is due at a moment, and doing it once.

``due_actions`` is a plain function of the settings, the content, what the
database says already happened (``LedgerState``) and an injected ``now``; it
decides, it does nothing. ``perform`` does one action. The APScheduler wiring
(``pipeline.daemon.service``) only decides *when* to ask.

Per slot: ``assemble_ahead_days`` before it, write the issue file if none
claims the slot and mail a [TEST] copy to the editors (once per slot); at the
slot, send the issue if approved, or do what ``[schedule] unapproved`` says.
A slot missed while no daemon ran is caught up within the grace period and
written off with a log line after it. Whether an issue was sent comes from the
send ledger and the issue file's status, never from a flag of the scheduler's
own; ``slot_events`` only records the once-per-slot things that have no
ledger (the test copy, a skip, a miss).
"""

from __future__ import annotations

import logging
import threading
from collections.abc import Iterable, Mapping
from dataclasses import dataclass, field
from datetime import UTC, date, datetime, timedelta

import sqlalchemy as sa
from sqlalchemy.engine import Engine
from sqlalchemy.exc import IntegrityError

from pipeline.config import Schedule, Settings
from pipeline.content import calendar
from pipeline.content.assemble import mark_status
from pipeline.content.library import Issue, Library
from pipeline.errors import BriefError
from pipeline.store.db import read_connection
from pipeline.store.ledger import CampaignState, PauseKind, campaigns
from pipeline.store.locks import DAEMON_LOCK, fence
from pipeline.store.schema import slot_events

log = logging.getLogger("brief.scheduler")

# Action kinds.
ASSEMBLE = "assemble"  # write the slot's issue file from the queue
TEST = "test"  # mail the [TEST] copy to the editors
SEND = "send"  # send (or resume) the slot's campaign to the default list
SKIP = "skip"  # at the slot, not sendable (unapproved, no issue): write the slot off
MISS = "miss"  # the slot passed more than the grace period ago without a send

# Slot event kinds: what happened once per slot and has no ledger of its own.
EVENT_TEST = "test"
EVENT_SKIPPED = "skipped"
EVENT_MISSED = "missed"


@dataclass(frozen=True)
class Action:
    """One thing due now for one slot; ``issue`` is None only for ASSEMBLE, SKIP, MISS."""

    kind: str
    slot: datetime
    issue: Issue | None = None
    reason: str = ""
    force: bool = False  # send although not approved (``unapproved = "send"``)


@dataclass(frozen=True)
class LedgerState:
    """What the database says already happened, as far as the decisions need it.

    ``events``: slot date -> slot event kinds recorded. ``sent``: issue numbers whose
    campaign the ledger shows finished. ``held``: issue numbers whose campaign is
    paused by the reputation guard, which a human must look at before it resumes.
    """

    events: Mapping[date, frozenset[str]] = field(default_factory=dict)
    sent: frozenset[int] = frozenset()
    held: Mapping[int, str] = field(default_factory=dict)

    def kinds(self, slot: datetime) -> frozenset[str]:
        return self.events.get(slot.date(), frozenset())


@dataclass(frozen=True)
class Outcome:
    """What performing an action did: the event name and its counts, for the log line."""

    action: Action
    event: str
    counts: Mapping[str, int] = field(default_factory=dict)
    detail: str = ""

    def line(self) -> str:
        """The one log line: slot, issue, event, counts, detail."""
        parts = [
            f"slot={self.action.slot.isoformat(timespec='minutes')}",
            f"issue={self.action.issue.label if self.action.issue else '-'}",
            f"event={self.event}",
        ]
        parts += [f"{k}={v}" for k, v in self.counts.items()]
        if self.detail:
            parts.append(f"detail={self.detail!r}")
        return " ".join(parts)


# ---------------------------------------------------------------------------
# Deciding


def assemble_time(schedule: Schedule, slot: datetime) -> datetime:
    """When to assemble for ``slot``: ``assemble_ahead_days`` local days before, same time."""
    day = slot.astimezone(schedule.timezone).date() - timedelta(days=schedule.assemble_ahead_days)
    return calendar.slot_at(schedule, day)


def issue_for(library: Library, slot: datetime) -> Issue | None:
    """The issue file that claims the slot's date, if any."""
    day = slot.date()
    return next((i for i in library.issues if i.date == day), None)


def is_sent(issue: Issue, state: LedgerState) -> bool:
    """Sent according to the issue file or the send ledger."""
    return issue.status == "sent" or issue.number in state.sent


def due_actions(
    settings: Settings, library: Library, state: LedgerState, now: datetime
) -> list[Action]:
    """Everything due at ``now``: the last slot's send (or skip, or miss), then the next
    slot's assembly and test copy. Pure: reads nothing, changes nothing."""
    if now.tzinfo is None:
        raise ValueError("due_actions needs an aware datetime")
    schedule = settings.schedule
    grace = timedelta(hours=schedule.grace_hours)
    actions: list[Action] = []

    last = calendar.previous_slot(schedule, now)
    if last.date() >= schedule.anchor:
        actions += _at_slot(settings, library, state, now, last, grace)

    upcoming = calendar.next_slot(schedule, now)
    if now >= assemble_time(schedule, upcoming):
        issue = issue_for(library, upcoming)
        if issue is None:
            actions.append(Action(ASSEMBLE, upcoming))
        elif not is_sent(issue, state) and EVENT_TEST not in state.kinds(upcoming):
            actions.append(Action(TEST, upcoming, issue))
    return actions


def _at_slot(
    settings: Settings,
    library: Library,
    state: LedgerState,
    now: datetime,
    slot: datetime,
    grace: timedelta,
) -> list[Action]:
    issue = issue_for(library, slot)
    if issue is not None and is_sent(issue, state):
        return []
    if state.kinds(slot) & {EVENT_SKIPPED, EVENT_MISSED}:
        return []
    if issue is not None and issue.number in state.held:
        return []  # paused by the guard: a human resumes it with `brief send`
    if now - slot > grace:
        hours = f"{settings.schedule.grace_hours:g}"
        return [Action(MISS, slot, issue, f"more than {hours}h late: not sent, written off")]
    if issue is None:
        return [Action(SKIP, slot, None, "no issue file claims this slot")]
    if issue.status == "approved":
        return [Action(SEND, slot, issue)]
    if settings.schedule.unapproved == "send":
        return [
            Action(
                SEND,
                slot,
                issue,
                f"status {issue.status}, sent anyway ([schedule] unapproved = send)",
                force=True,
            )
        ]
    return [
        Action(
            SKIP, slot, issue, f"status {issue.status}, not approved ([schedule] unapproved = skip)"
        )
    ]


# ---------------------------------------------------------------------------
# Reading the state


def read_state(
    engine: Engine, library: Library, slots: Iterable[datetime], list_name: str
) -> LedgerState:
    """Slot events of ``slots`` and the ledger's view (campaigns to ``list_name``) of the
    issues that claim them."""
    days = sorted({s.date() for s in slots})
    events: dict[date, set[str]] = {}
    with read_connection(engine) as conn:
        rows = conn.execute(
            sa.select(slot_events.c.slot, slot_events.c.kind).where(slot_events.c.slot.in_(days))
        )
        for row in rows:
            events.setdefault(row.slot, set()).add(row.kind)
    sent: set[int] = set()
    held: dict[int, str] = {}
    for issue in library.issues:
        if issue.date not in days or issue.status == "sent":
            continue
        progress = _campaign_progress(engine, issue, list_name)
        if progress == "sent":
            sent.add(issue.number)
        elif progress is not None:
            held[issue.number] = progress
    return LedgerState({d: frozenset(k) for d, k in events.items()}, frozenset(sent), held)


def _campaign_progress(engine: Engine, issue: Issue, list_name: str) -> str | None:
    """'sent' when the ledger shows the campaign finished, the pause reason when it waits
    for a human (the guard paused it, or unknown deliveries wait for a decision), None
    when it has not started or can simply resume."""
    with read_connection(engine) as conn:
        row = conn.execute(
            sa.select(campaigns.c.state, campaigns.c.pause_kind, campaigns.c.pause_reason).where(
                campaigns.c.issue_number == issue.number, campaigns.c.list_name == list_name
            )
        ).first()
    if row is None:
        return None
    if row.state == CampaignState.SENT:
        return "sent"
    # A stop or a provider outage resumes at the next wake-up within the grace period;
    # the guard's pause and unknown deliveries wait for a human.
    if row.pause_kind in (PauseKind.GUARD, PauseKind.UNKNOWN):
        return row.pause_reason or str(row.pause_kind)
    return None


# ---------------------------------------------------------------------------
# Doing


def perform(
    action: Action,
    engine: Engine,
    settings: Settings,
    library: Library,
    *,
    holder: str,
    now: datetime,
    stop: threading.Event | None = None,
) -> Outcome:
    """Do one action as the lock holder ``holder``; logs and returns its one-line outcome.

    Once-per-slot work is claimed in the same transaction that proves the lock is held,
    so a second daemon, or a restart, never does it again.
    """
    outcome = _DO[action.kind](action, engine, settings, library, holder, now, stop)
    level = {
        "skipped": logging.WARNING,
        "missed": logging.ERROR,
        "assemble_failed": logging.ERROR,
        "sent_unapproved": logging.WARNING,
        "send_paused": logging.WARNING,
        "send_unresolved": logging.ERROR,
        "send_failed": logging.ERROR,
        "test_failed": logging.ERROR,
        "lock_lost": logging.ERROR,
    }.get(outcome.event, logging.INFO)
    log.log(level, outcome.line())
    return outcome


def claim(
    engine: Engine, action: Action, kind: str, holder: str, now: datetime, detail: str = ""
) -> bool:
    """Record slot event ``kind`` for the action's slot, fenced by the lock; False if
    it was already recorded (by us earlier, or by another daemon)."""
    try:
        with engine.begin() as conn:
            fence(conn, DAEMON_LOCK, holder, now)
            conn.execute(
                slot_events.insert().values(
                    slot=action.slot.date(),
                    kind=kind,
                    issue=action.issue.number if action.issue else None,
                    holder=holder,
                    detail=detail[:500],
                    at=now.astimezone(UTC),
                )
            )
    except IntegrityError:
        return False
    return True


def _assemble(action, engine, settings, library, holder, now, stop) -> Outcome:
    from pipeline.content.assemble import assemble

    try:
        made = assemble(library, settings, now, action.slot.date())
    except BriefError as exc:
        return Outcome(action, "assemble_failed", detail=str(exc))
    done = Action(action.kind, action.slot, made.issue)
    return Outcome(done, "assembled" if made.created else "assemble_unchanged")


def _test(action, engine, settings, library, holder, now, stop) -> Outcome:
    from pipeline.send import send_test

    if not claim(engine, action, EVENT_TEST, holder, now):
        return Outcome(action, "test_already_sent")
    sent = failed = 0
    reasons = []
    for editor in settings.newsletter.editors:
        try:
            result = send_test(settings, library, action.issue, editor)
        except BriefError as exc:
            failed += 1
            reasons.append(str(exc))
            continue
        if result.ok:
            sent += 1
        else:
            failed += 1
            reasons.append(result.reason)
    event = "test_sent" if not failed else "test_failed"
    return Outcome(action, event, {"sent": sent, "failed": failed}, "; ".join(reasons))


def _send(action, engine, settings, library, holder, now, stop) -> Outcome:
    from pipeline.send import send_campaign

    with engine.begin() as conn:  # a standby that lost the lock must not start a send
        fence(conn, DAEMON_LOCK, holder, now)
    try:
        report = send_campaign(
            engine,
            settings,
            library,
            action.issue,
            settings.newsletter.default_list,
            force=action.force,
            stop=stop,
        )
    except BriefError as exc:  # refused as a whole (nobody on the list, provider setup)
        return Outcome(action, "send_failed", detail=str(exc))
    counts = {
        "sent": report.sent,
        "failed": report.failed,
        "unknown": report.unknown,
        "pending": report.pending,
        "sent_now": report.sent_now,
    }
    if report.state == CampaignState.UNRESOLVED:
        # Not done: the slot stays open, and a human decides the unknown deliveries.
        return Outcome(action, "send_unresolved", counts, report.reason or "")
    if report.state != CampaignState.SENT:
        return Outcome(action, "send_paused", counts, report.reason or "")
    if action.issue.status != "sent" and action.issue.path.exists():
        mark_status(action.issue.path, "sent")
    return Outcome(action, "sent_unapproved" if action.force else "sent", counts, action.reason)


def _write_off(kind: str, event: str):
    def do(action, engine, settings, library, holder, now, stop) -> Outcome:
        if not claim(engine, action, kind, holder, now, action.reason):
            return Outcome(action, f"{event}_already")
        return Outcome(action, event, detail=action.reason)

    return do


_DO = {
    ASSEMBLE: _assemble,
    TEST: _test,
    SEND: _send,
    SKIP: _write_off(EVENT_SKIPPED, "skipped"),
    MISS: _write_off(EVENT_MISSED, "missed"),
}


def relevant_slots(settings: Settings, now: datetime) -> tuple[datetime, datetime]:
    """The two slots a decision at ``now`` looks at: the last one and the next one."""
    schedule = settings.schedule
    return calendar.previous_slot(schedule, now), calendar.next_slot(schedule, now)


def tick(
    engine: Engine,
    settings: Settings,
    load_library,
    *,
    holder: str,
    now: datetime,
    stop: threading.Event | None = None,
) -> list[Outcome]:
    """Decide and do everything due at ``now``; re-decide after an assembly so the new
    issue's test copy goes in the same tick. Each (kind, slot) is tried once per tick."""
    tried: set[tuple[str, date]] = set()
    outcomes: list[Outcome] = []
    for _ in range(3):
        library = load_library()
        state = read_state(
            engine, library, relevant_slots(settings, now), settings.newsletter.default_list
        )
        todo = [
            a
            for a in due_actions(settings, library, state, now)
            if (a.kind, a.slot.date()) not in tried
        ]
        if not todo:
            break
        for action in todo:
            if stop is not None and stop.is_set():
                return outcomes
            tried.add((action.kind, action.slot.date()))
            outcomes.append(
                perform(action, engine, settings, library, holder=holder, now=now, stop=stop)
            )
    return outcomes
