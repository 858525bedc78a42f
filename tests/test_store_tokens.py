"""Link tokens: unguessable, unforgeable, long-lived, and honest about stale consent."""

from __future__ import annotations

import pytest

from pipeline.errors import TokenError
from pipeline.store import (
    add_subscriber,
    audience,
    audience_count,
    confirm,
    create_list,
    forget,
    resolve,
    show,
    unsubscribe_by_token,
)


def _recipient(store, list_name="main"):
    return next(iter(audience(store, list_name)))


def test_confirm_token_confirms_once_and_is_idempotent(store):
    result = add_subscriber(store, "ann@example.org")
    target = confirm(store, result.confirm_token)
    assert (target.email, target.list_name, target.status) == (
        "ann@example.org",
        "main",
        "confirmed",
    )
    confirm(store, result.confirm_token)
    assert [e.kind for e in show(store, "ann@example.org").events] == ["subscribed", "confirmed"]


def test_tampered_forged_or_foreign_tokens_are_refused(store):
    add_subscriber(store, "ann@example.org", confirmed=True)
    add_subscriber(store, "bob@example.org", confirmed=True)
    ann, bob = list(audience(store, "main"))
    token = ann.unsubscribe_token
    kind_id, seq, mac = token.split(".")
    flipped = mac[:-1] + ("A" if mac[-1] != "A" else "B")
    forged = [
        f"{kind_id}.{seq}.{flipped}",  # MAC altered
        f"u{bob.membership_id}.{seq}.{mac}",  # someone else's id with ann's MAC
        f"{kind_id}.{int(seq) + 1}.{mac}",  # consent number altered
        "u1.1.short",
        "",
        "u1.1." + "A" * 24,
        token + "x",
        "../../etc/passwd",
    ]
    for bad in forged:
        with pytest.raises(TokenError):
            resolve(store, bad, "unsubscribe")
    with pytest.raises(TokenError, match="not a confirm link"):
        resolve(store, token, "confirm")


def test_tokens_are_url_safe_and_distinct_per_purpose(store):
    add_subscriber(store, "ann@example.org", confirmed=True)
    r = _recipient(store)
    tokens = {r.unsubscribe_token, r.unsubscribe_all_token, r.preferences_token}
    assert len(tokens) == 3
    for t in tokens:
        assert all(c.isalnum() or c in "._-" for c in t)
    assert resolve(store, r.preferences_token, "preferences").email == "ann@example.org"


def test_unsubscribe_by_token_leaves_only_that_list(store):
    create_list(store, "weekly")
    add_subscriber(store, "ann@example.org", confirmed=True)
    add_subscriber(store, "ann@example.org", list_name="weekly", confirmed=True)
    assert unsubscribe_by_token(store, _recipient(store).unsubscribe_token, source="link") == 1
    assert audience_count(store, "main") == 0
    assert audience_count(store, "weekly") == 1


def test_unsubscribe_all_token_leaves_every_list(store):
    create_list(store, "weekly")
    add_subscriber(store, "ann@example.org", confirmed=True)
    add_subscriber(store, "ann@example.org", list_name="weekly", confirmed=True)
    token = _recipient(store, "weekly").unsubscribe_all_token
    assert resolve(store, token, "unsubscribe").scope == "all"
    assert unsubscribe_by_token(store, token, source="link") == 2
    assert audience_count(store, "main") == audience_count(store, "weekly") == 0


def test_old_unsubscribe_link_after_resubscription_is_stale_not_silent(store):
    add_subscriber(store, "ann@example.org", confirmed=True)
    old = _recipient(store)
    unsubscribe_by_token(store, old.unsubscribe_token, source="link")
    again = add_subscriber(store, "ann@example.org", source="web form")
    confirm(store, again.confirm_token)

    target = resolve(store, old.unsubscribe_token, "unsubscribe")
    assert target.stale is True
    with pytest.raises(TokenError, match="predates a newer subscription"):
        unsubscribe_by_token(store, old.unsubscribe_token)
    assert audience_count(store, "main") == 1
    # The new link is current; the old one works only once the person has confirmed.
    assert resolve(store, _recipient(store).unsubscribe_token, "unsubscribe").stale is False
    assert unsubscribe_by_token(store, old.unsubscribe_token, accept_stale=True) == 1
    assert audience_count(store, "main") == 0


def test_old_unsubscribe_all_link_is_stale_after_a_new_subscription(store):
    create_list(store, "weekly")
    add_subscriber(store, "ann@example.org", confirmed=True)
    old_all = _recipient(store).unsubscribe_all_token
    add_subscriber(store, "ann@example.org", list_name="weekly", confirmed=True)
    assert resolve(store, old_all, "unsubscribe").stale is True


def test_tokens_of_an_erased_person_stop_working(store):
    add_subscriber(store, "ann@example.org", confirmed=True)
    r = _recipient(store)
    forget(store, "ann@example.org")
    for token, purpose in (
        (r.unsubscribe_token, "unsubscribe"),
        (r.preferences_token, "preferences"),
    ):
        with pytest.raises(TokenError):
            resolve(store, token, purpose)


def test_tokens_are_stable_across_reads(store):
    add_subscriber(store, "ann@example.org", confirmed=True)
    assert _recipient(store) == _recipient(store)
