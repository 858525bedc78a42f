"""Fixtures for the public side: a newsletter with sent issues, webhook keys, a live server."""

from __future__ import annotations

import re
from pathlib import Path

import pytest

from tests.servers import free_port, serve_in_thread


def _set_status(path: Path, status: str) -> None:
    text = path.read_text(encoding="utf-8")
    path.write_text(
        re.sub(r"(?m)^status: \w+$", f"status: {status}", text, count=1), encoding="utf-8"
    )


def _write_issue(
    root: Path, number: int, day: str, glossary: str, museum: str, status: str, subject: str
) -> Path:
    path = root / "issues" / f"{number:03d}-{day}.md"
    path.write_text(
        "---\n"
        f"number: {number}\n"
        f"date: {day}\n"
        f"subject: '{subject}'\n"
        f"preheader: 'Preheader of issue {number}'\n"
        f"glossary:\n- {glossary}\n"
        f"museum:\n- {museum}\n"
        f"status: {status}\n"
        "---\n\n"
        f"Intro of issue {number}: **{glossary}** and {museum}.\n",
        encoding="utf-8",
    )
    return path


@pytest.fixture
def published(project: Path) -> Path:
    """The shipped content with issues 1 and 2 sent and issue 3 still a draft."""
    issues = project / "issues"
    first = sorted(issues.glob("001-*.md"))
    if first:
        _set_status(first[0], "sent")
    else:
        _write_issue(
            project,
            1,
            "2026-12-02",
            "deep-learning",
            "knight-capital",
            "sent",
            "Deep Learning · Knight Capital",
        )
    for stale in issues.glob("00[23]-*.md"):
        stale.unlink()
    _write_issue(
        project,
        2,
        "2026-12-16",
        "fine-tuning",
        "mars-climate-orbiter",
        "sent",
        "Fine-Tuning · Mars Climate Orbiter",
    )
    _write_issue(
        project,
        3,
        "2026-12-30",
        "hallucination",
        "zillow-offers",
        "draft",
        "Hallucination · Zillow Offers",
    )
    return project


@pytest.fixture
def published_settings(published: Path):
    from pipeline.config import load_settings

    return load_settings(published / "brief.toml", env={})


@pytest.fixture
def published_library(published: Path, published_settings):
    from pipeline.content.library import load_content

    return load_content(published_settings)


# -- the public app, in-process ------------------------------------------------------------


def post_resend(
    client,
    payload: dict,
    msg_id: str = "msg_2KWPBgLlAfxdpx2AI54pPJ85f4W",
    *,
    secret: str | None = None,
    timestamp: int | None = None,
    before: str = "",
):
    """POST ``payload`` to ``/webhooks/resend`` through ``client`` (a TestClient, or an
    httpx.Client with the app's base_url) with Svix's headers, signed with ``secret``
    (default: the tests' Resend secret) at ``timestamp`` (default: now); ``before`` is put
    in front of the signature, as Svix lists several."""
    import json
    import time

    from pipeline.webhooks.resend import sign

    body = json.dumps(payload).encode()
    ts = str(int(time.time()) if timestamp is None else timestamp)
    signature = sign(secret or WEBHOOK_ENV["BRIEF_RESEND_WEBHOOK_SECRET"], msg_id, ts, body)
    return client.post(
        "/webhooks/resend",
        content=body,
        headers={
            "svix-id": msg_id,
            "svix-timestamp": ts,
            "svix-signature": before + signature,
            "Content-Type": "application/json",
        },
    )


WEBHOOK_ENV = {
    "BRIEF_POSTMARK_WEBHOOK_USER": "postmark-hook",
    "BRIEF_POSTMARK_WEBHOOK_PASSWORD": "pm-9f3c2a71e0",
    "BRIEF_MAILGUN_WEBHOOK_SIGNING_KEY": "key-mg-5d1c8e2b7a",
    # whsec_ + base64("resend-test-secret-32-bytes-long!")
    "BRIEF_RESEND_WEBHOOK_SECRET": "whsec_cmVzZW5kLXRlc3Qtc2VjcmV0LTMyLWJ5dGVzLWxvbmch",
}


@pytest.fixture
def sendgrid_key():
    """A P-256 key pair standing in for SendGrid's; the public half goes in the env."""
    from cryptography.hazmat.primitives.asymmetric import ec

    return ec.generate_private_key(ec.SECP256R1())


@pytest.fixture
def web_env(sendgrid_key) -> dict[str, str]:
    import base64

    from cryptography.hazmat.primitives import serialization

    der = sendgrid_key.public_key().public_bytes(
        serialization.Encoding.DER, serialization.PublicFormat.SubjectPublicKeyInfo
    )
    return {**WEBHOOK_ENV, "BRIEF_SENDGRID_WEBHOOK_PUBLIC_KEY": base64.b64encode(der).decode()}


@pytest.fixture
def web_settings(published: Path, web_env):
    from pipeline.config import load_settings

    return load_settings(published / "brief.toml", env=web_env)


