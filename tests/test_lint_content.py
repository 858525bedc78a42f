"""Lint of what the editor wrote: empty links and mail placeholders typed into content."""

from __future__ import annotations

from pathlib import Path


def _append(path: Path, text: str) -> int:
    src = path.read_text(encoding="utf-8").rstrip("\n") + "\n\n"
    path.write_text(src + text, encoding="utf-8")
    return len(src.splitlines()) + 1


def test_empty_link_is_an_error_naming_path_and_line(brief, issue_project):
    entry = issue_project / "glossary" / "deep-learning.md"
    line = _append(entry, "More on this [here]() and [there](<>).\n")
    result = brief("check")
    assert result.code == 1
    assert f"glossary/deep-learning.md:{line}: empty link '[here]()'" in result.err
    assert f"glossary/deep-learning.md:{line}: empty link '[there](<>)'" in result.err


def test_an_image_or_a_real_link_is_not_an_empty_link(brief, issue_project):
    issue = next((issue_project / "issues").glob("001-*.md"))
    _append(
        issue,
        "See [the report](https://example.org/report), or write `[text]()` in a span.\n\n"
        "```markdown\nAn empty link: [here]()\n```\n",
    )
    result = brief("check")
    assert result.code == 0, result.err
    assert "empty link" not in result.err


def test_placeholder_written_in_content_is_an_error_naming_path_and_line(brief, issue_project):
    issue = next((issue_project / "issues").glob("001-*.md"))
    line = _append(issue, "Dear %%BRIEF_NAME%%, welcome back.\n")
    story = issue_project / "museum" / "knight-capital.md"
    line2 = _append(story, "Reply to %%BRIEF_SOMETHING%% anytime.\n")
    result = brief("check")
    assert result.code == 1
    assert f"issues/{issue.name}:{line}: placeholder %%BRIEF_NAME%% written in the content" in (
        result.err
    )
    assert f"museum/knight-capital.md:{line2}: placeholder %%BRIEF_SOMETHING%%" in result.err
