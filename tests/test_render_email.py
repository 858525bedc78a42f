"""Rendering an issue: one email (HTML via MJML, plain text twin) with placeholders."""

from __future__ import annotations

import email
import email.policy
import html as htmlmod
import re
from pathlib import Path

import pytest

from pipeline.errors import RenderError
from tests.conftest import SAMPLE


def _render(settings, library, ref=1):
    from pipeline.render.issue import render_issue

    return render_issue(library.issue(ref), library, settings)


def _visible(html: str) -> str:
    """The HTML's readable text: tags out, entities decoded, whitespace collapsed."""
    html = re.sub(r"<(style|title)\b.*?</\1>", " ", html, flags=re.S | re.I)
    return " ".join(htmlmod.unescape(re.sub(r"<[^>]+>", " ", html)).split())


def _sample_landmarks() -> list[str]:
    """Every section heading and numbered question of the reference sample, in order."""
    from pipeline.content.library import GLOSSARY_SECTIONS

    out = []
    for line in SAMPLE.read_text(encoding="utf-8").splitlines():
        text = line.strip()
        if text in GLOSSARY_SECTIONS:
            out.append(text)
        m = re.match(r"^\d+\.\s+(.+?\?)", text)
        if m:
            out.append(m[1])
    return out


def _in_order(haystack: str, needles: list[str]) -> None:
    at = 0
    for needle in needles:
        found = haystack.find(needle, at)
        assert found >= 0, f"{needle!r} missing or out of order"
        at = found + len(needle)


def test_shipped_issue_carries_every_sample_heading_and_question_in_order(render_env):
    settings, library = render_env
    rendered = _render(settings, library)
    landmarks = _sample_landmarks()
    assert len(landmarks) == 8  # five headings, three questions
    _in_order(_visible(rendered.html), landmarks)
    _in_order(" ".join(rendered.text.split()), landmarks)


def test_numbered_questions_are_an_ordered_list_in_html_and_numbered_in_text(render_env):
    settings, library = render_env
    rendered = _render(settings, library)
    ol = re.search(r"The Questions to Ask</h2>\s*<ol\b.*?</ol>", rendered.html, re.S)
    assert ol and ol[0].count("<li") == 3
    for n, q in enumerate(library.glossary["deep-learning"].questions, 1):
        assert re.search(rf"^{n}\. {re.escape(q.question.split()[0])}", rendered.text, re.M)


def test_reality_check_is_a_set_off_callout(render_env):
    settings, library = render_env
    html = _render(settings, library).html
    block = html[html.index("Reality Check") - 2000 : html.index("Reality Check")]
    assert "border-left:4px solid" in block and "background" in block
    assert "What the vendor says:" in html and "What that means in practice:" in html


def test_museum_story_is_a_card_with_cost_and_source_links(render_env):
    settings, library = render_env
    story = library.museum["knight-capital"]
    rendered = _render(settings, library)
    assert story.cost in _visible(rendered.html)
    for url in story.sources:
        assert f'href="{url}"' in rendered.html
        assert url in rendered.text
    assert f"Cost: {story.cost}" in rendered.text


def test_header_and_footer_carry_name_issue_promise_address_and_links(render_env):
    settings, library = render_env
    rendered = _render(settings, library)
    nl = settings.newsletter
    visible = _visible(rendered.html)
    text = " ".join(rendered.text.split())
    promise = "One operator. Every other Wednesday. Plus the AI Glossary and the Failure Museum."
    for body in (visible, text):
        assert nl.name in body and "Issue 001" in body and "2 December 2026" in body
        assert promise in body
        assert nl.postal_address in body
    assert rendered.web_url == f"{nl.base_url}/issues/001/"
    for body in (rendered.html, rendered.text):
        assert rendered.web_url in body
        assert "%%BRIEF_UNSUBSCRIBE_URL%%" in body and "%%BRIEF_PREFERENCES_URL%%" in body
    assert "<mj-preview>" not in rendered.html and rendered.preheader[:40] in rendered.html


def test_greeting_reads_well_with_and_without_a_name(render_env):
    """Issue 13: a reader without a name got a lone "Hi" (text part ``Hi=20``)."""
    from pipeline.render.issue import personalise
    from pipeline.send.message import sample_values

    settings, library = render_env
    rendered = _render(settings, library)
    html, text = personalise(rendered, sample_values(settings, "Ada <3"))
    assert "Hi Ada &lt;3,</p>" in html and "Hi Ada <3,\n" in text
    html, text = personalise(rendered, sample_values(settings, ""))
    assert ">Hi there,</p>" in html and re.search(r"^Hi there,$", text, re.M)
    assert not re.search(r">Hi\s*</p>", html) and not re.search(r"^Hi *$", text, re.M)
    assert "%%BRIEF" not in html + text


def test_plain_text_is_wrapped_at_72_with_no_tags_or_entities(render_env):
    settings, library = render_env
    text = _render(settings, library).text
    for line in text.splitlines():
        # Only a single unbreakable token (a URL) may pass the margin.
        assert (
            len(line) <= 72
            or " " not in line.strip().split(" ", 1)[-1]
            or re.fullmatch(r"(\d+\. |\[\d+\] |\w[\w ]*: )?\S+", line.strip())
        ), line
    assert not re.search(r"<[a-zA-Z/][^>]*>", text)
    assert not re.search(r"&(?:[a-z]+|#\d+);", text)
    for title in ("The Technical Definition", "Reality Check", "What Happened"):
        assert re.search(rf"^{title}\n-{{{len(title)}}}$", text, re.M)


