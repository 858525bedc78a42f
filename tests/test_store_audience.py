"""The audience query: who a send goes to, streamed in a stable order."""

from __future__ import annotations

import pytest

from pipeline.errors import NotFound
from pipeline.store import (
    Recipient,
    add_subscriber,
    audience,
    audience_count,
    create_list,
    forget,
    import_csv,
    suppress,
    unsubscribe_by_address,
)


def test_audience_is_confirmed_members_not_unsubscribed_not_suppressed(store):
    create_list(store, "weekly")
    add_subscriber(store, "confirmed@example.org", name="C", confirmed=True)
    add_subscriber(store, "pending@example.org")
    add_subscriber(store, "left@example.org", confirmed=True)
    unsubscribe_by_address(store, "left@example.org", list_name="main")
    add_subscriber(store, "bounced@example.org", confirmed=True)
    suppress(store, "bounced@example.org", "hard_bounce", "webhook")
    add_subscriber(store, "erased@example.org", confirmed=True)
    forget(store, "erased@example.org")
    add_subscriber(store, "other@example.org", list_name="weekly", confirmed=True)

    found = list(audience(store, "main"))
    assert [r.email for r in found] == ["confirmed@example.org"]
    assert isinstance(found[0], Recipient) and found[0].name == "C"
    assert audience_count(store, "main") == 1


def test_audience_streams_in_batches_in_subscriber_order(store, write_csv):
    rows = "\n".join(f"p{i:03d}@example.org" for i in reversed(range(250)))
    import_csv(store, write_csv("email\n" + rows + "\n"), confirmed=True, source="sheet")
    found = list(audience(store, "main", batch_size=7))
    ids = [r.subscriber_id for r in found]
    assert len(found) == 250 == audience_count(store, "main")
    assert ids == sorted(ids) and len(set(ids)) == 250
    assert [r.email for r in found] == [r.email for r in audience(store, "main", batch_size=1000)]


def test_audience_of_an_unknown_list_is_not_found(store):
    with pytest.raises(NotFound):
        list(audience(store, "nope"))
