"""Postmark through its batch endpoint: up to 500 messages in one ``POST /email/batch``.

Follows Postmark's developer docs: "Send batch emails" (user guide) for the
request, and "API overview → Error codes" for the mapping. The batch answers
HTTP 200 even when single messages fail; each element carries its own
``ErrorCode`` (0 = accepted) in the order of the request.
"""

from __future__ import annotations

from typing import Any

import requests

from pipeline.errors import ProviderError
from pipeline.providers.base import Fate, Key, OutgoingMessage, ProviderSetup, Result, scrub
from pipeline.providers.http import (
    KEY_FIELD,
    Answer,
    Failure,
    HttpProvider,
    Split,
    api_schema,
    body_json,
    custom_headers,
    from_field,
    json_array,
    json_object,
    json_part,
    refuse_credentials,
    require_secret,
    status_failure,
    to_field,
    unaddressed,
)

TOKEN_ENV = "BRIEF_POSTMARK_TOKEN"

# "Error codes" in Postmark's API overview.
BAD_TOKEN = 10
MAINTENANCE = 100
INVALID_EMAIL_REQUEST = 300
INACTIVE_RECIPIENT = 406  # hard bounce, spam complaint or manual suppression on Postmark
JSON_REQUIRED = 409  # "JSON required": our request, not any recipient
TOO_MANY_MESSAGES = 410  # "Too many batch messages": send fewer per call
RATE_LIMITED = 429
# The account or the sender cannot send at all: sender signature not found (400) or
# not confirmed (401), out of credits (405), account pending (412) or barred (413).
ACCOUNT_CODES = frozenset({400, 401, 405, 412, 413})
PAYLOAD_TOO_LARGE = 413  # HTTP status: over 10 MB for one email, 50 MB for a batch


class PostmarkProvider(HttpProvider):
    """Postmark's ``/email/batch``; per-message ErrorCode mapped to a Result."""

    name = "postmark"
    max_batch = 500  # "up to 500 messages per API call, and up to 50 MB payload"
    idempotent = False  # Postmark has no idempotency key
    settings_schema = api_schema(
        "https://api.postmarkapp.com", message_stream=Key(str, "broadcast")
    )
    secrets = (TOKEN_ENV,)

    def __init__(self, setup: ProviderSetup):
        super().__init__(setup)
        self._token = require_secret(setup, TOKEN_ENV, self.name)
        self.message_stream = str(setup.table["message_stream"])

    credentials_path = "/server"  # Postmark API: "Get the server"

    def _prepare(self, session: requests.Session) -> None:
        session.headers["X-Postmark-Server-Token"] = self._token

    def _message(self, m: OutgoingMessage) -> list[bytes]:
        """One element of the batch as JSON; the two bodies are joined in as JSON bytes
        (``json_part``) instead of building each part as text and encoding 40 KB of it
        again per recipient: that was most of a batch's CPU, and 4 workers each holding
        500 parts, their JSON text and its bytes was most of the send's memory."""
        c = m.content
        body: dict[str, Any] = {
            "From": from_field(m),
            "To": to_field(m),
            "Subject": c.subject,
            "Headers": [
                {"Name": k, "Value": v} for k, v in custom_headers(c.headers, m.headers).items()
            ],
            "Metadata": {KEY_FIELD: m.key},
        }
        if c.reply_to:
            body["ReplyTo"] = c.reply_to
        if self.message_stream:
            body["MessageStream"] = self.message_stream
        parts = {"HtmlBody": json_part(m, "html"), "TextBody": json_part(m, "text")}
        return json_object(body, parts)

    def _push(self, batch: list[OutgoingMessage]) -> Answer:
        data = json_array(self._message(m) for m in batch)
        answer = self._post("/email/batch", data=data, headers={"Content-Type": "application/json"})
        if isinstance(answer, Failure):
            return answer.results(batch)
        data = body_json(answer)
        if answer.status_code == 200 and isinstance(data, list) and len(data) == len(batch):
            return [_one(m, item) for m, item in zip(batch, data, strict=True)]
        if answer.status_code == 200:
            # Taken or not cannot be told from this answer: the provider may hold them.
            shape = f"{len(data)} elements" if isinstance(data, list) else "not a list"
            return Failure(Fate.UNKNOWN, "postmark", f"unexpected batch answer ({shape})").results(
                batch
            )
        return _request_failure(answer, data, batch)


