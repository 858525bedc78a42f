"""Bounce and complaint webhooks: each provider's own verification, replay protection,
and what a verified event does to the store (suppress, or only log)."""

from __future__ import annotations

import base64
import hashlib
import hmac
import json
import time

import pytest

from pipeline.store import add_subscriber, audience_count, is_suppressed, show
from tests.fixtures_web import post_resend

ANN = "ann@example.com"


@pytest.fixture
def ann(web_engine):
    add_subscriber(web_engine, ANN, "Ann", confirmed=True, source="test")
    return ANN


def _bounce_events(engine, email=ANN):
    return [e for e in show(engine, email).events if e.kind in ("bounced", "complained")]


# -- Postmark: basic auth -------------------------------------------------------------------


def _postmark(client, payload, user="postmark-hook", password="pm-9f3c2a71e0"):
    auth = base64.b64encode(f"{user}:{password}".encode()).decode()
    return client.post(
        "/webhooks/postmark",
        content=json.dumps(payload),
        headers={"Authorization": f"Basic {auth}", "Content-Type": "application/json"},
    )


POSTMARK_HARD = {
    "RecordType": "Bounce",
    "ID": 4323372036854775807,
    "Type": "HardBounce",
    "TypeCode": 1,
    "Email": ANN,
    "Description": "The server was unable to deliver",
}


def test_postmark_hard_bounce_suppresses_the_address(client, web_engine, ann):
    response = _postmark(client, POSTMARK_HARD)
    assert response.status_code == 200
    assert response.json() == {"applied": 1, "duplicates": 0, "skipped": 0}
    assert is_suppressed(web_engine, ANN)
    assert audience_count(web_engine, "main") == 0
    assert [e.kind for e in _bounce_events(web_engine)] == ["bounced"]


def test_postmark_wrong_password_gets_401_and_changes_nothing(client, web_engine, ann):
    response = _postmark(client, POSTMARK_HARD, password="guess")
    assert response.status_code == 401
    assert not is_suppressed(web_engine, ANN)
    assert _bounce_events(web_engine) == []


def test_postmark_without_credentials_gets_401(client, web_engine, ann):
    response = client.post("/webhooks/postmark", json=POSTMARK_HARD)
    assert response.status_code == 401
    assert not is_suppressed(web_engine, ANN)


def test_postmark_replayed_bounce_changes_nothing_twice(client, web_engine, ann):
    assert _postmark(client, POSTMARK_HARD).json()["applied"] == 1
    again = _postmark(client, POSTMARK_HARD)
    assert again.status_code == 200
    assert again.json() == {"applied": 0, "duplicates": 1, "skipped": 0}
    assert len(_bounce_events(web_engine)) == 1


def test_postmark_soft_bounce_is_logged_but_not_suppressed(client, web_engine, ann):
    soft = {**POSTMARK_HARD, "ID": 77, "Type": "SoftBounce", "TypeCode": 4096}
    assert _postmark(client, soft).json()["applied"] == 1
    assert not is_suppressed(web_engine, ANN)
    events = _bounce_events(web_engine)
    assert len(events) == 1 and "soft bounce" in events[0].detail
    assert ANN not in events[0].detail


def test_postmark_spam_complaint_suppresses(client, web_engine, ann):
    complaint = {"RecordType": "SpamComplaint", "ID": 42, "Type": "SpamComplaint", "Email": ANN}
    assert _postmark(client, complaint).json()["applied"] == 1
    assert is_suppressed(web_engine, ANN)
    assert [e.kind for e in _bounce_events(web_engine)] == ["complained"]


def test_postmark_verified_but_malformed_body_gets_400(client, web_engine, ann):
    auth = base64.b64encode(b"postmark-hook:pm-9f3c2a71e0").decode()
    response = client.post(
        "/webhooks/postmark", content=b"{not json", headers={"Authorization": f"Basic {auth}"}
    )
    assert response.status_code == 400


# -- SendGrid: ECDSA P-256 -------------------------------------------------------------------


