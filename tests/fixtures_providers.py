"""Fixtures for the HTTP API providers: settings pointing at a loopback server, messages.

The API servers are pytest-httpserver instances answering in each service's
request/response shapes; messages are built by the real MessageFactory from a
small rendered issue carrying the three placeholders.
"""

from __future__ import annotations

import json
from pathlib import Path

import pytest

API_ENV = {
    "BRIEF_POSTMARK_TOKEN": "pm-server-token-123",
    "BRIEF_SENDGRID_API_KEY": "SG.key-456",
    "BRIEF_MAILGUN_API_KEY": "mg-key-789",
    "BRIEF_RESEND_API_KEY": "re_key_abc",
    "AWS_ACCESS_KEY_ID": "AKIDEXAMPLE",
    "AWS_SECRET_ACCESS_KEY": "wJalrXUtnFEMI/K7MDENG+bPxRfiCYEXAMPLEKEY",
}

SAMPLE_HTML = (
    "<html><body><p>Hello %%BRIEF_NAME%%,</p><p>This week: ReLU.</p>"
    '<a href="%%BRIEF_UNSUBSCRIBE_URL%%">Unsubscribe</a> '
    '<a href="%%BRIEF_PREFERENCES_URL%%">Preferences</a></body></html>'
)
SAMPLE_TEXT = (
    "Hello %%BRIEF_NAME%%,\n\nThis week: ReLU.\n\n"
    "Unsubscribe: %%BRIEF_UNSUBSCRIBE_URL%%\nPreferences: %%BRIEF_PREFERENCES_URL%%\n"
)

# Names chosen to catch escaping and empty-name mistakes.
READERS = [
    ("ada@example.org", "Ada Lovelace"),
    ("obrien@example.net", "Pat O'Brien & <Co>"),
    ("anon@example.com", ""),
]


def _toml_value(value: object) -> str:
    return json.dumps(value) if isinstance(value, str) else str(value)


@pytest.fixture
def http_settings(project: Path, httpserver):
    """Build Settings whose provider ``name`` talks to the loopback API server."""
    from pipeline.config import load_settings

    def make(name: str, *, env: dict[str, str] | None = None, **table: object):
        values = {"base_url": httpserver.url_for("/").rstrip("/"), "timeout": 5, **table}
        path = project / "brief.toml"
        text = path.read_text(encoding="utf-8").replace('name = "outbox"', f'name = "{name}"', 1)
        lines = [f"\n[provider.{name}]"]
        lines += [f"{k} = {_toml_value(v)}" for k, v in values.items()]
        path.write_text(text + "\n".join(lines) + "\n", encoding="utf-8")
        make.last = load_settings(path, env=API_ENV if env is None else env)
        return make.last

    # The Settings made last: the provider is built from its own table, not from them,
    # and the messages for it are made from them.
    make.last = None
    return make


def setup_of(settings, name: str | None = None):
    """What the provider is built from under these settings (its table and secrets)."""
    from pipeline.providers import provider_setup

    return provider_setup(settings, name)


@pytest.fixture
def http_messages():
    """Build OutgoingMessages for ``READERS`` (or ``n`` generated readers) via MessageFactory."""
    from pipeline.render.issue import Rendered
    from pipeline.send.message import MessageFactory

    def make(settings, n: int | None = None, *, issue: int = 7):
        rendered = Rendered(
            issue,
            "Issue 7: ReLU",
            "The rectifier",
            SAMPLE_HTML,
            SAMPLE_TEXT,
            f"{settings.newsletter.base_url}/issues/007/",
        )
        factory = MessageFactory(rendered, settings, commit="0" * 40)
        readers = READERS if n is None else [(f"r{i}@example.org", f"Reader {i}") for i in range(n)]
        base = settings.newsletter.base_url
        return [
            factory.build(
                f"c{issue}-d{i}",
                address,
                name,
                {
                    "name": name,
                    "unsubscribe_url": f"{base}/unsubscribe/tok{i}",
                    "preferences_url": f"{base}/preferences/pref{i}?a=1&b=2",
                },
            )
            for i, (address, name) in enumerate(readers)
        ]

    return make
