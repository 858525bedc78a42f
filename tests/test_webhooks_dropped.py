"""SendGrid ``dropped`` events applied, and Resend events carrying the delivery key,
checked with the providers' own libraries (sendgrid's EventWebhook, svix's Webhook)."""

from __future__ import annotations

import json
import time
from datetime import UTC, datetime

import pytest

from pipeline.store import add_subscriber, is_suppressed
from pipeline.webhooks.apply import apply_events
from tests.test_webhooks_providers import _sendgrid

# The official signed test vector of sendgrid/sendgrid-python,
# test/unit/test_eventwebhook.py (a "dropped" event, reason "Bounced Address").
SG_PUBLIC_KEY = (
    "MFkwEwYHKoZIzj0CAQYIKoZIzj0DAQcDQgAE83T4O/n84iotIvIW4mdBgQ/7dAfSmpqIM8kF9mN1flpVKS3G"
    "Rqe62gw+2fNNRaINXvVpiglSI8eNEc6wEA3F+g=="
)
SG_SIGNATURE = (
    "MEUCIGHQVtGj+Y3LkG9fLcxf3qfI10QysgDWmMOVmxG0u6ZUAiEAyBiXDWzM+uOe5W0JuG+luQAbPIqHh89M15T"
    "luLtEZtM="
)
SG_TIMESTAMP = "1600112502"
SG_PAYLOAD = (
    json.dumps(
        [
            {
                "email": "hello@world.com",
                "event": "dropped",
                "reason": "Bounced Address",
                "sg_event_id": "ZHJvcC0xMDk5NDkxOS1MUnpYbF9OSFN0T0doUTRrb2ZTbV9BLTA",
                "sg_message_id": "LRzXl_NHStOGhQ4kofSm_A.filterdrecv-p3mdw1-756b745b58-kmzbl-18-"
                "5F5FC76C-9.0",
                "smtp-id": "<LRzXl_NHStOGhQ4kofSm_A@ismtpd0039p1iad1.sendgrid.net>",
                "timestamp": 1600112492,
            }
        ],
        sort_keys=True,
        separators=(",", ":"),
    )
    + "\r\n"
)


def test_the_official_dropped_vector_is_verified_and_suppresses_the_address(project, web_engine):
    from sendgrid.helpers.eventwebhook import EventWebhook

    from pipeline.config import load_settings
    from pipeline.webhooks import sendgrid
    from pipeline.webhooks.registry import WebhookCall, bind

    ew = EventWebhook()
    assert ew.verify_signature(
        SG_PAYLOAD, SG_SIGNATURE, SG_TIMESTAMP, ew.convert_public_key_to_ecdsa(SG_PUBLIC_KEY)
    )
    settings = load_settings(
        project / "brief.toml", env={"BRIEF_SENDGRID_WEBHOOK_PUBLIC_KEY": SG_PUBLIC_KEY}
    )
    headers = {sendgrid.SIGNATURE: SG_SIGNATURE, sendgrid.TIMESTAMP: SG_TIMESTAMP}
    now = datetime.fromtimestamp(int(SG_TIMESTAMP) + 10, UTC)
    call = WebhookCall(headers, SG_PAYLOAD.encode(), now, remember=lambda token: True)
    events = bind(settings, "sendgrid").verify(call)
    assert [(e.kind, e.email) for e in events] == [("hard_bounce", "hello@world.com")]
    assert apply_events(web_engine, events).applied == 1
    assert is_suppressed(web_engine, "hello@world.com")


@pytest.mark.parametrize(
    ("reason", "suppressed"),
    [
        # SendGrid's documented drop reasons (Event Webhook reference, "dropped").
        ("Bounced Address", True),
        ("Spam Reporting Address", True),
        ("Invalid", True),
        ("Unsubscribed Address", False),  # SendGrid's own unsubscribe list, not a bounce
        ("Spam Content (if spam checker app enabled)", False),  # our content, not the reader
        ("Invalid SMTPAPI header", False),  # our request, not the reader
    ],
)
def test_dropped_reasons_suppress_only_unreachable_or_complaining_readers(
    reason, suppressed, client, web_engine, sendgrid_key
):
    add_subscriber(web_engine, "eve@example.com", confirmed=True, source="test")
    events = [
        {"email": "eve@example.com", "event": "dropped", "reason": reason, "sg_event_id": "d-1"}
    ]
    response = _sendgrid(client, sendgrid_key, events)
    assert response.status_code == 200
    assert is_suppressed(web_engine, "eve@example.com") is suppressed


def test_resend_event_signed_by_svix_carries_the_delivery_key_back(
    client, web_engine, web_settings
):
    from svix.webhooks import Webhook

    from pipeline.providers.resend import tag_value
    from pipeline.webhooks.registry import WebhookCall, bind
    from tests.fixtures_web import WEBHOOK_ENV

    add_subscriber(web_engine, "fay@example.com", confirmed=True, source="test")
    payload = {
        "type": "email.bounced",
        "created_at": "2026-12-02T12:00:00.000Z",
        "data": {
            "email_id": "4ef9a417",
            "to": ["fay@example.com"],
            "subject": "Issue 1",
            "tags": [{"name": "brief_key", "value": tag_value("issue-001.subscriber-7")}],
            "bounce": {"type": "Permanent", "subType": "General", "message": "no mailbox"},
        },
    }
    body = json.dumps(payload).encode()
    ts = datetime.fromtimestamp(int(time.time()), UTC)
    secret = WEBHOOK_ENV["BRIEF_RESEND_WEBHOOK_SECRET"]
    signature = Webhook(secret).sign("msg_1", ts, body.decode())
    headers = {
        "svix-id": "msg_1",
        "svix-timestamp": str(int(ts.timestamp())),
        "svix-signature": signature,
    }
    # The app accepts what svix signed…
    response = client.post("/webhooks/resend", content=body, headers=headers)
    assert response.status_code == 200 and is_suppressed(web_engine, "fay@example.com")
    # …and the event names the delivery it is about.
    call = WebhookCall(headers, body, ts, remember=lambda token: True)
    (event,) = bind(web_settings, "resend").verify(call)
    assert event.delivery_key == "issue-001.subscriber-7"
