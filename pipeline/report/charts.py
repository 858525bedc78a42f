"""Charts as SVG text, rendered on the server with pygal.

pygal's SVG carries a ``<script>`` (its tooltips' config), a ``<style>`` and one
``style=`` attribute; the strict CSP (``web/security``: ``default-src 'self'``) refuses
all three inline. So every chart is drawn with one style and no id prefix, the script
and attributes are stripped, and the CSS, the same for every chart, is served (or
written) as one file, ``charts.css``, that the page links. The SVG is inlined in the
page: no JavaScript, nothing inline that the CSP would refuse.
"""

from __future__ import annotations

import html
import re
from collections.abc import Sequence

import pygal
from pygal.style import Style

from pipeline.report.figures import IssueReport
from pipeline.report.growth import GrowthRow

_SCRIPT = re.compile(r"<script\b.*?</script>", re.S)
_STYLE = re.compile(r"<style\b[^>]*>(.*?)</style>", re.S)
_STYLE_ATTR = re.compile(r"\s+style=\"[^\"]*\"")
_COMMENT = re.compile(r"<!--.*?-->", re.S)
# Enough series colours for one chart per list on any sensible newsletter.
_COLOURS = (
    "#1f4e79",
    "#c0504d",
    "#4f8a3c",
    "#8064a2",
    "#d08b1c",
    "#2c8c99",
    "#7f7f7f",
    "#b04a8c",
)
STYLE = Style(
    background="#ffffff",
    plot_background="#ffffff",
    foreground="#222222",
    foreground_strong="#111111",
    foreground_subtle="#666666",
    colors=_COLOURS,
    font_family="system-ui, sans-serif",
)


def _config(**extra: object) -> dict[str, object]:
    return {
        "style": STYLE,
        "js": [],  # no script: the CSP allows none, and the charts need none
        "tooltips": False,
        "no_prefix": True,  # one CSS for every chart (the page links it)
        "disable_xml_declaration": True,  # inlined in HTML
        "pretty_print": False,
        "width": 720,
        "height": 320,
        "explicit_size": False,
        **extra,
    }


def _clean(svg: str) -> str:
    """The SVG without its script, inline styles and comments (see the module docstring)."""
    svg = _SCRIPT.sub("", svg)
    svg = _STYLE.sub("", svg)
    svg = _STYLE_ATTR.sub("", svg)
    return _COMMENT.sub("", svg)


def chart_css() -> str:
    """The one stylesheet of every chart: pygal's, read from a chart with every colour,
    its selectors scoped to ``.pygal-chart`` (with no prefix pygal leaves them bare)."""
    chart = pygal.Line(**_config())
    for n in range(len(_COLOURS)):
        chart.add(str(n), [n])
    found = _STYLE.search(chart.render(is_unicode=True))
    # Read out of the serialised SVG: "a > b" comes escaped as "a &gt; b".
    css = html.unescape(found.group(1)) if found else ""
    # Scoped to the charts, so pygal's ".title" or ".background" leave the page alone;
    # the rule pygal writes for "#chart-id" with no prefix is bare "{...}".
    rules = []
    for rule in css.split("}"):
        selectors, _, body = rule.partition("{")
        if not body:
            continue
        scoped = ",".join(
            f".pygal-chart {sel.strip()}" if sel.strip() else ".pygal-chart"
            for sel in selectors.split(",")
        )
        rules.append(f"{scoped}{{{body}}}")
    css = "\n".join(rules)
    # The tooltip group, whose style="opacity: 0" was stripped, stays hidden.
    return css + "\n.pygal-chart .tooltip{display:none}\n"


def _render(chart: pygal.graph.graph.Graph) -> str:
    return _clean(chart.render(is_unicode=True))


def click_rate_chart(reports: Sequence[IssueReport]) -> str:
    """Unique human clickers over delivered, per issue, in per cent."""
    chart = pygal.Bar(**_config(title="Click rate per issue (%)", show_legend=False))
    chart.x_labels = [r.label for r in reports]
    chart.add("click rate", [round(r.click_rate * 100, 2) for r in reports])
    return _render(chart)


def lost_per_issue_chart(reports: Sequence[IssueReport]) -> str:
    """What each issue cost in readers: unsubscribes, complaints and hard bounces."""
    chart = pygal.StackedBar(**_config(title="Readers lost per issue"))
    chart.x_labels = [r.label for r in reports]
    chart.add("unsubscribed", [r.unsubscribes for r in reports])
    chart.add("complained", [r.complaints for r in reports])
    chart.add("hard bounced", [r.hard_bounces for r in reports])
    return _render(chart)


def net_per_issue_chart(reports: Sequence[IssueReport], nets: Sequence[int]) -> str:
    """Net growth from each issue to the next (confirmed minus everyone who left)."""
    chart = pygal.Bar(**_config(title="Net growth per issue", show_legend=False))
    chart.x_labels = [r.label for r in reports]
    chart.add("net", list(nets))
    return _render(chart)


def net_growth_chart(rows: Sequence[GrowthRow]) -> str:
    """Net growth per period, one series per list."""
    periods = sorted({r.period for r in rows})
    chart = pygal.Bar(**_config(title="Net growth"))
    chart.x_labels = [p.isoformat() for p in periods]
    for name in sorted({r.list_name for r in rows}):
        by = {r.period: r.net for r in rows if r.list_name == name}
        chart.add(name, [by.get(p, 0) for p in periods])
    return _render(chart)


def subscribers_chart(rows: Sequence[GrowthRow]) -> str:
    """Subscribers over time, one line per list (the total after each period)."""
    periods = sorted({r.period for r in rows})
    chart = pygal.Line(**_config(title="Subscribers over time"))
    chart.x_labels = [p.isoformat() for p in periods]
    for name in sorted({r.list_name for r in rows}):
        total, values = 0, []
        by = {r.period: r.total for r in rows if r.list_name == name}
        for p in periods:
            total = by.get(p, total)
            values.append(total)
        chart.add(name, values)
    return _render(chart)


def links_chart(report: IssueReport, top: int = 10) -> str:
    """An issue's most clicked links: unique human clickers, and machine clicks apart."""
    links = list(report.links)[:top]
    chart = pygal.HorizontalBar(**_config(title=f"Top links of issue {report.label}"))
    chart.x_labels = [(link.text or link.url)[:60] for link in links]
    chart.add("people", [link.human_people for link in links])
    chart.add("machine clicks", [link.machine for link in links])
    return _render(chart)