def _code(item: Any) -> int | None:
    try:
        return int(item.get("ErrorCode"))
    except (AttributeError, TypeError, ValueError):
        return None


def _about_from(text: str) -> bool:
    """Whether an ErrorCode 300 text is about the sender ("Invalid 'From' address …")."""
    return "'from'" in text.lower() or "from address" in text.lower()


def _one(m: OutgoingMessage, item: Any) -> Result:
    """One element of a 200 batch answer, mapped per Postmark's error codes."""
    code = _code(item)
    text = str(item.get("Message", "")) if isinstance(item, dict) else ""
    if code == 0:
        return Result.sent(m.key, str(item.get("MessageID") or "") or None)
    label = f"postmark {code}"
    reason = scrub(unaddressed(text), m.to_address)
    if code == RATE_LIMITED:
        return Result.temporary(m.key, f"rate limited: {reason}", label)
    if code == INACTIVE_RECIPIENT:
        return Result.permanent(m.key, reason, label, suppress=True)
    if code == INVALID_EMAIL_REQUEST:
        # 300 covers a bad To (this recipient's own fault) but also a bad From or an
        # empty body: the same for every recipient, so pause rather than write off.
        lowered = text.lower()
        if not _about_from(text) and ("'to'" in lowered or m.to_address.lower() in lowered):
            return Result.permanent(m.key, reason, label, suppress=True)
        return Result.sender_problem(m.key, reason, label)
    if code in ACCOUNT_CODES or code == BAD_TOKEN or code == JSON_REQUIRED:
        return Result.sender_problem(m.key, reason, label)
    if code == MAINTENANCE:
        return Result.temporary(m.key, reason, label)
    return Result.permanent(m.key, reason, label)


def _request_failure(answer: requests.Response, data: Any, batch: list[OutgoingMessage]) -> Answer:
    """A whole request refused: HTTP status plus the top-level ErrorCode when present."""
    code = _code(data) if isinstance(data, dict) else None
    text = str(data.get("Message", "")) if isinstance(data, dict) else None
    if answer.status_code == 401 or code == BAD_TOKEN:
        raise refuse_credentials("postmark", TOKEN_ENV, answer, text)
    if code in ACCOUNT_CODES and answer.status_code != PAYLOAD_TOO_LARGE:
        raise ProviderError(f"postmark: the account cannot send (ErrorCode {code}: {text})")
    if code == INVALID_EMAIL_REQUEST and _about_from(text or ""):
        raise ProviderError(f"postmark: the sender is refused (ErrorCode {code}: {text})")
    if code == JSON_REQUIRED:
        raise ProviderError(f"postmark: the request was refused (ErrorCode {code}: {text})")
    if answer.status_code == PAYLOAD_TOO_LARGE or code == TOO_MANY_MESSAGES:
        # Fewer messages per call is the cure: halve the batch; one message still too
        # large is its own permanent failure.
        what = status_failure(answer, f"ErrorCode {code}: {text}" if code else text)
        return Split(Failure(Fate.PERMANENT, what.code, what.reason))
    if code == RATE_LIMITED:
        return Failure(Fate.TRANSIENT, "postmark 429", f"rate limited: {text}").results(batch)
    if code == MAINTENANCE:
        return Failure(Fate.TRANSIENT, "postmark 100", str(text)).results(batch)
    return status_failure(
        answer, f"ErrorCode {code}: {text}" if code is not None else None
    ).results(batch)
