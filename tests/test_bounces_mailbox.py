"""The bounce mailbox end to end: Dovecot on loopback holding real-world-shaped DSNs (Postfix,
Exim, Gmail, Microsoft 365, Yahoo), an ARF complaint, auto-replies, a reader's reply and
mailto unsubscribes; ``brief bounces fetch`` on both backends suppresses or unsubscribes the
right people, leaves the rest, moves what it read, and a second pass changes nothing."""

from __future__ import annotations

import mailbox
from pathlib import Path

import pytest
import sqlalchemy as sa

from tests.fixtures_imap import IMAP_PASSWORD, IMAP_USER
from tests.fixtures_send import set_keys

DATA = Path(__file__).parent / "data" / "bounces"
RETURN_PATH = "bounces+{key}@news.example.com"
UNSUB = "unsubscribe@news.example.com"
ENV = {"BRIEF_BOUNCES_PASSWORD": IMAP_PASSWORD}

# Subscribed in this order, so reader N is subscriber N (the delivery keys in tests/data).
PEOPLE = [
    "dana@mail.example.net",  # 1 postfix-hard
    "erik@exim.example.org",  # 2 exim-hard (no VERP: the original Message-ID names it)
    "gina.gone@gmail.com",  # 3 gmail-hard
    "mo@contoso.com",  # 4 m365-hard
    "yuki@yahoo.com",  # 5 yahoo-hard
    "full@mail.example.net",  # 6 postfix-soft: logged, not suppressed
    "slow@mail.example.net",  # 7 postfix-delay: a warning, nothing
    "angry@yahoo.com",  # 8 arf-complaint (recipient redacted: VERP names them)
    "away@example.org",  # 9 autoreply: nothing
    "lost@mail.example.net",  # 10 mangled-hard: only the VERP address names them
    "leaver@example.org",  # 11 mailto unsubscribe
    "forger@example.org",  # 12 a mailto with a forged token: nothing
    "stays@example.org",  # 13 wrote a reply to the bounce address: nothing
]
SUPPRESSED = {1: "hard_bounce", 2: "hard_bounce", 3: "hard_bounce", 4: "hard_bounce"}
SUPPRESSED |= {5: "hard_bounce", 8: "complaint", 10: "hard_bounce"}
FILES = sorted(p.name for p in DATA.glob("*.eml"))


def _mailto(sender: str, token: str) -> bytes:
    return (
        f"From: <{sender}>\r\nTo: {UNSUB}\r\nSubject: unsubscribe-{token}\r\n"
        f"Message-ID: <{token[:8]}.{sender}>\r\nDate: Wed, 2 Dec 2026 13:00:00 +0000\r\n"
        "MIME-Version: 1.0\r\nContent-Type: text/plain\r\n\r\n"
        "This message will unsubscribe you.\r\n"
    ).encode()


def _configure(project: Path, server, **bounces: object) -> None:
    keys = {
        "imap_host": '"127.0.0.1"',
        "port": server.tls_port,
        "tls": '"implicit"',
        "username": f'"{IMAP_USER}"',
        "ca_file": f'"{server.ca}"',
        "unsubscribe_address": f'"{UNSUB}"',
    }
    keys.update({k: v for k, v in bounces.items()})
    text = (project / "brief.toml").read_text()
    if "[bounces]" not in text:
        (project / "brief.toml").write_text(text + "\n[bounces]\n")
    set_keys(project, "bounces", **{k: v for k, v in keys.items() if v is not None})
    set_keys(project, "provider.smtp", return_path=f'"{RETURN_PATH}"')


@pytest.fixture
def env(project, store_url, imap_server):
    """The project on ``store_url`` with PEOPLE subscribed and the mailbox configured."""
    from pipeline.store import add_subscriber, open_store
    from pipeline.store.subscribers import show

    set_keys(project, "database", url=f'"{store_url}"')
    _configure(project, imap_server)
    engine = open_store(store_url)
    for email in PEOPLE:
        add_subscriber(engine, email, None, list_name="main", confirmed=True, source="test")
    assert [show(engine, e).id for e in PEOPLE] == list(range(1, len(PEOPLE) + 1))
    yield engine
    engine.dispose()


def _fill(server, engine) -> None:
    from pipeline.store.subscribers import show

    for name in FILES:
        server.append((DATA / name).read_bytes())
    token = show(engine, "leaver@example.org").memberships[0].unsubscribe_token
    server.append(_mailto("leaver@example.org", token))
    forged = show(engine, "forger@example.org").memberships[0].unsubscribe_token[:-4] + "AAAA"
    server.append(_mailto("forger@example.org", forged))