@pytest.fixture
def web_engine(web_settings):
    from pipeline.store import open_store

    engine = open_store(web_settings.database.url)
    yield engine
    engine.dispose()


def _clients_over(engine):
    """A maker of TestClients over create_app(settings, engine=engine, **kwargs)."""
    from starlette.testclient import TestClient

    from pipeline.web.public import create_app

    def make(settings, **kwargs):
        app = create_app(settings, engine=engine, **kwargs)
        return TestClient(app, base_url=settings.newsletter.base_url)

    return make


@pytest.fixture
def client_for(web_engine):
    """Build a TestClient over create_app(settings, engine=...) with extra keyword args."""
    return _clients_over(web_engine)


@pytest.fixture
def client(client_for, web_settings):
    return client_for(web_settings)


# -- mail that the public app sent, read back from the outbox provider ----------------------


def outbox_messages(settings, *, deliver: bool = True) -> list:
    """Every .eml the outbox provider wrote, oldest first, parsed.

    ``deliver`` first sends what the public app queued (``notices.drain``, as `brief
    serve`'s background task would) on the settings' own database; False reads only
    what is already there.
    """
    import email
    from email import policy

    if deliver:
        from pipeline.content.library import read_content
        from pipeline.send.notices import drain
        from pipeline.store import open_store

        engine = open_store(settings.database.url)
        try:
            # The valid part of the content, as the public app and the daemon read it.
            drain(settings, engine, library=lambda: read_content(settings).library)
            _wait_for_claimed_notices(engine)
        finally:
            engine.dispose()

    root = settings.root / ".brief" / "outbox"
    files = sorted(root.rglob("*.eml"), key=lambda p: p.stat().st_mtime_ns) if root.exists() else []
    return [email.message_from_bytes(p.read_bytes(), policy=policy.default) for p in files]


def outbox_by_recipient(settings) -> dict:
    """What the outbox provider wrote, parsed, by the recipient's address (a send's
    messages; nothing queued is delivered first)."""
    return {m["To"].addresses[0].addr_spec: m for m in outbox_messages(settings, deliver=False)}


def _wait_for_claimed_notices(engine, timeout: float = 10.0) -> None:
    """A live app's background sender may hold a row (claimed, so ``drain`` skipped it)
    and be writing its mail right now: wait until it has let go of the row.

    A claimed row is due again one lease (5 minutes) after its claim; a row waiting
    for a retry is due 1, 2 or 4 minutes on, or 8 and more: only the first are waited for.
    """
    import time
    from datetime import UTC, datetime, timedelta

    import sqlalchemy as sa

    from pipeline.send.notices import LEASE
    from pipeline.store.schema import notices

    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        now = datetime.now(UTC)
        with engine.connect() as conn:
            claimed = conn.execute(
                sa.select(sa.func.count())
                .select_from(notices)
                .where(
                    notices.c.due_at > now + LEASE - timedelta(seconds=30),
                    notices.c.due_at <= now + LEASE + timedelta(seconds=5),
                )
            ).scalar_one()
        if not claimed:
            return
        time.sleep(0.02)


def body_text(msg) -> str:
    part = msg.get_body(preferencelist=("plain",))
    return part.get_content() if part is not None else ""


def link_in(msg, kind: str) -> str:
    """The first ``{base_url}/{kind}/{token}`` link in a message's text part."""
    found = re.search(rf"https?://\S+/{kind}/[A-Za-z0-9._-]+", body_text(msg))
    assert found, f"no /{kind}/ link in:\n{body_text(msg)}"
    return found.group(0)


# -- `brief serve`'s app on a real loopback port -------------------------------------------


@pytest.fixture
def live_public(published: Path, web_env):
    """uvicorn serving create_app on a free port; brief.toml's base_url points at it.

    Yields (base_url, settings, engine).
    """
    from pipeline.config import load_settings
    from pipeline.store import open_store
    from pipeline.web.public import create_app

    port = free_port()
    base = f"http://127.0.0.1:{port}"
    toml = published / "brief.toml"
    toml.write_text(
        re.sub(r'(?m)^base_url = ".*"$', f'base_url = "{base}"', toml.read_text()),
        encoding="utf-8",
    )
    settings = load_settings(toml, env=web_env)
    engine = open_store(settings.database.url)
    with serve_in_thread(create_app(settings, engine=engine), port, access_log=False):
        yield base, settings, engine
    engine.dispose()


# -- the public app over each backend (the store fixtures' fresh SQLite / PostgreSQL) ------


@pytest.fixture
def store_settings(web_settings, store_url):
    """web_settings pointed at the parametrised store (SQLite and PostgreSQL)."""
    from dataclasses import replace

    return replace(web_settings, database=replace(web_settings.database, url=store_url))


@pytest.fixture
def store_client_for(store):
    """Like client_for, over the parametrised ``store`` engine."""
    return _clients_over(store)


@pytest.fixture
def store_client(store_client_for, store_settings):
    return store_client_for(store_settings)
