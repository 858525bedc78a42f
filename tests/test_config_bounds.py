"""Settings that used to be accepted and fail later (at the slot, mid-send, in a header)
are refused by ``brief check`` up front: one line naming the dotted key, exit 2."""

from __future__ import annotations

import pytest

from pipeline.config import load_settings
from pipeline.errors import ConfigError
from tests.test_config import edit

GRACE = "catch_up_grace_hours = 6"
DEFAULT_LIST = 'default_list = "main"'
REPLY_TO = 'reply_to = "editors@example.com"'
RATE = "rate_per_second = 0"
CONCURRENCY = "concurrency = 4"
WEB = "welcome_email = true"
SMTP_PORT = "port = 587"
OUTBOX_DIR = 'dir = ".brief/outbox"'
BASE_URL = 'base_url = "https://brief.example.com"'
FROM = 'from_address = "brief@example.com"'
EDITORS = 'editors = ["editor@example.com"]'
NAME = 'name = "The Brief"'


@pytest.mark.parametrize(
    "old, new, key",
    [
        (GRACE, "catch_up_grace_hours = 1e308", "schedule.catch_up_grace_hours"),
        (GRACE, "catch_up_grace_hours = nan", "schedule.catch_up_grace_hours"),
        (GRACE, "catch_up_grace_hours = inf", "schedule.catch_up_grace_hours"),
        (DEFAULT_LIST, 'default_list = ""', "newsletter.default_list"),
        (DEFAULT_LIST, 'default_list = "ma\\u0000in"', "newsletter.default_list"),
        (DEFAULT_LIST, 'default_list = "main\\n"', "newsletter.default_list"),
        (DEFAULT_LIST, 'default_list = "Main List"', "newsletter.default_list"),
        (REPLY_TO, 'reply_to = "not-an-address"', "newsletter.reply_to"),
        (REPLY_TO, 'reply_to = "ed itors@example.com"', "newsletter.reply_to"),
        (
            REPLY_TO,
            'reply_to = "editors@example.com\\r\\nBcc: x@evil.example"',
            "newsletter.reply_to",
        ),
        (FROM, 'from_address = "brief@"', "newsletter.from_address"),
        (FROM, 'from_address = "@example.com"', "newsletter.from_address"),
        (EDITORS, 'editors = ["editor@example.com", "a@b@c"]', "newsletter.editors"),
        (NAME, 'name = "The\\u0000Brief"', "newsletter.name"),
        (NAME, 'name = "The Brief\\r\\nBcc: x@evil.example"', "newsletter.name"),
        (BASE_URL, 'base_url = "https://brief.example.com/a b"', "newsletter.base_url"),
        (DEFAULT_LIST, f'{DEFAULT_LIST}\nlanguage = "en\\"><script>"', "newsletter.language"),
        (RATE, "rate_per_second = nan", "provider.rate_per_second"),
        (RATE, "rate_per_second = inf", "provider.rate_per_second"),
        (RATE, "rate_per_second = 1e308", "provider.rate_per_second"),
        # TOML integers past any float (math.isfinite raised OverflowError on them).
        (RATE, f"rate_per_second = 1{'0' * 400}", "provider.rate_per_second"),
        (GRACE, f"catch_up_grace_hours = 1{'0' * 400}", "schedule.catch_up_grace_hours"),
        (SMTP_PORT, f"{SMTP_PORT}\ntimeout = 1{'0' * 400}", "provider.smtp.timeout"),
        ("guard_ratio = 0.05", f"guard_ratio = 1{'0' * 400}", "send.guard_ratio"),
        (CONCURRENCY, f"{CONCURRENCY}\nmax_retries = 100000", "provider.max_retries"),
        (SMTP_PORT, "port = 0", "provider.smtp.port"),
        (SMTP_PORT, "port = 70000", "provider.smtp.port"),
        (SMTP_PORT, f"{SMTP_PORT}\ntimeout = 1e308", "provider.smtp.timeout"),
        (SMTP_PORT, f"{SMTP_PORT}\ntimeout = 0", "provider.smtp.timeout"),
        (SMTP_PORT, f"{SMTP_PORT}\ntimeout = nan", "provider.smtp.timeout"),
        (OUTBOX_DIR, 'dir = ".brief/out\\u0000box"', "provider.outbox.dir"),
        ("guard_window = 500", "guard_window = 9223372036854775808", "send.guard_window"),
        (WEB, f"{WEB}\nmax_body_bytes = 0", "web.max_body_bytes"),
        (WEB, f"{WEB}\nmax_body_bytes = -1", "web.max_body_bytes"),
        (WEB, f"{WEB}\nsubscribe_per_ip_per_hour = -1", "web.subscribe_per_ip_per_hour"),
        (
            WEB,
            f"{WEB}\nsubscribe_per_address_per_hour = 9223372036854775808",
            "web.subscribe_per_address_per_hour",
        ),
    ],
)
def test_setting_that_would_fail_later_is_refused_naming_its_key(project, brief, old, new, key):
    edit(project, old, new)
    with pytest.raises(ConfigError) as info:
        load_settings(project / "brief.toml", env={})
    assert str(info.value).startswith(f"{key}: "), str(info.value)
    outcome = brief("check")
    assert outcome.code == 2
    assert outcome.err.startswith(f"error: {key}: ") and outcome.err.count("\n") == 1, outcome.err


