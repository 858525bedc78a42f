"""Resend webhooks, signed the Svix way.

``svix-signature`` lists ``v1,<base64 HMAC-SHA256>`` values over
``{svix-id}.{svix-timestamp}.{body}``, keyed with the base64 part of
BRIEF_RESEND_WEBHOOK_SECRET (``whsec_…``). ``svix-id`` de-duplicates replays.
"""

from __future__ import annotations

import base64
import binascii
import hashlib
import hmac
from collections.abc import Mapping
from datetime import datetime
from typing import Any

from pipeline.plugins import TableSchema
from pipeline.providers.http import KEY_FIELD
from pipeline.providers.resend import key_from_tag
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

NAME = "resend"


def _key(secret: str) -> bytes:
    raw = secret.removeprefix("whsec_")
    try:
        return base64.b64decode(raw, validate=True)
    except (binascii.Error, ValueError):
        raise Unverified("BRIEF_RESEND_WEBHOOK_SECRET is not a whsec_ base64 secret") from None


def sign(secret: str, msg_id: str, timestamp: str, body: bytes) -> str:
    """The ``v1,…`` signature Svix sends for this message (also used by tests)."""
    mac = hmac.new(_key(secret), f"{msg_id}.{timestamp}.".encode() + body, hashlib.sha256)
    return "v1," + base64.b64encode(mac.digest()).decode()


SECRET_ENV = "BRIEF_RESEND_WEBHOOK_SECRET"


class ResendVerifier:
    """``/webhooks/resend``: the Svix signature Resend sends, then its event."""

    settings_schema: TableSchema = {}
    secrets = (SECRET_ENV,)

    def verify(
        self, call: WebhookCall, table: Mapping[str, Any], secrets: Mapping[str, str]
    ) -> list[Event]:
        """Check one of the ``v1`` signatures and the timestamp, then read the event."""
        return _verify(call.headers, call.body, call.now, secrets.get(SECRET_ENV))


def _verify(
    headers: Mapping[str, str], body: bytes, now: datetime, secret: str | None
) -> list[Event]:
    if not secret:
        raise Unverified("the Resend webhook secret is not configured")
    msg_id = headers.get("svix-id", "")
    timestamp = headers.get("svix-timestamp", "")
    given = headers.get("svix-signature", "")
    if not (msg_id and timestamp and given):
        raise Unverified("missing svix headers")
    expected = sign(secret, msg_id, timestamp, body).encode()
    if not any(hmac.compare_digest(expected, part.encode()) for part in given.split()):
        raise Unverified("bad signature")
    check_fresh(unix_time(timestamp), now)
    data = load_json(body)
    if not isinstance(data, dict) or not isinstance(data.get("data"), dict):
        raise BadPayload("not a Resend event")
    kind_name, payload = data.get("type"), data["data"]
    if kind_name == "email.bounced":
        bounce = payload.get("bounce") or {}
        kind = "hard_bounce" if bounce.get("type") == "Permanent" else "soft_bounce"
        detail = scrub(
            f"{bounce.get('type', '')} {bounce.get('subType', '')}: {bounce.get('message', '')}"
        )
    elif kind_name == "email.complained":
        kind, detail = "complaint", ""
    else:
        return []
    key = _delivery_key(payload.get("tags"))
    to = payload.get("to")
    recipients = [to] if isinstance(to, str) else to
    if not isinstance(recipients, list) or not recipients:
        raise BadPayload("the event names no recipient")
    return [
        Event(NAME, msg_id if n == 0 else f"{msg_id}#{n}", kind, r, detail, key)
        for n, r in enumerate(recipients)
        if isinstance(r, str)
    ]


def _delivery_key(tags: object) -> str | None:
    """The delivery key our ``brief_key`` tag carries: Resend documents ``tags`` as a list
    of ``{name, value}``; some payloads show an object of name -> value."""
    if isinstance(tags, dict):
        value = tags.get(KEY_FIELD)
    elif isinstance(tags, list):
        value = next(
            (t.get("value") for t in tags if isinstance(t, dict) and t.get("name") == KEY_FIELD),
            None,
        )
    else:
        value = None
    return key_from_tag(value) if isinstance(value, str) else None
