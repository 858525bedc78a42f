"""The editor's local preview: each issue as a subscriber would see it, reloaded live.

A small Starlette app. Every page load reads the content and renders afresh
(an issue renders in milliseconds), so what is shown is what is on disk. A
watchfiles task bumps a version number on any change under glossary/,
museum/, issues/ or templates/; open pages follow ``/events`` (server-sent
events) and reload when the version moves. Errors are shown on the page with
file and line; the server keeps running.
"""

from __future__ import annotations

import asyncio
import contextlib
import html
from collections.abc import AsyncIterator, Callable
from dataclasses import dataclass

from starlette.applications import Starlette
from starlette.requests import Request
from starlette.responses import HTMLResponse, PlainTextResponse, Response, StreamingResponse
from starlette.routing import Route

from pipeline.config import Settings
from pipeline.content.library import Issue, Library, load_content
from pipeline.errors import BriefError, ContentError
from pipeline.render.issue import personalise, render_issue
from pipeline.render.lint import lint_rendered
from pipeline.render.templating import environment as make
from pipeline.send.message import sample_values

WATCHED = ("glossary", "museum", "issues", "templates")
VIEWS = {
    "desktop": "Desktop (600 px)",
    "phone": "Phone (375 px)",
    "text": "Plain text",
    "inbox": "Inbox line",
}
WIDTHS = {"desktop": 600, "phone": 375}
# Who the preview greets: a reader with the sample name, and one without a name (the
# greeting_no_name line that readers imported without names get).
READERS = {"named": "Sam", "nameless": ""}
READER_LABELS = {"named": "Reader with a name (Sam)", "nameless": "Reader without a name"}


def _reader(request: Request) -> str:
    reader = request.query_params.get("reader", "named")
    return reader if reader in READERS else "named"


def _reader_query(reader: str) -> str:
    return "" if reader == "named" else f"reader={reader}"


STREAM_SECONDS = 15.0  # an event stream ends now and then; the browser reconnects by itself


@dataclass
class _State:
    """What the app keeps between requests: the change counter and a template cache."""

    version: int = 0
    env: object | None = None
    env_version: int = -1
    stop: asyncio.Event | None = None


def ordered(issues: tuple[Issue, ...]) -> list[Issue]:
    """The next unsent issue first, then later unsent ones, then sent ones newest first."""
    unsent = sorted((i for i in issues if i.status != "sent"), key=lambda i: i.number)
    sent = sorted((i for i in issues if i.status == "sent"), key=lambda i: -i.number)
    return unsent + sent


def create_app(
    settings: Settings, *, watch: bool = True, loader: Callable[[Settings], Library] = load_content
) -> Starlette:
    """The preview app for one newsletter; ``watch`` turns on live reload."""
    state = _State()

    def environment():
        # A fresh environment after any change: template edits always show.
        if state.env is None or state.env_version != state.version:
            state.env, state.env_version = make(settings), state.version
        return state.env

    def render(ref: str):
        library = loader(settings)
        issue = library.issue(ref)
        rendered = render_issue(issue, library, settings, environment())
        return issue, rendered, lint_rendered(rendered, issue, library, settings)

    def index(request: Request) -> Response:
        version = state.version
        try:
            issues = ordered(loader(settings).issues)
        except BriefError as exc:
            return _page(settings, "Issues", version, _error(exc))
        rows = "".join(
            f'<li><a href="/issues/{i.label}/">Issue {i.label}</a> · {i.date.isoformat()} · '
            f'{html.escape(i.subject)} <span class="status">{i.status}</span>'
            f"{' <strong>(next)</strong>' if n == 0 and i.status != 'sent' else ''}</li>"
            for n, i in enumerate(issues)
        )
        body = (
            f'<ol id="issues" class="issues">{rows}</ol>'
            if rows
            else "<p>No issues yet: run <code>brief assemble</code>.</p>"
        )
        return _page(settings, "Issues", version, body)

    def issue_page(request: Request) -> Response:
        ref = request.path_params["ref"]
        view = request.query_params.get("view", "desktop")
        view = view if view in VIEWS else "desktop"
        reader = _reader(request)
        version = state.version
        try:
            issue, rendered, findings = render(ref)
        except BriefError as exc:
            switches = _switches(ref, view, reader)
            return _page(settings, f"Issue {ref}", version, switches + _error(exc))

        _, text = personalise(rendered, sample_values(settings, READERS[reader]))
        nl = settings.newsletter
        inbox = (
            f'<div id="inbox" class="inbox"><span class="from">{html.escape(nl.from_name)}'
            f'</span><span class="subject">{html.escape(rendered.subject)}</span>'
            f'<span class="pre"> — {html.escape(rendered.preheader)}</span>'
            f'<span class="when">{issue.date:%b} {issue.date.day}</span></div>'
        )
        lint = ""
        if findings:
            lint = (
                '<ul id="lint" class="lint">'
                + "".join(f'<li class="{f.level}">{html.escape(str(f))}</li>' for f in findings)
                + "</ul>"
            )
        if view == "text":
            main = f'<pre id="text" class="text">{html.escape(text)}</pre>'
        elif view == "inbox":
            main = (
                '<p class="hint">As an inbox lists it: sender, subject, then the preheader '
                "until the row runs out.</p>"
            )
        else:
            width = WIDTHS[view]
            query = _reader_query(reader)
            src = f"/issues/{issue.label}/email.html" + (f"?{query}" if query else "")
            main = (
                f'<iframe id="email" title="email" src="{src}" '
                f'style="width:{width}px" onload="fit(this)"></iframe>'
            )
        body = _switches(issue.label, view, reader) + inbox + lint + main
        return _page(settings, f"Issue {issue.label}", version, body)

    def email_html(request: Request) -> Response:
        try:
            _, rendered, _ = render(request.path_params["ref"])
        except BriefError as exc:
            return HTMLResponse(f"<!doctype html><body>{_error(exc)}</body>", status_code=500)

        out, _ = personalise(rendered, sample_values(settings, READERS[_reader(request)]))
        return HTMLResponse(out)

    def email_text(request: Request) -> Response:
        try:
            _, rendered, _ = render(request.path_params["ref"])
        except BriefError as exc:
            return PlainTextResponse(str(exc), status_code=500)

        values = sample_values(settings, READERS[_reader(request)])
        return PlainTextResponse(personalise(rendered, values)[1])

    async def events(request: Request) -> Response:
        async def stream() -> AsyncIterator[str]:
            yield "retry: 300\n\n"
            last = None
            loop = asyncio.get_running_loop()
            until = loop.time() + STREAM_SECONDS
            while loop.time() < until and not (state.stop and state.stop.is_set()):
                if state.version != last:
                    last = state.version
                    yield f"event: version\ndata: {last}\n\n"
                await asyncio.sleep(0.1)

        return StreamingResponse(
            stream(), media_type="text/event-stream", headers={"Cache-Control": "no-cache"}
        )

    async def watcher() -> None:
        from watchfiles import awatch

        paths = [str(settings.root / d) for d in WATCHED if (settings.root / d).is_dir()]
        if not paths:
            return
        async for _ in awatch(*paths, stop_event=state.stop, debounce=50, step=20, recursive=True):
            state.version += 1

    @contextlib.asynccontextmanager
    async def lifespan(app: Starlette):
        state.stop = asyncio.Event()
        task = asyncio.create_task(watcher()) if watch else None
        try:
            yield
        finally:
            state.stop.set()
            if task:
                task.cancel()
                with contextlib.suppress(asyncio.CancelledError, Exception):
                    await task

    app = Starlette(
        routes=[
            Route("/", index),
            Route("/issues/{ref}/", issue_page),
            Route("/issues/{ref}/email.html", email_html),
            Route("/issues/{ref}/email.txt", email_text),
            Route("/events", events),
        ],
        lifespan=lifespan,
    )
    app.state.preview = state
    return app


