"""Issue 10: webhooks under hostile or awkward input, on SQLite and PostgreSQL.

Mailgun signature replays with new event data, NUL and control characters in
provider text (which PostgreSQL refuses), and one bad event in a batch. Signatures are
made or checked with the providers' own libraries: SendGrid's ``EventWebhook``
(sendgrid-python, sendgrid/helpers/eventwebhook/__init__.py: ECDSA P-256 over
timestamp + payload) and Svix's ``Webhook.sign`` (svix-webhooks, python/svix/webhooks.py)
for Resend.
"""

from __future__ import annotations

import base64
import hashlib
import hmac
import json
import time
from datetime import UTC, datetime

import pytest

from pipeline.store import add_subscriber, is_suppressed, show

ANN = "ann@example.com"


def _sendgrid_post(client, key, events):
    """Sign like SendGrid and prove it with SendGrid's own verifier before posting."""
    from cryptography.hazmat.primitives import hashes, serialization
    from cryptography.hazmat.primitives.asymmetric import ec
    from sendgrid.helpers.eventwebhook import EventWebhook

    payload = json.dumps(events)
    ts = str(int(time.time()))
    signature = base64.b64encode(
        key.sign((ts + payload).encode(), ec.ECDSA(hashes.SHA256()))
    ).decode()
    der = key.public_key().public_bytes(
        serialization.Encoding.DER, serialization.PublicFormat.SubjectPublicKeyInfo
    )
    official = EventWebhook(base64.b64encode(der).decode())
    assert official.verify_signature(payload, signature, ts)
    return client.post(
        "/webhooks/sendgrid",
        content=payload.encode(),
        headers={
            "X-Twilio-Email-Event-Webhook-Signature": signature,
            "X-Twilio-Email-Event-Webhook-Timestamp": ts,
            "Content-Type": "application/json",
        },
    )


def _people(store, *emails):
    for email in emails:
        add_subscriber(store, email, confirmed=True, source="test")


# -- item 3: NUL on PostgreSQL, and one bad event in a batch ---------------------------------


def test_sendgrid_batch_with_nul_in_a_reason_suppresses_every_address(
    store_client, store, sendgrid_key
):
    s1, s2, s3 = "s1@example.com", "s2@example.com", "s3@example.com"
    _people(store, s1, s2, s3)
    # Documented shape: docs.sendgrid.com "Event Webhook reference" (bounce, spamreport).
    events = [
        {"email": s1, "event": "bounce", "type": "bounce", "sg_event_id": "e1", "reason": "550"},
        {
            "email": s2,
            "event": "bounce",
            "type": "bounce",
            "sg_event_id": "e2",
            "reason": "550 bad\u0000mailbox\x07\x1b[31m",
        },
        {"email": s3, "event": "spamreport", "sg_event_id": "e3\u0000"},
    ]
    for _ in range(2):  # the provider's retry is answered the same and changes nothing twice
        response = _sendgrid_post(store_client, sendgrid_key, events)
        assert response.status_code == 200, response.text
    assert all(is_suppressed(store, a) for a in (s1, s2, s3))
    [logged] = [e for e in show(store, s2).events if e.kind == "bounced"]
    assert "\x00" not in logged.detail and "\x07" not in logged.detail
    assert "bad" in logged.detail and "mailbox" in logged.detail


def test_one_malformed_event_in_a_batch_does_not_stop_the_others(store_client, store, sendgrid_key):
    s1, s3 = "s1@example.com", "s3@example.com"
    _people(store, s1, s3)
    events = [
        {"email": s1, "event": "bounce", "type": "bounce", "sg_event_id": "m1"},
        {"event": "bounce", "type": "bounce", "sg_event_id": "m2"},  # no email
        "not an object",
        {"email": 42, "event": "spamreport", "sg_event_id": "m4"},
        {"email": s3, "event": "spamreport", "sg_event_id": "m3"},
    ]
    response = _sendgrid_post(store_client, sendgrid_key, events)
    assert response.status_code == 200, response.text
    assert response.json()["applied"] == 2
    assert is_suppressed(store, s1) and is_suppressed(store, s3)


def test_postmark_nul_in_description_and_id_still_suppresses(store_client, store):
    _people(store, ANN)
    auth = base64.b64encode(b"postmark-hook:pm-9f3c2a71e0").decode()
    # Postmark's bounce webhook example: postmarkapp.com/developer/webhooks/bounce-webhook
    record = {
        "RecordType": "Bounce",
        "ID": "4323\u00003720",
        "Type": "HardBounce",
        "Email": ANN,
        "Description": "The server was unable\u0000 to deliver\u2028your message",
    }
    response = store_client.post(
        "/webhooks/postmark",
        content=json.dumps(record),
        headers={"Authorization": f"Basic {auth}", "Content-Type": "application/json"},
    )
    assert response.status_code == 200, response.text
    assert response.json()["applied"] == 1
    assert is_suppressed(store, ANN)
    [logged] = [e for e in show(store, ANN).events if e.kind == "bounced"]
    assert "\x00" not in logged.detail and "\u2028" not in logged.detail


