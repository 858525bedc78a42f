"""The daemon's decisions: what is due at a moment. Pure: no clock, no database.

``due_actions`` is a plain function of the settings, the content, what the database
says already happened (``LedgerState``) and an injected ``now``; it decides, it does
nothing (``pipeline.daemon.actions`` does, ``pipeline.daemon.service`` decides *when*
to ask).

Per slot: ``assemble_ahead_days`` before it, write the issue file if none claims the
slot and mail a [TEST] copy to the editors (once per slot); at the slot, send the
issue if approved, or do what ``[schedule] unapproved`` says. A slot missed while no
daemon ran is caught up within the grace period and written off after it. Whether an
issue was sent comes from the send ledger and the issue file's status, never from a
flag of the scheduler's own; slot events only record the once-per-slot things that
have no ledger (the test copy, a skip, a miss).

An issue file with a problem (its own, or in an entry it carries) is left out of the
library, but its date is ``withheld``: that slot is neither skipped nor assembled anew
while the editor can still fix it, and is written off as missed after the grace period.

A special issue (``kind: special``) has no slot: it is sent at its own date and time
when approved, within the grace period after that time. ``unapproved = send`` does not
apply to it (no deadline forces a special issue out), no [TEST] copy is mailed for it
(the editor wrote it by hand and tests it with ``brief send --test``), and an unapproved
one just waits: it is never written off by the daemon.
"""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass, field
from datetime import date, datetime, timedelta
from enum import StrEnum

from pipeline.config import Schedule, Settings
from pipeline.content import calendar
from pipeline.content.library import Issue, Library


class ActionKind(StrEnum):
    """What a due action does."""

    ASSEMBLE = "assemble"  # write the slot's issue file from the queue
    TEST = "test"  # mail the [TEST] copy to the editors
    SEND = "send"  # send (or resume) the slot's campaign to the default list
    SKIP = "skip"  # at the slot, not sendable (unapproved, no issue): write the slot off
    MISS = "miss"  # the slot passed more than the grace period ago without a send


class SlotEvent(StrEnum):
    """What happened once per slot and has no ledger of its own (``store.slots``)."""

    TEST = "test"
    SKIPPED = "skipped"
    MISSED = "missed"


@dataclass(frozen=True)
class Action:
    """One thing due now for one slot; ``issue`` is None only for ASSEMBLE, SKIP, MISS."""

    kind: ActionKind
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


def assemble_time(schedule: Schedule, slot: datetime) -> datetime:
    """When to assemble for ``slot``: ``assemble_ahead_days`` local days before, same time."""
    day = slot.astimezone(schedule.timezone).date() - timedelta(days=schedule.assemble_ahead_days)
    return calendar.slot_at(schedule, day)


def issue_for(library: Library, slot: datetime) -> Issue | None:
    """The regular issue file that claims the slot's date, if any."""
    day = slot.date()
    return next((i for i in library.issues if i.date == day and not i.special), None)


def special_send_at(schedule: Schedule, issue: Issue) -> datetime:
    """When a special issue goes out: its date at its ``time`` (else ``send_time``), local."""
    return calendar.slot_at(schedule, issue.date, issue.send_time)


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

    actions += _specials(settings, library, state, now, grace)

    upcoming = calendar.next_slot(schedule, now)
    if now >= assemble_time(schedule, upcoming):
        issue = issue_for(library, upcoming)
        if issue is None and upcoming.date() in library.withheld:
            pass  # a broken file claims it: a second issue for the date would be wrong
        elif issue is None:
            actions.append(Action(ActionKind.ASSEMBLE, upcoming))
        elif not is_sent(issue, state) and SlotEvent.TEST not in state.kinds(upcoming):
            actions.append(Action(ActionKind.TEST, upcoming, issue))
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
    if state.kinds(slot) & {SlotEvent.SKIPPED, SlotEvent.MISSED}:
        return []
    if issue is not None and issue.number in state.held:
        return []  # paused by the guard: a human resumes it with `brief send`
    if now - slot > grace:
        hours = f"{settings.schedule.grace_hours:g}"
        return [
            Action(ActionKind.MISS, slot, issue, f"more than {hours}h late: not sent, written off")
        ]
    if issue is None and slot.date() in library.withheld:
        return []  # its issue file has a problem (logged): the editor may still fix it
    if issue is None:
        return [Action(ActionKind.SKIP, slot, None, "no issue file claims this slot")]
    if issue.status == "approved":
        return [Action(ActionKind.SEND, slot, issue)]
    if settings.schedule.unapproved == "send":
        return [
            Action(
                ActionKind.SEND,
                slot,
                issue,
                f"status {issue.status}, sent anyway ([schedule] unapproved = send)",
                force=True,
            )
        ]
    return [
        Action(
            ActionKind.SKIP,
            slot,
            issue,
            f"status {issue.status}, not approved ([schedule] unapproved = skip)",
        )
    ]


def _specials(
    settings: Settings, library: Library, state: LedgerState, now: datetime, grace: timedelta
) -> list[Action]:
    """A SEND for each approved special issue whose time has come, within the grace."""
    out = []
    for issue in library.issues:
        if not issue.special or is_sent(issue, state) or issue.number in state.held:
            continue
        at = special_send_at(settings.schedule, issue)
        if at <= now and now - at <= grace and issue.status == "approved":
            out.append(Action(ActionKind.SEND, at, issue, "special issue"))
    return out


def relevant_slots(settings: Settings, now: datetime) -> tuple[datetime, datetime]:
    """The two slots a decision at ``now`` looks at: the last one and the next one."""
    schedule = settings.schedule
    return calendar.previous_slot(schedule, now), calendar.next_slot(schedule, now)
