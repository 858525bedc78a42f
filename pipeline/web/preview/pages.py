"""The preview's pages: the issue list, an issue in each view (desktop, phone, plain
text, inbox line) for a reader with or without a name, and the email itself as HTML
and text for the iframe. Content errors show on the page with file and line.

Rendering is synchronous, so these handlers are plain ``def``: Starlette runs them in
its thread pool, and the event loop stays free for the ``/events`` streams.
"""

from __future__ import annotations

import html

from starlette.requests import Request
from starlette.responses import HTMLResponse, PlainTextResponse, Response

from pipeline.config import Settings
from pipeline.content.library import Issue
from pipeline.errors import BriefError, ContentError
from pipeline.render.issue import personalise
from pipeline.render.site import asset_pages
from pipeline.send.message import sample_values
from pipeline.web.preview.state import state_of

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


def ordered(issues: tuple[Issue, ...]) -> list[Issue]:
    """The next unsent issue first, then later unsent ones, then sent ones newest first."""
    unsent = sorted((i for i in issues if i.status != "sent"), key=lambda i: i.number)
    sent = sorted((i for i in issues if i.status == "sent"), key=lambda i: -i.number)
    return unsent + sent


def index(request: Request) -> Response:
    """GET /: every issue, the next unsent one first."""
    state = state_of(request)
    version = state.version
    try:
        issues = ordered(state.library().issues)
    except BriefError as exc:
        return _page(state.settings, "Issues", version, _error(exc))
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
    return _page(state.settings, "Issues", version, body)


def issue_page(request: Request) -> Response:
    """GET /issues/{ref}/: the inbox line, preflight findings and the chosen view."""
    state = state_of(request)
    settings = state.settings
    ref = request.path_params["ref"]
    view = request.query_params.get("view", "desktop")
    view = view if view in VIEWS else "desktop"
    reader = _reader(request)
    version = state.version
    try:
        issue, rendered, findings = state.render(ref)
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
    """GET /issues/{ref}/email.html: the email as the chosen reader gets it (the iframe)."""
    state = state_of(request)
    try:
        _, rendered, _ = state.render(request.path_params["ref"])
    except BriefError as exc:
        return HTMLResponse(f"<!doctype html><body>{_error(exc)}</body>", status_code=500)

    out, _ = personalise(rendered, sample_values(state.settings, READERS[_reader(request)]))
    # The mail points at the published assets (base_url); the preview shows the files in
    # the working tree, served below, so a new image shows before it is published.
    base = state.settings.newsletter.base_url.rstrip("/")
    return HTMLResponse(out.replace(f'="{base}/assets/', '="/assets/'))


def asset(request: Request) -> Response:
    """GET /assets/{path}: a file of the working tree's ``assets/`` (looked up, never joined)."""
    found = asset_pages(state_of(request).settings).get(request.url.path)
    if found is None:
        return PlainTextResponse("not found", status_code=404)
    return Response(found.render(), media_type=found.content_type)


def email_text(request: Request) -> Response:
    """GET /issues/{ref}/email.txt: the plain-text part as the chosen reader gets it."""
    state = state_of(request)
    try:
        _, rendered, _ = state.render(request.path_params["ref"])
    except BriefError as exc:
        return PlainTextResponse(str(exc), status_code=500)

    values = sample_values(state.settings, READERS[_reader(request)])
    return PlainTextResponse(personalise(rendered, values)[1])


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
