"""The transactional mails about consent: the double opt-in confirmation and the welcome.

Used by ``brief subscribers add`` directly, and by the public app through a small queue in
the database (table ``notices``): a request only queues, so it answers at once and costs
the same whatever the address (the send time would tell who is new); ``drain`` sends what
is due, from ``brief serve``'s background task and ``brief run``'s daemon, and retries a
failure later with growing waits. Each send function renders
``templates/email/<kind>.{txt,html}.j2`` with the shared Jinja environment and sends
through ``send.send_one``. A provider failure comes back as a failed ``Result`` for the
caller to report; its reason never carries the address, and nothing
here logs an address or a token. Settings and template errors are the operator's to fix
and are raised as usual.
"""

from __future__ import annotations

import enum
import logging
from collections.abc import Callable
from dataclasses import dataclass, replace
from datetime import UTC, datetime, timedelta
from typing import Any, cast

import jinja2
import sqlalchemy as sa
from sqlalchemy.engine import Engine

from pipeline.config import Settings
from pipeline.content.library import Library
from pipeline.errors import BriefError, NotFound, ProviderError, StoreError
from pipeline.providers.base import Result
from pipeline.render.site import archive, issue_path
from pipeline.render.templating import environment, render_template
from pipeline.send.oneoff import send_one
from pipeline.store import add_subscriber, show
from pipeline.store.db import as_utc, reading, transaction, utcnow
from pipeline.store.lists import find_list
from pipeline.store.schema import notices

log = logging.getLogger("brief.notices")

# A queued mail is tried this many times (about a day and a half of waits) and then given up.
MAX_ATTEMPTS = 10
# While one worker sends a row, others leave it alone for this long (a crash mid-send
# means the row comes back after it).
LEASE = timedelta(minutes=5)


class NoticeKind(enum.Enum):
    """What a queued row asks for."""

    SUBSCRIBE = "subscribe"  # a form sign-up: add (pending) and, if due, confirm by mail
    CONFIRMATION = "confirmation"  # the double opt-in link for a pending membership
    WELCOME = "welcome"  # the welcome after confirming


@dataclass(frozen=True)
class Notice:
    """One queued mail, as ``queued`` reports it (no token: nothing to leak)."""

    id: int
    kind: NoticeKind
    email: str
    list_name: str
    attempts: int
    due_at: datetime


@dataclass(frozen=True)
class DrainReport:
    """What one ``drain`` did: mails sent, failures to retry later, rows given up."""

    sent: int = 0
    failed: int = 0
    given_up: int = 0


def _enqueue(
    engine: Engine,
    kind: NoticeKind,
    email: str,
    name: str | None,
    list_name: str,
    source: str,
    token: str | None = None,
) -> None:
    now = utcnow()
    with transaction(engine) as conn:
        conn.execute(
            notices.insert().values(
                kind=kind.value,
                email=email,
                name=name,
                list_name=list_name,
                source=source,
                token=token,
                attempts=0,
                due_at=now,
                created_at=now,
            )
        )


def enqueue_subscribe(
    engine: Engine, email: str, name: str | None, list_name: str, source: str
) -> None:
    """Queue a sign-up: the worker adds the person (pending) and mails the confirmation."""
    _enqueue(engine, NoticeKind.SUBSCRIBE, email, name, list_name, source)


def enqueue_confirmation(
    engine: Engine, email: str, name: str | None, list_name: str, token: str, source: str
) -> None:
    """Queue the confirmation mail of an existing pending membership."""
    _enqueue(engine, NoticeKind.CONFIRMATION, email, name, list_name, source, token)


def enqueue_welcome(
    engine: Engine, email: str, name: str | None, list_name: str, source: str
) -> None:
    """Queue the welcome for a membership just confirmed."""
    _enqueue(engine, NoticeKind.WELCOME, email, name, list_name, source)


