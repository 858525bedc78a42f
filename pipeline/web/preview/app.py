"""The preview app's wiring: its state, routes and the lifespan that runs the watcher
(see the package docstring for what each module does)."""

from __future__ import annotations

import asyncio
import contextlib
from collections.abc import AsyncIterator, Callable

from starlette.applications import Starlette
from starlette.routing import Route

from pipeline.config import Settings
from pipeline.content.library import Library, load_content
from pipeline.web.preview import live, pages
from pipeline.web.preview.state import PreviewState

ROUTES = [
    Route("/", pages.index),
    Route("/issues/{ref}/", pages.issue_page),
    Route("/issues/{ref}/email.html", pages.email_html),
    Route("/issues/{ref}/email.txt", pages.email_text),
    Route("/events", live.events),
    Route("/assets/{path:path}", pages.asset),
]


def create_app(
    settings: Settings, *, watch: bool = True, loader: Callable[[Settings], Library] = load_content
) -> Starlette:
    """The preview app for one newsletter; ``watch`` turns on live reload."""
    app = Starlette(routes=ROUTES, lifespan=lifespan)
    app.state.preview = PreviewState(settings=settings, loader=loader, watch=watch)
    return app


@contextlib.asynccontextmanager
async def lifespan(app: Starlette) -> AsyncIterator[None]:
    """While the app serves: the watcher (when ``watch``), stopped with open streams at the end."""
    state: PreviewState = app.state.preview
    state.stop = asyncio.Event()
    task = asyncio.create_task(live.watcher(state)) if state.watch else None
    try:
        yield
    finally:
        state.stop.set()
        if task:
            task.cancel()
            with contextlib.suppress(asyncio.CancelledError, Exception):
                await task
