"""Mailgun batch sending: up to 1000 ``to`` fields and ``recipient-variables`` in one POST.

Follows Mailgun's docs: "Sending messages → Batch sending" (``POST
/v3/{domain}/messages`` with form fields, one ``to`` per recipient, the
``recipient-variables`` JSON keyed by address and ``%recipient.xxx%``
substitution, at most 1000 recipients a call), "h:" and "v:" parameters for
custom headers and variables, and "API Response Codes" (400 with a ``message``,
401/403 authentication, 404 unknown domain, 429 rate limits, 5xx retry).

Mailgun answers one id for the whole batch; events carry our ``v:brief_key``
(filled per recipient from the recipient variables) to map back to a delivery.
"""

from __future__ import annotations

import re

import requests

from pipeline.errors import ProviderError
from pipeline.providers.base import Fate, Key, OutgoingMessage, ProviderSetup, Result
from pipeline.providers.http import (
    KEY_FIELD,
    Answer,
    Failure,
    HttpProvider,
    Refused,
    Split,
    api_schema,
    body_json,
    compact_json,
    custom_headers,
    from_field,
    html_value,
    placeholders,
    refuse_credentials,
    require_secret,
    retarget,
    status_failure,
    to_field,
)

KEY_ENV = "BRIEF_MAILGUN_API_KEY"

# A 400 about the recipients ("'to' parameter is not a valid address. please check
# documentation"): Mailgun refuses the whole batch for one bad ``to`` and may not say
# which; anything else a 400 says is about the request we built, the same for all.
_ABOUT_TO = re.compile(r"'to'|\bto parameter\b", re.I)


def _var(name: str) -> str:
    return f"%recipient.{name}%"


class MailgunProvider(HttpProvider):
    """Mailgun's messages endpoint in batch mode."""

    name = "mailgun"
    max_batch = 1000  # "The maximum number of recipients allowed for Batch Sending is 1,000"
    idempotent = False
    # domain: the sending domain Mailgun knows (empty: the newsletter's from_address domain)
    settings_schema = api_schema("https://api.mailgun.net", domain=Key(str, ""))
    secrets = (KEY_ENV,)

    def __init__(self, setup: ProviderSetup):
        super().__init__(setup)
        self._key = require_secret(setup, KEY_ENV, self.name)
        self.domain = str(setup.table["domain"]) or setup.domain
        # Mailgun API: "Get domain" (read-only, needs the key and the sending domain)
        self.credentials_path = f"/v3/domains/{self.domain}"

    def _prepare(self, session: requests.Session) -> None:
        session.auth = ("api", self._key)

    def form(self, batch: list[OutgoingMessage]) -> list[tuple[str, str]]:
        """The form fields of one batch: repeated ``to``, shared parts, recipient variables."""
        content = batch[0].content
        if any(m.content is not content and m.content != content for m in batch):
            raise ProviderError("mailgun: one push must carry one issue's content")
        marks = placeholders()
        text = retarget(content.text, {marks[n]: _var(f"text_{n}") for n in marks})
        html = retarget(content.html, {marks[n]: _var(f"html_{n}") for n in marks})
        variables: dict[str, dict[str, str]] = {}
        per_recipient = [custom_headers(m.headers) for m in batch]
        varying = _varying_headers(per_recipient)
        fields: list[tuple[str, str]] = [
            ("from", from_field(batch[0])),
            ("subject", content.subject),
            ("text", text),
            ("html", html),
        ]
        for m, headers in zip(batch, per_recipient, strict=True):
            fields.append(("to", to_field(m)))
            v = {KEY_FIELD: m.key}
            for n in marks:
                value = str(m.values.get(n, ""))
                v[f"text_{n}"] = value
                v[f"html_{n}"] = html_value(value)
            for i, header in enumerate(varying):
                v[f"h{i}"] = headers.get(header, "")
            variables[m.to_address] = v
        if content.reply_to:
            fields.append(("h:Reply-To", content.reply_to))
        for header, value in custom_headers(content.headers).items():
            fields.append((f"h:{header}", value))
        for header, value in per_recipient[0].items():
            if header not in varying:
                fields.append((f"h:{header}", value))
        for i, header in enumerate(varying):
            fields.append((f"h:{header}", _var(f"h{i}")))
        fields.append((f"v:{KEY_FIELD}", _var(KEY_FIELD)))
        fields.append(("recipient-variables", compact_json(variables)))
        return fields

    def _push(self, batch: list[OutgoingMessage]) -> Answer:
        answer = self._post(f"/v3/{self.domain}/messages", data=self.form(batch))
        if isinstance(answer, Failure):
            return answer.results(batch)
        data = body_json(answer)
        text = str(data.get("message", "")) if isinstance(data, dict) else None
        if answer.status_code == 200:
            provider_id = str(data.get("id") or "") if isinstance(data, dict) else ""
            return [Result.sent(m.key, provider_id or None) for m in batch]
        if answer.status_code in (401, 403):
            raise refuse_credentials(self.name, KEY_ENV, answer, text)
        if answer.status_code == 404:
            raise ProviderError(
                f"mailgun: domain {self.domain!r} not found on this account "
                f"(provider.mailgun.domain; HTTP 404: {text or answer.reason})"
            )
        failure = status_failure(answer, text)
        if answer.status_code != 400:
            return failure.results(batch)
        return _refused(batch, failure, text or "")


def _refused(batch: list[OutgoingMessage], failure: Failure, text: str) -> Answer:
    """A 400 for the whole batch, mapped to whom it is about (nobody got the mail)."""
    lowered = text.lower()
    named = {i for i, m in enumerate(batch) if m.to_address.lower() in lowered}
    about_to = Failure(Fate.PERMANENT, failure.code, failure.reason, suppress=True)
    if named:
        return Refused({i: about_to.result(batch[i]) for i in named})
    if _ABOUT_TO.search(text):
        # One recipient is bad and unnamed: halve until it is alone, send the rest.
        return Split(about_to)
    return Failure(Fate.SENDER, failure.code, failure.reason).results(batch)


def _varying_headers(per_recipient: list[dict[str, str]]) -> list[str]:
    """Headers whose value differs between recipients (Message-ID, List-Unsubscribe…)."""
    names: dict[str, None] = {}
    for headers in per_recipient:
        names.update(dict.fromkeys(headers))
    first = per_recipient[0]
    return [n for n in names if any(h.get(n) != first.get(n) for h in per_recipient)]