def queued(engine: Engine) -> list[Notice]:
    """Every queued row, oldest first."""
    t = notices
    with reading(engine) as conn:
        rows = conn.execute(sa.select(t).order_by(t.c.id)).all()
    return [
        # due_at is NOT NULL: as_utc only gives None for None.
        Notice(
            r.id,
            NoticeKind(r.kind),
            r.email,
            r.list_name,
            r.attempts,
            cast(datetime, as_utc(r.due_at)),
        )
        for r in rows
    ]


def _backoff(attempts: int) -> timedelta:
    """1, 2, 4 … minutes, at most 6 hours between tries."""
    return min(timedelta(minutes=2 ** max(attempts - 1, 0)), timedelta(hours=6))


def drain(
    settings: Settings,
    engine: Engine,
    *,
    now: datetime | None = None,
    library: Callable[[], Library | None] | None = None,
    env: jinja2.Environment | None = None,
    limit: int = 100,
) -> DrainReport:
    """Send every queued mail that is due (at most ``limit``); safe to run in several
    processes at once, each row is claimed before it is sent."""
    now = now or datetime.now(UTC)
    t = notices
    with reading(engine) as conn:  # only the claim below writes
        due = conn.execute(
            sa.select(t).where(t.c.due_at <= now).order_by(t.c.id).limit(limit)
        ).all()
    sent = failed = given_up = 0
    env = env or environment(settings)
    for row in due:
        with transaction(engine) as conn:
            claimed = conn.execute(
                t.update()
                .where(t.c.id == row.id, t.c.attempts == row.attempts)
                .values(attempts=row.attempts + 1, due_at=now + LEASE)
            ).rowcount
        if claimed != 1:
            continue  # another worker has it
        try:
            result = _deliver(settings, engine, row, env, library)
        except BriefError as exc:  # settings or templates: the operator's to fix; retry
            result = Result.temporary(row.kind, f"{type(exc).__name__}: {exc}")
        attempts = row.attempts + 1
        # A sign-up's only mail is its confirmation: the log names the mail.
        label = NoticeKind.CONFIRMATION.value if row.kind == "subscribe" else row.kind
        with transaction(engine) as conn:
            if result is None or result.ok:
                conn.execute(t.delete().where(t.c.id == row.id))
                sent += result is not None
            elif result.transient and attempts < MAX_ATTEMPTS:
                conn.execute(
                    t.update().where(t.c.id == row.id).values(due_at=now + _backoff(attempts))
                )
                failed += 1
                # No address and no token in the log: only what failed and why.
                log.warning("%s email not sent (try %d): %s", label, attempts, result.reason)
            else:
                conn.execute(t.delete().where(t.c.id == row.id))
                given_up += 1
                log.warning("%s email given up after %d tries: %s", label, attempts, result.reason)
    return DrainReport(sent, failed, given_up)


def _deliver(
    settings: Settings,
    engine: Engine,
    row: Any,
    env: jinja2.Environment,
    library: Callable[[], Library | None] | None,
) -> Result | None:
    """Send one row's mail; None when there is nothing to send after all."""
    kind = NoticeKind(row.kind)
    if kind is NoticeKind.SUBSCRIBE:
        try:
            added = add_subscriber(
                engine, row.email, row.name, list_name=row.list_name, source=row.source
            )
        except (NotFound, StoreError):
            return None  # suppressed, or the list went away: silence, as the page promised
        if not (added.needs_confirmation and added.confirm_token):
            return None  # already confirmed: nothing to mail
        # From now on a retry resends this link; it never adds the person again.
        with transaction(engine) as conn:
            conn.execute(
                notices.update()
                .where(notices.c.id == row.id)
                .values(kind=NoticeKind.CONFIRMATION.value, token=added.confirm_token)
            )
        return send_confirmation(
            settings,
            added.email,
            row.name,
            added.list_name,
            added.confirm_token,
            env,
            list_title=_title_of(engine, added.list_name),
        )
    if kind is NoticeKind.CONFIRMATION:
        return send_confirmation(
            settings,
            row.email,
            row.name,
            row.list_name,
            row.token,
            env,
            list_title=_title_of(engine, row.list_name),
        )
    try:
        lib = library() if library is not None else None
    except BriefError:  # broken content must not cost a new subscriber the welcome
        lib = None
    try:
        return send_welcome(settings, engine, lib, row.email, row.name, row.list_name, env)
    except NotFound:
        return None  # erased since confirming: nobody to welcome


