"""What the public app's handlers share: one ``PublicState`` per app (settings, the
store, the clock, the content loader, the page renderers) and the form helpers.

Handlers are module-level functions; they find the state with ``state_of(request)``
(``request.app.state.brief``), so nothing lives in a global or a closure.
"""

from __future__ import annotations

import asyncio
import logging
from collections.abc import Callable
from dataclasses import dataclass, field
from datetime import datetime
from typing import Any

from jinja2 import Environment
from sqlalchemy.engine import Engine
from starlette.concurrency import run_in_threadpool
from starlette.requests import Request
from starlette.responses import HTMLResponse

from pipeline.config import Settings
from pipeline.content.library import Library, read_content
from pipeline.errors import BriefError
from pipeline.render.templating import render_template
from pipeline.send.notices import drain
from pipeline.store import lists
from pipeline.webhooks.common import clean_text
from pipeline.webhooks.registry import Verifiers

log = logging.getLogger("brief.web")

NO_STORE = {"cache-control": "no-store"}


def mask(email: str) -> str:
    """``a…@example.com``: enough for the owner to recognise, little for anyone else."""
    local, _, domain = email.partition("@")
    return f"{local[:1]}…@{domain}"


@dataclass
class PublicState:
    """What one app instance keeps: settings, the store, clocks and caches (no globals)."""

    settings: Settings
    engine: Engine
    now: Callable[[], datetime]
    verifiers: Verifiers
    load_library: Callable[[], Library]
    env: Environment
    base_origin: str
    _library: Library | None = None
    _stamp: tuple = field(default_factory=tuple)
    wake: asyncio.Event | None = None
    # The ClickRecorder (web/public/clicks): the click queue and the links' cache.
    clicks: Any = None
    # The archive's pages for one Library: (library, monotonic time, pages) (web/public/archive).
    archive_pages: tuple[Library, float, dict] | None = None

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

    def drain_queue(self) -> None:
        """Send what is queued and due (the background sender calls this, off the loop)."""
        drain(self.settings, self.engine, library=self.library_or_none, env=self.env)

    # -- pages ---------------------------------------------------------------------------

    def page(
        self,
        template: str,
        /,
        status: int = 200,
        headers: dict | None = None,
        **values: Any,
    ) -> HTMLResponse:
        """A page from ``templates/web``."""
        html = render_template(self.env, template, **values)
        return HTMLResponse(html, status_code=status, headers=headers)

    def message(self, title: str, *paragraphs: str, status: int = 200) -> HTMLResponse:
        """The plain message page: a title and a few paragraphs, never cached."""
        return self.page(
            "web/message.html.j2", status, NO_STORE, title=title, paragraphs=paragraphs
        )

    def not_found(self) -> HTMLResponse:
        """The one 404 page, the same for every bad, tampered or unknown link."""
        return self.message(
            "Page not found",
            "This link is not valid. It may be mistyped, or it may belong to an old email.",
            status=404,
        )

    def forbidden(self) -> HTMLResponse:
        """A form posted from anywhere but our own pages."""
        return self.message(
            "Not allowed", "This form can only be sent from our own pages.", status=403
        )

    async def public_lists(self) -> dict[str, str]:
        """The lists the form offers, name -> what people see: public ones only, and the
        default list before it exists (the first subscriber creates it)."""
        found = await run_in_threadpool(lists, self.engine)
        offered = {info.name: info.display for info in found if info.public}
        default = self.settings.newsletter.default_list
        if any(info.name == default for info in found):
            return offered
        return {default: default, **offered}


def state_of(request: Request) -> PublicState:
    """The state of the app serving this request."""
    return request.app.state.brief


def default_loader(settings: Settings) -> Callable[[], Library]:
    """Load the valid part of the content: one broken draft must not take the archive
    (or a welcome mail) down."""

    def load() -> Library:
        # PublicState calls this once per content change, so each problem is logged
        # once, not per request.
        loaded = read_content(settings)
        for problem in loaded.problems:
            log.error("content left out of the public pages: %s", problem)
        return loaded.library

    return load


async def form(request: Request) -> dict[str, list[str]]:
    """The posted form, field -> values (no files, at most 50 fields)."""
    data = await request.form(max_files=0, max_fields=50)
    out: dict[str, list[str]] = {}
    for key, value in data.multi_items():
        if isinstance(value, str):
            # Cleaned on the way in, like every webhook text (NUL never reaches the store).
            out.setdefault(key, []).append(clean_text(value))
    return out


def first(data: dict[str, list[str]], key: str) -> str:
    """The first value of a form field, stripped; empty when absent."""
    return (data.get(key) or [""])[0].strip()