def test_links_become_footnotes_listed_after_their_section(issue_project, render_env):
    from pipeline.content.library import load_content as load_library

    settings, _ = render_env
    story = issue_project / "museum" / "knight-capital.md"
    src = story.read_text(encoding="utf-8").replace(
        "## Why It Happened",
        "Read [the SEC order](https://www.sec.gov/order) and [its summary](https://ex.org/s).\n\n"
        "## Why It Happened",
    )
    story.write_text(src, encoding="utf-8")
    text = _render(settings, load_library(settings)).text
    what = text[text.index("What Happened\n") : text.index("Why It Happened\n")]
    assert "the SEC order [1]" in what and "its summary [2]" in what
    assert what.rstrip().endswith("[1] https://www.sec.gov/order\n[2] https://ex.org/s")


# --- errors name the template and line, and nothing half-rendered escapes --------


def _break_template(project: Path, old: str, new: str) -> int:
    path = project / "templates" / "email" / "issue.mjml.j2"
    src = path.read_text(encoding="utf-8")
    assert old in src
    src = src.replace(old, new, 1)
    path.write_text(src, encoding="utf-8")
    return next(n for n, line in enumerate(src.splitlines(), 1) if new.strip() in line)


def test_undefined_template_variable_names_template_and_line(issue_project, render_env):
    settings, library = render_env
    line = _break_template(issue_project, "{{ greeting }}", "{{ reader_nickname }}")
    with pytest.raises(RenderError) as err:
        _render(settings, library)
    assert f"templates/email/issue.mjml.j2:{line}:" in str(err.value)
    assert "reader_nickname" in str(err.value)


def test_template_syntax_error_names_template_and_line(issue_project, render_env):
    settings, library = render_env
    line = _break_template(issue_project, "{% for story in stories %}", "{% for story in %}")
    with pytest.raises(
        RenderError, match=rf"templates/email/issue.mjml.j2:{line}: template syntax"
    ):
        _render(settings, library)


def test_invalid_mjml_names_template_and_line(issue_project, render_env):
    settings, library = render_env
    line = _break_template(
        issue_project,
        '<p style="margin:0 0 16px 0;">{{ greeting }}</p>',
        '<p style="margin:0 0 16px 0;"><b>{{ greeting }}</p>',
    )
    with pytest.raises(RenderError) as err:
        _render(settings, library)
    assert f"templates/email/issue.mjml.j2:{line}: invalid MJML" in str(err.value)


def test_unknown_mjml_tag_is_an_error_not_passed_through(issue_project, render_env):
    settings, library = render_env
    line = _break_template(issue_project, "<mj-column>", "<mj-colum>")
    with pytest.raises(RenderError, match=rf"issue.mjml.j2:{line}: invalid MJML: unknown MJML tag"):
        _render(settings, library)


def test_missing_template_is_a_clear_error(issue_project, render_env):
    settings, library = render_env
    (issue_project / "templates" / "email" / "issue.txt.j2").unlink()
    with pytest.raises(RenderError, match=r"template email/issue.txt.j2 not found"):
        _render(settings, library)


# --- brief render ------------------------------------------------------------------


def test_render_command_writes_html_text_and_a_complete_eml(brief, issue_project, tmp_path):
    out = tmp_path / "out"
    result = brief("render", "1", "--out", str(out))
    assert result.code == 0, result.err
    for ext in ("html", "txt", "eml"):
        path = out / f"001.{ext}"
        assert path.is_file() and path.stat().st_size > 1000
        assert str(path) in result.out and "KB" in result.out
    msg = email.message_from_bytes((out / "001.eml").read_bytes(), policy=email.policy.default)
    assert msg.get_content_type() == "multipart/alternative"
    assert msg["Subject"].startswith("Deep Learning")
    kinds = [p.get_content_type() for p in msg.iter_parts()]
    assert kinds == ["text/plain", "text/html"]
    html = msg.get_body(("html",)).get_content()
    assert "%%BRIEF" not in html and "/unsubscribe/" in html
    assert "%%BRIEF" not in (out / "001.html").read_text(encoding="utf-8")


def test_render_command_accepts_a_path(brief, issue_project, tmp_path):
    path = next((issue_project / "issues").glob("001-*.md"))
    result = brief("render", str(path), "--out", str(tmp_path))
    assert result.code == 0, result.err
    assert (tmp_path / "001.eml").is_file()


def test_render_command_template_error_is_one_line_and_writes_nothing(
    brief, issue_project, tmp_path
):
    _break_template(issue_project, "{{ greeting }}", "{{ nickname }}")
    result = brief("render", "1", "--out", str(tmp_path / "out"))
    assert result.code == 1
    assert result.err.count("\n") == 1 and "issue.mjml.j2:" in result.err
    assert "Traceback" not in result.err
    assert not (tmp_path / "out").exists()


def test_render_without_an_issue_renders_the_next_unsent_and_says_where_to_open_it(
    brief, issue_project, tmp_path
):
    result = brief("render", "--out", str(tmp_path))
    assert result.code == 0, result.err
    assert f"open {tmp_path / '001.html'} in a browser" in result.out