def _sendgrid(client, key, events, timestamp=None, tamper=None):
    from cryptography.hazmat.primitives import hashes
    from cryptography.hazmat.primitives.asymmetric import ec

    body = json.dumps(events).encode()
    ts = str(int(time.time()) if timestamp is None else timestamp)
    signature = key.sign(ts.encode() + body, ec.ECDSA(hashes.SHA256()))
    return client.post(
        "/webhooks/sendgrid",
        content=tamper or body,
        headers={
            "X-Twilio-Email-Event-Webhook-Signature": base64.b64encode(signature).decode(),
            "X-Twilio-Email-Event-Webhook-Timestamp": ts,
            "Content-Type": "application/json",
        },
    )


def _sg_events(email=ANN):
    return [
        {
            "email": email,
            "event": "bounce",
            "type": "bounce",
            "sg_event_id": "sg-b-1",
            "status": "5.1.1",
            "reason": f"550 5.1.1 <{email}>: user unknown",
            "timestamp": 1,
        },
        {"email": "bob@example.com", "event": "delivered", "sg_event_id": "sg-d-1"},
    ]


def test_sendgrid_signed_bounce_suppresses(client, web_engine, ann, sendgrid_key):
    response = _sendgrid(client, sendgrid_key, _sg_events())
    assert response.status_code == 200
    assert response.json()["applied"] == 1
    assert is_suppressed(web_engine, ANN)
    # The provider's diagnostic names the address; the log never does.
    assert all(ANN not in (e.detail or "") for e in _bounce_events(web_engine))


def test_sendgrid_tampered_body_gets_401(client, web_engine, ann, sendgrid_key):
    forged = json.dumps(_sg_events("carol@example.com")).encode()
    response = _sendgrid(client, sendgrid_key, _sg_events(), tamper=forged)
    assert response.status_code == 401
    assert not is_suppressed(web_engine, ANN)
    assert not is_suppressed(web_engine, "carol@example.com")


def test_sendgrid_old_timestamp_gets_401(client, web_engine, ann, sendgrid_key):
    response = _sendgrid(client, sendgrid_key, _sg_events(), timestamp=int(time.time()) - 600)
    assert response.status_code == 401
    assert not is_suppressed(web_engine, ANN)


def test_sendgrid_unsigned_call_gets_401(client, web_engine, ann):
    response = client.post("/webhooks/sendgrid", json=_sg_events())
    assert response.status_code == 401
    assert not is_suppressed(web_engine, ANN)


def test_sendgrid_blocked_is_a_soft_bounce_and_spamreport_a_complaint(
    client, web_engine, ann, sendgrid_key
):
    add_subscriber(web_engine, "dan@example.com", confirmed=True, source="test")
    events = [
        {"email": ANN, "event": "bounce", "type": "blocked", "sg_event_id": "sg-x"},
        {"email": "dan@example.com", "event": "spamreport", "sg_event_id": "sg-y"},
    ]
    assert _sendgrid(client, sendgrid_key, events).json()["applied"] == 2
    assert not is_suppressed(web_engine, ANN)
    assert is_suppressed(web_engine, "dan@example.com")


# -- Mailgun: HMAC of timestamp + token --------------------------------------------------------


def _mailgun_body(event, key="key-mg-5d1c8e2b7a", timestamp=None, token="a" * 50):
    ts = str(int(time.time()) if timestamp is None else timestamp)
    sig = hmac.new(key.encode(), (ts + token).encode(), hashlib.sha256).hexdigest()
    return {"signature": {"timestamp": ts, "token": token, "signature": sig}, "event-data": event}


MG_FAILED = {
    "event": "failed",
    "severity": "permanent",
    "recipient": ANN,
    "id": "mg-ev-1",
    "delivery-status": {"code": 550, "message": "No such mailbox"},
}


def test_mailgun_permanent_failure_suppresses(client, web_engine, ann):
    response = client.post("/webhooks/mailgun", json=_mailgun_body(MG_FAILED))
    assert response.status_code == 200 and response.json()["applied"] == 1
    assert is_suppressed(web_engine, ANN)


