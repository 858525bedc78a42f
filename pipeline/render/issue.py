"""One issue becomes one email, once: Jinja2 -> MJML -> HTML (mjml-python), and a text twin.

Per-recipient values are placeholders (``PLACEHOLDERS``) that the send path
fills by substitution, so nothing here runs per recipient. Any failure is a
``RenderError`` naming the template and line; nothing half-rendered escapes.
"""

from __future__ import annotations

import re
from html.parser import HTMLParser

import jinja2

from pipeline.config import Settings
from pipeline.content.library import Issue, Library
from pipeline.errors import ContentError, Problem, RenderError
from pipeline.mail import PLACEHOLDERS, Rendered, fill
from pipeline.render.templating import environment, render_template

HTML_TEMPLATE = "email/issue.mjml.j2"
TEXT_TEMPLATE = "email/issue.txt.j2"


def web_url(settings: Settings, issue: Issue) -> str:
    """The issue's page in the web archive."""
    return f"{settings.newsletter.base_url}/issues/{issue.number:03d}/"


def issue_values(issue: Issue, library: Library, settings: Settings) -> dict:
    """Everything the email templates see, per-recipient values as placeholders."""
    problems = []
    for kind, slugs, known in (
        ("glossary", issue.glossary, library.glossary),
        ("museum", issue.museum, library.museum),
    ):
        for slug in slugs:
            if slug not in known:
                problems.append(Problem(str(issue.path), 1, f"unknown {kind} slug '{slug}'"))
    if problems:
        raise ContentError(problems)
    return {
        "newsletter": settings.newsletter,
        "issue": issue,
        "entries": [library.glossary[s] for s in issue.glossary],
        "stories": [library.museum[s] for s in issue.museum],
        "subject": issue.subject,
        "preheader": issue.preheader,
        "web_url": web_url(settings, issue),
        **PLACEHOLDERS,
    }


def render_mjml(
    issue: Issue, library: Library, settings: Settings, env: jinja2.Environment | None = None
) -> str:
    """The issue's MJML source, before compilation."""
    env = env or environment(settings)
    return render_template(env, HTML_TEMPLATE, **issue_values(issue, library, settings))


def render_issue(
    issue: Issue, library: Library, settings: Settings, env: jinja2.Environment | None = None
) -> Rendered:
    """Render an issue once: subject, preheader, HTML and plain text (with placeholders).

    Pass ``env`` (from ``templating.environment``) to reuse compiled templates.
    """
    env = env or environment(settings)
    values = issue_values(issue, library, settings)
    mjml_source = render_template(env, HTML_TEMPLATE, **values)
    html = compile_mjml(mjml_source, env)
    text = tidy_text(render_template(env, TEXT_TEMPLATE, **values))
    html, text = absolute_assets(html, text, settings.newsletter.base_url)
    return Rendered(issue.number, issue.subject, issue.preheader, html, text, values["web_url"])


_ROOTED_ASSET_HTML = re.compile(r'((?:src|href)=")/assets/')
_ROOTED_ASSET_TEXT = re.compile(r"^(\[\d+\] )/assets/", re.M)


def absolute_assets(html: str, text: str, base_url: str) -> tuple[str, str]:
    """Asset links as absolute ``base_url/assets/…`` URLs: a mail has no site to be
    relative to, so ``/assets/x.png`` would be a broken image in every inbox."""
    base = base_url.rstrip("/")
    return (
        _ROOTED_ASSET_HTML.sub(lambda m: f"{m[1]}{base}/assets/", html),
        _ROOTED_ASSET_TEXT.sub(lambda m: f"{m[1]}{base}/assets/", text),
    )


_BLANKS = re.compile(r"\n{4,}")
_TRAILING = re.compile(r"[ \t]+\n")


def tidy_text(text: str) -> str:
    """No trailing spaces, at most two blank lines in a row, one final newline."""
    return _BLANKS.sub("\n\n\n", _TRAILING.sub("\n", text)).strip("\n") + "\n"


# ---------------------------------------------------------------------------
# MJML

