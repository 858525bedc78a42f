"""Postmark bounce and spam-complaint webhooks, authenticated by HTTP basic auth.

Postmark signs nothing; the webhook URL carries credentials
(``https://user:pass@host/webhooks/postmark``) checked here in constant time against
BRIEF_POSTMARK_WEBHOOK_USER / BRIEF_POSTMARK_WEBHOOK_PASSWORD. Replays are caught by
the bounce ``ID``.
"""

from __future__ import annotations

import base64
import binascii
import hmac
from collections.abc import Mapping
from typing import Any

from pipeline.plugins import TableSchema
from pipeline.webhooks.common import BadPayload, Event, Unverified, load_json, scrub
from pipeline.webhooks.registry import WebhookCall

NAME = "postmark"
HARD = frozenset({"HardBounce", "BadEmailAddress"})


USER_ENV = "BRIEF_POSTMARK_WEBHOOK_USER"
PASSWORD_ENV = "BRIEF_POSTMARK_WEBHOOK_PASSWORD"


class PostmarkVerifier:
    """``/webhooks/postmark``: basic auth, then Postmark's bounce record."""

    settings_schema: TableSchema = {}
    secrets = (USER_ENV, PASSWORD_ENV)

    def verify(
        self, call: WebhookCall, table: Mapping[str, Any], secrets: Mapping[str, str]
    ) -> list[Event]:
        """Check the basic-auth credentials, then read one bounce or complaint record."""
        return _verify(call.headers, call.body, secrets)


def _verify(headers: Mapping[str, str], body: bytes, secrets: Mapping[str, str]) -> list[Event]:
    user = secrets.get(USER_ENV)
    password = secrets.get(PASSWORD_ENV)
    if not user or not password:
        raise Unverified("Postmark webhook credentials are not configured")
    scheme, _, value = headers.get("authorization", "").partition(" ")
    if scheme.lower() != "basic":
        raise Unverified("no basic auth")
    try:
        given = base64.b64decode(value.strip(), validate=True)
    except (binascii.Error, ValueError):
        raise Unverified("malformed basic auth") from None
    if not hmac.compare_digest(given, f"{user}:{password}".encode()):
        raise Unverified("wrong credentials")
    data = load_json(body)
    if not isinstance(data, dict) or "RecordType" not in data:
        raise BadPayload("not a Postmark webhook record")
    record = data.get("RecordType")
    ident = data.get("ID")
    email = data.get("Email") or data.get("Recipient")
    if record not in ("Bounce", "SpamComplaint"):
        return []  # deliveries, opens, clicks: nothing for the suppression list
    if ident is None or not isinstance(email, str):
        raise BadPayload("a Postmark bounce needs ID and Email")
    kind_name = str(data.get("Type", ""))
    if record == "SpamComplaint" or kind_name == "SpamComplaint":
        kind = "complaint"
    elif kind_name in HARD:
        kind = "hard_bounce"
    else:
        kind = "soft_bounce"
    detail = scrub(f"{kind_name}: {data.get('Description', '')}")
    sent_id = data.get("MessageID")
    return [
        Event(
            NAME,
            f"{record}:{ident}",
            kind,
            email,
            detail,
            provider_id=sent_id if isinstance(sent_id, str) else None,
        )
    ]
