"""A greeting for everyone (issue 13, measured item 2): the template said ``Hi {{ name }}``
with no fallback, so a reader without a name got the lone line "Hi" (text part:
``Hi=20``), and the preview hid it behind the sample name "Sam". Now
``[newsletter] greeting`` / ``greeting_no_name`` fill one per-recipient placeholder,
substituted like the name (the issue is still rendered once)."""

from __future__ import annotations

import email
import email.policy
import re
from pathlib import Path

import pytest

from pipeline.errors import ConfigError


def _configure(project: Path, **keys: str) -> None:
    toml = project / "brief.toml"
    lines = "".join(f"{k} = {v}\n" for k, v in keys.items())
    text = toml.read_text(encoding="utf-8")
    for key in keys:  # the shipped file sets them: replaced, not repeated
        text = re.sub(rf"(?m)^{key} = .*\n", "", text)
    assert 'default_list = "main"\n' in text
    toml.write_text(text.replace('default_list = "main"\n', 'default_list = "main"\n' + lines))


def _mail_to(issue_project: Path, store_engine, email_address: str, name: str | None):
    """The issue as ``email_address`` gets it: (raw bytes, text part, html part)."""
    from pipeline.config import load_settings
    from pipeline.content.library import load_content
    from pipeline.render.issue import render_issue
    from pipeline.send.message import MessageFactory
    from pipeline.store import add_subscriber, audience

    settings = load_settings(issue_project / "brief.toml", env={})
    library = load_content(settings)
    rendered = render_issue(library.issue(1), library, settings)
    add_subscriber(store_engine, email_address, name, confirmed=True, source="test")
    [recipient] = [r for r in audience(store_engine, "main") if r.email == email_address]
    msg = MessageFactory(rendered, settings).for_recipient("k1", recipient)
    parsed = email.message_from_bytes(msg.raw, policy=email.policy.default)
    text = parsed.get_body(preferencelist=("plain",)).get_content()
    html = parsed.get_body(preferencelist=("html",)).get_content()
    return msg.raw, text, html


@pytest.fixture
def store_engine(tmp_path):
    from pipeline.store import open_store

    engine = open_store(f"sqlite:///{tmp_path / 'greet' / 'brief.db'}")
    yield engine
    engine.dispose()


def test_a_reader_without_a_name_gets_the_no_name_greeting_in_both_parts(
    issue_project, store_engine
):
    raw, text, html = _mail_to(issue_project, store_engine, "anon@example.org", None)
    assert b"Hi=20" not in raw
    assert "Hi there," in text.splitlines()
    assert "Hi there," in html
    assert "Hi \n" not in text and "Hi</p>" not in html


def test_a_named_reader_gets_the_greeting_with_their_name(issue_project, store_engine):
    _, text, html = _mail_to(issue_project, store_engine, "ann@example.org", "Ann <b>")
    assert "Hi Ann <b>," in text.splitlines()
    assert "Hi Ann &lt;b&gt;," in html  # escaped in HTML like any personal value


def test_greetings_come_from_settings(issue_project, store_engine):
    _configure(issue_project, greeting='"Dear {name}:"', greeting_no_name='"Dear reader:"')
    _, named, _ = _mail_to(issue_project, store_engine, "ann@example.org", "Ann")
    _, nameless, _ = _mail_to(issue_project, store_engine, "anon@example.org", None)
    assert "Dear Ann:" in named.splitlines()
    assert "Dear reader:" in nameless.splitlines()


def test_an_empty_no_name_greeting_leaves_nameless_readers_without_one(issue_project, store_engine):
    _configure(issue_project, greeting_no_name='""')
    _, text, html = _mail_to(issue_project, store_engine, "anon@example.org", None)
    assert "Hi" not in text.split("This issue:")[0]
    assert "Hi" not in html.split("This issue:")[0].rpartition("<body")[2]


def test_both_greetings_empty_drop_the_line_from_the_issue(issue_project):
    from pipeline.config import load_settings
    from pipeline.content.library import load_content
    from pipeline.mail import PLACEHOLDERS
    from pipeline.render.issue import render_issue

    _configure(issue_project, greeting='""', greeting_no_name='""')
    settings = load_settings(issue_project / "brief.toml", env={})
    library = load_content(settings)
    rendered = render_issue(library.issue(1), library, settings)
    marker = PLACEHOLDERS["greeting"]
    assert marker not in rendered.text and marker not in rendered.html
    head = rendered.text.split("This issue:")[0]
    assert head.endswith("\n\n") and not head.endswith("\n\n\n")


@pytest.mark.parametrize(
    ("keys", "says"),
    [
        ({"greeting_no_name": '"Hi {name},"'}, r"newsletter.greeting_no_name: \{name\} is not"),
        ({"greeting": '"Hi {nam},"'}, r"newsletter.greeting: \{nam\} is not allowed"),
        ({"greeting": '"' + "x" * 201 + '"'}, "newsletter.greeting: 201 characters"),
        ({"greeting": '"Hi\\n{name}"'}, "newsletter.greeting: must not contain control"),
    ],
)
def test_a_bad_greeting_is_a_config_error_naming_the_key(project, keys, says):
    from pipeline.config import load_settings

    _configure(project, **keys)
    with pytest.raises(ConfigError, match=says):
        load_settings(project / "brief.toml", env={})


def test_preview_shows_the_named_and_the_nameless_greeting(issue_project):
    from starlette.testclient import TestClient

    from pipeline.config import load_settings
    from pipeline.web.preview import create_app

    settings = load_settings(issue_project / "brief.toml", env={})
    with TestClient(create_app(settings, watch=False)) as client:
        page = client.get("/issues/001/?view=text").text
        assert "Hi Sam," in page
        assert 'href="/issues/001/?view=text&amp;reader=nameless"' in page
        nameless = client.get("/issues/001/?view=text&reader=nameless").text
        assert "Hi there," in nameless and "Hi Sam," not in nameless
        frame = client.get("/issues/001/?reader=nameless").text
        assert 'src="/issues/001/email.html?reader=nameless"' in frame
        assert "Hi there," in client.get("/issues/001/email.html?reader=nameless").text
        assert "Hi there," in client.get("/issues/001/email.txt?reader=nameless").text
