"""SlotTrigger: APScheduler fires on the calendar's slots, across DST and 53-week years."""

from __future__ import annotations

import pickle
from datetime import timedelta

from pipeline.content import calendar
from pipeline.daemon.decide import assemble_time
from pipeline.daemon.service import SlotTrigger
from tests.fixtures_scheduler import local, with_schedule


def fires(trigger: SlotTrigger, start, count: int):
    out, prev = [], None
    now = start
    for _ in range(count):
        prev = trigger.get_next_fire_time(prev, now)
        out.append(prev)
    return out


def test_the_send_trigger_fires_exactly_on_the_calendars_slots_for_two_years(settings):
    start = local("2026-11-20T00:00")
    trigger = SlotTrigger(settings.schedule)
    assert fires(trigger, start, 53) == list(calendar.slots(settings.schedule, start, 53))


def test_the_trigger_keeps_seven_oclock_across_daylight_saving(settings):
    got = fires(SlotTrigger(settings.schedule), local("2027-03-01T00:00"), 2)
    assert [g.isoformat() for g in got] == [
        "2027-03-10T07:00:00-05:00",
        "2027-03-24T07:00:00-04:00",
    ]


def test_the_trigger_does_not_fire_two_weeks_running_across_a_53_week_year(settings):
    # 2026 has ISO week 53; week parity would send on 2026-12-30 and again on 2027-01-06.
    got = fires(SlotTrigger(settings.schedule), local("2026-12-20T00:00"), 3)
    assert [g.date().isoformat() for g in got] == ["2026-12-30", "2027-01-13", "2027-01-27"]
    assert all(b - a >= timedelta(days=13) for a, b in zip(got, got[1:], strict=False))


def test_the_assembly_trigger_fires_assemble_ahead_days_before_each_slot(settings):
    sched = with_schedule(settings, assemble_ahead_days=10).schedule
    start = local("2027-02-20T00:00")
    got = fires(SlotTrigger(sched, sched.assemble_ahead_days), start, 3)
    slots = list(calendar.slots(sched, start, 4))
    expected = [a for a in (assemble_time(sched, s) for s in slots) if a > start][:3]
    assert got == expected
    assert got[1].isoformat() == "2027-03-14T07:00:00-04:00"  # the DST Sunday, still 07:00


def test_a_first_fire_exactly_now_is_not_lost(settings):
    slot = local("2026-12-16T07:00")
    assert SlotTrigger(settings.schedule).get_next_fire_time(None, slot) == slot
    assert SlotTrigger(settings.schedule).get_next_fire_time(slot, slot) > slot


def test_a_stored_trigger_unpickles_equal_and_a_changed_setting_is_not_equal(settings):
    trigger = SlotTrigger(settings.schedule, 3)
    again = pickle.loads(pickle.dumps(trigger))
    assert again == trigger
    assert fires(again, local("2026-12-01T00:00"), 2) == fires(
        trigger, local("2026-12-01T00:00"), 2
    )
    moved = with_schedule(settings, send_time=settings.schedule.send_time.replace(hour=8))
    assert SlotTrigger(moved.schedule, 3) != trigger
    assert "America/New_York" in str(trigger)
