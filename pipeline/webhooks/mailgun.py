"""Mailgun event webhooks: HMAC-SHA256 of timestamp + token with the webhook signing key.

The signature travels in the JSON body (``signature.timestamp/token/signature``);
BRIEF_MAILGUN_WEBHOOK_SIGNING_KEY holds the key. ``failed`` events with permanent
severity are hard bounces, temporary ones soft; ``complained`` is a complaint.
"""

from __future__ import annotations

import hashlib
import hmac
from collections.abc import Callable, Mapping
from datetime import datetime
from typing import Any

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

NAME = "mailgun"


KEY_ENV = "BRIEF_MAILGUN_WEBHOOK_SIGNING_KEY"


class MailgunVerifier:
    """``/webhooks/mailgun``: the signature block in the body, used once, then the event."""

    settings_schema: TableSchema = {}
    secrets = (KEY_ENV,)

    def verify(
        self, call: WebhookCall, table: Mapping[str, Any], secrets: Mapping[str, str]
    ) -> list[Event]:
        """Check the body's signature block, its age and that its token is new (through
        ``call.remember``), then read the event."""
        return _verify(call.body, call.now, call.remember, secrets.get(KEY_ENV))


def _verify(
    body: bytes, now: datetime, remember: Callable[[str], bool], key: str | None
) -> list[Event]:
    if not key:
        raise Unverified("the Mailgun signing key is not configured")
    try:
        data = load_json(body)
    except BadPayload:
        raise Unverified("no signature: the body is not JSON") from None
    sig = data.get("signature") if isinstance(data, dict) else None
    if not isinstance(sig, dict):
        raise Unverified("no signature block")
    timestamp, token, given = (str(sig.get(k, "")) for k in ("timestamp", "token", "signature"))
    if not (timestamp and token and given):
        raise Unverified("incomplete signature block")
    expected = hmac.new(key.encode(), (timestamp + token).encode(), hashlib.sha256).hexdigest()
    if not hmac.compare_digest(expected, given.lower()):
        raise Unverified("bad signature")
    check_fresh(unix_time(timestamp), now)
    # The signature does not cover event-data: a token used once must never be used again.
    if not remember(token):
        raise Unverified("this signature token was already used")
    event = data.get("event-data")
    if not isinstance(event, dict):
        raise BadPayload("no event-data")
    name = event.get("event")
    recipient = event.get("recipient")
    ident = str(event.get("id") or token)
    if name == "failed":
        severity = event.get("severity")
        kind = "hard_bounce" if severity == "permanent" else "soft_bounce"
        status = event.get("delivery-status") or {}
        detail = scrub(f"{severity}: {status.get('code', '')} {status.get('message', '')}")
    elif name == "complained":
        kind, detail = "complaint", ""
    else:
        return []
    if not isinstance(recipient, str):
        raise BadPayload("the event names no recipient")
    message = event.get("message")
    headers = message.get("headers") if isinstance(message, dict) else None
    sent_id = headers.get("message-id") if isinstance(headers, dict) else None
    sent_id = sent_id if isinstance(sent_id, str) else None
    # Mailgun's message-id is its own id of the sent message, or ours when we set one.
    return [Event(NAME, ident, kind, recipient, detail, provider_id=sent_id, message_id=sent_id)]
