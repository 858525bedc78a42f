"""Preflight: what would embarrass the newsletter in an inbox, caught before it goes out.

Errors (the issue must not go out): HTML over 102 KB (Gmail clips it), no
postal address, no unsubscribe link, an editor's placeholder (TK, TODO, XXX,
lorem ipsum) left in, an empty link (``[here]()``), a mail placeholder
(``%%BRIEF_NAME%%``) written in content (filled in the mail, shown literally on the
archive), an image under ``assets/`` that is missing, outside ``assets/``, without alt
text or over 1 MB. Warnings: HTML over 80 KB, an asset image over 200 KB, an image
without alt text, an ``http:`` link, a link without text, a subject over 78 characters.
Each finding is located at the content file (or template) line it comes from.
"""

from __future__ import annotations

import html as htmlmod
import re
from collections.abc import Iterable
from dataclasses import dataclass
from pathlib import Path
from urllib.parse import unquote

from pipeline.config import Settings
from pipeline.content.library import Issue, Library, parse_issue, read_content, shown_path
from pipeline.errors import ContentError, NotFound, Problem
from pipeline.render.issue import HTML_TEMPLATE, PLACEHOLDERS, TEXT_TEMPLATE, Rendered, render_issue
from pipeline.render.markdown import ASSETS_DIR
from pipeline.render.templating import environment

GMAIL_CLIP_BYTES = 102 * 1024
HTML_WARN_BYTES = 80 * 1024
SUBJECT_MAX = 78
EDITOR_MARKS = re.compile(r"\b(?:TK|TODO|XXX)\b|(?i:lorem ipsum)")

_IMG = re.compile(r"<img\b[^>]*>", re.I)
_ALT = re.compile(r"""\balt\s*=\s*(?:"([^"]*)"|'([^']*)')""", re.I)
_LINK = re.compile(r"<a\b([^>]*)>(.*?)</a>", re.I | re.S)
_HREF = re.compile(r"""\bhref\s*=\s*(?:"([^"]*)"|'([^']*)')""", re.I)
_TAG = re.compile(r"<[^>]+>")

ASSET_WARN_BYTES = 200 * 1024
ASSET_MAX_BYTES = 1024 * 1024
# Any %%BRIEF_…%% marker, known or not: the send path fills the known ones, and none of
# them belongs in the content (the archive page would show it as written).
CONTENT_PLACEHOLDER = re.compile(r"%%BRIEF_[A-Z0-9_]*%%")
# ``[text]()`` or ``[text](<>)``: markdown-it renders ``<a href="">``, a link to nowhere.
_EMPTY_LINK = re.compile(r"(?<!!)\[([^\]]*)\]\(\s*(?:<\s*>)?\s*\)")
_FENCE = re.compile(r"^ {0,3}(`{3,}|~{3,})")
_CODE_SPAN = re.compile(r"(`+).+?\1")
# ``![alt](src "title")`` on one line, as the editor writes images.
_MD_IMAGE = re.compile(r"!\[([^\]]*)\]\(\s*(<[^>]*>|[^\s)]*)[^)]*\)")


@dataclass(frozen=True)
class Finding:
    """One lint result: ``error`` stops the issue, ``warning`` is shown."""

    level: str
    problem: Problem

    def __str__(self) -> str:
        p = self.problem
        return f"{p.path}:{p.line}: {self.level}: {p.message}"


class _Where:
    """Finds the content file and line a piece of text came from."""

    def __init__(self, issue: Issue, library: Library):
        self.root = library.root
        self.issue = issue
        self.files: list[Path] = [issue.path]
        self.files += [library.glossary[s].path for s in issue.glossary if s in library.glossary]
        self.files += [library.museum[s].path for s in issue.museum if s in library.museum]
        self._lines: dict[Path, list[str]] = {}

    def shown(self, path: Path) -> str:
        return shown_path(path, self.root)

    def lines(self, path: Path) -> list[str]:
        if path not in self._lines:
            try:
                self._lines[path] = path.read_text(encoding="utf-8").splitlines()
            except OSError:
                self._lines[path] = []
        return self._lines[path]

    def find(self, needle: str, template: str = HTML_TEMPLATE) -> tuple[str, int]:
        """The first content line holding ``needle``, else the template."""
        for path in self.files:
            for n, line in enumerate(self.lines(path), 1):
                if needle in line:
                    return self.shown(path), n
        tpath = self.root / "templates" / template
        for n, line in enumerate(self.lines(tpath), 1):
            if needle in line:
                return self.shown(tpath), n
        return self.shown(tpath), 1

    def field(self, key: str) -> tuple[str, int]:
        """The issue file line of a frontmatter field."""
        for n, line in enumerate(self.lines(self.issue.path), 1):
            if line.startswith(f"{key}:"):
                return self.shown(self.issue.path), n
        return self.shown(self.issue.path), 1


