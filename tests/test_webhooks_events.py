"""Applying verified events and counting subscribe attempts, on SQLite and PostgreSQL."""

from __future__ import annotations

from datetime import UTC, datetime, timedelta

from pipeline.store import add_subscriber, audience_count, is_suppressed, show
from pipeline.store.rate_hits import allow
from pipeline.webhooks.apply import apply_events
from pipeline.webhooks.common import Event


def test_events_apply_once_on_each_backend(store):
    add_subscriber(store, "ann@example.com", confirmed=True, source="test")
    add_subscriber(store, "bob@example.com", confirmed=True, source="test")
    events = [
        Event("ses", "m-1#0", "hard_bounce", "Ann@Example.com", "Permanent/General"),
        Event("ses", "m-2#0", "soft_bounce", "bob@example.com", "Transient/MailboxFull"),
        Event("ses", "m-3#0", "complaint", "stranger@example.com"),
        Event("ses", "m-4#0", "hard_bounce", "not an address"),
    ]
    first = apply_events(store, events)
    assert (first.applied, first.duplicates, first.skipped) == (3, 0, 1)
    again = apply_events(store, events)
    assert (again.applied, again.duplicates, again.skipped) == (0, 3, 1)
    assert is_suppressed(store, "ann@example.com")
    assert not is_suppressed(store, "bob@example.com")
    # Someone never subscribed is still suppressed, so no later import can reach them.
    assert is_suppressed(store, "stranger@example.com")
    assert audience_count(store, "main") == 1
    assert [e.kind for e in show(store, "ann@example.com").events][-1] == "bounced"
    assert sum(e.kind == "bounced" for e in show(store, "bob@example.com").events) == 1


def test_rate_limit_counts_per_key_and_forgets_after_an_hour(store):
    now = datetime(2026, 12, 2, 12, 0, tzinfo=UTC)
    assert [allow(store, "ip", "192.0.2.1", 2, now) for _ in range(3)] == [True, True, False]
    assert allow(store, "ip", "192.0.2.2", 2, now)  # another key has its own budget
    assert allow(store, "address", "192.0.2.1", 2, now)  # and another scope
    later = now + timedelta(hours=1, seconds=1)
    assert allow(store, "ip", "192.0.2.1", 2, later)
