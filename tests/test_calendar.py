"""The every-other-Wednesday calendar across year turns and daylight-saving changes."""

from __future__ import annotations

from datetime import UTC, date, datetime, time, timedelta
from zoneinfo import ZoneInfo

import pytest
from apscheduler.triggers.cron import CronTrigger
from apscheduler.triggers.interval import IntervalTrigger

from pipeline.config import Schedule
from pipeline.content.calendar import is_slot_date, next_slot, previous_slot, slot_at, slots


def schedule(zone: str, anchor: date = date(2026, 12, 2), at: time = time(7, 0)) -> Schedule:
    return Schedule(ZoneInfo(zone), anchor, at, 3, "skip", 6.0)


def fire_times(trigger, start: datetime, count: int) -> list[datetime]:
    out, prev, now = [], None, start
    for _ in range(count):
        prev = trigger.get_next_fire_time(prev, now)
        out.append(prev)
        now = prev
    return out


def test_year_with_53_iso_weeks_keeps_the_fortnight():
    sched = schedule("America/New_York")
    got = [s.date() for s in slots(sched, datetime(2026, 12, 20, tzinfo=UTC), 3)]
    assert got == [date(2026, 12, 30), date(2027, 1, 13), date(2027, 1, 27)]
    # 2026 has 53 ISO weeks: Dec 30 is week 53 and Jan 6 week 1, both odd.
    assert date(2026, 12, 30).isocalendar().week == 53
    assert date(2027, 1, 6).isocalendar().week == 1


def test_cron_week_parity_sends_two_weeks_running_at_the_year_turn():
    tz = ZoneInfo("America/New_York")
    cron = CronTrigger(day_of_week="wed", week="*/2", hour=7, minute=0, timezone=tz)
    got = [d.date() for d in fire_times(cron, datetime(2026, 12, 20, tzinfo=tz), 2)]
    assert got == [date(2026, 12, 30), date(2027, 1, 6)]  # the bug our calendar avoids


def test_interval_of_two_weeks_drifts_an_hour_across_spring_forward():
    tz = ZoneInfo("America/New_York")
    start = datetime(2027, 3, 10, 7, 0, tzinfo=tz)
    got = fire_times(IntervalTrigger(weeks=2, start_date=start, timezone=tz), start, 2)
    assert got[1].hour == 8  # the bug our calendar avoids
    ours = list(
        slots(schedule("America/New_York", date(2027, 3, 10)), start - timedelta(minutes=1), 2)
    )
    assert [s.hour for s in ours] == [7, 7]


@pytest.mark.parametrize(
    "zone, anchor, before, after",
    [
        # US: spring forward 2027-03-14, fall back 2027-11-07.
        ("America/New_York", date(2027, 3, 10), "-05:00", "-04:00"),
        ("America/New_York", date(2027, 11, 3), "-04:00", "-05:00"),
        # EU: 2027-03-28 and 2027-10-31.
        ("Europe/London", date(2027, 3, 24), "+00:00", "+01:00"),
        ("Europe/London", date(2027, 10, 27), "+01:00", "+00:00"),
        # Southern hemisphere, opposite seasons: 2027-04-04 and 2027-10-03.
        ("Australia/Sydney", date(2027, 3, 31), "+11:00", "+10:00"),
        ("Australia/Sydney", date(2027, 9, 29), "+10:00", "+11:00"),
    ],
)
def test_slots_stay_wednesday_same_wall_clock_across_dst(zone, anchor, before, after):
    sched = schedule(zone, anchor)
    first, second = list(slots(sched, slot_at(sched, anchor) - timedelta(seconds=1), 2))
    for s in (first, second):
        assert s.weekday() == 2
        assert (s.hour, s.minute) == (7, 0)
    assert first.isoformat()[-6:] == before
    assert second.isoformat()[-6:] == after
    assert (second.date() - first.date()).days == 14
    # the elapsed time is deliberately not 14x24 hours
    assert second.astimezone(UTC) - first.astimezone(UTC) != timedelta(days=14)


def test_slots_are_strictly_after_the_given_moment():
    sched = schedule("Europe/London")
    at = slot_at(sched, date(2026, 12, 2))
    assert next_slot(sched, at) == slot_at(sched, date(2026, 12, 16))
    assert next_slot(sched, at - timedelta(seconds=1)) == at
    assert previous_slot(sched, at) == at
    assert previous_slot(sched, at - timedelta(seconds=1)) == slot_at(sched, date(2026, 11, 18))


def test_slots_before_the_anchor_follow_the_same_cadence():
    sched = schedule("UTC")
    got = [s.date() for s in slots(sched, datetime(2026, 11, 1, tzinfo=UTC), 2)]
    assert got == [date(2026, 11, 4), date(2026, 11, 18)]
    assert is_slot_date(sched, date(2026, 11, 4))
    assert not is_slot_date(sched, date(2026, 11, 11))


def test_a_moment_in_another_zone_is_read_in_the_newsletters_zone():
    sched = schedule("Australia/Sydney", at=time(9, 0))
    # 2026-12-01 23:30 UTC is already Wednesday 2 December 10:30 in Sydney: past the slot.
    got = next_slot(sched, datetime(2026, 12, 1, 23, 30, tzinfo=UTC))
    assert got.date() == date(2026, 12, 16)


def test_naive_datetimes_are_refused():
    with pytest.raises(ValueError):
        next(slots(schedule("UTC"), datetime(2026, 12, 1)))