def lint_rendered(
    rendered: Rendered, issue: Issue, library: Library, settings: Settings
) -> list[Finding]:
    """Every preflight finding for one rendered issue, errors first."""
    where = _Where(issue, library)
    out: list[Finding] = []

    def add(level: str, at: tuple[str, int], message: str) -> None:
        out.append(Finding(level, Problem(at[0], at[1], message)))

    size = len(rendered.html.encode("utf-8"))
    tpl = (f"templates/{HTML_TEMPLATE}", 1)
    if size > GMAIL_CLIP_BYTES:
        add("error", tpl, f"the HTML is {size / 1024:.1f} KB; Gmail clips messages over 102 KB")
    elif size > HTML_WARN_BYTES:
        add("warning", tpl, f"the HTML is {size / 1024:.1f} KB; Gmail clips at 102 KB")

    postal = settings.newsletter.postal_address.strip()
    if not postal:
        add(
            "error",
            (where.shown(settings.path), 1),
            "newsletter.postal_address is empty; the law wants a postal address in every issue",
        )
    else:
        for part, body, template in (
            ("HTML", htmlmod.unescape(rendered.html), HTML_TEMPLATE),
            ("text", " ".join(rendered.text.split()), TEXT_TEMPLATE),
        ):
            if " ".join(postal.split()) not in body:
                add(
                    "error",
                    (f"templates/{template}", 1),
                    f"the {part} version does not carry the postal address",
                )
    unsub = PLACEHOLDERS["unsubscribe_url"]
    for part, body, template in (
        ("HTML", rendered.html, HTML_TEMPLATE),
        ("text", rendered.text, TEXT_TEMPLATE),
    ):
        if unsub not in body:
            add(
                "error",
                (f"templates/{template}", 1),
                f"the {part} version has no unsubscribe link ({{{{ unsubscribe_url }}}})",
            )

    # Placeholders are found in the editor's files, line by line; one that shows up
    # only in the rendered text came from a template.
    marked = False
    for path in where.files:
        for n, line in enumerate(where.lines(path), 1):
            for m in EDITOR_MARKS.finditer(line):
                marked = True
                add(
                    "error",
                    (where.shown(path), n),
                    f"editor's placeholder {m[0]!r} left in: {line.strip()[:60]!r}",
                )
    for path in where.files:
        out += content_findings(where.shown(path), where.lines(path), library.root)
    if not marked:
        for source, template in ((rendered.text, TEXT_TEMPLATE), (rendered.html, HTML_TEMPLATE)):
            m = EDITOR_MARKS.search(htmlmod.unescape(_TAG.sub(" ", source)))
            if m:
                add(
                    "error",
                    where.find(m[0], template),
                    f"editor's placeholder {m[0]!r} left in by the template",
                )

    for m in _IMG.finditer(rendered.html):
        alt = _ALT.search(m[0])
        if not alt or not (alt[1] or alt[2] or "").strip():
            src = re.search(r"""\bsrc\s*=\s*["']([^"']*)""", m[0])
            url = src[1] if src else ""
            if "/assets/" in url and url.startswith(settings.newsletter.base_url):
                continue  # an asset image: content_findings names it as an error
            add("warning", where.find(url) if url else tpl, f"image without alt text: {url}")
    for m in _LINK.finditer(rendered.html):
        href_m = _HREF.search(m[1])
        href = htmlmod.unescape((href_m[1] or href_m[2] or "") if href_m else "")
        label = htmlmod.unescape(_TAG.sub("", m[2])).strip()
        has_alt = any((a[1] or a[2] or "").strip() for a in _ALT.finditer(m[2]))
        if href.lower().startswith("http:"):
            add("warning", where.find(href), f"insecure http: link {href}")
        if not label and not has_alt:
            add("warning", where.find(href) if href else tpl, f"link without text: {href}")

    if len(rendered.subject) > SUBJECT_MAX:
        add(
            "warning",
            where.field("subject"),
            f"subject is {len(rendered.subject)} characters; inboxes cut it after about "
            f"{SUBJECT_MAX}",
        )
    # Errors first, then each file top to bottom, as the editor will fix them.
    out.sort(key=lambda f: (f.level != "error", f.problem.path, f.problem.line))
    return out


def local_asset(src: str) -> str | None:
    """The path under ``assets/`` an image source names (``assets/x.png``,
    ``/assets/x.png``), or None for anything else (an external or data URL)."""
    src = src.strip()
    for prefix in (f"{ASSETS_DIR}/", f"/{ASSETS_DIR}/"):
        if src.startswith(prefix):
            # The file's name as on disk: ``my%20chart.png`` is ``my chart.png``.
            return unquote(src[len(prefix) :].split("#", 1)[0].split("?", 1)[0])
    return None


