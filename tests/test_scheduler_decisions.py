"""The daemon's decisions as a plain function of content, ledger state and an injected now."""

from __future__ import annotations

from datetime import date, timedelta

import pytest

from pipeline.daemon.decide import (
    ActionKind,
    LedgerState,
    assemble_time,
    due_actions,
)
from tests.fixtures_scheduler import local, set_status, with_schedule

# brief.toml: anchor 2026-12-02, 07:00 America/New_York, 3 days ahead, 6 hours' grace.
SLOT1 = local("2026-12-02T07:00")
SLOT2 = local("2026-12-16T07:00")
FIRST_SENT = LedgerState(sent=frozenset({1}))


def kinds(actions):
    return [(a.kind, a.slot, a.issue.number if a.issue else None) for a in actions]


def write_issue_for(sched_lib, settings, day: date, status: str = "draft"):
    from pipeline.content.assemble import assemble

    made = assemble(sched_lib(), settings, local("2026-12-10T00:00"), day)
    if status != "draft":
        set_status(made.issue.path, status)
    return sched_lib()


def test_nothing_is_due_between_slots_once_the_last_issue_went_out(settings, sched_lib):
    assert due_actions(settings, sched_lib(), FIRST_SENT, local("2026-12-08T12:00")) == []


def test_assembly_is_due_assemble_ahead_days_before_the_slot(settings, sched_lib):
    library = sched_lib()
    before = local("2026-12-13T06:59")
    assert due_actions(settings, library, FIRST_SENT, before) == []
    at = due_actions(settings, library, FIRST_SENT, local("2026-12-13T07:00"))
    assert kinds(at) == [(ActionKind.ASSEMBLE, SLOT2, None)]


def test_test_copy_is_due_once_the_issue_file_exists_and_only_until_recorded(settings, sched_lib):
    library = write_issue_for(sched_lib, settings, date(2026, 12, 16))
    now = local("2026-12-14T09:00")
    assert kinds(due_actions(settings, library, FIRST_SENT, now)) == [(ActionKind.TEST, SLOT2, 2)]
    done = LedgerState(events={date(2026, 12, 16): frozenset({"test"})}, sent=frozenset({1}))
    assert due_actions(settings, library, done, now) == []


def test_an_editors_own_issue_file_is_not_assembled_again_but_gets_its_test_copy(
    settings, sched_lib
):
    library = write_issue_for(sched_lib, settings, date(2026, 12, 16), "approved")
    actions = due_actions(settings, library, FIRST_SENT, local("2026-12-13T07:00"))
    assert kinds(actions) == [(ActionKind.TEST, SLOT2, 2)]


def test_an_approved_issue_is_sent_at_its_slot(settings, sched_lib):
    library = sched_lib()  # issue 001 for 2026-12-02 is approved in the repository
    tested = LedgerState(events={date(2026, 12, 2): frozenset({"test"})})
    assert due_actions(settings, library, tested, local("2026-12-02T06:59")) == []
    actions = due_actions(settings, library, tested, SLOT1)
    assert kinds(actions) == [(ActionKind.SEND, SLOT1, 1)]
    assert not actions[0].force


def test_an_unapproved_issue_is_skipped_at_its_slot_by_default(settings, sched_lib):
    set_status(sched_lib().issue(1).path, "draft")
    actions = due_actions(settings, sched_lib(), LedgerState(), SLOT1)
    assert kinds(actions) == [(ActionKind.SKIP, SLOT1, 1)]
    assert "not approved" in actions[0].reason


def test_an_unapproved_issue_is_sent_anyway_when_unapproved_is_send(settings, sched_lib):
    set_status(sched_lib().issue(1).path, "draft")
    loose = with_schedule(settings, unapproved="send")
    actions = due_actions(loose, sched_lib(), LedgerState(), SLOT1)
    assert kinds(actions) == [(ActionKind.SEND, SLOT1, 1)]
    assert actions[0].force and "unapproved = send" in actions[0].reason


def test_a_skipped_slot_stays_skipped_even_if_approved_later(settings, sched_lib):
    skipped = LedgerState(events={date(2026, 12, 2): frozenset({"skipped"})})
    assert due_actions(settings, sched_lib(), skipped, SLOT1 + timedelta(hours=1)) == []


def test_a_slot_without_an_issue_file_is_skipped_with_a_reason(settings, sched_lib):
    library = sched_lib()
    actions = due_actions(settings, library, FIRST_SENT, SLOT2 + timedelta(minutes=5))
    assert kinds(actions) == [(ActionKind.SKIP, SLOT2, None)]
    assert "no issue file" in actions[0].reason


@pytest.mark.parametrize("late", [timedelta(0), timedelta(hours=5, minutes=59), timedelta(hours=6)])
def test_a_missed_slot_is_caught_up_within_the_grace_period(settings, sched_lib, late):
    actions = due_actions(settings, sched_lib(), LedgerState(), SLOT1 + late)
    assert kinds(actions) == [(ActionKind.SEND, SLOT1, 1)]


def test_a_missed_slot_is_written_off_after_the_grace_period(settings, sched_lib):
    late = SLOT1 + timedelta(hours=6, seconds=1)
    actions = due_actions(settings, sched_lib(), LedgerState(), late)
    assert kinds(actions) == [(ActionKind.MISS, SLOT1, 1)]
    recorded = LedgerState(events={date(2026, 12, 2): frozenset({"missed"})})
    assert due_actions(settings, sched_lib(), recorded, late) == []


def test_the_grace_period_follows_the_setting(settings, sched_lib):
    short = with_schedule(settings, grace_hours=0.5)
    actions = due_actions(short, sched_lib(), LedgerState(), SLOT1 + timedelta(minutes=31))
    assert kinds(actions) == [(ActionKind.MISS, SLOT1, 1)]


def test_a_sent_issue_is_never_due_again_by_ledger_or_by_file(settings, sched_lib):
    now = SLOT1 + timedelta(minutes=1)
    assert due_actions(settings, sched_lib(), FIRST_SENT, now) == []
    set_status(sched_lib().issue(1).path, "sent")
    assert due_actions(settings, sched_lib(), LedgerState(), now) == []


def test_a_campaign_paused_by_the_guard_is_left_for_a_human(settings, sched_lib):
    held = LedgerState(held={1: "paused: 6% permanent failures"})
    assert due_actions(settings, sched_lib(), held, SLOT1 + timedelta(minutes=1)) == []


def test_slots_before_the_anchor_are_not_considered(settings, sched_lib):
    assert due_actions(settings, sched_lib(), LedgerState(), local("2026-11-25T08:00")) == []


def test_assembly_time_keeps_the_wall_clock_across_daylight_saving(settings):
    sched = with_schedule(settings, assemble_ahead_days=13).schedule
    slot = local("2027-03-24T07:00")  # daylight time since 2027-03-14
    assert slot.utcoffset() == timedelta(hours=-4)
    at = assemble_time(sched, slot)
    assert at.isoformat() == "2027-03-11T07:00:00-05:00"


def test_due_actions_refuses_a_naive_now(settings, sched_lib):
    with pytest.raises(ValueError):
        due_actions(settings, sched_lib(), LedgerState(), SLOT1.replace(tzinfo=None))
