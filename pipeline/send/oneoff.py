"""One-off mails outside the ledger: a transactional mail (confirmation, welcome) and an
editor's ``[TEST]`` copy of an issue. Each is one provider call with its own connection."""

from __future__ import annotations

import secrets
from dataclasses import dataclass
from typing import Any

from pipeline.config import Settings
from pipeline.content.library import Issue, Library
from pipeline.providers import load_provider
from pipeline.providers.base import OutgoingMessage, Result
from pipeline.send.campaign import render
from pipeline.send.message import MessageFactory, _header_text, sample_values, test_copy


@dataclass(frozen=True)
class _Single:
    """A rendered stand-in for one transactional mail."""

    issue_number: int
    subject: str
    preheader: str
    html: str
    text: str
    web_url: str = ""


def _push_one(settings: Settings, msg: OutgoingMessage) -> Result:
    provider = load_provider(settings)
    provider.open()
    try:
        results = provider.push([msg])
    finally:
        provider.close()
    return results[0]


def send_one(
    settings: Settings,
    to_address: str,
    to_name: str | None,
    subject: str,
    html: str,
    text: str,
    headers: dict[str, str] | None = None,
) -> Result:
    """One transactional mail (confirmation, welcome) through the provider, outside the ledger."""
    factory = MessageFactory(
        _Single(0, subject, "", html, text), settings, commit="n/a", transactional=True
    )
    msg = factory.build(
        f"single.{secrets.token_hex(8)}", to_address, to_name, {"name": to_name or ""}
    )
    if headers:
        msg = _with_headers(msg, headers)
    return _push_one(settings, msg)


def _with_headers(msg: OutgoingMessage, headers: dict[str, str]) -> OutgoingMessage:
    extra = b"".join(_header_text(k, v) for k, v in headers.items())
    return OutgoingMessage(
        key=msg.key,
        to_address=msg.to_address,
        to_name=msg.to_name,
        content=msg.content,
        values=msg.values,
        headers={**msg.headers, **headers},
        raw=extra + msg.raw,
        html=msg.html,
        text=msg.text,
    )


def send_test(
    settings: Settings, library: Library, issue: Issue, to_address: str, *, rendered: Any = None
) -> Result:
    """A ``[TEST]`` copy of an issue to one editor, outside the ledger (any status).

    Not list mail: no List-Id or List-Unsubscribe (the editor is not subscribed by it, and
    a one-click unsubscribe of a sample would lead nowhere)."""
    rendered = rendered if rendered is not None else render(issue, library, settings)
    factory = MessageFactory(test_copy(rendered), settings, transactional=True)
    msg = factory.build(
        f"issue-{issue.label}.test-{secrets.token_hex(4)}",
        to_address,
        None,
        sample_values(settings),
    )
    return _push_one(settings, msg)
