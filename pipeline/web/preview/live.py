"""Live reload: a watchfiles task bumps the state's version on any change under the
watched folders, and ``/events`` streams that version to open pages (server-sent events);
a page reloads when the version moves past the one it was rendered at."""

from __future__ import annotations

import asyncio
from collections.abc import AsyncIterator

from starlette.requests import Request
from starlette.responses import Response, StreamingResponse

from pipeline.web.preview.state import PreviewState, state_of

WATCHED = ("glossary", "museum", "issues", "templates", "assets")
STREAM_SECONDS = 15.0  # an event stream ends now and then; the browser reconnects by itself


async def events(request: Request) -> Response:
    """GET /events: the version now and at every change, until the stream times out."""
    state = state_of(request)

    async def stream() -> AsyncIterator[str]:
        yield "retry: 300\n\n"
        last = None
        loop = asyncio.get_running_loop()
        until = loop.time() + STREAM_SECONDS
        while loop.time() < until and not state.stopping():
            if state.version != last:
                last = state.version
                yield f"event: version\ndata: {last}\n\n"
            await asyncio.sleep(0.1)

    return StreamingResponse(
        stream(), media_type="text/event-stream", headers={"Cache-Control": "no-cache"}
    )


async def watcher(state: PreviewState) -> None:
    """Bump ``state.version`` on every change under the watched folders, until stopped."""
    # Imported when a watcher starts: an app with watch=False never loads watchfiles.
    from watchfiles import awatch

    root = state.settings.root
    paths = [str(root / d) for d in WATCHED if (root / d).is_dir()]
    if not paths:
        return
    async for _ in awatch(*paths, stop_event=state.stop, debounce=50, step=20, recursive=True):
        state.version += 1
