"""The links in our mails: confirm, unsubscribe (RFC 8058 one-click) and preferences.

Every bad or tampered token gets the same plain 404 page; a GET never changes anything.
"""

from __future__ import annotations

from functools import partial
from typing import Any

from starlette.concurrency import run_in_threadpool
from starlette.requests import Request
from starlette.responses import HTMLResponse, Response

from pipeline.errors import NotFound, StoreError, TokenError
from pipeline.send.notices import enqueue_confirmation, enqueue_welcome, list_label
from pipeline.store import (
    add_subscriber,
    lists,
    resolve,
    show,
    unsubscribe_by_address,
    unsubscribe_by_token,
)
from pipeline.store import confirm as store_confirm
from pipeline.web.public.context import NO_STORE, PublicState, first, form, mask, state_of
from pipeline.web.security import same_origin

# -- confirm ---------------------------------------------------------------------------


async def confirm_page(request: Request) -> Response:
    """GET /confirm/{token}: the button that confirms (mail scanners follow GETs)."""
    s = state_of(request)
    token = request.path_params["token"]
    try:
        target = await run_in_threadpool(resolve, s.engine, token, "confirm")
    except TokenError:
        return s.not_found()
    if target.stale:
        return s.message(
            "This link is out of date",
            "Please use the link in the newest confirmation email, or subscribe again.",
            status=404,
        )
    if target.status == "confirmed":
        return s.message(
            "You're subscribed",
            "This address is already confirmed. The next issue comes on a Wednesday morning.",
        )
    return s.page(
        "web/confirm.html.j2",
        headers=NO_STORE,
        title="Confirm",
        masked=mask(target.email),
        list_name=target.list_name,
        list_label=list_label(s.settings, target.list_name, target.list_title),
    )


async def confirm(request: Request) -> Response:
    """POST /confirm/{token}: confirm, and queue the welcome mail the first time."""
    s = state_of(request)
    settings = s.settings
    if not same_origin(request, {s.base_origin}):
        return s.forbidden()
    token = request.path_params["token"]
    try:
        before = await run_in_threadpool(resolve, s.engine, token, "confirm")
        target = await run_in_threadpool(store_confirm, s.engine, token, "web:confirm")
    except TokenError:
        return s.not_found()
    if before.status != "confirmed" and settings.web.welcome_email:
        await run_in_threadpool(
            enqueue_welcome,
            s.engine,
            target.email,
            target.name,
            target.list_name or settings.newsletter.default_list,
            "web:confirm",
        )
        s.kick()
    return s.message(
        "You're subscribed",
        f"Thank you. {settings.newsletter.name} comes every other Wednesday.",
    )


# -- unsubscribe -------------------------------------------------------------------------


def issue_of(request: Request) -> int | None:
    """The issue a link came in (``?i=NNN``, see send/message ``issue_query``), or None
    for an old link without it or anything that is not a plain issue number."""
    raw = request.query_params.get("i", "")
    if raw.isascii() and raw.isdigit() and len(raw) <= 6 and int(raw) > 0:
        return int(raw)
    return None


async def unsubscribe_page(request: Request) -> Response:
    """GET /unsubscribe/{token}: the button, and whether the link is old."""
    s = state_of(request)
    try:
        target = await run_in_threadpool(
            resolve, s.engine, request.path_params["token"], "unsubscribe"
        )
    except TokenError:
        return s.not_found()
    return s.page(
        "web/unsubscribe.html.j2",
        headers=NO_STORE,
        title="Unsubscribe",
        masked=mask(target.email),
        list_name=target.list_name,
        list_label=list_label(s.settings, target.list_name, target.list_title),
        stale=target.stale,
    )


async def unsubscribe(request: Request) -> Response:
    """RFC 8058 one-click: the POST body ``List-Unsubscribe=One-Click`` is the consent."""
    s = state_of(request)
    token = request.path_params["token"]
    data = await form(request)
    try:
        await run_in_threadpool(resolve, s.engine, token, "unsubscribe")
    except TokenError:
        return s.not_found()
    if first(data, "List-Unsubscribe") != "One-Click":
        return s.message("Unsubscribe", "Please use the Unsubscribe button.", status=400)
    # Unsubscribing is the safe direction: the one-click POST always acts, even from an
    # email older than a re-subscription (mail clients never show a page that asks;
    # the GET page still says the link is old before the button is pressed).
    await run_in_threadpool(
        partial(
            unsubscribe_by_token,
            s.engine,
            token,
            source="web:unsubscribe",
            accept_stale=True,
            issue_number=issue_of(request),
        )
    )
    return s.message(
        "You're unsubscribed",
        "You will get no more issues from this list. "
        "Sorry to see you go, and thank you for reading.",
    )


# -- preferences -------------------------------------------------------------------------


async def _choices(s: PublicState, token: str) -> tuple[Any, list[dict]]:
    """The token's subscriber and the lists they may choose, with their status on each."""
    target = await run_in_threadpool(resolve, s.engine, token, "preferences")
    detail = await run_in_threadpool(show, s.engine, target.email)
    status = {m.list_name: m.status for m in detail.memberships}
    # Public lists, and a private list only to someone already on it (so they can
    # leave it); the POST acts on these choices alone, so a private list cannot be
    # joined by naming it.
    choices = [
        {
            "name": info.name,
            "title": info.display,
            "description": info.description,
            "status": status.get(info.name),
        }
        for info in await run_in_threadpool(lists, s.engine)
        if info.public or status.get(info.name) in ("pending", "confirmed")
    ]
    return target, choices


def _preferences_view(
    s: PublicState, target: Any, choices: list[dict], saved: bool
) -> HTMLResponse:
    return s.page(
        "web/preferences.html.j2",
        headers=NO_STORE,
        title="Preferences",
        masked=mask(target.email),
        choices=choices,
        saved=saved,
    )


async def preferences_page(request: Request) -> Response:
    """GET /preferences/{token}: the lists, ticked where subscribed."""
    s = state_of(request)
    try:
        target, choices = await _choices(s, request.path_params["token"])
    except (TokenError, NotFound):
        return s.not_found()
    return _preferences_view(s, target, choices, saved=False)


async def preferences(request: Request) -> Response:
    """POST /preferences/{token}: join (confirming first) or leave the offered lists."""
    s = state_of(request)
    if not same_origin(request, {s.base_origin}):
        return s.forbidden()
    token = request.path_params["token"]
    data = await form(request)
    try:
        target, choices = await _choices(s, token)
    except (TokenError, NotFound):
        return s.not_found()
    wanted = set(data.get("list", []))
    for choice in choices:
        active = choice["status"] in ("pending", "confirmed")
        name = choice["name"]
        if name in wanted and not active:
            try:
                result = await run_in_threadpool(
                    partial(
                        add_subscriber,
                        s.engine,
                        target.email,
                        None,
                        list_name=name,
                        source="web:preferences",
                    )
                )
            except StoreError:
                continue  # suppressed for a bounce or complaint: nothing to offer
            if result.needs_confirmation and result.confirm_token:
                await run_in_threadpool(
                    enqueue_confirmation,
                    s.engine,
                    target.email,
                    target.name,
                    name,
                    result.confirm_token,
                    "web:preferences",
                )
                s.kick()
        elif name not in wanted and active:
            await run_in_threadpool(
                partial(
                    unsubscribe_by_address,
                    s.engine,
                    target.email,
                    list_name=name,
                    source="web:preferences",
                    issue_number=issue_of(request),
                )
            )
    target, choices = await _choices(s, token)
    return _preferences_view(s, target, choices, saved=True)
