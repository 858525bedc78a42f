"""Resend's batch endpoint: up to 100 emails a call, made safe to repeat by an idempotency key.

Follows Resend's docs: "Send Batch Emails" (``POST /emails/batch``, at most 100,
answer ``{"data": [{"id": …}, …]}``), "Batch validation modes" (the
``x-batch-validation: permissive`` header: valid emails are sent and invalid
ones come back in ``errors[]`` with their ``index``), "Idempotency keys" (the
``Idempotency-Key`` header, up to 256 characters, kept 24 hours, honoured by
``/emails/batch``) and "Errors" (``name`` + ``statusCode``: 401/403 API key,
409 idempotency conflicts, 422 invalid fields, 429 rate and quota limits, 5xx).

The key is derived from the batch's delivery keys, so a batch sent again after
a timeout or a crash is answered with the first answer instead of sent twice.
"""

from __future__ import annotations

import hashlib
import re
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

KEY_ENV = "BRIEF_RESEND_API_KEY"

# Tag names and values: "ASCII letters, numbers, underscores, or dashes", ≤ 256.
_TAG_VALUE = re.compile(r"^[A-Za-z0-9_-]{1,256}$")
_QUOTA = frozenset({"daily_quota_exceeded", "monthly_quota_exceeded"})
_ACCOUNT = frozenset({"invalid_from_address", "invalid_access", "invalid_region"})


def idempotency_key(batch: list[OutgoingMessage]) -> str:
    """The same batch of deliveries always yields the same key; any other batch another."""
    digest = hashlib.sha256("\n".join(m.key for m in batch).encode("utf-8")).hexdigest()
    return f"brief-batch/{digest}"


class ResendProvider(HttpProvider):
    """Resend's ``/emails/batch`` with an Idempotency-Key and permissive validation."""

    name = "resend"
    max_batch = 100  # "up to 100 emails in a single API call"
    idempotent = True  # the Idempotency-Key makes a resend of the same batch a no-op

    def __init__(self, settings):
        super().__init__(settings)
        self._key = require_secret(settings, KEY_ENV, self.name)

    def _prepare(self, session: requests.Session) -> None:
        session.headers["Authorization"] = f"Bearer {self._key}"

    def _email(self, m: OutgoingMessage) -> dict[str, Any]:
        c = m.content
        email: dict[str, Any] = {
            "from": from_field(m),
            "to": [to_field(m)],
            "subject": c.subject,
            "html": m.html,
            "text": m.text,
            "headers": custom_headers(c.headers, m.headers),
        }
        if c.reply_to:
            email["reply_to"] = c.reply_to
        if _TAG_VALUE.match(m.key):
            email["tags"] = [{"name": KEY_FIELD, "value": m.key}]
        return email

    def _push(self, batch: list[OutgoingMessage]) -> list[Result]:
        answer = self._post(
            "/emails/batch",
            json=[self._email(m) for m in batch],
            headers={"Idempotency-Key": idempotency_key(batch), "x-batch-validation": "permissive"},
        )
        if isinstance(answer, Failure):
            return answer.results(batch)
        data = body_json(answer)
        if answer.status_code == 200 and isinstance(data, dict):
            return _accepted(batch, data)
        name = str(data.get("name", "")) if isinstance(data, dict) else ""
        text = str(data.get("message", "")) if isinstance(data, dict) else None
        what = f"{name}: {text}" if name else text
        if answer.status_code == 401 or name in ("missing_api_key", "invalid_api_key"):
            raise refuse_credentials(self.name, KEY_ENV, answer, what)
        if answer.status_code == 403:  # e.g. a test key may only mail its owner
            raise ProviderError(f"resend: sending refused for this account ({what})")
        if name in _QUOTA:
            raise ProviderError(f"resend: sending quota used up ({what}); resume later")
        if name in _ACCOUNT:
            raise ProviderError(f"resend: the account cannot send this ({what})")
        if name == "concurrent_idempotent_requests":
            # The same batch is still being processed: asking again later is safe.
            return Failure(f"HTTP 409: {what}", transient=True).results(batch)
        return status_failure(answer, what).results(batch)


def _accepted(batch: list[OutgoingMessage], data: dict) -> list[Result]:
    """Map a 200 answer: ``errors[].index`` failed, the rest take ``data`` ids in order."""
    errors: dict[int, str] = {}
    for e in data.get("errors") or []:
        try:
            errors[int(e["index"])] = str(e.get("message", ""))
        except (KeyError, TypeError, ValueError):
            continue
    ids = [str(d.get("id") or "") if isinstance(d, dict) else "" for d in data.get("data") or []]
    ok = [i for i in range(len(batch)) if i not in errors]
    if len(ids) == len(batch) and not errors:
        by_index = dict(enumerate(ids))
    elif len(ids) == len(ok):
        by_index = dict(zip(ok, ids, strict=True))
    else:  # accepted, but the ids cannot be matched up; the ledger keeps the key
        by_index = {}
    results = []
    for i, m in enumerate(batch):
        if i in errors:
            about_to = "`to`" in errors[i] or m.to_address.lower() in errors[i].lower()
            results.append(
                Result.failed(
                    m.key,
                    f"refused: {errors[i]}",
                    transient=False,
                    suppress=about_to and "invalid" in errors[i].lower(),
                )
            )
        else:
            results.append(Result.accepted(m.key, by_index.get(i) or None))
    return results
