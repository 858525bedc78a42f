"""Subscribers, consent history, unsubscribe, suppression and erasure."""

from __future__ import annotations

import pytest
import sqlalchemy as sa
from hypothesis import given, settings
from hypothesis import strategies as st

from pipeline.errors import NotFound, StoreError, TokenError
from pipeline.store import (
    add_subscriber,
    address_hash,
    audience_count,
    confirm,
    count,
    create_list,
    delete_list,
    forget,
    is_suppressed,
    list_subscribers,
    lists,
    normalise_email,
    show,
    suppress,
    unsubscribe_by_address,
)
from pipeline.store.schema import events


def test_normalise_email_trims_and_lowercases_the_domain_only():
    assert normalise_email("  Ann.Lee@EXAMPLE.Org \n") == "Ann.Lee@example.org"


def test_normalise_email_decodes_idna_domains_to_one_form():
    assert normalise_email("kim@xn--bcher-kva.de") == normalise_email("kim@BÜCHER.de")


def test_normalise_email_keeps_unicode_local_parts():
    assert normalise_email("jörg@example.com") == "jörg@example.com"


@pytest.mark.parametrize(
    "raw",
    ["", "no-at-sign", "a@b", "evil\r\nBcc: x@y.com@example.com", "a" * 250 + "@example.com"],
)
def test_normalise_email_refuses_invalid_addresses_with_a_message(raw):
    with pytest.raises(StoreError, match="email address"):
        normalise_email(raw)


def test_address_hash_ignores_case_and_whitespace():
    assert address_hash(" Ann@Example.org") == address_hash("ann@example.ORG")
    assert len(address_hash("ann@example.org")) == 64


def test_add_without_confirmed_is_pending_with_a_confirm_token(store):
    result = add_subscriber(store, "ann@example.org", name="Ann")
    assert result.status == "pending"
    assert result.needs_confirmation and result.confirm_token
    assert result.list_name == "main"  # the default list is created on demand
    assert audience_count(store, "main") == 0


def test_add_to_a_missing_non_default_list_is_not_found(store):
    with pytest.raises(NotFound, match="weekly"):
        add_subscriber(store, "ann@example.org", list_name="weekly")


def test_consent_history_through_subscribe_confirm_unsubscribe_resubscribe(store):
    first = add_subscriber(store, "ann@example.org", name="Ann", source="web form")
    confirm(store, first.confirm_token)
    assert unsubscribe_by_address(store, "ann@example.org", list_name="main") == 1
    again = add_subscriber(store, "ann@example.org", source="web form")
    assert again.needs_confirmation
    confirm(store, again.confirm_token)

    detail = show(store, "ANN@example.org")
    assert [e.kind for e in detail.events] == [
        "subscribed",
        "confirmed",
        "unsubscribed",
        "subscribed",
        "confirmed",
    ]
    assert all(e.list_name == "main" for e in detail.events)
    assert detail.events[0].source == "web form"
    assert [m.status for m in detail.memberships] == ["confirmed"]
    assert audience_count(store, "main") == 1


def test_someone_who_unsubscribed_cannot_be_added_back_as_confirmed(store):
    add_subscriber(store, "ann@example.org", confirmed=True)
    unsubscribe_by_address(store, "ann@example.org", list_name="main")
    with pytest.raises(StoreError, match="only the person can re-subscribe"):
        add_subscriber(store, "ann@example.org", confirmed=True)
    # Even once a new confirmation is pending, the operator cannot confirm for them.
    add_subscriber(store, "ann@example.org")
    with pytest.raises(StoreError, match="only the person"):
        add_subscriber(store, "ann@example.org", confirmed=True)


def test_unsubscribe_from_everything_suppresses_the_address(store):
    create_list(store, "weekly")
    add_subscriber(store, "ann@example.org", confirmed=True)
    add_subscriber(store, "ann@example.org", list_name="weekly", confirmed=True)
    assert unsubscribe_by_address(store, "ann@example.org") == 2
    assert is_suppressed(store, "Ann@Example.org")
    assert {m.status for m in show(store, "ann@example.org").memberships} == {"unsubscribed"}


def test_unsubscribe_unknown_address_is_not_found(store):
    with pytest.raises(NotFound):
        unsubscribe_by_address(store, "ghost@example.org")


def test_hard_bounce_suppression_keeps_the_person_out_of_the_audience(store):
    add_subscriber(store, "ann@example.org", confirmed=True)
    suppress(store, "ann@example.org", "hard_bounce", "provider webhook")
    suppress(store, "ann@example.org", "hard_bounce", "provider webhook")  # idempotent
    assert audience_count(store, "main") == 0
    assert [e.kind for e in show(store, "ann@example.org").events][-2:] == ["bounced", "bounced"]
    with pytest.raises(StoreError, match="suppressed"):
        add_subscriber(store, "ann@example.org")


def test_suppress_rejects_unknown_reasons(store):
    with pytest.raises(StoreError, match="unknown suppression reason"):
        suppress(store, "ann@example.org", "annoyed", "cli")


