"""The public app (`brief serve`): subscribe, confirm, unsubscribe, preferences, webhooks,
and the web archive from ``pipeline.render.site``.

Pages are plain HTML forms from ``templates/web`` (no JavaScript, no cookies). Tokens
travel only in paths and are never logged; every bad or tampered token gets the same
plain 404 page. Store and mail calls are synchronous, so they run in the thread pool.
Confirmation and welcome mails never go out inside a request: the request queues them
(``pipeline.send.notices``) and a background task of the app sends them and retries.

One module per concern, each a set of ``async def handler(request) -> Response`` that
reach the app's one ``PublicState`` through ``request.app.state``: ``app`` (wiring,
middleware, error pages, the background sender), ``context`` (the shared state, pages,
form parsing), ``subscribe``, ``consent`` (confirm, unsubscribe, preferences),
``webhooks`` and ``archive``.
"""

from pipeline.web.public.app import create_app

__all__ = ["create_app"]