def _state(engine) -> dict:
    """Everything fetch may change: suppressions, memberships, events, applied events."""
    from pipeline.store.schema import events, memberships, suppressions, webhook_events

    with engine.connect() as conn:
        return {
            "suppressions": sorted(
                conn.execute(sa.select(suppressions.c.address_hash, suppressions.c.reason)).all()
            ),
            "memberships": sorted(
                conn.execute(sa.select(memberships.c.subscriber_id, memberships.c.status)).all()
            ),
            "events": sorted(
                conn.execute(
                    sa.select(
                        events.c.subscriber_id,
                        events.c.kind,
                        events.c.source,
                        events.c.detail,
                        events.c.issue_number,
                    )
                ).all(),
                key=repr,
            ),
            "applied": sorted(
                conn.execute(sa.select(webhook_events.c.provider, webhook_events.c.event_id)).all()
            ),
        }


def _who(engine) -> tuple[dict[int, str], dict[int, str]]:
    """(subscriber id -> suppression reason, subscriber id -> membership status)."""
    from pipeline.store.schema import memberships, subscribers, suppressions

    with engine.connect() as conn:
        suppressed = dict(
            conn.execute(
                sa.select(subscribers.c.id, suppressions.c.reason).join(
                    suppressions, suppressions.c.address_hash == subscribers.c.email_hash
                )
            ).all()
        )
        status = dict(
            conn.execute(sa.select(memberships.c.subscriber_id, memberships.c.status)).all()
        )
    return suppressed, status


def test_fetch_suppresses_the_bounced_and_complaining_unsubscribes_by_mailto_and_leaves_the_rest(
    env, brief, imap_server
):
    _fill(imap_server, env)
    out = brief("bounces", "fetch", env=ENV)
    assert out.code == 0, out.err
    assert out.out.split() == [
        "messages=13",
        "hard=6",
        "soft=1",
        "complaints=1",
        "unsubscribed=1",
        "ignored=3",  # the delay warning, the auto-reply, the reader's reply
        "duplicates=0",
        "unknown=1",  # the forged token names nobody
    ], out.out
    suppressed, status = _who(env)
    assert suppressed == SUPPRESSED
    assert status[11] == "unsubscribed"
    assert {i: s for i, s in status.items() if i != 11} == {
        i: "confirmed" for i in range(1, 14) if i != 11
    }
    # Every bounce and the complaint is logged against the person, attributed to issue 1.
    logged = {
        (row.subscriber_id, row.kind, row.issue_number)
        for row in _state(env)["events"]
        if row.source == "webhook:mailbox"
    }
    assert logged == {(i, "bounced", 1) for i in (1, 2, 3, 4, 5, 6, 10)} | {(8, "complained", 1)}
    # No address from a report reaches the log's detail.
    assert not any("@" in (row.detail or "") for row in _state(env)["events"])
    # Everything read was moved, after it was stored.
    assert imap_server.messages("INBOX") == []
    assert len(imap_server.messages("Processed")) == len(FILES) + 2
    # The password is nowhere in what the command said.
    assert IMAP_PASSWORD not in out.out + out.err


def test_a_second_fetch_and_the_same_messages_again_change_nothing(env, brief, imap_server):
    _fill(imap_server, env)
    assert brief("bounces", "fetch", env=ENV).code == 0
    before = _state(env)
    again = brief("bounces", "fetch", env=ENV)
    assert again.code == 0 and again.out.startswith("messages=0 ")
    assert _state(env) == before
    # As after a crash between storing and moving: the same messages are read once more.
    for raw in imap_server.messages("Processed"):
        imap_server.append(raw)
    third = brief("bounces", "fetch", env=ENV)
    assert third.code == 0
    assert "hard=0 soft=0 complaints=0 unsubscribed=0" in third.out
    assert _state(env) == before


def test_soft_bounces_in_as_many_issues_as_the_limit_become_a_hard_bounce(
    env, project, brief, imap_server
):
    set_keys(project, "bounces", soft_bounce_limit=2)
    soft = (DATA / "postfix-soft.eml").read_bytes()
    imap_server.append(soft)
    assert brief("bounces", "fetch", env=ENV).code == 0
    assert _who(env)[0] == {}
    # The same soft bounce reported twice for one issue is still one issue.
    imap_server.append(soft.replace(b"Message-Id: <2026", b"Message-Id: <again-2026"))
    assert brief("bounces", "fetch", env=ENV).code == 0
    assert _who(env)[0] == {}
    issue2 = soft.replace(b"issue-001", b"issue-002").replace(b"<2026", b"<two-2026")
    imap_server.append(issue2)
    out = brief("bounces", "fetch", env=ENV)
    assert out.code == 0 and "hard=1" in out.out
    assert _who(env)[0] == {6: "hard_bounce"}


