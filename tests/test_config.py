"""Settings: found like git finds .git, every bad key a one-line error naming it (exit 2)."""

from __future__ import annotations

from datetime import date, time
from pathlib import Path

import pytest

from pipeline.config import load_settings
from pipeline.errors import ConfigError


def edit(project: Path, old: str, new: str) -> Path:
    path = project / "brief.toml"
    text = path.read_text(encoding="utf-8")
    assert old in text
    path.write_text(text.replace(old, new, 1), encoding="utf-8")
    return path


def test_shipped_settings_load(settings):
    assert settings.schedule.anchor == date(2026, 12, 2)
    assert settings.schedule.send_time == time(7, 0)
    assert settings.provider.name == "outbox"
    assert settings.database.url == f"sqlite:///{settings.root / '.brief' / 'brief.db'}"


def test_settings_are_found_from_a_subfolder(project):
    sub = project / "glossary"
    assert load_settings(start=sub, env={}).path == project / "brief.toml"


def test_brief_config_variable_names_the_file(project, tmp_path):
    assert load_settings(start=tmp_path, env={"BRIEF_CONFIG": str(project)}).root == project


def test_missing_settings_file_is_a_clear_error(tmp_path):
    with pytest.raises(ConfigError, match=r"no brief\.toml in .* or any parent"):
        load_settings(start=tmp_path, env={})


@pytest.mark.parametrize(
    "old, new, message",
    [
        (
            "[web]",
            "[web]\ncolour = 'blue'",
            "web.colour: unknown key (allowed here: max_body_bytes, "
            "subscribe_per_address_per_hour, subscribe_per_ip_per_hour, trusted_proxies, "
            "welcome_email)",
        ),
        (
            "concurrency = 4",
            "concurrency = 'four'",
            "provider.concurrency: must be an integer, got 'four'",
        ),
        (
            "anchor = 2026-12-02",
            "anchor = 2026-12-03",
            "schedule.anchor: 2026-12-03 is a Thursday; it must be a Wednesday on the cadence",
        ),
        (
            'timezone = "America/New_York"',
            'timezone = "Mars/Olympus"',
            "schedule.timezone: unknown time zone 'Mars/Olympus' (use an IANA name like "
            "Europe/London)",
        ),
        (
            'send_time = "07:00"',
            'send_time = "7am"',
            "schedule.send_time: must be HH:MM in 24-hour local time, e.g. 08:00",
        ),
        (
            'tls = "starttls"',
            'tls = "ssl"',
            "provider.smtp.tls: must be one of starttls, implicit, none",
        ),
        (
            'username = ""',
            'username = ""\npassword = "hunter2"',
            "provider.smtp.password: "
            "secrets never go in brief.toml; set the environment variable named in the README "
            "instead",
        ),
        (
            'unapproved = "skip"',
            'unapproved = "maybe"',
            "schedule.unapproved: must be one of skip, send",
        ),
    ],
)
def test_bad_setting_is_one_line_naming_the_key_with_exit_2(project, brief, old, new, message):
    edit(project, old, new)
    with pytest.raises(ConfigError) as info:
        load_settings(project / "brief.toml", env={})
    assert str(info.value) == message
    outcome = brief("check")
    assert outcome.code == 2
    assert outcome.err == f"error: {message}\n"


def test_invalid_toml_is_reported_with_its_position(project, brief):
    edit(project, "[schedule]", "[schedule")
    outcome = brief("check")
    assert outcome.code == 2
    assert "not valid TOML" in outcome.err and outcome.err.count("\n") == 1


def test_an_integer_too_long_to_read_is_one_error_not_a_traceback(project, brief):
    """tomllib raises a bare ValueError (not TOMLDecodeError) past Python's 4300-digit
    limit for reading an integer."""
    edit(project, "rate_per_second = 0", f"rate_per_second = 1{'0' * 5000}")
    with pytest.raises(ConfigError, match=r"brief\.toml: not valid TOML: .*4300 digits"):
        load_settings(project / "brief.toml", env={})
    outcome = brief("check")
    assert outcome.code == 2
    assert outcome.err.startswith("error: ") and "not valid TOML" in outcome.err
    assert outcome.err.count("\n") == 1, outcome.err


def test_secrets_come_from_the_environment_only(project):
    s = load_settings(project / "brief.toml", env={"BRIEF_SMTP_PASSWORD": "s3cret"})
    assert s.secret("BRIEF_SMTP_PASSWORD") == "s3cret"
    assert "s3cret" not in repr(s)
