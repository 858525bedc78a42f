"""Security for the public app: headers on every response, a request body limit, and a
same-origin check for browser form posts.

The public pages set no cookies, so there is no session for a forged cross-site form to
ride on; the Origin check still refuses browser posts from other sites, so nobody can
make a visitor's browser subscribe or change preferences behind their back. RFC 8058
one-click unsubscribes come from mail providers without an Origin and pass.
"""

from __future__ import annotations

import logging
from collections.abc import Callable, Iterable
from urllib.parse import urlsplit

from starlette.requests import Request
from starlette.responses import PlainTextResponse, Response
from starlette.types import ASGIApp, Message, Receive, Scope, Send


def origin_of(url: str) -> str:
    """``scheme://host[:port]`` of a URL, lower-cased."""
    parts = urlsplit(url)
    return f"{parts.scheme}://{parts.netloc}".lower()


def security_headers(form_origins: Iterable[str] = ()) -> list[tuple[bytes, bytes]]:
    """The headers every response carries: a strict CSP, no framing, no referrer."""
    form_action = " ".join(["'self'", *sorted(set(form_origins))])
    csp = (
        "default-src 'self'; img-src 'self' data:; object-src 'none'; base-uri 'none'; "
        f"form-action {form_action}; frame-ancestors 'none'"
    )
    headers = {
        "content-security-policy": csp,
        "x-frame-options": "DENY",
        "x-content-type-options": "nosniff",
        # Token links must never leak to other sites through the Referer header.
        "referrer-policy": "no-referrer",
        "cross-origin-opener-policy": "same-origin",
        "permissions-policy": "camera=(), microphone=(), geolocation=(), interest-cohort=()",
    }
    return [(k.encode(), v.encode()) for k, v in headers.items()]


class SecurityHeaders:
    """ASGI middleware adding ``security_headers`` to every HTTP response."""

    def __init__(self, app: ASGIApp, form_origins: Iterable[str] = ()):
        self.app = app
        self.headers = security_headers(form_origins)

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        if scope["type"] != "http":
            await self.app(scope, receive, send)
            return

        async def with_headers(message: Message) -> None:
            if message["type"] == "http.response.start":
                present = {k.lower() for k, _ in message.get("headers", [])}
                extra = [(k, v) for k, v in self.headers if k not in present]
                message = {**message, "headers": [*message.get("headers", []), *extra]}
            await send(message)

        await self.app(scope, receive, with_headers)


class _Tracked:
    """An ASGI ``send`` that remembers whether the response has started: after that,
    a middleware can no longer answer with a page of its own."""

    def __init__(self, send: Send):
        self.send = send
        self.started = False

    async def __call__(self, message: Message) -> None:
        if message["type"] == "http.response.start":
            self.started = True
        await self.send(message)


class CatchAll:
    """ASGI middleware turning any unexpected exception into ``render()``'s 500 page.

    It sits inside ``SecurityHeaders`` so that page carries them too, and logs one line
    (the exception's type) instead of a traceback: nothing a client sends may fill the
    log with stack traces, and the message itself could echo what the client sent.
    """

    def __init__(self, app: ASGIApp, render: Callable[[], Response], log: logging.Logger):
        self.app = app
        self.render = render
        self.log = log

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        if scope["type"] != "http":
            await self.app(scope, receive, send)
            return
        sending = _Tracked(send)
        try:
            await self.app(scope, receive, sending)
        except Exception as exc:  # noqa: BLE001 - the whole point: nothing escapes as a 500 trace
            self.log.error(
                "internal error: %s on %s %s",
                type(exc).__name__,
                scope.get("method", ""),
                _route_of(scope.get("path", "")),
            )
            if not sending.started:
                await self.render()(scope, receive, send)


def _route_of(path: str) -> str:
    """The path without its token: ``/confirm/…`` (tokens are never logged)."""
    head, _, rest = path.lstrip("/").partition("/")
    return f"/{head}/…" if rest and head in ("confirm", "unsubscribe", "preferences") else path


class _TooLarge(Exception):
    pass


class BodyLimit:
    """ASGI middleware answering 413 to a body over ``max_bytes``, declared or streamed."""

    def __init__(self, app: ASGIApp, max_bytes: int):
        self.app = app
        self.max_bytes = max_bytes

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        if scope["type"] != "http":
            await self.app(scope, receive, send)
            return
        for name, value in scope.get("headers", []):
            if name == b"content-length":
                try:
                    declared = int(value)
                except ValueError:
                    declared = self.max_bytes + 1
                if declared > self.max_bytes:
                    await self._refuse(scope, receive, send)
                    return
        seen = 0

        async def counted() -> Message:
            nonlocal seen
            message = await receive()
            if message["type"] == "http.request":
                seen += len(message.get("body", b""))
                if seen > self.max_bytes:
                    raise _TooLarge
            return message

        sending = _Tracked(send)
        try:
            await self.app(scope, counted, sending)
        except _TooLarge:
            if not sending.started:
                await self._refuse(scope, receive, send)

    async def _refuse(self, scope: Scope, receive: Receive, send: Send) -> None:
        response = PlainTextResponse("Request body too large.", status_code=413)
        await response(scope, receive, send)


def same_origin(request: Request, allowed: Iterable[str]) -> bool:
    """True unless a browser says the request comes from another site.

    No Origin header (mail providers, curl) is fine. Under ``Referrer-Policy: no-referrer``
    browsers send ``Origin: null`` even for their own forms, so then Sec-Fetch-Site decides.
    """
    origin = (request.headers.get("origin") or "null").lower()
    if origin != "null":
        own = f"{request.url.scheme}://{request.url.netloc}".lower()
        return origin in {own, *(a.lower() for a in allowed)}
    site = request.headers.get("sec-fetch-site")
    if site is None:
        return "origin" not in request.headers  # a bare "null" with no fetch metadata: refuse
    return site in ("same-origin", "none")


def h11_protocol(form_origins: Iterable[str] = ()) -> type:
    """uvicorn's h11 protocol whose own 400 (a request it cannot parse, answered before
    the app sees anything) carries the security headers too; `brief serve` passes it as
    uvicorn's ``http``. uvicorn writes that answer itself with two fixed headers."""
    import h11
    from uvicorn.protocols.http.h11_impl import H11Protocol

    extra = security_headers(form_origins)

    class SecureH11Protocol(H11Protocol):
        def send_400_response(self, msg: str) -> None:
            headers = [
                (b"content-type", b"text/plain; charset=utf-8"),
                (b"connection", b"close"),
                *extra,
            ]
            for event in (
                h11.Response(status_code=400, headers=headers, reason=b"Bad Request"),
                h11.Data(data=msg.encode("ascii")),
                h11.EndOfMessage(),
            ):
                self.transport.write(self.conn.send(event))
            self.transport.close()

    return SecureH11Protocol