def test_forget_erases_the_person_and_logs_an_erasure_without_the_address(store):
    add_subscriber(store, "ann@example.org", name="Ann Lee", confirmed=True)
    assert forget(store, "ann@example.org") is True
    with pytest.raises(NotFound, match="suppressed: erased"):
        show(store, "ann@example.org")
    assert is_suppressed(store, "ann@example.org")
    with store.connect() as conn:
        rows = conn.execute(sa.select(events)).all()
        dump = " ".join(str(tuple(r)) for r in rows)
        tables = conn.exec_driver_sql("SELECT count(*) FROM subscribers").scalar()
    assert [r.kind for r in rows] == ["erased"]
    assert rows[0].subscriber_id is None
    assert "ann" not in dump.lower() and address_hash("ann@example.org") not in dump
    assert tables == 0


def test_forgotten_person_may_return_only_through_their_own_confirmation(store):
    add_subscriber(store, "ann@example.org", confirmed=True)
    forget(store, "ann@example.org")
    with pytest.raises(StoreError, match="erased"):
        add_subscriber(store, "ann@example.org", confirmed=True)
    pending = add_subscriber(store, "ann@example.org", source="web form")
    assert audience_count(store, "main") == 0
    confirm(store, pending.confirm_token)
    assert not is_suppressed(store, "ann@example.org")
    assert audience_count(store, "main") == 1


def test_confirm_after_unsubscribing_does_not_resubscribe(store):
    result = add_subscriber(store, "ann@example.org")
    unsubscribe_by_address(store, "ann@example.org", list_name="main")
    with pytest.raises(TokenError, match="out of date"):
        confirm(store, result.confirm_token)


def test_names_with_line_breaks_are_refused(store):
    with pytest.raises(StoreError, match="line break"):
        add_subscriber(store, "ann@example.org", name="Ann\r\nBcc: victim@example.org")
    with pytest.raises(StoreError, match="line break"):
        add_subscriber(store, "ann@example.org", name="Ann\u2028Lee")


def test_overlong_name_is_refused_but_a_long_one_is_stored(store):
    with pytest.raises(StoreError, match="longer than 200"):
        add_subscriber(store, "ann@example.org", name="x" * 201)
    add_subscriber(store, "ann@example.org", name="é" * 200)
    assert show(store, "ann@example.org").name == "é" * 200


def test_unicode_domain_and_local_part_are_stored_and_found(store):
    add_subscriber(store, "kim@xn--bcher-kva.de", confirmed=True)
    add_subscriber(store, "jörg@例え.jp", confirmed=True)
    assert show(store, "kim@BÜCHER.de").email == "kim@bücher.de"
    assert show(store, "jörg@例え.jp").email == "jörg@例え.jp"


def test_rich_markup_in_a_name_is_stored_literally(store):
    add_subscriber(store, "ann@example.org", name="[bold]Ann[/bold] <script>")
    assert show(store, "ann@example.org").name == "[bold]Ann[/bold] <script>"


def test_lists_create_count_and_delete(store):
    create_list(store, "weekly", "Every week")
    with pytest.raises(StoreError, match="already exists"):
        create_list(store, "weekly")
    with pytest.raises(StoreError, match="not allowed"):
        create_list(store, "Bad Name")
    add_subscriber(store, "ann@example.org", list_name="weekly", confirmed=True)
    add_subscriber(store, "bob@example.org", list_name="weekly")
    weekly = next(li for li in lists(store) if li.name == "weekly")
    assert (weekly.pending, weekly.confirmed, weekly.unsubscribed) == (1, 1, 0)
    assert ("weekly", "confirmed", 1) in count(store)
    with pytest.raises(StoreError, match="--force"):
        delete_list(store, "weekly")
    assert delete_list(store, "weekly", force=True) == 2
    assert [li.name for li in lists(store)] == []
    # The people stay; only their membership of that list is gone.
    assert show(store, "ann@example.org").memberships == []


def test_list_subscribers_filters_by_list_and_status_in_stable_order(store):
    for i in range(5):
        add_subscriber(store, f"p{i}@example.org", confirmed=i % 2 == 0)
    rows = list(list_subscribers(store, list_name="main", status="confirmed", batch_size=2))
    assert [r.email for r in rows] == ["p0@example.org", "p2@example.org", "p4@example.org"]
    with pytest.raises(StoreError, match="unknown status"):
        list(list_subscribers(store, status="bogus"))


_ATEXT = "abcdefghijklmnopqrstuvwxyzABCDEFGHIJKLMNOPQRSTUVWXYZ0123456789!#$%&'*+/=?^_`{|}~-."


@settings(max_examples=300, deadline=None)
@given(
    local=st.text(alphabet=_ATEXT + '"() <>@ \u00e9', min_size=0, max_size=70),
    domain=st.sampled_from(
        ["example.org", "EXAMPLE.org", "xn--bcher-kva.de", "BÜCHER.de", "b", "a..b", "x.test"]
        + ["d" * 63 + ".com", "e" * 250 + ".com", "例え.jp"]
    ),
)
def test_normalise_email_agrees_with_email_validator(local, domain):
    """The cached fast path gives exactly email-validator's verdict and normal form."""
    from email_validator import EmailNotValidError, validate_email

    raw = f"{local}@{domain}"
    try:
        expected = validate_email(raw.strip(), check_deliverability=False).normalized
    except EmailNotValidError:
        expected = None
    if not raw.strip() or len(raw.strip()) > 320:
        expected = None
    try:
        got = normalise_email(raw)
    except StoreError:
        got = None
    assert got == expected
