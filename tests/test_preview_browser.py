"""The preview in headless Chromium: the phone view fits, and saving a file updates the page."""

from __future__ import annotations

import pytest

pytestmark = pytest.mark.browser

SECTIONS = (
    "The Technical Definition",
    "What This Actually Means for Your Business",
    "Reality Check",
    "What Operators Actually Do",
    "The Questions to Ask",
)


def test_phone_width_email_has_no_horizontal_overflow_and_shows_glossary_sections(
    chromium, preview_server
):
    page = chromium.new_page(viewport={"width": 1000, "height": 900})
    try:
        page.goto(f"{preview_server}/issues/001/?view=phone")
        frame = page.frame_locator("#email")
        frame.locator("text=The Questions to Ask").wait_for()
        size = page.locator("#email").bounding_box()
        assert round(size["width"]) == 375
        email = next(f for f in page.frames if f.url.endswith("/email.html"))
        widths = email.evaluate(
            "() => [document.documentElement.scrollWidth, document.documentElement.clientWidth]"
        )
        assert widths[0] <= widths[1] == 375
        for title in SECTIONS:
            heading = frame.get_by_role("heading", name=title, exact=True)
            assert heading.is_visible(), title
            box = heading.bounding_box()
            assert box["x"] >= 0 and box["x"] + box["width"] <= size["x"] + 375
    finally:
        page.close()


def test_saving_a_content_file_updates_the_open_page(chromium, preview_server, issue_project):
    page = chromium.new_page(viewport={"width": 1000, "height": 900})
    try:
        page.goto(f"{preview_server}/issues/001/")
        frame = page.frame_locator("#email")
        frame.locator("text=The first layers in an image model learn edges.").wait_for()
        entry = issue_project / "glossary" / "deep-learning.md"
        entry.write_text(
            entry.read_text(encoding="utf-8").replace(
                "The first layers in an image model learn edges.",
                "The first layers in an image model learn stripes and corners.",
            ),
            encoding="utf-8",
        )
        frame.locator("text=learn stripes and corners").wait_for(timeout=10_000)
        assert frame.locator("text=learn edges.").count() == 0
    finally:
        page.close()


def test_a_broken_file_shows_the_error_live_and_the_fix_brings_the_email_back(
    chromium, preview_server, issue_project
):
    page = chromium.new_page()
    try:
        page.goto(f"{preview_server}/issues/001/")
        page.frame_locator("#email").locator("text=Reality Check").first.wait_for()
        story = issue_project / "museum" / "knight-capital.md"
        good = story.read_text(encoding="utf-8")
        story.write_text(good.replace("## What Happened", "## What Hapened", 1), encoding="utf-8")
        error = page.locator("#error")
        error.wait_for(timeout=10_000)
        assert "museum/knight-capital.md:" in error.inner_text()
        story.write_text(good, encoding="utf-8")
        page.frame_locator("#email").locator("text=Reality Check").first.wait_for(timeout=10_000)
    finally:
        page.close()
