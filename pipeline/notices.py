"""The transactional mails about consent: the double opt-in confirmation and the welcome.

Used by the public app (subscribe, preferences, confirm) and by ``brief subscribers add``.
Each function renders ``templates/email/<kind>.{txt,html}.j2`` with the shared Jinja
environment and sends through ``send.send_one``. A provider failure comes back as a failed
``Result`` for the caller to report; its reason never carries the address, and nothing
here logs an address or a token. Settings and template errors are the operator's to fix
and are raised as usual.
"""

from __future__ import annotations

from typing import Any

import jinja2
from sqlalchemy.engine import Engine

from .config import Settings
from .content import Library
from .errors import ProviderError
from .providers.base import Result
from .templating import environment, render_template


def send_confirmation(
    settings: Settings,
    email: str,
    name: str | None,
    list_name: str,
    token: str,
    env: jinja2.Environment | None = None,
) -> Result:
    """Mail ``email`` the link ``{base_url}/confirm/{token}`` for a pending membership."""
    values = {
        "name": name or "",
        "list_name": list_name,
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
    from .store import show

    detail = show(engine, email)
    unsub = next(
        (m.unsubscribe_token for m in detail.memberships if m.list_name == list_name), None
    )
    if unsub is None:
        return Result.failed("welcome", f"not a member of list {list_name}", transient=False)
    values = {
        "name": name or "",
        "list_name": list_name,
        "latest": _latest(settings, library),
        "unsubscribe_url": f"{settings.newsletter.base_url}/unsubscribe/{unsub}",
    }
    subject = f"Welcome to {settings.newsletter.name}"
    return _send(settings, env, "welcome", subject, email, name, values)


def _latest(settings: Settings, library: Library | None) -> dict[str, str] | None:
    """The newest sent issue as ``{subject, url}``, or None before the first send."""
    if library is None:
        return None
    from .site import archive, issue_path

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
    from .send import send_one

    env = env or environment(settings)
    text = render_template(env, f"email/{kind}.txt.j2", **values)
    html = render_template(env, f"email/{kind}.html.j2", **values)
    try:
        result = send_one(settings, email, name, subject, html, text)
    except ProviderError as exc:  # unreachable or refusing as a whole: the caller reports it
        return Result.failed(kind, _scrub(str(exc), email), transient=True)
    if result.ok:
        return result
    return Result.failed(
        result.key,
        _scrub(result.reason, email),
        transient=result.transient,
        suppress=result.suppress,
    )


def _scrub(reason: str, email: str) -> str:
    """One line, without the address (SMTP servers like to echo it back)."""
    line = " ".join(reason.split()) or "no reason given"
    for spelling in {email, email.lower()}:
        line = line.replace(spelling, "<address>")
    return line