def list_label(settings: Settings, list_name: str | None, title: str | None = None) -> str:
    """How mails and pages name a list to people: its title; else the newsletter's name,
    with the list's name in brackets unless it is the default list (a slug such as
    "main" means nothing to a reader)."""
    if title:
        return title
    newsletter = settings.newsletter
    if not list_name or list_name == newsletter.default_list:
        return newsletter.name
    return f"{newsletter.name} ({list_name})"


def _title_of(engine: Engine, list_name: str) -> str:
    found = find_list(engine, list_name)
    return found.title if found is not None else ""


def send_confirmation(
    settings: Settings,
    email: str,
    name: str | None,
    list_name: str,
    token: str,
    env: jinja2.Environment | None = None,
    *,
    list_title: str = "",
) -> Result:
    """Mail ``email`` the link ``{base_url}/confirm/{token}`` for a pending membership
    (``list_title``: the list's title, when it has one)."""
    values = {
        "name": name or "",
        "list_name": list_name,
        "list_label": list_label(settings, list_name, list_title),
        "confirm_url": f"{settings.newsletter.base_url}/confirm/{token}",
    }
    subject = f"Confirm your subscription to {settings.newsletter.name}"
    return _send(settings, env, "confirm", subject, email, name, values)


def send_welcome(
    settings: Settings,
    engine: Engine,
    library: Library | None,
    email: str,
    name: str | None,
    list_name: str,
    env: jinja2.Environment | None = None,
) -> Result:
    """Welcome a newly confirmed member of ``list_name``, with the latest sent issue's link
    (none when ``library`` is None) and their unsubscribe link."""
    detail = show(engine, email)
    unsub = next(
        (m.unsubscribe_token for m in detail.memberships if m.list_name == list_name), None
    )
    if unsub is None:
        return Result.permanent("welcome", f"not a member of list {list_name}")
    values = {
        "name": name or "",
        "list_name": list_name,
        "list_label": list_label(settings, list_name, _title_of(engine, list_name)),
        "latest": _latest(settings, library),
        "unsubscribe_url": f"{settings.newsletter.base_url}/unsubscribe/{unsub}",
    }
    subject = f"Welcome to {settings.newsletter.name}"
    return _send(settings, env, "welcome", subject, email, name, values)


def _latest(settings: Settings, library: Library | None) -> dict[str, str] | None:
    """The newest sent issue as ``{subject, url}``, or None before the first send."""
    if library is None:
        return None
    sent = archive(library).issues
    if not sent:
        return None
    return {
        "subject": sent[0].subject,
        "url": f"{settings.newsletter.base_url}{issue_path(sent[0])}",
    }


def _send(
    settings: Settings,
    env: jinja2.Environment | None,
    kind: str,
    subject: str,
    email: str,
    name: str | None,
    values: dict[str, Any],
) -> Result:
    env = env or environment(settings)
    text = render_template(env, f"email/{kind}.txt.j2", **values)
    html = render_template(env, f"email/{kind}.html.j2", **values)
    try:
        result = send_one(settings, email, name, subject, html, text)
    except ProviderError as exc:  # unreachable or refusing as a whole: the caller reports it
        return Result.temporary(kind, _scrub(str(exc), email))
    if result.ok:
        return result
    # The same fate and cause, without the address.
    return replace(result, reason=_scrub(result.reason, email))


def _scrub(reason: str, email: str) -> str:
    """One line, without the address (SMTP servers like to echo it back)."""
    line = " ".join(reason.split()) or "no reason given"
    for spelling in {email, email.lower()}:
        line = line.replace(spelling, "<address>")
    return line
