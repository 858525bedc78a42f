"""VERP for the smtp provider, the mailto unsubscribe address, and the [bounces] settings.

``[provider.smtp] return_path`` puts each delivery's key into MAIL FROM (seen here by
aiosmtpd, which records the envelope sender); the List-Unsubscribe mailto is there only
when a mailbox reads it; every bad [bounces] key is one line naming it.
"""

from __future__ import annotations

import email
import email.policy
import re
from pathlib import Path

import pytest
from hypothesis import given
from hypothesis import strategies as st

from tests.fixtures_send import set_keys, subscribe_many

RETURN_PATH = "bounces+{key}@news.example.com"


def _settings(project: Path):
    from pipeline.config import load_settings

    return load_settings(project / "brief.toml", env={})


def test_return_path_puts_each_delivery_key_into_mail_from(send_env, smtp_sink):
    env = send_env(smtp_sink)
    set_keys(env.project, "provider.smtp", return_path=f'"{RETURN_PATH}"')
    settings = _settings(env.project)
    emails = subscribe_many(env.engine, 3)
    from pipeline.send import send_campaign

    report = send_campaign(env.engine, settings, env.library, env.issue, "main", retry_base=0.02)
    assert report.sent == 3
    for i, address in enumerate(emails, start=1):
        assert smtp_sink.senders[address] == [f"bounces+issue-001.subscriber-{i}@news.example.com"]
        # The header From is still the newsletter's: VERP changes only the envelope.
        msg = email.message_from_bytes(smtp_sink.received[address][0], policy=email.policy.default)
        assert msg["From"].addresses[0].addr_spec == "brief@example.com"


def test_without_return_path_the_envelope_sender_is_the_from_address(send_env, smtp_sink):
    env = send_env(smtp_sink)
    [address] = subscribe_many(env.engine, 1)
    assert env.send().sent == 1
    assert smtp_sink.senders[address] == ["brief@example.com"]


@pytest.mark.parametrize(
    ("value", "message"),
    [
        ('"bounces@news.example.com"', "must hold {key} once"),
        ('"bounces+{key}+{key}@news.example.com"', "must hold {key} once"),
        ('"bounces@{key}.example.com"', "must hold {key} once, before the @"),
        ('"bounces {key}@news.example.com"', "is not an email address"),
    ],
)
def test_a_return_path_without_one_key_in_a_valid_address_names_the_key(project, value, message):
    from pipeline.errors import ConfigError
    from pipeline.providers import provider_setup

    set_keys(project, "provider.smtp", return_path=value)
    with pytest.raises(ConfigError, match=re.escape(message)) as caught:
        provider_setup(_settings(project))
    assert str(caught.value).startswith("provider.smtp.return_path:")


# An RFC 5322 dot-atom: atext runs joined by single dots.
_DOT_ATOM = re.compile(r"[A-Za-z0-9!#$%&'*+/=?^_`{|}~-]+(\.[A-Za-z0-9!#$%&'*+/=?^_`{|}~-]+)*")


@given(st.text(min_size=1, max_size=40))
def test_any_key_becomes_a_dot_atom_and_comes_back(key):
    from pipeline.mail import verp_decode, verp_encode

    encoded = verp_encode(key)
    assert _DOT_ATOM.fullmatch(encoded)
    assert verp_decode(encoded) == key
    if not re.search("[A-Z]", key):  # our keys: a server folding the local part's case
        assert verp_decode(encoded.lower()) == key


def test_a_delivery_key_is_left_as_it_is():
    from pipeline.mail import verp_encode

    assert verp_encode("issue-014.subscriber-9") == "issue-014.subscriber-9"


# -- the mailto alternative in List-Unsubscribe ----------------------------------------


def _list_unsubscribe(settings) -> str:
    from pipeline.send.message import MessageFactory
    from tests.test_message_build import _rendered, _values

    factory = MessageFactory(_rendered(), settings, commit="abc1234", list_name="main")
    msg = factory.build("issue-007.subscriber-42", "ada@example.com", "Ada", _values())
    parsed = email.message_from_bytes(msg.raw, policy=email.policy.default)
    assert parsed["List-Unsubscribe"] == msg.headers["List-Unsubscribe"]
    return parsed["List-Unsubscribe"]


def test_without_a_mailbox_list_unsubscribe_has_only_the_link(project):
    value = _list_unsubscribe(_settings(project))
    assert value == "<https://brief.example.com/unsubscribe/u1.0.TOKENTOKENTOKENTOKENTOKE>"


def test_with_a_mailbox_list_unsubscribe_offers_its_mailto_address(project):
    _bounces(project, imap_host='"127.0.0.1"', unsubscribe_address='"leave@news.example.com"')
    value = _list_unsubscribe(_settings(project))
    assert value == (
        "<https://brief.example.com/unsubscribe/u1.0.TOKENTOKENTOKENTOKENTOKE>, "
        "<mailto:leave@news.example.com?subject=unsubscribe-u1.0.TOKENTOKENTOKENTOKENTOKE>"
    )


# -- [bounces] settings --------------------------------------------------------------------


def _bounces(project: Path, **keys: object) -> None:
    path = project / "brief.toml"
    path.write_text(path.read_text() + "\n[bounces]\n")
    set_keys(project, "bounces", **keys)


def test_bounces_defaults_mean_no_mailbox(project):
    b = _settings(project).bounces
    assert not b.configured and b.unsubscribe_address == ""
    assert (b.tls, b.port, b.folder, b.processed_folder, b.soft_bounce_limit) == (
        "implicit",
        993,
        "INBOX",
        "Processed",
        3,
    )


def test_bounces_settings_are_read(project):
    _bounces(
        project,
        imap_host='"imap.example.com"',
        tls='"starttls"',
        username='"bounces"',
        soft_bounce_limit=5,
        interval_minutes=2,
    )
    b = _settings(project).bounces
    assert b.configured and b.port == 143 and b.tls == "starttls"
    assert (b.username, b.soft_bounce_limit, b.interval_minutes) == ("bounces", 5, 2)


@pytest.mark.parametrize(
    ("keys", "message"),
    [
        ({"imap_host": '"imap.example.com"', "tls": '"none"'}, "bounces.tls: 'none' is allowed"),
        ({"tls": '"ssl"'}, "bounces.tls: must be one of"),
        ({"port": 0}, "bounces.port: must be between"),
        ({"soft_bounce_limit": 0}, "bounces.soft_bounce_limit: must be between"),
        ({"interval_minutes": 100000}, "bounces.interval_minutes: must be between"),
        ({"timeout": "nan"}, "bounces.timeout: must be between"),
        ({"folder": '" "'}, "bounces.folder: must name a folder"),
        ({"folder": '"INBOX"', "processed_folder": '"INBOX"'}, "bounces.processed_folder"),
        ({"unsubscribe_address": '"leave@news.example.com"'}, "needs bounces.imap_host"),
        (
            {"imap_host": '"x"', "unsubscribe_address": '"not an address"'},
            "bounces.unsubscribe_address: 'not an address' is not an email address",
        ),
        ({"password": '"hunter2"'}, "bounces.password: secrets never go in brief.toml"),
        ({"imap_hots": '"x"'}, "bounces.imap_hots: unknown key"),
    ],
)
def test_a_bad_bounces_key_is_one_line_naming_it(project, brief, keys, message):
    _bounces(project, **keys)
    out = brief("check")
    assert out.code == 2
    assert message in out.err and out.err.count("\n") == 1


def test_fetch_without_a_mailbox_says_so(project, brief):
    out = brief("bounces", "fetch")
    assert out.code == 2 and "no bounce mailbox is configured" in out.err
