"""Postmark through its batch endpoint: up to 500 messages in one ``POST /email/batch``.

Follows Postmark's developer docs: "Send batch emails" (user guide) for the
request, and "API overview → Error codes" for the mapping. The batch answers
HTTP 200 even when single messages fail; each element carries its own
``ErrorCode`` (0 = accepted) in the order of the request.
"""

from __future__ import annotations

from typing import Any

import requests

from ..errors import ProviderError
from .base import OutgoingMessage, Result
from .http import (
    KEY_FIELD,
    Failure,
    HttpProvider,
    body_json,
    custom_headers,
    from_field,
    refuse_credentials,
    require_secret,
    status_failure,
    to_field,
)

TOKEN_ENV = "BRIEF_POSTMARK_TOKEN"

# "Error codes" in Postmark's API overview.
BAD_TOKEN = 10
MAINTENANCE = 100
INVALID_EMAIL_REQUEST = 300
INACTIVE_RECIPIENT = 406  # hard bounce, spam complaint or manual suppression on Postmark
RATE_LIMITED = 429
# The account or the sender cannot send at all: sender signature not found (400) or
# not confirmed (401), out of credits (405), account pending (412) or barred (413).
ACCOUNT_CODES = frozenset({400, 401, 405, 412, 413})


class PostmarkProvider(HttpProvider):
    """Postmark's ``/email/batch``; per-message ErrorCode mapped to a Result."""

    name = "postmark"
    max_batch = 500  # "up to 500 messages per API call, and up to 50 MB payload"
    idempotent = False  # Postmark has no idempotency key

    def __init__(self, settings):
        super().__init__(settings)
        self._token = require_secret(settings, TOKEN_ENV, self.name)
        self.message_stream = str(settings.provider.table(self.name).get("message_stream", ""))

    def _prepare(self, session: requests.Session) -> None:
        session.headers["X-Postmark-Server-Token"] = self._token

    def _message(self, m: OutgoingMessage) -> dict[str, Any]:
        c = m.content
        body: dict[str, Any] = {
            "From": from_field(m),
            "To": to_field(m),
            "Subject": c.subject,
            "HtmlBody": m.html,
            "TextBody": m.text,
            "Headers": [
                {"Name": k, "Value": v} for k, v in custom_headers(c.headers, m.headers).items()
            ],
            "Metadata": {KEY_FIELD: m.key},
        }
        if c.reply_to:
            body["ReplyTo"] = c.reply_to
        if self.message_stream:
            body["MessageStream"] = self.message_stream
        return body

    def _push(self, batch: list[OutgoingMessage]) -> list[Result]:
        answer = self._post("/email/batch", json=[self._message(m) for m in batch])
        if isinstance(answer, Failure):
            return answer.results(batch)
        data = body_json(answer)
        if answer.status_code == 200 and isinstance(data, list) and len(data) == len(batch):
            return [_one(m, item) for m, item in zip(batch, data, strict=True)]
        if answer.status_code == 200:
            # Accepted or not is unknown; transient lets the ledger's reader decide.
            shape = f"{len(data)} elements" if isinstance(data, list) else "not a list"
            return Failure(
                f"unexpected batch answer ({shape} for {len(batch)} messages)", transient=True
            ).results(batch)
        return _request_failure(answer, data).results(batch)


def _code(item: Any) -> int | None:
    try:
        return int(item.get("ErrorCode"))
    except (AttributeError, TypeError, ValueError):
        return None


def _one(m: OutgoingMessage, item: Any) -> Result:
    """One element of a 200 batch answer, mapped per Postmark's error codes."""
    code = _code(item)
    text = str(item.get("Message", "")) if isinstance(item, dict) else ""
    if code == 0:
        return Result.accepted(m.key, str(item.get("MessageID") or "") or None)
    reason = f"Postmark ErrorCode {code}: {text}"
    if code == RATE_LIMITED:
        return Result.failed(m.key, f"rate limited: {reason}", transient=True)
    if code == INACTIVE_RECIPIENT:
        return Result.failed(m.key, reason, transient=False, suppress=True)
    if code == INVALID_EMAIL_REQUEST:
        # 300 also covers a bad From or an empty body; only an invalid To is the
        # recipient's own fault and worth a suppression.
        about_to = "'to'" in text.lower() or m.to_address.lower() in text.lower()
        return Result.failed(m.key, reason, transient=False, suppress=about_to)
    if code == MAINTENANCE or code in ACCOUNT_CODES or code == BAD_TOKEN:
        # Nothing wrong with this recipient: retry once the account or service is back.
        return Result.failed(m.key, reason, transient=True)
    return Result.failed(m.key, reason, transient=False)


def _request_failure(answer: requests.Response, data: Any) -> Failure:
    """A whole request refused: HTTP status plus the top-level ErrorCode when present."""
    code = _code(data) if isinstance(data, dict) else None
    text = str(data.get("Message", "")) if isinstance(data, dict) else None
    if answer.status_code == 401 or code == BAD_TOKEN:
        raise refuse_credentials("postmark", TOKEN_ENV, answer, text)
    if code in ACCOUNT_CODES:
        raise ProviderError(f"postmark: the account cannot send (ErrorCode {code}: {text})")
    if code == RATE_LIMITED:
        return Failure(f"rate limited: Postmark ErrorCode 429: {text}", transient=True)
    if code == MAINTENANCE:
        return Failure(f"Postmark ErrorCode 100: {text}", transient=True)
    return status_failure(answer, f"ErrorCode {code}: {text}" if code is not None else None)
