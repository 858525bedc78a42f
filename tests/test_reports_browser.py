"""The dashboard and the shared report in a real browser: charts drawn, no JavaScript
needed, and the strict CSP never violated (pygal's scripts and inline styles stripped)."""

from __future__ import annotations

import pytest

from tests.servers import serve_in_thread

pytestmark = pytest.mark.browser


def _problems(page) -> list[str]:
    found: list[str] = []
    page.on("console", lambda m: found.append(m.text) if m.type in ("error", "warning") else None)
    page.on("pageerror", lambda e: found.append(str(e)))
    return found


def test_dashboard_pages_draw_their_charts_within_the_csp(chromium, seeded, store_settings):
    from pipeline.web.dashboard import create_app

    store, _ = seeded
    with serve_in_thread(create_app(store_settings, store)) as base:
        context = chromium.new_context(java_script_enabled=False)
        page = context.new_page()
        problems = _problems(page)
        try:
            response = page.goto(f"{base}/")
            assert response is not None
            assert "default-src 'self'" in response.headers["content-security-policy"]
            for chart in ("subscribers", "growth", "net-per-issue", "lost", "click-rate"):
                assert page.locator(f"#{chart} svg.pygal-chart").count() == 1
            assert page.locator("figure.links svg.pygal-chart").count() == 2  # issues 8 and 7
            # The linked stylesheet applied: the chart's background is white, not the
            # black an unstyled SVG rectangle gets.
            fill = page.eval_on_selector(
                "#click-rate svg .background", "e => getComputedStyle(e).fill"
            )
            assert fill == "rgb(255, 255, 255)"
            assert page.locator("script").count() == 0
            page.click("a:has-text('007')")
            page.wait_for_selector("h1:has-text('Issue 007')")
            assert page.locator("figure.links svg.pygal-chart").count() == 1
            assert page.locator("table.links").inner_text().count("Read A") == 1
            assert page.goto(f"{base}/issues/999/").status == 404
            assert page.goto(f"{base}/issues/x%00/").status == 404
        finally:
            context.close()
    assert [p for p in problems if "Content Security Policy" in p or "Refused" in p] == []


def test_the_shared_html_report_opens_as_a_file(chromium, seeded, cli_store, tmp_path):
    out = tmp_path / "share"
    result = cli_store("report", "7", "--html", str(out))
    assert result.code == 0, result.err
    assert sorted(p.name for p in out.iterdir()) == ["charts.css", "index.html", "links.svg"]
    context = chromium.new_context(java_script_enabled=False)
    page = context.new_page()
    problems = _problems(page)
    try:
        page.goto(out.joinpath("index.html").as_uri())
        page.wait_for_selector("h1:has-text('Issue 007')")
        assert page.locator("figure.links svg.pygal-chart").count() == 1
        assert "Read A" in page.locator("table.links").inner_text()
        # The stylesheet beside the page applied (pygal's plot background is ours, white).
        fill = page.eval_on_selector("svg.pygal-chart .background", "e => getComputedStyle(e).fill")
        assert fill == "rgb(255, 255, 255)"
        page.goto(out.joinpath("links.svg").as_uri())
        assert page.locator("svg .plot").count() >= 1
    finally:
        context.close()
    assert problems == []