def content_findings(shown: str, lines: list[str], root: Path) -> list[Finding]:
    """What is wrong in one content file's own lines: empty links, mail placeholders
    written by hand, and images under ``assets/`` (there, described, not too big)."""
    out: list[Finding] = []
    assets = (root / ASSETS_DIR).resolve()

    def add(level: str, n: int, message: str) -> None:
        out.append(Finding(level, Problem(shown, n, message)))

    fence = ""
    for n, line in enumerate(lines, 1):
        # Inside a fenced code block Markdown is shown as written: ``[x]()`` there is an
        # example, not a link.
        opener = _FENCE.match(line)
        if opener and (not fence or opener[1].startswith(fence)):
            fence = "" if fence else opener[1]
            continue
        if fence:
            continue
        for m in _EMPTY_LINK.finditer(_CODE_SPAN.sub("", line)):
            add("error", n, f"empty link {m[0]!r}: give it a URL or drop the brackets")
        for m in CONTENT_PLACEHOLDER.finditer(line):
            add(
                "error",
                n,
                f"placeholder {m[0]} written in the content: the mail fills it but the "
                "archive page shows it as written",
            )
        for m in _MD_IMAGE.finditer(line):
            src = m[2].strip("<>")
            rel = local_asset(src)
            if rel is None:
                continue  # external images: the alt warning on the rendered HTML covers them
            if not m[1].strip():
                add("error", n, f"image without alt text: {src}")
            target = (assets / rel).resolve()
            if not target.is_relative_to(assets) or not rel:
                add("error", n, f"image {src} is outside {ASSETS_DIR}/")
            elif not target.is_file():
                add("error", n, f"image {src} not found: no file {ASSETS_DIR}/{rel}")
            else:
                size = target.stat().st_size
                if size > ASSET_MAX_BYTES:
                    add("error", n, f"image {src} is {size / 1024:.0f} KB; the limit is 1 MB")
                elif size > ASSET_WARN_BYTES:
                    add("warning", n, f"image {src} is {size / 1024:.0f} KB; keep it under 200 KB")
    return out


def lint_issue(
    issue: Issue, library: Library, settings: Settings, rendered: Rendered | None = None
) -> list[Finding]:
    """Render (unless given) and lint one issue."""
    rendered = rendered or render_issue(issue, library, settings)
    return lint_rendered(rendered, issue, library, settings)


def raise_errors(findings: Iterable[Finding]) -> list[str]:
    """Raise a ContentError carrying every error; return the warnings as lines."""
    findings = list(findings)
    errors = [f.problem for f in findings if f.level == "error"]
    if errors:
        raise ContentError(errors)
    warnings = sorted(
        (f for f in findings if f.level != "error"), key=lambda f: (f.problem.path, f.problem.line)
    )
    return [str(f) for f in warnings]


def lint_library(library: Library, settings: Settings) -> list[str]:
    """Lint every issue not yet sent; raise ContentError for errors, return warning lines."""
    env = environment(settings)
    findings: list[Finding] = []
    for issue in library.issues:
        if issue.status == "sent":
            continue  # history: what went out went out
        rendered = render_issue(issue, library, settings, env)
        findings += lint_rendered(rendered, issue, library, settings)
    return raise_errors(findings)


def check_issue(settings: Settings, ref: str) -> tuple[Issue, Library, list[str]]:
    """What ``brief check`` says about one issue (its file, the entries it carries, the
    rendered mail): raise ContentError with its errors; else the issue, the library and
    the warnings. Problems of files the issue does not touch are not its business."""
    loaded = read_content(settings)
    library = loaded.library
    try:
        issue = library.issue(ref)
    except NotFound:
        issue = None
    if issue is None:
        # Left out of the library: its own file, or an entry it carries, has a problem.
        path = _issue_file(settings.root, ref)
        scratch: list[Problem] = []
        parsed = parse_issue(path, settings.root, scratch)
        touched = {shown_path(path, settings.root)}
        if parsed is not None:
            touched |= {f"glossary/{s}.md" for s in parsed[0].glossary}
            touched |= {f"museum/{s}.md" for s in parsed[0].museum}
        mine = [p for p in loaded.problems if p.path in touched]
        raise ContentError(mine or scratch or [Problem(str(path), 1, "cannot be read")])
    return issue, library, raise_errors(lint_issue(issue, library, settings))


def _issue_file(root: Path, ref: str) -> Path:
    """The file an issue reference names: a number (``7``, ``007``) or a path."""
    if ref.isdigit():
        found = sorted((root / "issues").glob(f"{int(ref):03d}-*.md"))
        if not found:
            raise NotFound(f"no issue {ref} in {root / 'issues'}")
        return found[0]
    path = Path(ref)
    if not path.is_file():
        raise NotFound(f"no issue file {ref}")
    return path
