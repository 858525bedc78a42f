"""What the command line prints for people: problems in file order, counts in good
English, and tables that never cut an address."""

from __future__ import annotations

import re
from pathlib import Path

LONG = "dave.the-very-long-name@example.community-newsletter.com"


def _located(lines: list[str]) -> list[tuple[str, int]]:
    out = []
    for line in lines:
        m = re.match(r"^(.+?):(\d+): ", line)
        assert m, f"not path:line: {line!r}"
        out.append((m[1], int(m[2])))
    return out


def test_check_lists_problems_by_path_then_line(brief, project):
    entry = project / "glossary" / "hallucination.md"
    text = entry.read_text(encoding="utf-8")
    # A renamed section (found late in the file, with its missing twin at the end) and a
    # missing field near the top: the checks run in that order, the reader reads down.
    text = text.replace("## Reality Check", "## Realty Check", 1)
    text = re.sub(r"(?m)^category:.*\n", "", text, count=1)
    entry.write_text(text, encoding="utf-8")
    story = project / "museum" / "mars-climate-orbiter.md"
    story.write_text(story.read_text(encoding="utf-8").replace("cost:", "kost:", 1), "utf-8")
    result = brief("check")
    assert result.code == 1
    located = _located(result.err.strip().splitlines())
    assert len(located) >= 5
    assert located == sorted(located)
    assert located[0] == ("glossary/hallucination.md", 2)


def test_lint_findings_of_one_issue_come_in_line_order(settings):
    from pipeline.content.library import load_content
    from pipeline.render.lint import lint_issue

    path = next((settings.root / "issues").glob("001-*.md"))
    text = path.read_text(encoding="utf-8")
    # Two warnings in the intro, the later line first in the order lint looks for them
    # (images before links).
    path.write_text(
        text.rstrip("\n") + "\n\nSee [the report](http://example.com/report).\n\n"
        "![](https://example.com/chart.png)\n",
        encoding="utf-8",
    )
    library = load_content(settings)
    findings = lint_issue(library.issue(1), library, settings)
    located = [(f.problem.path, f.problem.line) for f in findings if f.level == "warning"]
    assert len(located) >= 2
    assert located == sorted(located)


def test_check_counts_one_issue_in_the_singular(brief, project):
    result = brief("check")
    assert result.code == 0, result.err
    issues = len(list((project / "issues").glob("*.md")))
    assert issues == 1  # the shipped issue
    assert re.search(r"glossary entries, \d+ museum stories, 1 issue \(", result.out), result.out


def test_plural_says_one_thing_and_many_things():
    from pipeline.cli.main import plural

    assert plural(1, "issue") == "1 issue"
    assert plural(0, "issue") == "0 issues"
    assert plural(2, "glossary entry", "glossary entries") == "2 glossary entries"
    assert plural(1, "museum story", "museum stories") == "1 museum story"


def _add_long_address(brief) -> None:
    out = brief("subscribers", "add", LONG, "--name", "Dave Someone Longname", "--confirmed")
    assert out.code == 0, out.err


def test_tables_print_addresses_whole_when_not_a_terminal(brief):
    _add_long_address(brief)
    result = brief("subscribers", "list", env={"COLUMNS": "80"})
    assert result.code == 0, result.err
    assert LONG in result.out, result.out
    assert "…" not in result.out, result.out


def test_tables_fold_addresses_in_a_narrow_terminal_and_never_cut_them(brief):
    _add_long_address(brief)
    # A terminal of 60 columns: the address may fold onto several lines of its cell but
    # every character is there.
    result = brief("subscribers", "list", env={"COLUMNS": "60", "TTY_COMPATIBLE": "1"})
    assert result.code == 0, result.err
    shown = re.sub(r"\x1b\[[0-9;]*m", "", result.out)  # a terminal gets styles
    cells = [
        line.split("│")[1].strip()
        for line in shown.splitlines()
        if line.startswith("│") and line.count("│") > 2
    ]
    assert "".join(cells).startswith(LONG), shown
    assert all(len(line) <= 60 for line in shown.splitlines()), shown


def test_queue_table_keeps_whole_titles_when_not_a_terminal(brief, project: Path):
    result = brief("queue", env={"COLUMNS": "40"})
    assert result.code == 0, result.err
    assert "…" not in result.out, result.out
