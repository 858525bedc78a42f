"""The web archive: every other GET, served from ``pipeline.render.site`` (the same pages
as the static build), rebuilt when the content changes."""

from __future__ import annotations

import logging
import time

from starlette.concurrency import run_in_threadpool
from starlette.requests import Request
from starlette.responses import RedirectResponse, Response

from pipeline.errors import BriefError
from pipeline.render.site import pages
from pipeline.send.edits import edits_after_sending
from pipeline.web.public.context import state_of

log = logging.getLogger("brief.web")
# How long the pages (and their "updated on" marks) are kept while the content is the
# same: the marks also change when a send records its fingerprint, which the content's
# files do not show.
PAGES_FOR_SECONDS = 60.0


def _pages(s) -> dict:
    """The archive's pages, sent issues edited since marked as such; kept while the
    content is the same (a new Library) and for at most PAGES_FOR_SECONDS, so a request
    neither reads the store nor hashes files. The marks come from the store; if it
    cannot be read, the pages are served without them."""
    library = s.library()
    kept = s.archive_pages
    now = time.monotonic()
    if kept is not None and kept[0] is library and now - kept[1] < PAGES_FOR_SECONDS:
        return kept[2]
    try:
        edits = edits_after_sending(s.engine, library, s.settings)
    except Exception as exc:  # the archive must not go down with the database
        log.warning("edits after sending not shown: %s", type(exc).__name__)
        edits = {}
    site = pages(library, s.settings, edits)
    s.archive_pages = (library, now, site)
    return site


async def archive_page(request: Request) -> Response:
    """GET/HEAD of any other path: an archive page, the feed, or the 404 page."""
    s = state_of(request)
    path = request.url.path
    try:
        site = await run_in_threadpool(lambda: _pages(s))
    except BriefError:
        log.exception("the archive cannot be built from the content")
        return s.message("Back soon", "The archive is being updated.", status=503)
    if path not in site:
        if not path.endswith("/") and f"{path}/" in site:
            return RedirectResponse(f"{path}/", status_code=301)
        return s.not_found()
    found = site[path]
    body = await run_in_threadpool(found.render)
    return Response(
        body,
        media_type=found.content_type.split(";")[0],
        headers={"cache-control": "public, max-age=300"},
    )
