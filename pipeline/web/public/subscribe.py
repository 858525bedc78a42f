"""The subscribe form: double opt-in, queued off the request, the same answer for all."""

from __future__ import annotations

from starlette.concurrency import run_in_threadpool
from starlette.requests import Request
from starlette.responses import HTMLResponse, Response

from pipeline.errors import StoreError
from pipeline.send.notices import enqueue_subscribe
from pipeline.store import normalise_email
from pipeline.store.normalise import normalise_name
from pipeline.store.rate_hits import allow
from pipeline.web.public.context import first, form, state_of
from pipeline.web.security import same_origin


async def subscribe_form(request: Request) -> Response:
    """GET /subscribe: the form, offering the public lists."""
    s = state_of(request)
    return s.page(
        "web/subscribe.html.j2", title="Subscribe", error="", lists=await s.public_lists()
    )


async def subscribe(request: Request) -> Response:
    """POST /subscribe: queue the attempt; whether anyone is mailed is decided later."""
    s = state_of(request)
    settings = s.settings
    if not same_origin(request, {s.base_origin}):
        return s.forbidden()
    data = await form(request)
    done = s.message(
        "Check your inbox",
        "If that address can receive our newsletter, a confirmation email is on its way. "
        "Open the link in it to start your subscription.",
    )
    if first(data, "website"):
        return done  # the honeypot: a bot, answered like a person, and nothing happens
    raw_email, name = first(data, "email"), first(data, "name") or None
    list_name = first(data, "list") or settings.newsletter.default_list
    lists = await s.public_lists()

    def again(error: str) -> HTMLResponse:
        return s.page("web/subscribe.html.j2", 400, title="Subscribe", error=error, lists=lists)

    if not raw_email:
        return again("Please enter your email address.")
    if list_name not in lists:
        return again("Please choose one of the lists shown.")
    try:
        email = normalise_email(raw_email)
    except StoreError:
        return again("That does not look like an email address. Please check it.")
    try:
        name = normalise_name(name)
    except StoreError:
        return again("Please shorten your name (200 characters at most).")
    web = settings.web
    when = s.now()
    ip = request.client.host if request.client else "unknown"
    if not await run_in_threadpool(allow, s.engine, "ip", ip, web.subscribe_per_ip_per_hour, when):
        return s.message(
            "Too many attempts",
            "Too many subscriptions from your network in the last hour. Please try again later.",
            status=429,
        )
    if not await run_in_threadpool(
        allow, s.engine, "address", email, web.subscribe_per_address_per_hour, when
    ):
        return done  # list bombing: the same answer, and no more mail to that inbox
    # The same work for every address, new, pending, confirmed or suppressed: one row
    # queued. Whether anyone is added or mailed is decided later, off the request.
    await run_in_threadpool(enqueue_subscribe, s.engine, email, name, list_name, "web:subscribe")
    s.kick()
    return done
