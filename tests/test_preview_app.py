"""The preview app over HTTP: index order, views, inbox line, errors on the page."""

from __future__ import annotations

import re
from pathlib import Path

import pytest
from starlette.testclient import TestClient


@pytest.fixture
def client(issue_project: Path):
    from pipeline.config import load_settings
    from pipeline.web.preview import create_app

    settings = load_settings(issue_project / "brief.toml", env={})
    with TestClient(create_app(settings, watch=False)) as c:
        yield c


def _add_issue(
    project: Path, number: int, day: str, status: str, glossary: str, museum: str
) -> None:
    (project / "issues" / f"{number:03d}-{day}.md").write_text(
        f"---\nnumber: {number}\ndate: {day}\nsubject: Issue {number} subject\n"
        f"preheader: Issue {number} preheader\nglossary:\n- {glossary}\nmuseum:\n- {museum}\n"
        f"status: {status}\n---\n\nIntro {number}.\n",
        encoding="utf-8",
    )


def test_index_lists_the_next_unsent_issue_first(client, issue_project):
    first = next((issue_project / "issues").glob("001-*.md"))
    first.write_text(
        re.sub(
            r"^status: .*$", "status: sent", first.read_text(encoding="utf-8"), count=1, flags=re.M
        ),
        encoding="utf-8",
    )
    _add_issue(issue_project, 2, "2026-12-16", "draft", "hallucination", "zillow-offers")
    _add_issue(issue_project, 3, "2026-12-30", "draft", "inference", "air-canada-chatbot")
    page = client.get("/").text
    order = re.findall(r'href="/issues/(\d{3})/"', page)
    assert order == ["002", "003", "001"]
    assert "(next)" in page.split('href="/issues/003/"')[0].split('href="/issues/002/"')[1]


def test_issue_page_shows_inbox_line_and_desktop_phone_text_switches(client, render_env):
    settings, library = render_env
    issue = library.issue(1)
    page = client.get("/issues/001/").text
    inbox = re.search(r'<div id="inbox".*?</div>', page, re.S)[0]
    assert settings.newsletter.from_name in inbox
    assert issue.subject.replace("'", "&#x27;") in inbox
    assert issue.preheader[:30] in inbox
    for view in ("desktop", "phone", "text", "inbox"):
        assert f'href="/issues/001/?view={view}"' in page
    assert 'style="width:600px"' in page
    assert 'style="width:375px"' in client.get("/issues/001/?view=phone").text
    text = client.get("/issues/001/?view=text").text
    assert '<pre id="text"' in text and "The Questions to Ask" in text


def test_email_frame_is_the_html_a_subscriber_gets(client):
    res = client.get("/issues/001/email.html")
    assert res.status_code == 200 and "%%BRIEF" not in res.text
    assert "/unsubscribe/" in res.text and "Hi Sam" in res.text
    assert "Deep Learning" in client.get("/issues/001/email.txt").text


def test_content_error_is_shown_with_file_and_line_and_the_server_keeps_going(
    client, issue_project
):
    story = issue_project / "museum" / "knight-capital.md"
    good = story.read_text(encoding="utf-8")
    story.write_text(good.replace("cost: ", "cost: [", 1), encoding="utf-8")
    page = client.get("/issues/001/")
    assert page.status_code == 200
    assert re.search(r'id="error".*museum/knight-capital\.md:\d+: ', page.text, re.S)
    story.write_text(good, encoding="utf-8")
    assert 'id="error"' not in client.get("/issues/001/").text


def test_template_error_is_shown_with_template_and_line(client, issue_project):
    tpl = issue_project / "templates" / "email" / "issue.mjml.j2"
    tpl.write_text(
        tpl.read_text(encoding="utf-8").replace("{{ greeting }}", "{{ nom }}", 1), encoding="utf-8"
    )
    page = client.get("/issues/001/").text
    assert re.search(r"templates/email/issue\.mjml\.j2:\d+: undefined template variable", page)
    assert client.get("/issues/001/email.html").status_code == 500


def test_unknown_issue_is_an_error_on_the_page(client):
    page = client.get("/issues/042/").text
    assert 'id="error"' in page and "no issue 042" in page