MJML_TAGS = frozenset(
    """
mjml mj-head mj-body mj-attributes mj-all mj-class mj-breakpoint mj-font mj-html-attributes
mj-html-attribute mj-selector mj-preview mj-style mj-title mj-include mj-accordion
mj-accordion-element mj-accordion-title mj-accordion-text mj-button mj-carousel
mj-carousel-image mj-column mj-divider mj-group mj-hero mj-image mj-navbar mj-navbar-link
mj-raw mj-section mj-social mj-social-element mj-spacer mj-table mj-text mj-wrapper
""".split()
)
_MJ_TAG = re.compile(r"</?(mj(?:ml|-[a-z-]+))\b")


def compile_mjml(
    source: str, env: jinja2.Environment | None = None, template: str = HTML_TEMPLATE
) -> str:
    """MJML to HTML with MRML, in process; invalid MJML is a RenderError with a line."""
    from mjml import mjml2html

    for m in _MJ_TAG.finditer(source):
        if m[1] not in MJML_TAGS:
            line = source.count("\n", 0, m.start()) + 1
            tag = source[m.start() : source.find(">", m.start()) + 1] or m[0]
            raise _mjml_error(source, env, template, line, f"unknown MJML tag <{m[1]}>", tag)
    try:
        return mjml2html(source)
    except ValueError as exc:
        line, why, snippet = locate_mjml_problem(source)
        raise _mjml_error(source, env, template, line, f"{exc}; {why}", snippet) from None


def _mjml_error(
    source: str,
    env: jinja2.Environment | None,
    template: str,
    line: int,
    message: str,
    snippet: str,
) -> RenderError:
    """Name the template line when the offending markup is literal in the template,
    else the line of the generated MJML (the markup came from a variable)."""
    tline = _template_line(env, template, snippet)
    if tline:
        return RenderError(f"templates/{template}:{tline}: invalid MJML: {message}")
    return RenderError(
        f"templates/{template}: invalid MJML: {message} "
        f"(line {line} of the generated MJML: {snippet.strip()[:80]!r})"
    )


def _template_line(env: jinja2.Environment | None, template: str, snippet: str) -> int | None:
    if env is None or not snippet.strip():
        return None
    try:
        src, _, _ = env.loader.get_source(env, template)
    except jinja2.TemplateNotFound:
        return None
    hits = [n for n, text in enumerate(src.splitlines(), 1) if snippet.strip() in text]
    return hits[0] if len(hits) == 1 else None


_VOID = frozenset("area base br col embed hr img input link meta param source track wbr".split())


class _Balance(HTMLParser):
    """Finds the first tag that is closed wrongly or never closed."""

    def __init__(self) -> None:
        super().__init__(convert_charrefs=True)
        self.stack: list[tuple[str, int, str]] = []
        self.problem: tuple[int, str, str] | None = None

    def handle_starttag(self, tag, attrs):
        if tag not in _VOID:
            self.stack.append((tag, self.getpos()[0], self.get_starttag_text() or f"<{tag}>"))

    def handle_endtag(self, tag):
        if self.problem or tag in _VOID:
            return
        if self.stack and self.stack[-1][0] == tag:
            self.stack.pop()
            return
        line = self.getpos()[0]
        if self.stack:
            open_tag, open_line, text = self.stack[-1]
            self.problem = (
                open_line,
                f"<{open_tag}> opened on line {open_line} is closed by </{tag}> on line {line}",
                text,
            )
        else:
            self.problem = (line, f"</{tag}> closes nothing", f"</{tag}>")


def locate_mjml_problem(source: str) -> tuple[int, str, str]:
    """Best guess at where generated MJML is broken: (line, why, offending markup)."""
    parser = _Balance()
    parser.feed(source)
    parser.close()
    if parser.problem:
        return parser.problem
    if parser.stack:
        tag, line, text = parser.stack[-1]
        return line, f"<{tag}> opened on line {line} is never closed", text
    return 1, "the markup looks balanced; check the MJML structure", ""


def personalise(rendered: Rendered, values: dict[str, str]) -> tuple[str, str]:
    """HTML and text with the placeholders filled (values HTML-escaped in the HTML).

    For previews and samples; the send path fills a MIME skeleton instead (message).
    """
    return fill(rendered.html, values, as_html=True), fill(rendered.text, values, as_html=False)
