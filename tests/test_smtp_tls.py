"""The smtp provider over real TLS: STARTTLS and implicit TLS against aiosmtpd on loopback,
with the certificate verified against a CA made at test time (``provider.smtp.ca_file``)."""

from __future__ import annotations

from pathlib import Path

import pytest

from tests.fixtures_send import (
    SMTP_PASSWORD,
    SMTP_USER,
    set_keys,
    subscribe_many,
    use_tls_smtp,
)

ENV = {"BRIEF_SMTP_PASSWORD": SMTP_PASSWORD}


def _settings(project: Path, env: dict[str, str] | None = None):
    from pipeline.config import load_settings

    return load_settings(project / "brief.toml", env=ENV if env is None else env)


def _one(settings, to: str = "editor@example.com"):
    from pipeline.send import send_one

    return send_one(settings, to, "Editor", "TLS check", "<p>Hello</p>", "Hello")


def _campaign(project: Path, settings, count: int):
    from pipeline.content.library import load_library
    from pipeline.send import send_campaign
    from pipeline.store import open_store

    engine = open_store(settings.database.url)
    try:
        emails = subscribe_many(engine, count)
        library = load_library(settings.root)
        report = send_campaign(engine, settings, library, library.issue(1), "main", retry_base=0.02)
    finally:
        engine.dispose()
    return report, emails


@pytest.mark.parametrize("mode", ["starttls", "implicit"])
def test_campaign_over_tls_with_auth_verifies_the_certificate_against_ca_file(
    project, tls_smtp, tls_files, mode
):
    sink = tls_smtp(mode)
    use_tls_smtp(project, sink, mode, tls_files.ca, SMTP_USER)
    report, emails = _campaign(project, _settings(project), 4)
    assert report.state == "sent" and report.sent == 4
    assert sorted(sink.received) == sorted(emails)
    # Every message went over an encrypted session after a successful login.
    assert sink.sessions == [(True, SMTP_USER.encode())] * 4


def test_a_relative_ca_file_is_read_from_the_newsletter_folder(project, tls_smtp, tls_files):
    sink = tls_smtp("starttls")
    (project / "certs").mkdir()
    (project / "certs" / "ca.pem").write_bytes(tls_files.ca.read_bytes())
    use_tls_smtp(project, sink, "starttls", Path("certs/ca.pem"), SMTP_USER)
    assert _one(_settings(project)).ok
    assert list(sink.received) == ["editor@example.com"]


@pytest.mark.parametrize("mode", ["starttls", "implicit"])
def test_without_ca_file_a_private_ca_is_not_trusted(project, tls_smtp, mode):
    from pipeline.errors import ProviderError

    sink = tls_smtp(mode)
    use_tls_smtp(project, sink, mode, None, SMTP_USER)
    with pytest.raises(ProviderError, match="certificate that is not trusted") as caught:
        _one(_settings(project))
    assert "\n" not in str(caught.value)
    assert sink.count() == 0 and sink.sessions == []


def test_a_wrong_password_is_a_provider_error_that_does_not_show_it(project, tls_smtp, tls_files):
    from pipeline.errors import ProviderError

    sink = tls_smtp("starttls")
    use_tls_smtp(project, sink, "starttls", tls_files.ca, SMTP_USER)
    wrong = "hunter2-not-the-password"
    with pytest.raises(ProviderError) as caught:
        _one(_settings(project, {"BRIEF_SMTP_PASSWORD": wrong}))
    message = str(caught.value)
    assert f"refused the login for {SMTP_USER!r}" in message and "535" in message
    assert wrong not in message and SMTP_PASSWORD not in message
    assert sink.count() == 0


def test_a_wrong_password_pauses_the_campaign_with_nobody_marked_sent(project, tls_smtp, tls_files):
    sink = tls_smtp("implicit")
    use_tls_smtp(project, sink, "implicit", tls_files.ca, SMTP_USER)
    wrong = "s3cret-but-wrong"
    report, _ = _campaign(project, _settings(project, {"BRIEF_SMTP_PASSWORD": wrong}), 3)
    assert report.state == "paused" and "refused the login" in report.reason
    assert "535" in report.reason and wrong not in report.reason
    assert (report.sent, report.unknown, report.pending) == (0, 0, 3)
    assert sink.count() == 0


@pytest.mark.parametrize("mode", ["starttls", "implicit"])
def test_a_certificate_for_another_host_pauses_the_send_and_marks_nobody_sent(
    project, tls_smtp, tls_files, mode
):
    sink = tls_smtp(mode, wrong_host=True)
    use_tls_smtp(project, sink, mode, tls_files.ca, SMTP_USER)
    report, _ = _campaign(project, _settings(project), 3)
    assert report.state == "paused"
    assert "not trusted" in report.reason and "127.0.0.1" in report.reason
    assert (report.sent, report.unknown, report.pending) == (0, 0, 3)
    assert sink.count() == 0 and sink.sessions == []


def test_brief_send_to_a_host_with_the_wrong_certificate_is_one_line(
    brief, project, tls_smtp, tls_files
):
    sink = tls_smtp("starttls", wrong_host=True)
    use_tls_smtp(project, sink, "starttls", tls_files.ca, SMTP_USER)
    result = brief("send", "1", "--to", "editor@example.com", env=ENV)
    assert result.code != 0
    lines = result.err.strip().splitlines()
    assert len(lines) == 1 and "Traceback" not in result.err
    assert "not trusted" in lines[0] and "mismatch" in lines[0] and "127.0.0.1" in lines[0]
    assert SMTP_PASSWORD not in result.err + result.out
    assert sink.count() == 0


def test_a_missing_ca_file_is_a_settings_error_naming_the_key(brief, project, tls_smtp):
    sink = tls_smtp("starttls")
    use_tls_smtp(project, sink, "starttls", project / "nowhere.pem", SMTP_USER)
    result = brief("send", "1", "--to", "editor@example.com", env=ENV)
    assert result.code != 0 and "Traceback" not in result.err
    assert result.err.strip().count("\n") == 0
    assert "provider.smtp.ca_file" in result.err and "nowhere.pem" in result.err


def test_a_ca_file_that_is_not_a_certificate_is_a_settings_error(project, tls_smtp):
    from pipeline.errors import ConfigError
    from pipeline.providers import load_provider

    sink = tls_smtp("starttls")
    (project / "junk.pem").write_text("not a certificate\n")
    use_tls_smtp(project, sink, "starttls", project / "junk.pem", SMTP_USER)
    with pytest.raises(ConfigError, match=r"provider\.smtp\.ca_file: .*junk\.pem"):
        load_provider(_settings(project))


def test_plain_smtp_on_loopback_never_sends_the_password(project, tls_smtp, tls_files):
    from pipeline.errors import ProviderError

    sink = tls_smtp("starttls")
    use_tls_smtp(project, sink, "none", tls_files.ca, SMTP_USER)
    # The server offers AUTH only after STARTTLS; without TLS the login must not happen.
    with pytest.raises(ProviderError, match="AUTH extension not supported") as caught:
        _one(_settings(project))
    assert SMTP_PASSWORD not in str(caught.value)
    assert sink.count() == 0 and sink.sessions == []
    set_keys(project, "provider.smtp", tls='"starttls"')
    assert _one(_settings(project)).ok
