"""The public app (`brief serve`): subscribe, confirm, unsubscribe, preferences, webhooks,
and the web archive from ``pipeline.render.site``.

Pages are plain HTML forms from ``templates/web`` (no JavaScript, no cookies). Tokens
travel only in paths and are never logged; every bad or tampered token gets the same
plain 404 page. Store and mail calls are synchronous, so they run in the thread pool.
Confirmation and welcome mails never go out inside a request: the request queues them
(``pipeline.send.notices``) and a background task of the app sends them and retries.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
from collections.abc import AsyncIterator, Callable
from dataclasses import dataclass, field
from datetime import UTC, datetime
from functools import partial
from typing import Any

from sqlalchemy.engine import Engine
from starlette.applications import Starlette
from starlette.concurrency import run_in_threadpool
from starlette.exceptions import HTTPException
from starlette.requests import Request
from starlette.responses import HTMLResponse, JSONResponse, RedirectResponse, Response
from starlette.routing import Route

from pipeline.config import Settings
from pipeline.content.library import Library
from pipeline.errors import BriefError, NotFound, StoreError, TokenError
from pipeline.render.site import pages
from pipeline.render.templating import environment, render_template
from pipeline.send.notices import list_label
from pipeline.store.rate_hits import allow
from pipeline.web.security import BodyLimit, CatchAll, SecurityHeaders, origin_of, same_origin
from pipeline.webhooks.apply import apply_events, remember_token
from pipeline.webhooks.common import BadPayload, Unverified, clean_text
from pipeline.webhooks.registry import Verifiers, WebhookCall
from pipeline.webhooks.ses import SesVerifier, SnsTrust

log = logging.getLogger("brief.web")

NO_STORE = {"cache-control": "no-store"}
# The queue is drained at once when a request adds to it, and at least this often anyway
# (retries come due on their own).
DRAIN_EVERY = 30.0


def mask(email: str) -> str:
    """``a…@example.com``: enough for the owner to recognise, little for anyone else."""
    local, _, domain = email.partition("@")
    return f"{local[:1]}…@{domain}"


@dataclass
class _State:
    """What one app instance keeps: settings, the store, clocks and caches (no globals)."""

    settings: Settings
    engine: Engine
    now: Callable[[], datetime]
    verifiers: Verifiers
    load_library: Callable[[], Library]
    _library: Library | None = None
    _stamp: tuple = field(default_factory=tuple)
    wake: asyncio.Event | None = None

    def kick(self) -> None:
        """Tell the background sender there is mail in the queue (when one runs)."""
        if self.wake is not None:
            self.wake.set()

    def library_or_none(self) -> Library | None:
        """The content, or None when it is broken (a welcome goes out without an issue)."""
        try:
            return self.library()
        except BriefError:
            return None

    def library(self) -> Library:
        """The content, reloaded when any content file changed (editors deploy by git pull)."""
        root = self.settings.root
        stamp = tuple(
            (str(p), p.stat().st_mtime_ns)
            for folder in ("glossary", "museum", "issues")
            for p in sorted((root / folder).glob("*.md"))
        )
        if self._library is None or stamp != self._stamp:
            self._library, self._stamp = self.load_library(), stamp
        return self._library


def _default_loader(settings: Settings) -> Callable[[], Library]:
    from pipeline.content.library import read_content

    def load() -> Library:
        # The valid part: one broken draft must not take the archive (or a welcome
        # mail) down. _State calls this once per content change, so each problem is
        # logged once, not per request.
        loaded = read_content(settings)
        for problem in loaded.problems:
            log.error("content left out of the public pages: %s", problem)
        return loaded.library

    return load


def create_app(
    settings: Settings,
    *,
    engine: Engine | None = None,
    load_library: Callable[[], Library] | None = None,
    now: Callable[[], datetime] | None = None,
    sns_trust: SnsTrust | None = None,
) -> Starlette:
    """Build the public ASGI app.

    ``sns_trust`` widens where SNS certificates may come from; only tests pass it
    (a loopback server), never settings, so production always insists on AWS.
    """
    if engine is None:
        from pipeline.store import open_store

        engine = open_store(settings.database.url)
    state = _State(
        settings=settings,
        engine=engine,
        now=now or (lambda: datetime.now(UTC)),
        # Webhook verifiers are looked up by name in the brief.webhooks registry.
        verifiers=Verifiers(settings, {"ses": SesVerifier(sns_trust)} if sns_trust else {}),
        load_library=load_library or _default_loader(settings),
    )
    env = environment(settings)
    base_origin = origin_of(settings.newsletter.base_url)

    def page(
        template: str, /, status: int = 200, headers: dict | None = None, **values
    ) -> HTMLResponse:
        html = render_template(env, template, **values)
        return HTMLResponse(html, status_code=status, headers=headers)

    def message(title: str, *paragraphs: str, status: int = 200) -> HTMLResponse:
        return page("web/message.html.j2", status, NO_STORE, title=title, paragraphs=paragraphs)

    def not_found() -> HTMLResponse:
        return message(
            "Page not found",
            "This link is not valid. It may be mistyped, or it may belong to an old email.",
            status=404,
        )

    def forbidden() -> HTMLResponse:
        return message("Not allowed", "This form can only be sent from our own pages.", status=403)

    async def form(request: Request) -> dict[str, list[str]]:
        data = await request.form(max_files=0, max_fields=50)
        out: dict[str, list[str]] = {}
        for key, value in data.multi_items():
            if isinstance(value, str):
                # Cleaned on the way in, like every webhook text (NUL never reaches the store).
                out.setdefault(key, []).append(clean_text(value))
        return out

    def first(data: dict[str, list[str]], key: str) -> str:
        return (data.get(key) or [""])[0].strip()

    async def public_lists() -> dict[str, str]:
        """The lists the form offers, name -> what people see: public ones only, and the
        default list before it exists (the first subscriber creates it)."""
        from pipeline.store import lists

        found = await run_in_threadpool(lists, engine)
        offered = {info.name: info.display for info in found if info.public}
        default = settings.newsletter.default_list
        if any(info.name == default for info in found):
            return offered
        return {default: default, **offered}

    # -- mail: queued here, sent by the background task ---------------------------------

    def drain_queue() -> None:
        from pipeline.send.notices import drain

        drain(settings, engine, library=state.library_or_none, env=env)

    # -- subscribe ----------------------------------------------------------------------

    async def subscribe_form(request: Request) -> Response:
        return page(
            "web/subscribe.html.j2", title="Subscribe", error="", lists=await public_lists()
        )

    async def subscribe(request: Request) -> Response:
        if not same_origin(request, {base_origin}):
            return forbidden()
        data = await form(request)
        done = message(
            "Check your inbox",
            "If that address can receive our newsletter, a confirmation email is on its way. "
            "Open the link in it to start your subscription.",
        )
        if first(data, "website"):
            return done  # the honeypot: a bot, answered like a person, and nothing happens
        raw_email, name = first(data, "email"), first(data, "name") or None
        list_name = first(data, "list") or settings.newsletter.default_list
        lists = await public_lists()

        def again(error: str) -> HTMLResponse:
            return page("web/subscribe.html.j2", 400, title="Subscribe", error=error, lists=lists)

        if not raw_email:
            return again("Please enter your email address.")
        if list_name not in lists:
            return again("Please choose one of the lists shown.")
        from pipeline.send.notices import enqueue_subscribe
        from pipeline.store import normalise_email
        from pipeline.store.normalise import clean_name

        try:
            email = normalise_email(raw_email)
        except StoreError:
            return again("That does not look like an email address. Please check it.")
        try:
            name = clean_name(name)
        except StoreError:
            return again("Please shorten your name (200 characters at most).")
        web = settings.web
        when = state.now()
        ip = request.client.host if request.client else "unknown"
        if not await run_in_threadpool(
            allow, engine, "ip", ip, web.subscribe_per_ip_per_hour, when
        ):
            return message(
                "Too many attempts",
                "Too many subscriptions from your network in the last hour. "
                "Please try again later.",
                status=429,
            )
        if not await run_in_threadpool(
            allow, engine, "address", email, web.subscribe_per_address_per_hour, when
        ):
            return done  # list bombing: the same answer, and no more mail to that inbox
        # The same work for every address, new, pending, confirmed or suppressed: one row
        # queued. Whether anyone is added or mailed is decided later, off the request.
        await run_in_threadpool(enqueue_subscribe, engine, email, name, list_name, "web:subscribe")
        state.kick()
        return done

    # -- confirm --------------------------------------------------------------------------

    async def confirm_page(request: Request) -> Response:
        from pipeline.store import resolve

        token = request.path_params["token"]
        try:
            target = await run_in_threadpool(resolve, engine, token, "confirm")
        except TokenError:
            return not_found()
        if target.stale:
            return message(
                "This link is out of date",
                "Please use the link in the newest confirmation email, or subscribe again.",
                status=404,
            )
        if target.status == "confirmed":
            return message(
                "You're subscribed",
                "This address is already confirmed. The next issue comes on a Wednesday morning.",
            )
        return page(
            "web/confirm.html.j2",
            headers=NO_STORE,
            title="Confirm",
            masked=mask(target.email),
            list_name=target.list_name,
            list_label=list_label(settings, target.list_name, target.list_title),
        )

    async def confirm(request: Request) -> Response:
        from pipeline.send.notices import enqueue_welcome
        from pipeline.store import confirm as store_confirm
        from pipeline.store import resolve

        if not same_origin(request, {base_origin}):
            return forbidden()
        token = request.path_params["token"]
        try:
            before = await run_in_threadpool(resolve, engine, token, "confirm")
            target = await run_in_threadpool(store_confirm, engine, token, "web:confirm")
        except TokenError:
            return not_found()
        if before.status != "confirmed" and settings.web.welcome_email:
            await run_in_threadpool(
                enqueue_welcome,
                engine,
                target.email,
                target.name,
                target.list_name or settings.newsletter.default_list,
                "web:confirm",
            )
            state.kick()
        return message(
            "You're subscribed",
            f"Thank you. {settings.newsletter.name} comes every other Wednesday.",
        )

    # -- unsubscribe ------------------------------------------------------------------------

    async def unsubscribe_page(request: Request) -> Response:
        from pipeline.store import resolve

        try:
            target = await run_in_threadpool(
                resolve, engine, request.path_params["token"], "unsubscribe"
            )
        except TokenError:
            return not_found()
        return page(
            "web/unsubscribe.html.j2",
            headers=NO_STORE,
            title="Unsubscribe",
            masked=mask(target.email),
            list_name=target.list_name,
            list_label=list_label(settings, target.list_name, target.list_title),
            stale=target.stale,
        )

    async def unsubscribe(request: Request) -> Response:
        """RFC 8058 one-click: the POST body ``List-Unsubscribe=One-Click`` is the consent."""
        from pipeline.store import resolve, unsubscribe_by_token

        token = request.path_params["token"]
        data = await form(request)
        try:
            await run_in_threadpool(resolve, engine, token, "unsubscribe")
        except TokenError:
            return not_found()
        if first(data, "List-Unsubscribe") != "One-Click":
            return message("Unsubscribe", "Please use the Unsubscribe button.", status=400)
        # Unsubscribing is the safe direction: the one-click POST always acts, even from an
        # email older than a re-subscription (mail clients never show a page that asks;
        # the GET page still says the link is old before the button is pressed).
        await run_in_threadpool(
            partial(
                unsubscribe_by_token, engine, token, source="web:unsubscribe", accept_stale=True
            )
        )
        return message(
            "You're unsubscribed",
            "You will get no more issues from this list. "
            "Sorry to see you go, and thank you for reading.",
        )

    # -- preferences ------------------------------------------------------------------------

    async def preferences_state(token: str) -> tuple[Any, list[dict]]:
        from pipeline.store import lists, resolve, show

        target = await run_in_threadpool(resolve, engine, token, "preferences")
        detail = await run_in_threadpool(show, engine, target.email)
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
            for info in await run_in_threadpool(lists, engine)
            if info.public or status.get(info.name) in ("pending", "confirmed")
        ]
        return target, choices

    def preferences_view(target, choices, saved: bool) -> HTMLResponse:
        return page(
            "web/preferences.html.j2",
            headers=NO_STORE,
            title="Preferences",
            masked=mask(target.email),
            choices=choices,
            saved=saved,
        )

    async def preferences_page(request: Request) -> Response:
        try:
            target, choices = await preferences_state(request.path_params["token"])
        except (TokenError, NotFound):
            return not_found()
        return preferences_view(target, choices, saved=False)

    async def preferences(request: Request) -> Response:
        from pipeline.send.notices import enqueue_confirmation
        from pipeline.store import add_subscriber, unsubscribe_by_address

        if not same_origin(request, {base_origin}):
            return forbidden()
        token = request.path_params["token"]
        data = await form(request)
        try:
            target, choices = await preferences_state(token)
        except (TokenError, NotFound):
            return not_found()
        wanted = set(data.get("list", []))
        for choice in choices:
            active = choice["status"] in ("pending", "confirmed")
            name = choice["name"]
            if name in wanted and not active:
                try:
                    result = await run_in_threadpool(
                        partial(
                            add_subscriber,
                            engine,
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
                        engine,
                        target.email,
                        target.name,
                        name,
                        result.confirm_token,
                        "web:preferences",
                    )
                    state.kick()
            elif name not in wanted and active:
                await run_in_threadpool(
                    partial(
                        unsubscribe_by_address,
                        engine,
                        target.email,
                        list_name=name,
                        source="web:preferences",
                    )
                )
        target, choices = await preferences_state(token)
        return preferences_view(target, choices, saved=True)

    # -- webhooks ---------------------------------------------------------------------------

    async def webhook(request: Request) -> Response:
        provider = request.path_params["provider"]
        verifier = await run_in_threadpool(state.verifiers.get, provider)
        if verifier is None:
            return JSONResponse({"error": "unknown provider"}, status_code=404)
        call = WebhookCall(
            headers={k.lower(): v for k, v in request.headers.items()},
            body=await request.body(),
            now=state.now(),
            remember=partial(remember_token, engine, provider),
        )
        try:
            events = await run_in_threadpool(verifier.verify, call)
        except Unverified as exc:
            # One line, for the operator setting a webhook up; never the body.
            log.warning("%s webhook unverified: %s", provider, exc)
            return JSONResponse({"error": "unverified"}, status_code=401)
        except BadPayload as exc:
            log.warning("%s webhook refused: %s", provider, exc)
            return JSONResponse({"error": str(exc)}, status_code=400)
        tally = await run_in_threadpool(apply_events, engine, events)
        return JSONResponse(
            {"applied": tally.applied, "duplicates": tally.duplicates, "skipped": tally.skipped}
        )

    # -- archive ----------------------------------------------------------------------------

    async def archive_page(request: Request) -> Response:
        path = request.url.path
        try:
            site = await run_in_threadpool(lambda: pages(state.library(), settings))
        except BriefError:
            log.exception("the archive cannot be built from the content")
            return message("Back soon", "The archive is being updated.", status=503)
        if path not in site:
            if not path.endswith("/") and f"{path}/" in site:
                return RedirectResponse(f"{path}/", status_code=301)
            return not_found()
        found = site[path]
        body = await run_in_threadpool(found.render)
        return Response(
            body,
            media_type=found.content_type.split(";")[0],
            headers={"cache-control": "public, max-age=300"},
        )

    async def http_error(request: Request, exc: Exception) -> Response:
        status = getattr(exc, "status_code", 500)
        if status == 404:
            return not_found()
        if status == 405:
            return message("Not allowed", "That does not work here.", status=405)
        return message("Something went wrong", "Please try again later.", status=status)

    def server_error() -> Response:
        return message("Something went wrong", "Please try again later.", status=500)

    @contextlib.asynccontextmanager
    async def lifespan(app: Starlette) -> AsyncIterator[None]:
        """`brief serve`: one task sends the queued mails, woken by each request that
        queues one and every DRAIN_EVERY seconds for retries."""
        state.wake = asyncio.Event()
        task = asyncio.create_task(sender(state.wake))
        try:
            yield
        finally:
            task.cancel()
            with contextlib.suppress(asyncio.CancelledError):
                await task
            state.wake = None

    async def sender(wake: asyncio.Event) -> None:
        while True:
            with contextlib.suppress(TimeoutError):
                await asyncio.wait_for(wake.wait(), DRAIN_EVERY)
            wake.clear()
            try:
                await run_in_threadpool(drain_queue)
            except Exception as exc:  # noqa: BLE001 - the sender must outlive a bad round
                log.error("queued mail not sent this round: %s: %s", type(exc).__name__, exc)

    routes = [
        Route("/subscribe", subscribe_form, methods=["GET"]),
        Route("/subscribe", subscribe, methods=["POST"]),
        Route("/confirm/{token}", confirm_page, methods=["GET"]),
        Route("/confirm/{token}", confirm, methods=["POST"]),
        Route("/unsubscribe/{token}", unsubscribe_page, methods=["GET"]),
        Route("/unsubscribe/{token}", unsubscribe, methods=["POST"]),
        Route("/preferences/{token}", preferences_page, methods=["GET"]),
        Route("/preferences/{token}", preferences, methods=["POST"]),
        Route("/webhooks/{provider}", webhook, methods=["POST"]),
        Route("/{path:path}", archive_page, methods=["GET", "HEAD"]),
    ]
    app = Starlette(
        routes=routes, exception_handlers={HTTPException: http_error}, lifespan=lifespan
    )
    # Added innermost first. CatchAll sits inside SecurityHeaders (Starlette's own
    # ServerErrorMiddleware is outside every user middleware, so its 500 had none).
    app.add_middleware(BodyLimit, max_bytes=settings.web.max_body_bytes)
    app.add_middleware(CatchAll, render=server_error, log=log)
    app.add_middleware(SecurityHeaders, form_origins=[base_origin])
    if settings.web.trusted_proxies:
        from uvicorn.middleware.proxy_headers import ProxyHeadersMiddleware

        # Only these peers' X-Forwarded-For is believed (its rightmost untrusted entry);
        # anyone else's is ignored, so a direct client cannot pick its own address.
        app.add_middleware(ProxyHeadersMiddleware, trusted_hosts=list(settings.web.trusted_proxies))
    app.state.brief = state
    return app
