"""The public app's wiring: state, routes, middleware, error pages and the background
sender of queued mails (see the package docstring for what each concern module does)."""

from __future__ import annotations

import asyncio
import contextlib
import logging
from collections.abc import AsyncIterator, Callable
from datetime import UTC, datetime
from functools import partial

from sqlalchemy.engine import Engine
from starlette.applications import Starlette
from starlette.concurrency import run_in_threadpool
from starlette.exceptions import HTTPException
from starlette.requests import Request
from starlette.responses import Response
from starlette.routing import Route

from pipeline.config import Settings
from pipeline.content.library import Library
from pipeline.render.templating import environment
from pipeline.store import open_store
from pipeline.web.public import archive, clicks, consent, subscribe, webhooks
from pipeline.web.public.context import PublicState, default_loader, state_of
from pipeline.web.security import BodyLimit, CatchAll, SecurityHeaders, origin_of
from pipeline.webhooks.registry import Verifiers
from pipeline.webhooks.ses import SesVerifier, SnsTrust

log = logging.getLogger("brief.web")

# The queue is drained at once when a request adds to it, and at least this often anyway
# (retries come due on their own).
DRAIN_EVERY = 30.0

ROUTES = [
    Route("/subscribe", subscribe.subscribe_form, methods=["GET"]),
    Route("/subscribe", subscribe.subscribe, methods=["POST"]),
    Route("/confirm/{token}", consent.confirm_page, methods=["GET"]),
    Route("/confirm/{token}", consent.confirm, methods=["POST"]),
    Route("/unsubscribe/{token}", consent.unsubscribe_page, methods=["GET"]),
    Route("/unsubscribe/{token}", consent.unsubscribe, methods=["POST"]),
    Route("/preferences/{token}", consent.preferences_page, methods=["GET"]),
    Route("/preferences/{token}", consent.preferences, methods=["POST"]),
    Route("/webhooks/{provider}", webhooks.webhook, methods=["POST"]),
    Route("/c/{token}", clicks.click, methods=["GET", "HEAD"]),
    Route("/o/{token}", clicks.pixel, methods=["GET", "HEAD"]),
    Route("/{path:path}", archive.archive_page, methods=["GET", "HEAD"]),
]


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
        engine = open_store(settings.database.url)
    base_origin = origin_of(settings.newsletter.base_url)
    state = PublicState(
        settings=settings,
        engine=engine,
        now=now or (lambda: datetime.now(UTC)),
        # Webhook verifiers are looked up by name in the brief.webhooks registry.
        verifiers=Verifiers(settings, {"ses": SesVerifier(sns_trust)} if sns_trust else {}),
        load_library=load_library or default_loader(settings),
        env=environment(settings),
        base_origin=base_origin,
        clicks=clicks.ClickRecorder(engine),
    )
    app = Starlette(
        routes=ROUTES, exception_handlers={HTTPException: http_error}, lifespan=lifespan
    )
    # Added innermost first. CatchAll sits inside SecurityHeaders (Starlette's own
    # ServerErrorMiddleware is outside every user middleware, so its 500 had none).
    app.add_middleware(BodyLimit, max_bytes=settings.web.max_body_bytes)
    app.add_middleware(CatchAll, render=partial(server_error, state), log=log)
    app.add_middleware(SecurityHeaders, form_origins=[base_origin])
    if settings.web.trusted_proxies:
        # uvicorn only when a proxy is configured (tests and `brief preview` need none).
        from uvicorn.middleware.proxy_headers import ProxyHeadersMiddleware

        # Only these peers' X-Forwarded-For is believed (its rightmost untrusted entry);
        # anyone else's is ignored, so a direct client cannot pick its own address.
        app.add_middleware(ProxyHeadersMiddleware, trusted_hosts=list(settings.web.trusted_proxies))
    app.state.brief = state
    return app


# -- error pages -----------------------------------------------------------------------


async def http_error(request: Request, exc: Exception) -> Response:
    """Starlette's HTTP errors (unknown path, wrong method) as our plain pages."""
    s = state_of(request)
    status = getattr(exc, "status_code", 500)
    if status == 404:
        return s.not_found()
    if status == 405:
        return s.message("Not allowed", "That does not work here.", status=405)
    return s.message("Something went wrong", "Please try again later.", status=status)


def server_error(state: PublicState) -> Response:
    """The page CatchAll answers with when a handler raised."""
    return state.message("Something went wrong", "Please try again later.", status=500)


# -- the background sender -------------------------------------------------------------


@contextlib.asynccontextmanager
async def lifespan(app: Starlette) -> AsyncIterator[None]:
    """`brief serve`: one task sends the queued mails, woken by each request that
    queues one and every DRAIN_EVERY seconds for retries."""
    state: PublicState = app.state.brief
    state.wake = asyncio.Event()
    task = asyncio.create_task(sender(state, state.wake))
    # Clicks are written by their own task, in batches, never by the request.
    recorder = asyncio.create_task(state.clicks.run())
    try:
        yield
    finally:
        for t in (task, recorder):
            t.cancel()
            with contextlib.suppress(asyncio.CancelledError):
                await t
        state.wake = None


async def sender(state: PublicState, wake: asyncio.Event) -> None:
    """Drain the queue whenever woken or every DRAIN_EVERY seconds, until cancelled."""
    while True:
        with contextlib.suppress(TimeoutError):
            await asyncio.wait_for(wake.wait(), DRAIN_EVERY)
        wake.clear()
        try:
            await run_in_threadpool(state.drain_queue)
        except Exception as exc:  # noqa: BLE001 - the sender must outlive a bad round
            log.error("queued mail not sent this round: %s: %s", type(exc).__name__, exc)