def test_check_refuses_a_provider_name_that_is_not_registered(project, brief):
    edit(project, 'name = "outbox"', 'name = "pigeon"')
    outcome = brief("check")
    assert outcome.code == 2
    assert outcome.err.startswith("error: provider.name: unknown provider 'pigeon' (installed: ")
    assert outcome.err.count("\n") == 1


def test_list_names_settings_accept_are_the_names_the_store_accepts():
    from pipeline.config import LIST_NAME
    from pipeline.store.lists import check_list_name

    for good in ("main", "weekly-digest", "a_b", "x" * 64):
        assert LIST_NAME.fullmatch(good) and check_list_name(good) == good
    for bad in ("", "Main", "main\n", "a\x00b", "x" * 65, "-main"):
        assert not LIST_NAME.fullmatch(bad)
        with pytest.raises(Exception, match="not allowed"):
            check_list_name(bad)


def test_bounded_settings_keep_their_ordinary_values(project):
    edit(project, GRACE, "catch_up_grace_hours = 0.5")
    edit(project, RATE, "rate_per_second = 14.5")
    edit(project, REPLY_TO, 'reply_to = "Editors.Desk+brief@bücher.example"')
    edit(project, 'default_list = "main"', 'default_list = "weekly_digest-2"')
    settings = load_settings(project / "brief.toml", env={})
    assert settings.schedule.grace_hours == 0.5
    assert settings.provider.rate_per_second == 14.5
    assert settings.newsletter.reply_to == "Editors.Desk+brief@bücher.example"
    assert settings.newsletter.default_list == "weekly_digest-2"


def test_any_value_for_any_key_is_settings_or_one_config_error_naming_it(project):
    """Every key of the shipped brief.toml, given random TOML values: a Settings or one
    ConfigError line naming that key, never another exception."""
    import tomllib
    from datetime import date

    from hypothesis import HealthCheck, given, settings
    from hypothesis import strategies as st

    from pipeline.config import parse_settings

    path = project / "brief.toml"
    base = tomllib.loads(path.read_text(encoding="utf-8"))
    keys = [
        (section, sub, key)
        for section, table in base.items()
        for sub, key in (
            [(None, k) for k, v in table.items() if not isinstance(v, dict)]
            + [(k, kk) for k, v in table.items() if isinstance(v, dict) for kk in v]
        )
    ]
    scalars = (
        st.booleans()
        | st.integers()
        | st.floats()
        | st.text(max_size=30)
        | st.dates()
        | st.datetimes()
        | st.times()
        | st.builds(date, st.integers(1, 9999), st.integers(1, 12), st.integers(1, 28))
    )
    values = st.recursive(
        scalars,
        lambda inner: st.lists(inner, max_size=3) | st.dictionaries(st.text(max_size=5), inner),
        max_leaves=6,
    )

    @settings(max_examples=100, deadline=None, suppress_health_check=list(HealthCheck))
    @given(target=st.sampled_from(keys), value=values)
    def check(target, value):
        section, sub, key = target
        raw = {s: dict(t) for s, t in base.items()}
        table = raw[section] if sub is None else dict(raw[section][sub])
        table[key] = value
        if sub is not None:
            raw[section][sub] = table
        dotted = ".".join(p for p in (section, sub, key) if p)
        try:
            parse_settings(raw, path, {})
        except ConfigError as exc:
            assert "\n" not in str(exc)
            assert str(exc).startswith(f"{dotted}: "), str(exc)

    check()
