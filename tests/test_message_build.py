"""Per-recipient messages: headers, encodings, substitution, line lengths."""

from __future__ import annotations

import email
import email.policy

import pytest
from hypothesis import HealthCheck, given
from hypothesis import settings as hsettings
from hypothesis import strategies as st

from pipeline.render.issue import Rendered


def _rendered(html=None, text=None, subject="Deep Learning · Zillow’s iBuying"):
    html = html or (
        "<html><body><p>Hello %%BRIEF_NAME%%,</p>"
        + "<p>“Quoted” café text. " * 200
        + '</p><a href="%%BRIEF_UNSUBSCRIBE_URL%%">unsubscribe</a>'
        ' <a href="%%BRIEF_PREFERENCES_URL%%">preferences</a></body></html>'
    )
    text = text or (
        "Hi %%BRIEF_NAME%%,\n\n"
        + "A plain line, “quoted”.\n" * 50
        + ".a line starting with a dot\nUnsubscribe: %%BRIEF_UNSUBSCRIBE_URL%%\n"
    )
    return Rendered(
        issue_number=7,
        subject=subject,
        preheader="pre",
        html=html,
        text=text,
        web_url="https://brief.example.com/issues/007/",
    )


def _values(name="Ada", token="u1.0.TOKENTOKENTOKENTOKENTOKE"):
    return {
        "name": name,
        "unsubscribe_url": f"https://brief.example.com/unsubscribe/{token}",
        "preferences_url": "https://brief.example.com/preferences/p1.0.PREF",
    }


def _parse(raw: bytes):
    return email.message_from_bytes(raw, policy=email.policy.default)


def test_message_carries_list_headers_commit_and_personal_links(settings):
    from pipeline.send.message import MessageFactory

    f = MessageFactory(_rendered(), settings, commit="abc1234", list_name="main")
    msg = f.build("issue-007.subscriber-42", "ada@example.com", "Ada Lovelace", _values())
    m = _parse(msg.raw)
    assert m["To"] == "Ada Lovelace <ada@example.com>"
    assert m["From"] == "The Brief <brief@example.com>"
    assert m["Reply-To"] == "editors@example.com"
    assert m["Subject"] == "Deep Learning · Zillow’s iBuying"
    assert m["List-Id"] == "The Brief <main.example.com>"
    assert m["X-Brief-Commit"] == "abc1234"
    assert m["Message-ID"].startswith("<issue-007.subscriber-42.")
    assert m["Message-ID"].endswith("@example.com>")
    # No bounce mailbox configured: no mailto address that nothing would read.
    assert m["List-Unsubscribe"] == (
        "<https://brief.example.com/unsubscribe/u1.0.TOKENTOKENTOKENTOKENTOKE>"
    )
    assert m["List-Unsubscribe-Post"] == "List-Unsubscribe=One-Click"
    assert m["Date"].datetime.tzinfo is not None
    assert m.get_content_type() == "multipart/alternative"
    html = m.get_body(("html",)).get_content().replace("\r\n", "\n")
    text = m.get_body(("plain",)).get_content().replace("\r\n", "\n")
    assert html == msg.html and text == msg.text
    assert "Hello Ada," in html and "Hi Ada," in text
    assert 'href="https://brief.example.com/preferences/p1.0.PREF"' in html
    assert ".a line starting with a dot" in text


def test_values_are_html_escaped_in_html_and_raw_in_text(settings):
    from pipeline.send.message import MessageFactory

    f = MessageFactory(_rendered(), settings, commit="x")
    msg = f.build("k", "a@example.com", None, _values(name='<b>Tom & "Jerry"</b>'))
    m = _parse(msg.raw)
    assert (
        "Hello &lt;b&gt;Tom &amp; &quot;Jerry&quot;&lt;/b&gt;,"
        in m.get_body(("html",)).get_content()
    )
    assert 'Hi <b>Tom & "Jerry"</b>,' in m.get_body(("plain",)).get_content()


def test_empty_name_reads_well(settings):
    from pipeline.send.message import MessageFactory

    msg = MessageFactory(_rendered(), settings, commit="x").build(
        "k", "a@example.com", None, _values(name="")
    )
    assert _parse(msg.raw)["To"] == "a@example.com"
    assert "Hi ," in msg.text  # the template decides the wording; substitution adds nothing


def test_names_with_line_breaks_cannot_inject_headers(settings):
    from pipeline.send.message import MessageFactory

    f = MessageFactory(_rendered(), settings, commit="x")
    msg = f.build("k", "a@example.com", "Eve\r\nBcc: victim@example.com", _values())
    m = _parse(msg.raw)
    assert m["Bcc"] is None and m["To"].addresses[0].addr_spec == "a@example.com"
    assert b"\r\nBcc:" not in msg.raw


def test_non_ascii_names_and_domains_are_encoded(settings):
    from pipeline.send.message import MessageFactory

    f = MessageFactory(_rendered(), settings, commit="x")
    msg = f.build("k", "jose@bücher.de", "José Núñez", _values(name="José"))
    m = _parse(msg.raw)
    assert m["To"].addresses[0].display_name == "José Núñez"
    assert msg.to_address == "jose@xn--bcher-kva.de"
    assert msg.raw.isascii()


