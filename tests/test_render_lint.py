"""Preflight lint: in `brief check` and `brief render`, located at file and line."""

from __future__ import annotations

import re
from pathlib import Path


def _edit(path: Path, old: str, new: str) -> int:
    src = path.read_text(encoding="utf-8")
    assert old in src, old
    src = src.replace(old, new, 1)
    path.write_text(src, encoding="utf-8")
    return next(n for n, line in enumerate(src.splitlines(), 1) if new.splitlines()[0] in line)


def test_shipped_issue_passes_check_without_errors(brief, issue_project):
    result = brief("check")
    assert result.code == 0, result.err
    assert "error" not in result.err


def test_editor_placeholder_is_an_error_naming_file_and_line(brief, issue_project):
    entry = issue_project / "glossary" / "deep-learning.md"
    line = _edit(
        entry,
        "The first layers in an image model learn edges.",
        "The first layers in an image model learn edges. TK example.",
    )
    story = issue_project / "museum" / "knight-capital.md"
    line2 = _edit(story, "No single mistake here was exotic.", "Lorem ipsum dolor.")
    result = brief("check")
    assert result.code == 1
    assert f"glossary/deep-learning.md:{line}: editor's placeholder 'TK'" in result.err
    assert f"museum/knight-capital.md:{line2}: editor's placeholder 'Lorem ipsum'" in result.err
    assert "Traceback" not in result.err


def test_sent_issues_are_not_linted(brief, issue_project):
    issue = next((issue_project / "issues").glob("001-*.md"))
    issue.write_text(
        re.sub(
            r"^status: .*$", "status: sent", issue.read_text(encoding="utf-8"), count=1, flags=re.M
        ),
        encoding="utf-8",
    )
    _edit(issue_project / "glossary" / "deep-learning.md", "learn edges.", "learn edges. TODO")
    assert brief("check").code == 0


def test_render_refuses_an_issue_with_lint_errors_and_writes_nothing(
    brief, issue_project, tmp_path
):
    issue = next((issue_project / "issues").glob("001-*.md"))
    src = issue.read_text(encoding="utf-8").rstrip("\n") + "\n\nMore on this XXX.\n"
    issue.write_text(src, encoding="utf-8")
    line = len(src.splitlines())
    result = brief("render", "1", "--out", str(tmp_path / "out"))
    assert result.code == 1
    assert f"issues/{issue.name}:{line}: editor's placeholder 'XXX'" in result.err
    assert not (tmp_path / "out").exists()


def test_warnings_for_http_link_empty_link_image_without_alt_and_long_subject(
    brief, issue_project, tmp_path
):
    issue = next((issue_project / "issues").glob("001-*.md"))
    subject = (
        "A subject line that goes on and on well past what any inbox will ever show you, cut off"
    )
    src = issue.read_text(encoding="utf-8")
    src = re.sub(r"^subject:.*$", f"subject: '{subject}'", src, count=1, flags=re.M)
    src += (
        "\nSee [the old site](http://example.org/old) and [](https://example.org/empty).\n\n"
        "![](https://example.org/chart.png)\n"
    )
    issue.write_text(src, encoding="utf-8")
    lines = src.splitlines()
    at = {
        key: next(n for n, t in enumerate(lines, 1) if key in t)
        for key in ("subject:", "http://example.org/old", "chart.png")
    }
    result = brief("check")
    assert result.code == 0, result.err
    rel = f"issues/{issue.name}"
    assert f"{rel}:{at['http://example.org/old']}: warning: insecure http: link" in result.err
    assert (
        f"{rel}:{at['http://example.org/old']}: warning: link without text: "
        "https://example.org/empty" in result.err
    )
    assert f"{rel}:{at['chart.png']}: warning: image without alt text" in result.err
    assert f"{rel}:{at['subject:']}: warning: subject is {len(subject)} characters" in result.err
    rendered = brief("render", "1", "--out", str(tmp_path))
    assert rendered.code == 0 and "warning: insecure http: link" in rendered.err


def _grow(project: Path, kilobytes: int) -> None:
    story = project / "museum" / "knight-capital.md"
    para = "An ordinary sentence about a very expensive morning at the trading desk. " * 10
    extra = "\n\n".join([para] * (kilobytes * 1024 // len(para)))
    _edit(story, "## Why It Happened", extra + "\n\n## Why It Happened")


def test_html_over_80_kb_is_a_warning(brief, issue_project):
    _grow(issue_project, 55)
    result = brief("check")
    assert result.code == 0, result.err
    assert re.search(r"issue.mjml.j2:1: warning: the HTML is (8\d|9\d|10[01])\.\d KB", result.err)


def test_html_over_102_kb_is_an_error(brief, issue_project):
    _grow(issue_project, 80)
    result = brief("check")
    assert result.code == 1
    assert "Gmail clips messages over 102 KB" in result.err


def test_template_without_unsubscribe_or_postal_address_is_an_error(brief, issue_project):
    tpl = issue_project / "templates" / "email" / "issue.txt.j2"
    _edit(tpl, "Unsubscribe: {{ unsubscribe_url }}", "Goodbye")
    _edit(tpl, "{{ newsletter.postal_address | wrap }}", "Somewhere")
    result = brief("check")
    assert result.code == 1
    assert "templates/email/issue.txt.j2:1: the text version has no unsubscribe link" in result.err
    assert "the text version does not carry the postal address" in result.err


def test_empty_postal_address_setting_is_an_error(brief, issue_project):
    cfg = issue_project / "brief.toml"
    cfg.write_text(
        re.sub(
            r"^postal_address = .*$",
            'postal_address = ""',
            cfg.read_text(encoding="utf-8"),
            flags=re.M,
        ),
        encoding="utf-8",
    )
    result = brief("check")
    assert result.code == 1
    assert "brief.toml:1: newsletter.postal_address is empty" in result.err
