"""The daemon's actions: read what already happened, do one due action, and a tick
(decide, do, re-decide after an assembly). Every database access is ``pipeline.store``'s;
the decisions are ``pipeline.daemon.decide``'s."""

from __future__ import annotations

import logging
import threading
from collections.abc import Iterable, Mapping
from dataclasses import dataclass, field
from datetime import date, datetime
from functools import partial

from sqlalchemy.engine import Engine

from pipeline.config import Settings
from pipeline.content.assemble import assemble, mark_sent
from pipeline.content.library import Issue, Library, load_content
from pipeline.daemon.decide import (
    Action,
    ActionKind,
    LedgerState,
    SlotEvent,
    due_actions,
    relevant_slots,
)
from pipeline.errors import BriefError
from pipeline.render.site import rebuild_after_send
from pipeline.send import send_campaign, send_test
from pipeline.send.edits import edits_after_sending
from pipeline.store import slots
from pipeline.store.ledger import CampaignState, PauseKind, find_campaign
from pipeline.store.locks import DAEMON_LOCK

log = logging.getLogger("brief.scheduler")


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


def read_state(
    engine: Engine, library: Library, slot_times: Iterable[datetime], list_name: str
) -> LedgerState:
    """Slot events of ``slot_times`` and the ledger's view (campaigns to ``list_name``)
    of the issues that claim them and of every special issue not marked sent."""
    days = sorted({s.date() for s in slot_times})
    sent: set[int] = set()
    held: dict[int, str] = {}
    for issue in library.issues:
        if (issue.date not in days and not issue.special) or issue.status == "sent":
            continue
        progress = _campaign_progress(engine, issue, list_name)
        if progress == "sent":
            sent.add(issue.number)
        elif progress is not None:
            held[issue.number] = progress
    return LedgerState(slots.recorded(engine, days), frozenset(sent), held)


def _campaign_progress(engine: Engine, issue: Issue, list_name: str) -> str | None:
    """'sent' when the ledger shows the campaign finished, the pause reason when it waits
    for a human (the guard paused it, or unknown deliveries wait for a decision), None
    when it has not started or can simply resume."""
    campaign = find_campaign(engine, issue.number, list_name)
    if campaign is None:
        return None
    if campaign.state == CampaignState.SENT:
        return "sent"
    # A stop or a provider outage resumes at the next wake-up within the grace period;
    # the guard's pause and unknown deliveries wait for a human.
    if campaign.pause_kind in (PauseKind.GUARD, PauseKind.UNKNOWN):
        return campaign.pause_reason or str(campaign.pause_kind)
    return None


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
    return slots.record(
        engine,
        DAEMON_LOCK,
        slot=action.slot.date(),
        kind=kind,
        issue=action.issue.number if action.issue else None,
        holder=holder,
        now=now,
        detail=detail,
    )


def _assemble(action, engine, settings, library, holder, now, stop) -> Outcome:
    try:
        made = assemble(library, settings, now, action.slot.date())
    except BriefError as exc:
        return Outcome(action, "assemble_failed", detail=str(exc))
    done = Action(action.kind, action.slot, made.issue)
    return Outcome(done, "assembled" if made.created else "assemble_unchanged")


def _test(action, engine, settings, library, holder, now, stop) -> Outcome:
    if not claim(engine, action, SlotEvent.TEST, holder, now):
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
    slots.fenced(engine, DAEMON_LOCK, holder, now)  # a standby that lost the lock must not send
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
    mark_sent(action.issue)
    detail = action.reason
    try:
        edits = partial(edits_after_sending, engine, settings=settings)
        built = rebuild_after_send(partial(load_content, settings), settings, edits)
    except (BriefError, OSError) as exc:  # the send stands; the site waits for a human
        log.error("slot=%s event=site_rebuild_failed detail=%r", action.slot.isoformat(), str(exc))
    else:
        if built is not None:
            detail = "; ".join(filter(None, [detail, f"site rebuilt ({len(built)} files)"]))
    return Outcome(action, "sent_unapproved" if action.force else "sent", counts, detail)


def _write_off(kind: str, event: str):
    def do(action, engine, settings, library, holder, now, stop) -> Outcome:
        if not claim(engine, action, kind, holder, now, action.reason):
            return Outcome(action, f"{event}_already")
        return Outcome(action, event, detail=action.reason)

    return do


_DO = {
    ActionKind.ASSEMBLE: _assemble,
    ActionKind.TEST: _test,
    ActionKind.SEND: _send,
    ActionKind.SKIP: _write_off(SlotEvent.SKIPPED, "skipped"),
    ActionKind.MISS: _write_off(SlotEvent.MISSED, "missed"),
}


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
    tried: set[tuple[str, date, int | None]] = set()
    outcomes: list[Outcome] = []
    for _ in range(3):
        library = load_library()
        state = read_state(
            engine, library, relevant_slots(settings, now), settings.newsletter.default_list
        )
        todo = [a for a in due_actions(settings, library, state, now) if _once_key(a) not in tried]
        if not todo:
            break
        for action in todo:
            if stop is not None and stop.is_set():
                return outcomes
            tried.add(_once_key(action))
            outcomes.append(
                perform(action, engine, settings, library, holder=holder, now=now, stop=stop)
            )
    return outcomes


def _once_key(action: Action) -> tuple[str, date, int | None]:
    # With the issue: a special issue may go on the day a regular slot does.
    return (action.kind, action.slot.date(), action.issue.number if action.issue else None)
