"""What a reader sees, small but visible: page titles, dates, the auto-written intro, and
what a test copy or a sample carries (issue 15, item 7)."""

from __future__ import annotations

import email
import email.message
import email.policy
import re
from datetime import UTC, date, datetime
from pathlib import Path

from tests.conftest import REPO


def _title(page: Path) -> str:
    m = re.search(r"<title>(.*?)</title>", page.read_text(encoding="utf-8"), re.S)
    assert m, f"no <title> in {page}"
    return m[1].strip()


def test_site_index_title_names_the_newsletter_once(brief, published, tmp_path):
    out = tmp_path / "public"
    assert brief("site", "build", "--out", str(out)).code == 0
    assert _title(out / "index.html") == "The Brief"
    # Every other page still says where it is, then whose it is.
    assert _title(out / "issues" / "index.html") == "All issues · The Brief"
    assert _title(out / "museum" / "index.html") == "The Failure Museum · The Brief"


def test_one_date_format_in_the_mail_and_on_the_site(brief, published, settings, tmp_path):
    from pipeline.content.library import load_content
    from pipeline.render.issue import render_issue

    out = tmp_path / "public"
    assert brief("site", "build", "--out", str(out)).code == 0
    library = load_content(settings)
    rendered = render_issue(library.issue(1), library, settings)
    pages = {
        "site index": (out / "index.html").read_text(encoding="utf-8"),
        "issues page": (out / "issues" / "index.html").read_text(encoding="utf-8"),
        "issue page": (out / "issues" / "001" / "index.html").read_text(encoding="utf-8"),
        "museum page": (out / "museum" / "knight-capital" / "index.html").read_text("utf-8"),
        "mail HTML": rendered.html,
        "mail text": rendered.text,
    }
    issue_day = "2 December 2026"  # issue 1's slot
    for where, body in pages.items():
        assert not re.search(r"\b0\d [A-Z][a-z]+ \d{4}\b", body), f"zero-padded day on {where}"
        assert not re.search(r"(Mon|Tues|Wednes|Thurs|Fri|Satur|Sun)day \d", body), where
    for where in ("site index", "issues page", "issue page", "mail HTML", "mail text"):
        assert issue_day in pages[where], where
    for where in ("museum page", "mail HTML", "mail text"):  # the failure's own date
        assert "1 August 2012" in pages[where], where


def test_templates_format_dates_only_through_the_long_date_filter():
    from pipeline.render.templating import long_date

    assert long_date(date(2026, 12, 2)) == "2 December 2026"
    for template in sorted((REPO / "templates").rglob("*.j2")):
        text = template.read_text(encoding="utf-8")
        assert "strftime" not in text, f"{template.relative_to(REPO)}: use | long_date"


def test_assembled_intro_names_the_museum_story_not_only_the_organisation(settings):
    from pipeline.content.assemble import assemble
    from pipeline.content.library import load_content

    result = assemble(load_content(settings), settings, datetime(2026, 12, 3, 12, tzinfo=UTC))
    assert result.created
    story = load_content(settings).museum[result.issue.museum[0]]
    entry = load_content(settings).glossary[result.issue.glossary[0]]
    intro = load_content(settings).issue(result.issue.number).intro
    assert story.title in intro and f"**{entry.term}**" in intro


def test_intro_shows_titles_with_markdown_characters_as_written(settings):
    from dataclasses import replace

    from pipeline.content.assemble import propose_intro
    from pipeline.content.library import load_content
    from pipeline.render.markdown import to_html

    library = load_content(settings)
    entry = replace(library.glossary["deep-learning"], term="C*-algebra_s")
    story = replace(library.museum["knight-capital"], title="The [redacted] *order* <router>")
    html = to_html(propose_intro(entry, story))
    assert "<strong>C*-algebra_s</strong>" in html
    assert "<em>The [redacted] *order* &lt;router&gt;</em>" in html


def _headers(raw: bytes) -> email.message.Message:
    return email.message_from_bytes(raw, policy=email.policy.default)


def _personal_links_resolve(msg: email.message.Message, site: Path, base_url: str) -> None:
    """The copy's unsubscribe and preferences links are pages of the built site (not
    /unsubscribe/sample, a 404)."""
    body = msg.get_body(("html",))
    assert body is not None
    prefix = re.escape(base_url) + "/(?:unsubscribe|preferences)/"
    links = set(re.findall(r'href="(' + prefix + r'[^"]*)"', body.get_content()))
    assert len(links) == 2, f"expected an unsubscribe and a preferences link: {links}"
    for link in links:
        path = link[len(base_url) :]
        target = site / path.lstrip("/")
        target = target / "index.html" if path.endswith("/") else target
        assert target.is_file(), f"{link} is not a page of the site"


def test_test_copy_and_sample_eml_are_not_list_mail(brief, published, settings, tmp_path):
    site = tmp_path / "public"
    assert brief("site", "build", "--out", str(site)).code == 0
    out = tmp_path / "render"
    assert brief("render", "3", "--out", str(out)).code == 0, "render the draft"
    sent = brief("send", "3", "--to", "editor@example.com")
    assert sent.code == 0, sent.err
    (test_copy,) = (published / ".brief" / "outbox").rglob("*test*.eml")
    base_url = settings.newsletter.base_url
    for name, raw in (("render .eml", (out / "003.eml").read_bytes()), ("[TEST] copy", None)):
        msg = _headers(raw if raw is not None else test_copy.read_bytes())
        # A copy for the editor reaches no subscriber: nothing to unsubscribe from.
        for header in ("List-Unsubscribe", "List-Unsubscribe-Post", "List-Id"):
            assert msg[header] is None, f"{name} carries {header}: {msg[header]}"
        assert msg["X-Brief-Issue"] == "003", name
        _personal_links_resolve(msg, site, base_url)
    assert _headers(test_copy.read_bytes())["Subject"].startswith("[TEST] ")


def test_brief_serve_answers_the_sample_links_with_their_pages(client):
    for path, says in (("/unsubscribe/", "Unsubscribe"), ("/preferences/", "Your preferences")):
        response = client.get(path)
        assert response.status_code == 200, path
        assert f"<h1>{says}</h1>" in response.text, path
