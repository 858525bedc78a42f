"""The every-other-Wednesday send slots, in the newsletter's own time zone.

Slots are counted in local calendar days from the anchor Wednesday (every
14th day) and then given the local send time. Counting days, not elapsed
hours, keeps the wall-clock time across daylight-saving changes (an interval
of 14x24 hours drifts by an hour), and counting from the anchor, not by ISO
week parity, survives years with 53 ISO weeks (week 53 and week 1 are both
odd, so ``week='*/2'`` sends two weeks running).
"""

from __future__ import annotations

from collections.abc import Iterator
from datetime import UTC, date, datetime, time, timedelta

from pipeline.config import Schedule

CADENCE_DAYS = 14


def is_slot_date(schedule: Schedule, day: date) -> bool:
    """True when ``day`` is a send Wednesday on the cadence."""
    return (day - schedule.anchor).days % CADENCE_DAYS == 0


def slot_at(schedule: Schedule, day: date, at: time | None = None) -> datetime:
    """The aware send datetime of a slot date (send_time, local zone); ``at``: another
    local time of day (a special issue's own ``time``)."""
    local = datetime.combine(day, at or schedule.send_time, tzinfo=schedule.timezone)
    # A send_time inside a spring-forward gap does not exist; the round trip
    # through UTC moves it to the first real instant after the gap.
    return local.astimezone(UTC).astimezone(schedule.timezone)


def slots(schedule: Schedule, after: datetime, count: int | None = None) -> Iterator[datetime]:
    """Slots strictly after ``after`` (an aware datetime), earliest first."""
    if after.tzinfo is None:
        raise ValueError("calendar.slots needs an aware datetime")
    local_day = after.astimezone(schedule.timezone).date()
    offset = (local_day - schedule.anchor).days % CADENCE_DAYS
    day = local_day - timedelta(days=offset)
    produced = 0
    while count is None or produced < count:
        at = slot_at(schedule, day)
        if at > after:
            yield at
            produced += 1
        day += timedelta(days=CADENCE_DAYS)


def next_slot(schedule: Schedule, after: datetime) -> datetime:
    """The first slot strictly after ``after``."""
    return next(slots(schedule, after, 1))


def previous_slot(schedule: Schedule, before: datetime) -> datetime:
    """The last slot at or before ``before``."""
    local_day = before.astimezone(schedule.timezone).date()
    day = local_day - timedelta(days=(local_day - schedule.anchor).days % CADENCE_DAYS)
    at = slot_at(schedule, day)
    if at > before:
        at = slot_at(schedule, day - timedelta(days=CADENCE_DAYS))
    return at