def test_addresses_with_spaces_or_newlines_are_refused(settings):
    from pipeline.errors import AddressRefused
    from pipeline.send.message import MessageFactory

    f = MessageFactory(_rendered(), settings, commit="x")
    for bad in ("a b@example.com", "a@example.com\r\nBcc: x@y.z", "josé@example.com"):
        with pytest.raises(AddressRefused):
            f.build("k", bad, None, _values())


# The settings are read-only here, so sharing one across examples is safe.
@hsettings(
    max_examples=60, deadline=None, suppress_health_check=[HealthCheck.function_scoped_fixture]
)
@given(name=st.text(max_size=300), body=st.text(max_size=400))
def test_any_name_and_body_round_trip_with_short_lines(settings, name, body):
    from pipeline.send.message import MessageFactory, display_name

    r = _rendered(html=f"<p>{body}%%BRIEF_NAME%%</p>", text=f"{body}%%BRIEF_NAME%%{body}")
    msg = MessageFactory(r, settings, commit="x").build(
        "k", "a@example.com", name, _values(name=name)
    )
    assert all(len(line) <= 998 for line in msg.raw.split(b"\r\n"))
    assert b"\n" not in msg.raw.replace(b"\r\n", b"")
    m = _parse(msg.raw)
    norm = body.replace("\r\n", "\n").replace("\r", "\n")
    assert m.get_body(("plain",)).get_content().replace("\r\n", "\n") == (
        f"{norm}{display_name(name)}{norm}"
    )


@hsettings(
    max_examples=60, deadline=None, suppress_health_check=[HealthCheck.function_scoped_fixture]
)
@given(name=st.text(max_size=300), body=st.text(max_size=400))
def test_json_parts_are_the_json_of_the_personalised_parts(settings, name, body):
    """An HTTP request's bodies are joined from parts escaped once per issue: the bytes
    must be exactly what ``json.dumps`` gives for the personalised text, whatever the
    name and the content hold (quotes, backslashes, control and non-ASCII characters)."""
    import json

    from pipeline.send.message import MessageFactory

    r = _rendered(html=f'<p a="%%">{body}%%BRIEF_NAME%%</p>', text=f"{body}%%BRIEF_NAME%%\\{body}")
    msg = MessageFactory(r, settings, commit="x").build(
        "k", "a@example.com", name, _values(name=name)
    )
    for which in ("html", "text"):
        joined = msg.json_part(which)
        assert json.loads(joined) == getattr(msg, which)
        assert joined == json.dumps(getattr(msg, which), ensure_ascii=False).encode()


@hsettings(
    max_examples=60, deadline=None, suppress_health_check=[HealthCheck.function_scoped_fixture]
)
@given(
    name=st.text(max_size=100),
    body=st.text(alphabet=st.sampled_from(".\n\r a=é"), max_size=300),
)
def test_smtp_data_is_the_message_dot_stuffed_whatever_starts_a_line(settings, name, body):
    """SMTP's DATA is stuffed once per issue and per value, not per message: it must be
    exactly the message with each line that starts with "." doubled (RFC 5321 §4.5.2),
    whatever the content and the name put at a line's start."""
    import re

    from pipeline.send.message import MessageFactory

    r = _rendered(html=f"<p>{body}%%BRIEF_NAME%%{body}</p>", text=f"{body}%%BRIEF_NAME%%{body}")
    msg = MessageFactory(r, settings, commit="x").build(
        "k", "a@example.com", name, _values(name=f".{name}")
    )
    data, raw = msg.smtp_data, msg.raw

    def undated(b: bytes) -> bytes:  # the two were built apart: a second may have passed
        return re.sub(rb"(?m)^Date: .*$", b"Date: -", b)

    assert undated(data) == undated(re.sub(rb"(?m)^\.", b"..", raw))
    assert data.endswith(b"\r\n")


def test_test_copy_subject_and_sample_message(settings):
    from pipeline.send.message import sample_message, test_copy

    raw = sample_message(test_copy(_rendered()), settings)
    m = _parse(raw)
    assert m["Subject"] == "[TEST] Deep Learning · Zillow’s iBuying"
    assert m["To"] == "reader@example.com"


def test_commit_names_the_content_repository_head(settings, tmp_path):
    import subprocess

    from pipeline.send.message import content_commit

    assert content_commit(tmp_path) == "unknown"
    subprocess.run(["git", "init", "-q", str(tmp_path)], check=True)
    subprocess.run(
        [
            "git",
            "-C",
            str(tmp_path),
            "-c",
            "user.email=a@b.c",
            "-c",
            "user.name=a",
            "commit",
            "-q",
            "--allow-empty",
            "-m",
            "x",
        ],
        check=True,
    )
    head = subprocess.run(
        ["git", "-C", str(tmp_path), "rev-parse", "HEAD"], capture_output=True, text=True
    ).stdout.strip()
    assert content_commit(tmp_path) == head


def test_the_mail_contract_loads_neither_jinja2_nor_mjml():
    """Building and pushing messages (message, providers) needs the contract alone: the
    placeholders come from pipeline.mail, so a send worker never imports the renderer."""
    import subprocess
    import sys

    code = (
        "import sys; import pipeline.send.message, pipeline.providers.http, pipeline.mail; "
        "pipeline.providers.http.placeholders(); "
        "print(sorted(m for m in ('jinja2', 'mjml', 'pipeline.render.issue') if m in sys.modules))"
    )
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, check=True)
    assert out.stdout.strip() == "[]"