def test_import_of_an_mbox_file_applies_the_same_once(env, brief, tmp_path):
    path = tmp_path / "bounces.mbox"
    box = mailbox.mbox(str(path))
    for name in FILES:
        box.add((DATA / name).read_bytes())
    box.flush()
    box.close()
    out = brief("bounces", "import", str(path))
    assert out.code == 0, out.err
    assert _who(env)[0] == SUPPRESSED
    before = _state(env)
    assert brief("bounces", "import", str(path)).code == 0
    assert _state(env) == before
    assert path.read_bytes().count(b"\nFrom ") + 1 == len(FILES)  # the file is left as it was


def test_a_missing_mbox_file_is_one_line(env, brief, tmp_path):
    out = brief("bounces", "import", str(tmp_path / "nope.mbox"))
    assert out.code == 1 and out.err.count("\n") == 1 and "no such mbox file" in out.err


def test_starttls_and_a_flag_instead_of_a_folder(project, brief, imap_server):
    _configure(project, imap_server, port=imap_server.starttls_port, tls='"starttls"')
    set_keys(project, "bounces", processed_folder='""')
    imap_server.append((DATA / "autoreply.eml").read_bytes())
    out = brief("bounces", "fetch", env=ENV)
    assert out.code == 0, out.err
    assert out.out.startswith("messages=1 ")
    assert "\\Seen" in imap_server.flags("INBOX")[0]
    assert brief("bounces", "fetch", env=ENV).out.startswith("messages=0 ")


def test_a_server_certificate_from_an_untrusted_ca_is_refused_in_one_line(
    project, brief, imap_server
):
    _configure(project, imap_server, ca_file='""')
    imap_server.append((DATA / "postfix-hard.eml").read_bytes())
    out = brief("bounces", "fetch", env=ENV)
    assert out.code == 1
    assert "certificate that is not trusted" in out.err and out.err.count("\n") == 1
    assert len(imap_server.messages("INBOX")) == 1


def test_a_wrong_password_is_one_line_that_does_not_repeat_it(project, brief, imap_server):
    _configure(project, imap_server)
    out = brief("bounces", "fetch", env={"BRIEF_BOUNCES_PASSWORD": "wrong-secret-91"})
    assert out.code == 1 and "refused the login" in out.err
    assert "wrong-secret-91" not in out.out + out.err and out.err.count("\n") == 1
    missing = brief("bounces", "fetch", env={"BRIEF_BOUNCES_PASSWORD": ""})
    assert missing.code == 2 and "BRIEF_BOUNCES_PASSWORD" in missing.err


def test_brief_run_once_reads_the_mailbox(env, brief, imap_server, caplog):
    imap_server.append((DATA / "gmail-hard.eml").read_bytes())
    out = brief("run", "--once", env={**ENV, "BRIEF_NOW": "2026-11-20T09:00"})
    assert out.code == 0, out.err
    assert "event=bounces messages=1 hard=1" in caplog.text
    assert _who(env)[0] == {3: "hard_bounce"}
    assert imap_server.messages("INBOX") == []


def test_the_daemon_reads_the_mailbox_once_per_interval(env, project, imap_server):
    from pipeline.config import load_settings
    from pipeline.content.library import load_library
    from pipeline.daemon.service import Daemon

    settings = load_settings(project / "brief.toml", env=ENV)
    daemon = Daemon(settings, env, lambda: load_library(settings.root))
    imap_server.append((DATA / "gmail-hard.eml").read_bytes())
    daemon.run_once()
    assert imap_server.messages("INBOX") == []
    imap_server.append((DATA / "m365-hard.eml").read_bytes())
    daemon.run_once()  # within interval_minutes of the last read: not yet
    assert len(imap_server.messages("INBOX")) == 1
    assert _who(env)[0] == {3: "hard_bounce"}


def test_plain_imap_on_loopback_and_the_tally_as_json(project, brief, imap_server):
    import json

    _configure(project, imap_server, port=imap_server.starttls_port, tls='"none"')
    imap_server.append((DATA / "human.eml").read_bytes())
    out = brief("bounces", "fetch", "--json", env=ENV)
    assert out.code == 0, out.err
    assert json.loads(out.out) == {
        "messages": 1,
        "hard": 0,
        "soft": 0,
        "complaints": 0,
        "unsubscribed": 0,
        "ignored": 1,
        "duplicates": 0,
        "unknown": 0,
    }
    assert len(imap_server.messages("Processed")) == 1
