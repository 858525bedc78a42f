"""A person in a real browser: subscribe through the form, follow the confirmation link
from the outbox, and leave with the one-click unsubscribe button. No JavaScript needed,
and the strict CSP is never violated."""

from __future__ import annotations

import pytest

from pipeline.store import audience_count
from tests.fixtures_web import link_in, outbox_messages

pytestmark = pytest.mark.browser


def test_subscribe_confirm_and_unsubscribe_in_a_real_browser(chromium, live_public):
    base, settings, engine = live_public
    context = chromium.new_context(
        java_script_enabled=False, viewport={"width": 375, "height": 740}
    )
    page = context.new_page()
    problems: list[str] = []
    page.on("console", lambda m: problems.append(m.text) if m.type == "error" else None)
    try:
        page.goto(f"{base}/")
        assert page.title() == "The Brief"
        page.fill("#sub-name", "Ann")
        page.fill("#sub-email", "ann@example.com")
        page.click("form.subscribe button[type=submit]")
        page.wait_for_selector("h1:has-text('Check your inbox')")
        assert audience_count(engine, "main") == 0

        [confirmation] = outbox_messages(settings)
        link = link_in(confirmation, "confirm")
        assert link.startswith(f"{base}/confirm/")
        page.goto(link)
        page.click("text=Yes, subscribe me")
        page.wait_for_selector('h1:has-text("You\'re subscribed")')
        assert audience_count(engine, "main") == 1

        welcome = outbox_messages(settings)[-1]
        assert welcome["Subject"] == "Welcome to The Brief"
        page.goto(link_in(welcome, "unsubscribe"))
        page.click("button:has-text('Unsubscribe')")
        page.wait_for_selector('h1:has-text("You\'re unsubscribed")')
        assert audience_count(engine, "main") == 0

        # The archive reads on a phone too: the latest issue from the welcome email.
        page.goto(f"{base}/issues/002/")
        assert page.locator("h1").inner_text() == "Fine-Tuning · Mars Climate Orbiter"
    finally:
        context.close()
    assert [p for p in problems if "Content Security Policy" in p] == []


def test_the_form_offers_lists_by_title_and_never_a_private_one_in_a_real_browser(
    chromium, live_public
):
    from pipeline.store import create_list
    from pipeline.store.lists import Visibility
    from tests.fixtures_web import body_text

    base, settings, engine = live_public
    create_list(engine, "weekly", title="The Brief weekly")
    create_list(engine, "internal", title="Staff tests", visibility=Visibility.PRIVATE)
    context = chromium.new_context(java_script_enabled=False)
    page = context.new_page()
    try:
        page.goto(f"{base}/subscribe")
        assert page.locator("#sub-list option").all_inner_texts() == ["main", "The Brief weekly"]
        page.fill("#sub-email", "ann@example.com")
        page.select_option("#sub-list", label="The Brief weekly")
        page.click("form.subscribe button[type=submit]")
        page.wait_for_selector("h1:has-text('Check your inbox')")
        [confirmation] = outbox_messages(settings)
        assert "want The Brief weekly" in body_text(confirmation)
    finally:
        context.close()
