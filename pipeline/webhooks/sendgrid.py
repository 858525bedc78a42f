"""SendGrid's signed Event Webhook: ECDSA P-256 / SHA-256 over timestamp + raw body.

Headers X-Twilio-Email-Event-Webhook-Signature (base64 DER signature) and
X-Twilio-Email-Event-Webhook-Timestamp; the verification key (base64 DER
SubjectPublicKeyInfo, as SendGrid shows it) comes from BRIEF_SENDGRID_WEBHOOK_PUBLIC_KEY.
Each event's ``sg_event_id`` de-duplicates replays.
"""

from __future__ import annotations

import base64
import binascii
from collections.abc import Mapping
from datetime import datetime
from typing import Any

from cryptography.exceptions import InvalidSignature
from cryptography.hazmat.primitives import hashes, serialization
from cryptography.hazmat.primitives.asymmetric import ec

from pipeline.plugins import TableSchema
from pipeline.webhooks.common import (
    BadPayload,
    Event,
    Unverified,
    check_fresh,
    load_json,
    scrub,
    unix_time,
)
from pipeline.webhooks.registry import WebhookCall

NAME = "sendgrid"
# SendGrid's documented drop reasons that mean the reader cannot or must not be mailed
# (its own suppression lists): suppress here too. The others ("Unsubscribed Address",
# "Spam Content", "Invalid SMTPAPI header", "Recipient List over Package Quota") are
# about SendGrid's unsubscribe list or our own request, not a bounce or a complaint.
DROPPED = {
    "bounced address": "hard_bounce",
    "invalid": "hard_bounce",
    "spam reporting address": "complaint",
}
SIGNATURE = "x-twilio-email-event-webhook-signature"
TIMESTAMP = "x-twilio-email-event-webhook-timestamp"


def _public_key(text: str) -> ec.EllipticCurvePublicKey:
    try:
        if "BEGIN PUBLIC KEY" in text:
            key = serialization.load_pem_public_key(text.encode())
        else:
            key = serialization.load_der_public_key(base64.b64decode(text.strip()))
    except (ValueError, binascii.Error):
        raise Unverified("BRIEF_SENDGRID_WEBHOOK_PUBLIC_KEY is not a public key") from None
    if not isinstance(key, ec.EllipticCurvePublicKey):
        raise Unverified("BRIEF_SENDGRID_WEBHOOK_PUBLIC_KEY is not an elliptic-curve key")
    return key


KEY_ENV = "BRIEF_SENDGRID_WEBHOOK_PUBLIC_KEY"


class SendGridVerifier:
    """``/webhooks/sendgrid``: the Signed Event Webhook's ECDSA signature, then its events."""

    settings_schema: TableSchema = {}
    secrets = (KEY_ENV,)

    def verify(
        self, call: WebhookCall, table: Mapping[str, Any], secrets: Mapping[str, str]
    ) -> list[Event]:
        """Check the ECDSA signature and timestamp, then read the batch of events."""
        return _verify(call.headers, call.body, call.now, secrets.get(KEY_ENV))


def _verify(
    headers: Mapping[str, str], body: bytes, now: datetime, text: str | None
) -> list[Event]:
    if not text:
        raise Unverified("the SendGrid verification key is not configured")
    given, timestamp = headers.get(SIGNATURE, ""), headers.get(TIMESTAMP, "")
    if not (given and timestamp):
        raise Unverified("missing signature headers")
    try:
        signature = base64.b64decode(given, validate=True)
    except (binascii.Error, ValueError):
        raise Unverified("malformed signature") from None
    try:
        _public_key(text).verify(signature, timestamp.encode() + body, ec.ECDSA(hashes.SHA256()))
    except InvalidSignature:
        raise Unverified("bad signature") from None
    check_fresh(unix_time(timestamp), now)
    data = load_json(body)
    if not isinstance(data, list):
        raise BadPayload("SendGrid posts a JSON array of events")
    out: list[Event] = []
    for item in data:
        if not isinstance(item, dict):
            continue  # one malformed event never costs the others in the batch
        name, email, ident = item.get("event"), item.get("email"), item.get("sg_event_id")
        if name == "bounce":
            # "blocked" is SendGrid's temporary refusal; "bounce" is the mailbox saying no.
            kind = "soft_bounce" if item.get("type") == "blocked" else "hard_bounce"
            detail = scrub(f"{item.get('status', '')} {item.get('reason', '')}")
        elif name == "deferred":
            kind, detail = "soft_bounce", scrub(item.get("response", ""))
        elif name == "spamreport":
            kind, detail = "complaint", ""
        elif name == "dropped" and str(item.get("reason", "")).strip().lower() in DROPPED:
            kind = DROPPED[str(item.get("reason", "")).strip().lower()]
            detail = scrub(f"dropped by SendGrid: {item.get('reason', '')}")
        else:
            continue
        if not isinstance(email, str) or not ident:
            continue  # unusable alone; the rest of the batch still counts
        args = item.get("brief_key")  # our custom_args come back as top-level fields
        key = args if isinstance(args, str) else None
        out.append(Event(NAME, str(ident), kind, email, detail, key))
    return out
