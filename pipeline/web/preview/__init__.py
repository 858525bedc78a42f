"""The editor's local preview: each issue as a subscriber would see it, reloaded live.

A small Starlette app. Every page load reads the content and renders afresh
(an issue renders in milliseconds), so what is shown is what is on disk. A
watchfiles task bumps a version number on any change under glossary/,
museum/, issues/ or templates/; open pages follow ``/events`` (server-sent
events) and reload when the version moves. Errors are shown on the page with
file and line; the server keeps running.

Handlers are module-level functions that reach the app's one ``PreviewState``
through ``request.app.state``: ``app`` (wiring, routes, the lifespan that runs the
watcher), ``state`` (what handlers share: settings, loader, version, template cache),
``pages`` (the index, the issue page in its views, the email as HTML and text) and
``live`` (the watcher and the ``/events`` stream).
"""

from pipeline.web.preview.app import create_app

__all__ = ["create_app"]