def _switches(ref: str, view: str, reader: str = "named") -> str:
    base = f"/issues/{html.escape(ref)}/"
    query = _reader_query(reader)
    links = " ".join(
        f'<a href="{base}?view={v}{"&amp;" + query if query else ""}" id="view-{v}"'
        f"{' class=on' if v == view else ''}>{label}</a>"
        for v, label in VIEWS.items()
    )
    readers = " ".join(
        f'<a href="{base}?view={view}{"&amp;" + _reader_query(r) if _reader_query(r) else ""}"'
        f' id="reader-{r}"{" class=on" if r == reader else ""}>{label}</a>'
        for r, label in READER_LABELS.items()
    )
    return (
        f'<nav class="switches"><a href="/">All issues</a> · {links}'
        f"<br>Greeting as seen by: {readers}</nav>"
    )


def _error(exc: BriefError) -> str:
    lines = exc.problems if isinstance(exc, ContentError) else (str(exc),)
    items = "".join(f"<li>{html.escape(str(p))}</li>" for p in lines)
    return (
        f'<div id="error" class="error"><strong>{type(exc).__name__}</strong>'
        f"<ul>{items}</ul><p>Fix the file and save: this page reloads.</p></div>"
    )


_STYLE = """
body{font:15px/1.5 system-ui,sans-serif;margin:0;background:#e9e7e2;color:#222}
header{background:#222;color:#fff;padding:8px 16px}header a{color:#fff}
main{padding:12px 16px}.switches a{margin-right:8px}.switches a.on{font-weight:bold}
.inbox{display:flex;gap:10px;background:#fff;border:1px solid #ccc;padding:8px 12px;
margin:10px 0;max-width:760px;white-space:nowrap;overflow:hidden}
.inbox .from{font-weight:bold;min-width:110px}.inbox .subject{font-weight:bold}
.inbox .pre{color:#666;overflow:hidden;text-overflow:ellipsis}.inbox .when{margin-left:auto}
iframe{display:block;border:0;background:#fff;height:1200px;box-shadow:0 1px 4px #0003}
.text{background:#fff;padding:16px;width:max-content;max-width:100%;overflow:auto}
.error{background:#fde8e8;border:2px solid #c62828;padding:8px 16px;font-family:monospace}
.lint li.error{color:#b00020}.lint li.warning{color:#8a5a00}.status{color:#666}
"""


def _page(settings: Settings, title: str, version: int, body: str) -> HTMLResponse:
    name = html.escape(settings.newsletter.name)
    script = f"""<script>
const loaded = {version};
function fit(f) {{ try {{ f.style.height = (f.contentDocument.documentElement.scrollHeight + 20)
  + 'px'; }} catch (e) {{}} }}
const source = new EventSource('/events');
source.addEventListener('version', (e) => {{ if (Number(e.data) !== loaded) location.reload(); }});
</script>"""
    return HTMLResponse(
        f"<!doctype html><html lang=en><head><meta charset=utf-8>"
        f"<title>{html.escape(title)} · {name} preview</title><style>{_STYLE}</style></head>"
        f'<body data-version={version}><header><a href="/">{name}</a> · preview</header>'
        f"<main>{body}</main>{script}</body></html>"
    )
