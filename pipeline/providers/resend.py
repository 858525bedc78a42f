"""Resend's batch endpoint: up to 100 emails a call, made safe to repeat by an idempotency key.

Follows Resend's docs: "Send Batch Emails" (``POST /emails/batch``, at most 100,
answer ``{"data": [{"id": …}, …]}``), "Batch validation modes" (the
``x-batch-validation: permissive`` header: valid emails are sent and invalid
ones come back in ``errors[]`` with their ``index``), "Idempotency keys" (the
``Idempotency-Key`` header, up to 256 characters, kept 24 hours, honoured by
``/emails/batch``) and "Errors" (``name`` + ``statusCode``: 401/403 API key,
409 idempotency conflicts, 422 invalid fields, 429 rate and quota limits, 5xx).

The key is derived from the batch's delivery keys, and the body from the messages
alone (the Message-ID derives from the delivery key; no Date or MIME boundary is
sent), so the same batch is the same request, byte for byte, in any process. A lost
answer is followed by that identical request a few times within ``push``; with
still no answer the fate is UNKNOWN: the send loop does not regroup those rows
under a new key, which could mail them twice.
"""

from __future__ import annotations

import hashlib
import json
import re
import time
from typing import Any

import requests

from pipeline.errors import ProviderError
from pipeline.providers.base import Fate, Key, OutgoingMessage, ProviderSetup, Result, scrub
from pipeline.providers.http import (
    KEY_FIELD,
    Failure,
    HttpProvider,
    api_schema,
    body_json,
    custom_headers,
    from_field,
    refuse_credentials,
    require_secret,
    status_failure,
    to_field,
    unaddressed,
)

KEY_ENV = "BRIEF_RESEND_API_KEY"

# Tag names and values: "ASCII letters, numbers, underscores, or dashes", ≤ 256.
_TAG_VALUE = re.compile(r"^[A-Za-z0-9_-]{1,256}$")
_TAG_ESCAPE = re.compile(r"[^A-Za-z0-9-]")
_TAG_UNESCAPE = re.compile(r"(?:_[0-9A-F]{2})+")
# Answers after which the first request under this key may have been accepted.
_CONFLICT = frozenset({"concurrent_idempotent_requests", "invalid_idempotent_request"})
_QUOTA = frozenset({"daily_quota_exceeded", "monthly_quota_exceeded"})
_ACCOUNT = frozenset({"invalid_from_address", "invalid_access", "invalid_region"})


def tag_value(key: str) -> str:
    """A delivery key in the characters a Resend tag accepts: every other character
    (``.``, and ``_`` itself) as ``_XX`` hex, so ``key_from_tag`` gives it back."""
    return _TAG_ESCAPE.sub(lambda m: "".join(f"_{b:02X}" for b in m.group().encode()), key)


def key_from_tag(value: str) -> str:
    """The delivery key a ``tag_value`` carries."""
    return _TAG_UNESCAPE.sub(
        lambda m: bytes.fromhex(m.group().replace("_", "")).decode("utf-8", "replace"), value
    )


def idempotency_key(batch: list[OutgoingMessage]) -> str:
    """The same batch of deliveries always yields the same key; any other batch another."""
    digest = hashlib.sha256("\n".join(m.key for m in batch).encode("utf-8")).hexdigest()
    return f"brief-batch/{digest}"


class ResendProvider(HttpProvider):
    """Resend's ``/emails/batch`` with an Idempotency-Key and permissive validation."""

    name = "resend"
    max_batch = 100  # "up to 100 emails in a single API call"
    # The Idempotency-Key covers one batch as sent: push repeats that identical request after
    # a lost answer, but after a crash the rows regroup under new keys, so rows a crash
    # left unknown are not resent without the operator's --retry-unknown.
    idempotent = False
    settings_schema = api_schema(
        "https://api.resend.com",
        # A lost answer is asked again, identically, this many times before it is unknown;
        # the waits between are retry_backoff * 2**attempt seconds.
        retries=Key(int, 2, bounds=(0, 10)),
        retry_backoff=Key((int, float), 0.5, bounds=(0, 60)),
    )
    secrets = (KEY_ENV,)

    def __init__(self, setup: ProviderSetup):
        super().__init__(setup)
        self._key = require_secret(setup, KEY_ENV, self.name)
        self.retries = int(setup.table["retries"])
        self.retry_backoff = float(setup.table["retry_backoff"])
        if self.retries < 0 or self.retry_backoff < 0:
            raise ProviderError(
                "resend: provider.resend.retries and provider.resend.retry_backoff "
                "must not be negative"
            )

    credentials_path = "/domains"  # Resend API: "List domains"

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
        tag = tag_value(m.key)
        if _TAG_VALUE.match(tag):
            email["tags"] = [{"name": KEY_FIELD, "value": tag}]
        return email

    def request_body(self, batch: list[OutgoingMessage]) -> bytes:
        """The batch as the exact bytes sent, the same for the same messages."""
        return json.dumps(
            [self._email(m) for m in batch], separators=(",", ":"), ensure_ascii=False
        ).encode("utf-8")

    def _push(self, batch: list[OutgoingMessage]) -> list[Result]:
        body = self.request_body(batch)
        headers = {
            "Content-Type": "application/json",
            "Idempotency-Key": idempotency_key(batch),
            "x-batch-validation": "permissive",
        }
        for attempt in range(self.retries + 1):
            if attempt:
                time.sleep(self.retry_backoff * 2 ** (attempt - 1))
            answer = self._post("/emails/batch", data=body, headers=headers)
            if isinstance(answer, Failure):
                lost = answer
                continue  # the identical request again: Resend answers a repeat once
            data = body_json(answer)
            name = str(data.get("name", "")) if isinstance(data, dict) else ""
            if name == "concurrent_idempotent_requests":
                lost = _failure(answer, data, Fate.UNKNOWN)
                continue  # the first is still being processed: ask again shortly
            return self._answer(batch, answer, data)
        return lost.results(batch)

    def _answer(
        self, batch: list[OutgoingMessage], answer: requests.Response, data
    ) -> list[Result]:
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
        if name in _CONFLICT:
            # The key was used before, with another body or still in flight: that first
            # request may have been accepted. Never a recipient's permanent failure.
            return _failure(answer, data, Fate.UNKNOWN).results(batch)
        return status_failure(answer, what).results(batch)


def _failure(answer: requests.Response, data: Any, fate: Fate) -> Failure:
    name = str(data.get("name", "")) if isinstance(data, dict) else ""
    text = str(data.get("message", "")) if isinstance(data, dict) else ""
    return Failure(fate, f"HTTP {answer.status_code} {name}".strip(), text)


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
                Result.permanent(
                    m.key,
                    scrub(unaddressed(errors[i]), m.to_address),
                    "resend refused",
                    suppress=about_to and "invalid" in errors[i].lower(),
                )
            )
        else:
            results.append(Result.sent(m.key, by_index.get(i) or None))
    return results
