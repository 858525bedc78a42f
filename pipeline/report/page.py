"""The report pages as HTML: the dashboard's overview, an issue's page, and the same
issue page written as files to share (``brief report ISSUE --html OUT``).

One code path for both: the dashboard serves what ``write_issue_html`` writes, with
``charts.css`` beside the page (the CSP allows a stylesheet from 'self', not inline).
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass
from pathlib import Path

import jinja2

from pipeline.report import charts
from pipeline.report.figures import IssueReport, sparkline
from pipeline.report.growth import GrowthRow

PAGE_CSS = """
body{font-family:system-ui,sans-serif;margin:2rem auto;max-width:60rem;padding:0 1rem;color:#222}
table{border-collapse:collapse;margin:1rem 0}
th,td{padding:.25rem .75rem;border-bottom:1px solid #ddd;text-align:left}
td.n{text-align:right;font-variant-numeric:tabular-nums}
figure{margin:1.5rem 0}
figure svg{width:100%;height:auto}
.note{color:#555;font-size:.9rem}
"""

_BASE = """<!doctype html>
<html lang="en">
<head>
<meta charset="utf-8">
<meta name="viewport" content="width=device-width, initial-scale=1">
<title>{{ title }}</title>
<link rel="stylesheet" href="{{ css_href }}">
</head>
<body>
<main>
{% block main %}{% endblock %}
</main>
</body>
</html>
"""

_OVERVIEW = """{% extends "base" %}{% block main %}
<h1>{{ newsletter }}: the numbers</h1>
<p class="note">Clickers are unique people whose clicks were not a scanner's, a prefetch or
a burst; machine clicks are counted apart. Opens, when measured, are inflated by Apple
Mail Privacy Protection.</p>
<figure class="chart" id="subscribers">{{ subscribers | safe }}</figure>
<figure class="chart" id="growth">{{ growth | safe }}</figure>
<figure class="chart" id="net-per-issue">{{ net_per_issue | safe }}</figure>
<figure class="chart" id="lost">{{ lost | safe }}</figure>
<figure class="chart" id="click-rate">{{ click_rate | safe }}</figure>
<h2>Issues</h2>
<p>Click rate, oldest to newest: <span class="spark">{{ spark }}</span></p>
<table>
<tr><th>issue</th><th>delivered</th><th>clickers</th><th>click rate</th><th>unsubscribed</th>
<th>complaints</th><th>hard bounces</th></tr>
{% for r in reports %}
<tr><td><a href="{{ issue_href(r) }}">{{ r.label }}</a> {{ r.subject }}</td>
<td class="n">{{ r.delivered }}</td><td class="n">{{ r.human_clickers }}</td>
<td class="n">{{ "%.1f" % (r.click_rate * 100) }}%</td><td class="n">{{ r.unsubscribes }}</td>
<td class="n">{{ r.complaints }}</td><td class="n">{{ r.hard_bounces }}</td></tr>
{% endfor %}
</table>
<h2>Top links of the last issues</h2>
{% for r, svg in top_links %}
<figure class="chart links">{{ svg | safe }}</figure>
{% endfor %}
{% endblock %}
"""

_ISSUE = """{% extends "base" %}{% block main %}
{% if back %}<p><a href="{{ back }}">All issues</a></p>{% endif %}
<h1>Issue {{ r.label }}{% if r.subject %}: {{ r.subject }}{% endif %}</h1>
{% if r.sent_at %}<p class="note">Sent {{ r.sent_at.strftime("%Y-%m-%d %H:%M %Z") }}</p>{% endif %}
<table class="figures">
<tr><th>delivered</th><td class="n">{{ r.delivered }}</td></tr>
<tr><th>failed</th><td class="n">{{ r.failed }}</td></tr>
<tr><th>unknown</th><td class="n">{{ r.unknown }}</td></tr>
<tr><th>hard bounces</th><td class="n">{{ r.hard_bounces }}
 ({{ r.hard_bounces_at_send }} at send)</td></tr>
<tr><th>soft bounces</th><td class="n">{{ r.soft_bounces }}</td></tr>
<tr><th>complaints</th><td class="n">{{ r.complaints }}</td></tr>
<tr><th>unsubscribed</th><td class="n">{{ r.unsubscribes }}</td></tr>
<tr><th>people who clicked</th><td class="n">{{ r.human_clickers }}</td></tr>
<tr><th>click rate</th><td class="n">{{ "%.1f" % (r.click_rate * 100) }}%</td></tr>
<tr><th>human clicks</th><td class="n">{{ r.human_clicks }}</td></tr>
<tr><th>machine clicks</th><td class="n">{{ r.machine_clicks }}</td></tr>
{% if r.opens is not none %}
<tr><th>opens (inflated by Apple Mail Privacy Protection)</th><td class="n">{{ r.opens }}</td></tr>
<tr><th>machine opens</th><td class="n">{{ r.machine_opens }}</td></tr>
{% endif %}
</table>
<figure class="chart links">{{ links_svg | safe }}</figure>
<h2>Links</h2>
<table class="links">
<tr><th>link</th><th>people</th><th>human clicks</th><th>machine clicks</th></tr>
{% for link in r.links %}
<tr><td>{{ link.text or link.url }}<br><span class="note">{{ link.url }}</span></td>
<td class="n">{{ link.human_people }}</td><td class="n">{{ link.human }}</td>
<td class="n">{{ link.machine }}</td></tr>
{% endfor %}
</table>
{% endblock %}
"""


@dataclass(frozen=True)
class Pages:
    """The HTML templates, built once per app or command (nothing at import time)."""

    env: jinja2.Environment

    @classmethod
    def create(cls) -> Pages:
        """The Jinja2 environment of the report pages (autoescaped)."""
        loader = jinja2.DictLoader({"base": _BASE, "overview": _OVERVIEW, "issue": _ISSUE})
        return cls(jinja2.Environment(loader=loader, autoescape=True))

    def overview(
        self,
        newsletter: str,
        reports: Sequence[IssueReport],
        growth: Sequence[GrowthRow],
        nets: Sequence[int],
        *,
        css_href: str = "/charts.css",
        last: int = 3,
    ) -> str:
        """The dashboard's first page: growth (per period, and ``nets`` per issue, see
        ``growth.net_per_issue``), losses and click rate, then the top links of the
        ``last`` issues."""
        return self.env.get_template("overview").render(
            title=f"{newsletter}: the numbers",
            css_href=css_href,
            newsletter=newsletter,
            reports=reports,
            issue_href=lambda r: f"/issues/{r.label}/",
            spark=sparkline([r.click_rate for r in reports]),
            subscribers=charts.subscribers_chart(growth),
            growth=charts.net_growth_chart(growth),
            net_per_issue=charts.net_per_issue_chart(reports, nets),
            lost=charts.lost_per_issue_chart(reports),
            click_rate=charts.click_rate_chart(reports),
            top_links=[(r, charts.links_chart(r)) for r in list(reports)[-last:][::-1]],
        )

    def issue(self, report: IssueReport, *, css_href: str, back: str | None = None) -> str:
        """One issue's report page."""
        return self.env.get_template("issue").render(
            title=f"Issue {report.label} report",
            css_href=css_href,
            back=back,
            r=report,
            links_svg=charts.links_chart(report),
        )


def stylesheet() -> str:
    """The CSS of the pages and their charts (one file, linked: the CSP allows no inline)."""
    return PAGE_CSS + charts.chart_css()


def write_issue_html(report: IssueReport, out: Path) -> list[Path]:
    """Write the issue's page to share into folder ``out``: ``index.html``, the
    stylesheet ``charts.css`` and the links chart alone as ``links.svg``."""
    out.mkdir(parents=True, exist_ok=True)
    css = stylesheet()
    page = Pages.create().issue(report, css_href="charts.css")
    svg = charts.links_chart(report)
    # The standalone SVG carries its style inside: opened alone, nothing links it.
    svg = svg.replace(">", f"><style>{charts.chart_css()}</style>", 1)
    files = {"index.html": page, "charts.css": css, "links.svg": svg}
    written = []
    for name, text in files.items():
        path = out / name
        path.write_text(text, encoding="utf-8")
        written.append(path)
    return written
