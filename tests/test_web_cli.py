"""`brief serve` and `brief site build` as commands."""

from __future__ import annotations


def test_serve_help_names_host_and_port(brief):
    result = brief("serve", "--help")
    assert result.code == 0
    assert "--host" in result.out and "--port" in result.out


def test_site_build_defaults_to_site_next_to_brief_toml(brief, published):
    result = brief("site", "build")
    assert result.code == 0, result.err
    assert (published / "site" / "issues" / "001" / "index.html").is_file()
    assert (published / "site" / "static" / "style.css").is_file()


def test_serve_refuses_broken_content_with_one_line_per_problem(brief, published):
    path = published / "museum" / "knight-capital.md"
    path.write_text(path.read_text().replace("---\n", "---\nflavour: x\n", 1))
    result = brief("serve", "--port", "1")
    assert result.code == 1
    assert "museum/knight-capital.md:2: unknown field 'flavour'" in result.err
    assert "Traceback" not in result.err
