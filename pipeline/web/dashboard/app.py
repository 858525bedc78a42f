"""The dashboard app: the overview, one page per issue, and the charts' stylesheet.

Read-only and for the operator alone (``brief dashboard`` binds loopback, like the
preview); every page passes ``SecurityHeaders``, the same strict CSP as the public
pages, which is why the charts carry no script and no inline style.
"""

from __future__ import annotations

import logging
from dataclasses import dataclass

from sqlalchemy.engine import Engine
from starlette.applications import Starlette
from starlette.concurrency import run_in_threadpool
from starlette.requests import Request
from starlette.responses import HTMLResponse, PlainTextResponse, Response
from starlette.routing import Route

from pipeline.config import Settings
from pipeline.errors import NotFound
from pipeline.report.figures import all_reports, issue_report
from pipeline.report.growth import Period, growth, net_per_issue
from pipeline.report.page import Pages, stylesheet
from pipeline.web.security import CatchAll, SecurityHeaders

log = logging.getLogger("brief.dashboard")
NO_STORE = {"cache-control": "no-store"}


@dataclass(frozen=True)
class DashboardState:
    """What the handlers share: settings, the store, the page templates, the CSS."""

    settings: Settings
    engine: Engine
    pages: Pages
    css: str


def _state(request: Request) -> DashboardState:
    return request.app.state.dashboard


def _overview_html(s: DashboardState) -> str:
    reports = all_reports(s.engine)
    rows = growth(s.engine, s.settings.schedule.timezone, Period.WEEK)
    nets = net_per_issue(s.engine, [(r.issue_number, r.sent_at) for r in reports])
    return s.pages.overview(s.settings.newsletter.name, reports, rows, nets)


async def overview(request: Request) -> Response:
    """GET /: growth, losses and click rate per issue, the issues, their top links."""
    s = _state(request)
    return HTMLResponse(await run_in_threadpool(_overview_html, s), headers=NO_STORE)


async def issue_page(request: Request) -> Response:
    """GET /issues/{ref}/: one issue's report (404 for anything not a sent issue)."""
    s = _state(request)
    ref = request.path_params["ref"]
    if not (ref.isascii() and ref.isdigit() and len(ref) <= 6):
        return PlainTextResponse("no such issue", status_code=404)
    try:
        report = await run_in_threadpool(issue_report, s.engine, int(ref))
    except NotFound:
        return PlainTextResponse("no such issue", status_code=404)
    html = s.pages.issue(report, css_href="/charts.css", back="/")
    return HTMLResponse(html, headers=NO_STORE)


async def css(request: Request) -> Response:
    """GET /charts.css: the pages' and charts' one stylesheet."""
    return Response(_state(request).css, media_type="text/css")


def _server_error() -> Response:
    return PlainTextResponse("Something went wrong; the log has one line on it.", 500)


def create_app(settings: Settings, engine: Engine) -> Starlette:
    """The dashboard for one newsletter's store."""
    app = Starlette(
        routes=[
            Route("/", overview),
            Route("/issues/{ref}/", issue_page),
            Route("/charts.css", css),
        ]
    )
    app.state.dashboard = DashboardState(settings, engine, Pages.create(), stylesheet())
    app.add_middleware(CatchAll, render=_server_error, log=log)
    app.add_middleware(SecurityHeaders)
    return app
