"""SendGrid v3 Mail Send: one request carries up to 1000 recipients as personalizations.

Follows Twilio SendGrid's docs: "Mail Send" (``POST /v3/mail/send``, 202 Accepted
with an ``X-Message-Id`` header), "Personalizations" (per-recipient ``to``,
``headers``, ``substitutions`` and ``custom_args``; at most 1000 a request), and
"API reference → Errors" (400 bad request with ``errors[].field``, 401
authentication, 403 sender not verified or temporarily blocked, 413 payload too
large, 429 rate limited, 5xx server errors).

The html and text are sent once; each recipient's values are substitutions.
A value goes raw into text but HTML-escaped into html (as in MessageFactory), so
each placeholder gets two substitution tokens: one used in the text, one in html.
"""

from __future__ import annotations

import re
from typing import Any

import requests

from pipeline.errors import ProviderError
from pipeline.providers.base import Fate, OutgoingMessage, ProviderSetup, Result
from pipeline.providers.http import (
    KEY_FIELD,
    Answer,
    Failure,
    HttpProvider,
    Refused,
    Split,
    api_schema,
    body_json,
    custom_headers,
    html_value,
    placeholders,
    refuse_credentials,
    require_secret,
    retarget,
    status_failure,
)

KEY_ENV = "BRIEF_SENDGRID_API_KEY"

_PERSONALIZATION = re.compile(r"^personalizations\.(\d+)\b")


def _text_token(name: str) -> str:
    return f"-brief-text-{name}-"


def _html_token(name: str) -> str:
    return f"-brief-html-{name}-"


class SendGridProvider(HttpProvider):
    """SendGrid's v3 Mail Send with one personalization per recipient."""

    name = "sendgrid"
    max_batch = 1000  # "a maximum of 1000 personalizations per request"
    idempotent = False  # Mail Send has no idempotency key
    settings_schema = api_schema("https://api.sendgrid.com")
    secrets = (KEY_ENV,)

    def __init__(self, setup: ProviderSetup):
        super().__init__(setup)
        self._key = require_secret(setup, KEY_ENV, self.name)

    credentials_path = "/v3/scopes"  # SendGrid API: the key's scopes

    def _prepare(self, session: requests.Session) -> None:
        session.headers["Authorization"] = f"Bearer {self._key}"

    def request_body(self, batch: list[OutgoingMessage]) -> dict[str, Any]:
        """The Mail Send JSON for one batch sharing one Content."""
        content = batch[0].content
        if any(m.content is not content and m.content != content for m in batch):
            raise ProviderError("sendgrid: one push must carry one issue's content")
        marks = placeholders()
        text = retarget(content.text, {marks[n]: _text_token(n) for n in marks})
        html = retarget(content.html, {marks[n]: _html_token(n) for n in marks})
        body: dict[str, Any] = {
            "personalizations": [self._personalization(m, marks) for m in batch],
            "from": _address(content.from_address, content.from_name),
            "subject": content.subject,
            # text/plain must come before text/html (SendGrid refuses the other order)
            "content": [
                {"type": "text/plain", "value": text},
                {"type": "text/html", "value": html},
            ],
        }
        if content.reply_to:
            body["reply_to"] = {"email": content.reply_to}
        shared = custom_headers(content.headers)
        if shared:
            body["headers"] = shared
        return body

    def _personalization(self, m: OutgoingMessage, marks) -> dict[str, Any]:
        subs: dict[str, str] = {}
        for name in marks:
            value = str(m.values.get(name, ""))
            subs[_text_token(name)] = value
            subs[_html_token(name)] = html_value(value)
        p: dict[str, Any] = {
            "to": [_address(m.to_address, m.to_name)],
            "substitutions": subs,
            "custom_args": {KEY_FIELD: m.key},
        }
        headers = custom_headers(m.headers)
        if headers:
            p["headers"] = headers
        return p

    def _push(self, batch: list[OutgoingMessage]) -> Answer:
        answer = self._post("/v3/mail/send", json=self.request_body(batch))
        if isinstance(answer, Failure):
            return answer.results(batch)
        if answer.status_code in (200, 202):
            # One id for the request; SendGrid's events carry it as the prefix of
            # sg_message_id and our custom_args brief_key per recipient.
            provider_id = answer.headers.get("X-Message-Id")
            return [Result.sent(m.key, provider_id) for m in batch]
        data = body_json(answer)
        errors = data.get("errors") if isinstance(data, dict) else None
        text = (
            "; ".join(str(e.get("message", "")) for e in errors if isinstance(e, dict))
            if isinstance(errors, list)
            else None
        )
        if answer.status_code == 401:
            raise refuse_credentials(self.name, KEY_ENV, answer, text)
        if answer.status_code == 403:
            raise ProviderError(
                f"sendgrid: sending refused for the account or sender "
                f"(HTTP 403: {text or answer.reason})"
            )
        if answer.status_code == 400 and isinstance(errors, list):
            blamed = _blamed(errors, len(batch))
            if blamed:
                # Nobody got it: fail the blamed recipients, send the others again now.
                return Refused({i: _blamed_result(batch[i], why) for i, why in blamed.items()})
        failure = status_failure(answer, text)
        if answer.status_code == 413:  # "payload too large": fewer personalizations a call
            return Split(Failure(Fate.PERMANENT, failure.code, failure.reason))
        return failure.results(batch)


def _address(email: str, name: str | None) -> dict[str, str]:
    return {"email": email, "name": name} if name else {"email": email}


def _blamed(errors: list, size: int) -> dict[int, str]:
    """Personalization index -> message, when every error names one personalization."""
    blamed: dict[int, str] = {}
    for e in errors:
        field = str(e.get("field") or "") if isinstance(e, dict) else ""
        m = _PERSONALIZATION.match(field)
        if not m or int(m.group(1)) >= size:
            return {}
        blamed[int(m.group(1))] = f"{field}: {e.get('message', '')}"
    return blamed


def _blamed_result(m: OutgoingMessage, why: str) -> Result:
    """The permanent failure of a recipient SendGrid refused the request for."""
    address_problem = "address" in why.lower() or ".to" in why
    return Failure(Fate.PERMANENT, "HTTP 400", why, suppress=address_problem).result(m)