def test_resend_signed_by_svix_with_control_characters_is_stored_clean(store_client, store):
    from svix.webhooks import Webhook

    from tests.fixtures_web import WEBHOOK_ENV

    _people(store, ANN)
    body = json.dumps(
        {
            "type": "email.bounced",
            "data": {
                "to": [ANN],
                "bounce": {"type": "Permanent", "subType": "General", "message": "no\u0000pe"},
            },
        }
    )
    now = datetime.now(UTC)
    msg_id = "msg_2KWPBgLlAfxdpx2AI54pPJ85f4W"
    signature = Webhook(WEBHOOK_ENV["BRIEF_RESEND_WEBHOOK_SECRET"]).sign(msg_id, now, body)
    response = store_client.post(
        "/webhooks/resend",
        content=body.encode(),
        headers={
            "svix-id": msg_id,
            "svix-timestamp": str(int(now.timestamp())),
            "svix-signature": signature,
            "Content-Type": "application/json",
        },
    )
    assert response.status_code == 200, response.text
    assert is_suppressed(store, ANN)
    [logged] = [e for e in show(store, ANN).events if e.kind == "bounced"]
    assert "\x00" not in logged.detail


# -- item 2: Mailgun signature replay with new event data ------------------------------------


def _mailgun_signature(token: str, key: str = "key-mg-5d1c8e2b7a") -> dict:
    # Mailgun: HMAC-SHA256(signing key, timestamp + token), hex; documentation.mailgun.com
    # "Securing webhooks". Mailgun advises caching tokens to refuse replays.
    ts = str(int(time.time()))
    sig = hmac.new(key.encode(), (ts + token).encode(), hashlib.sha256).hexdigest()
    return {"timestamp": ts, "token": token, "signature": sig}


def test_mailgun_reused_signature_with_new_event_data_is_refused(store_client, store):
    victim = "victim@example.com"
    _people(store, ANN, victim)
    signature = _mailgun_signature("b" * 50)
    delivered = {"event": "delivered", "recipient": ANN, "id": "mg-d-1"}
    first = store_client.post(
        "/webhooks/mailgun", json={"signature": signature, "event-data": delivered}
    )
    assert first.status_code == 200
    for n in range(3):
        forged = {"event": "complained", "recipient": victim, "id": f"forged-{n}"}
        replay = store_client.post(
            "/webhooks/mailgun", json={"signature": signature, "event-data": forged}
        )
        assert replay.status_code == 401, replay.text
    assert not is_suppressed(store, victim)


def test_mailgun_fresh_tokens_each_apply(store_client, store):
    _people(store, ANN)
    for n, event in enumerate(["failed", "complained"]):
        data = {"event": event, "severity": "temporary", "recipient": ANN, "id": f"mg-{n}"}
        response = store_client.post(
            "/webhooks/mailgun",
            json={"signature": _mailgun_signature(f"{n}" * 50), "event-data": data},
        )
        assert response.status_code == 200 and response.json()["applied"] == 1
    assert is_suppressed(store, ANN)


@pytest.mark.parametrize("token", ["x" * 5000, "\u0000" * 10])
def test_mailgun_odd_tokens_never_reach_a_500(store_client, token):
    data = {"event": "complained", "recipient": ANN, "id": "odd"}
    response = store_client.post(
        "/webhooks/mailgun", json={"signature": _mailgun_signature(token), "event-data": data}
    )
    assert response.status_code in (200, 401)


def test_mailgun_tokens_are_forgotten_only_long_after_their_window(store_client, store):
    import sqlalchemy as sa

    from pipeline.store.schema import webhook_events
    from pipeline.webhooks.apply import TOKEN_MEMORY, remember_token

    assert TOKEN_MEMORY.total_seconds() > 300 * 100  # far past the 5-minute window
    assert remember_token(store, "mailgun", "t-old")
    assert not remember_token(store, "mailgun", "t-old")
    with store.begin() as conn:  # age it past the memory
        conn.execute(
            webhook_events.update()
            .where(webhook_events.c.provider == "mailgun:token")
            .values(received_at=datetime.now(UTC) - 2 * TOKEN_MEMORY)
        )
    assert remember_token(store, "mailgun", "t-new")
    with store.connect() as conn:
        kept = conn.execute(
            sa.select(sa.func.count()).where(webhook_events.c.provider == "mailgun:token")
        ).scalar_one()
    assert kept == 1