def test_mailgun_bad_signature_gets_401(client, web_engine, ann):
    response = client.post("/webhooks/mailgun", json=_mailgun_body(MG_FAILED, key="wrong"))
    assert response.status_code == 401
    assert not is_suppressed(web_engine, ANN)


def test_mailgun_stale_timestamp_gets_401(client, web_engine, ann):
    body = _mailgun_body(MG_FAILED, timestamp=int(time.time()) - 3600)
    assert client.post("/webhooks/mailgun", json=body).status_code == 401
    assert not is_suppressed(web_engine, ANN)


def test_mailgun_replay_is_refused_and_changes_nothing_twice(client, web_engine, ann):
    temporary = {**MG_FAILED, "severity": "temporary", "id": "mg-ev-2"}
    body = _mailgun_body(temporary)
    assert client.post("/webhooks/mailgun", json=body).json()["applied"] == 1
    # The token was used: the same signature block is never good twice (issue 10).
    assert client.post("/webhooks/mailgun", json=body).status_code == 401
    # Mailgun's own retry of the event comes with a fresh token: a duplicate by event id.
    fresh = _mailgun_body(temporary, token="c" * 50)
    assert client.post("/webhooks/mailgun", json=fresh).json()["duplicates"] == 1
    assert not is_suppressed(web_engine, ANN)
    assert len(_bounce_events(web_engine)) == 1


def test_mailgun_complaint_suppresses(client, web_engine, ann):
    body = _mailgun_body({"event": "complained", "recipient": ANN, "id": "mg-c"})
    assert client.post("/webhooks/mailgun", json=body).json()["applied"] == 1
    assert is_suppressed(web_engine, ANN)


# -- Resend: Svix signatures -----------------------------------------------------------------


def _resend(client, payload, secret=None, msg_id="msg_2KWPBgLlAfxdpx2AI54pPJ85f4W", timestamp=None):
    # Svix lists several signatures; one that is not ours comes first.
    return post_resend(
        client, payload, msg_id, secret=secret, timestamp=timestamp, before="v1,bm90LXRoaXMtb25l "
    )


RESEND_BOUNCE = {
    "type": "email.bounced",
    "created_at": "2026-12-02T12:00:00.000Z",
    "data": {
        "email_id": "4ef9a417",
        "to": [ANN],
        "subject": "Issue 1",
        "bounce": {
            "type": "Permanent",
            "subType": "Suppressed",
            "message": "The recipient is on a suppression list.",
        },
    },
}


def test_resend_permanent_bounce_suppresses(client, web_engine, ann):
    response = _resend(client, RESEND_BOUNCE)
    assert response.status_code == 200 and response.json()["applied"] == 1
    assert is_suppressed(web_engine, ANN)


def test_resend_signature_with_another_secret_gets_401(client, web_engine, ann):
    other = "whsec_" + base64.b64encode(b"someone-else-entirely-32-bytes!!").decode()
    assert _resend(client, RESEND_BOUNCE, secret=other).status_code == 401
    assert not is_suppressed(web_engine, ANN)


def test_resend_replayed_message_id_changes_nothing_twice(client, web_engine, ann):
    complaint = {"type": "email.complained", "data": {"email_id": "x", "to": [ANN]}}
    assert _resend(client, complaint, msg_id="msg_c1").json()["applied"] == 1
    assert _resend(client, complaint, msg_id="msg_c1").json()["duplicates"] == 1
    assert len(_bounce_events(web_engine)) == 1


def test_resend_old_timestamp_gets_401(client, web_engine, ann):
    old = int(time.time()) - 301
    assert _resend(client, RESEND_BOUNCE, timestamp=old).status_code == 401
    assert not is_suppressed(web_engine, ANN)


def test_unknown_provider_is_404_and_unconfigured_secret_is_401(
    client_for, published, web_engine, ann
):
    from pipeline.config import load_settings

    bare = client_for(load_settings(published / "brief.toml", env={}))
    assert bare.post("/webhooks/acme", json={}).status_code == 404
    assert _postmark(bare, POSTMARK_HARD).status_code == 401
    assert _resend(bare, RESEND_BOUNCE).status_code == 401
    assert not is_suppressed(web_engine, ANN)
