"""What the preview app's handlers share: one ``PreviewState`` per app.

Handlers are module-level functions; they find the state with ``state_of(request)``
(``request.app.state.preview``), so nothing lives in a global or a closure.
"""

from __future__ import annotations

import asyncio
from collections.abc import Callable
from dataclasses import dataclass

import jinja2
from starlette.requests import Request

from pipeline.config import Settings
from pipeline.content.library import Issue, Library
from pipeline.mail import Rendered
from pipeline.render.issue import render_issue
from pipeline.render.lint import Finding, lint_rendered
from pipeline.render.templating import environment


@dataclass
class PreviewState:
    """What the app keeps between requests: its settings and loader, the change counter
    the watcher bumps, a template cache and the event that stops the live parts."""

    settings: Settings
    loader: Callable[[Settings], Library]
    watch: bool
    version: int = 0
    stop: asyncio.Event | None = None
    _env: jinja2.Environment | None = None
    _env_version: int = -1

    def library(self) -> Library:
        """The content as it is on disk now (read afresh on every call)."""
        return self.loader(self.settings)

    def environment(self) -> jinja2.Environment:
        """The template environment, made afresh after any change: template edits show."""
        if self._env is None or self._env_version != self.version:
            self._env, self._env_version = environment(self.settings), self.version
        return self._env

    def render(self, ref: str) -> tuple[Issue, Rendered, list[Finding]]:
        """One issue read from disk, rendered, and its preflight findings."""
        library = self.library()
        issue = library.issue(ref)
        rendered = render_issue(issue, library, self.settings, self.environment())
        return issue, rendered, lint_rendered(rendered, issue, library, self.settings)

    def stopping(self) -> bool:
        """Whether the app is shutting down (open event streams end then)."""
        return self.stop is not None and self.stop.is_set()


def state_of(request: Request) -> PreviewState:
    """The state of the app serving this request."""
    return request.app.state.preview
