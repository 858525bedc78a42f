"""Markdown to email HTML (styled by the templates) and to plain text with footnotes."""

from __future__ import annotations

from pipeline.render.markdown import Footnotes, to_html, to_text


def test_html_takes_inline_styles_from_the_template_mapping():
    out = to_html(
        "A [link](https://a.example) here.\n\n1. one\n2. two",
        {"p": "margin:0", "a": "color:red", "li": "margin:0 0 4px 0"},
    )
    assert '<p style="margin:0">' in out and '<a style="color:red" href="https://a.example">' in out
    assert out.count('<li style="margin:0 0 4px 0">') == 2


def test_raw_html_in_content_is_escaped_not_rendered():
    out = to_html("Hello <script>alert(1)</script>")
    assert "<script>" not in out
    # The editor's text is still there, shown as text: escaped, not dropped.
    assert out == "<p>Hello &lt;script&gt;alert(1)&lt;/script&gt;</p>\n"


def test_same_url_keeps_its_footnote_number_and_numbers_run_across_sections():
    notes = Footnotes()
    first = to_text("[a](https://x.example/1) and [b](https://x.example/1)", notes)
    second = to_text("[c](https://x.example/2) then [d](https://x.example/1)", notes)
    assert first == "a [1] and b [1]\n\n[1] https://x.example/1"
    assert second == "c [2] then d [1]\n\n[2] https://x.example/2\n[1] https://x.example/1"


def test_lists_keep_numbers_and_hang_their_wrapped_lines():
    text = to_text("3. " + "word " * 30 + "\n4. short\n\n- dash item")
    lines = text.splitlines()
    assert lines[0].startswith("3. word") and lines[1].startswith("   word")
    assert "4. short" in lines and "- dash item" in lines
    assert all(len(line) <= 72 for line in lines)


def test_long_urls_and_placeholders_are_never_broken():
    url = "https://example.org/" + "a" * 90
    text = to_text(f"Go to {url} now, %%BRIEF_UNSUBSCRIBE_URL%% " + "filler " * 20)
    assert url in text and "%%BRIEF_UNSUBSCRIBE_URL%%" in text


def test_quotes_code_and_headings_stay_readable():
    text = to_text("### Small heading\n\n> quoted *words*\n\n    code line\n\nUse `brief`.")
    assert "Small heading\n-------------" in text
    assert "> quoted words" in text and "    code line" in text and "Use brief." in text
