"""The editor's Markdown, twice: as email HTML and as wrapped plain text with footnotes.

Raw HTML in content is not rendered (``html`` off): email clients differ enough
without the editor's own tags. Inline styles for the HTML come from the
templates (a mapping of tag -> CSS), so the operator restyles by editing templates.
"""

from __future__ import annotations

import html as htmlmod
import re
import textwrap
from collections.abc import Mapping
from dataclasses import dataclass, field
from functools import cache

from markdown_it import MarkdownIt
from markdown_it.tree import SyntaxTreeNode

WIDTH = 72
# The repository folder of images and other files the content links to; published at
# ``/assets/`` on the site, and at ``base_url/assets/`` in the mail (see render.issue).
ASSETS_DIR = "assets"
_RELATIVE_ASSET = re.compile(r'((?:src|href)=")(?:\./)?assets/')


def rooted(url: str) -> str:
    """``assets/x.png`` (relative, as an editor writes it) as ``/assets/x.png``: a page
    at ``/issues/001/`` would resolve the relative form under itself."""
    bare = url.removeprefix("./")
    return f"/{bare}" if bare.startswith(f"{ASSETS_DIR}/") else url


@cache
def parser() -> MarkdownIt:
    """The one Markdown dialect of Brief: CommonMark, raw HTML off."""
    return MarkdownIt("commonmark", {"html": False, "typographer": False})


_OPEN_TAG = re.compile(r"<(p|a|ol|ul|li|h[1-6]|blockquote|code|pre|strong|em|img|hr)(?=[\s>/])")


def to_html(markdown: str, styles: Mapping[str, str] | None = None) -> str:
    """Markdown as HTML, each tag named in ``styles`` given that inline style."""
    out = _RELATIVE_ASSET.sub(r"\1/assets/", parser().render(markdown or ""))
    if not styles:
        return out
    attrs = {tag: f' style="{htmlmod.escape(css, quote=True)}"' for tag, css in styles.items()}
    return _OPEN_TAG.sub(lambda m: m.group(0) + attrs.get(m.group(1), ""), out)


def to_inline_html(markdown: str) -> str:
    """One line of Markdown as inline HTML, without a paragraph around it."""
    return parser().renderInline(markdown or "")


def link_label(url: str) -> str:
    """A readable link text for a bare URL: no scheme, no ``www.``, no trailing slash."""
    label = re.sub(r"^[a-z][a-z0-9+.-]*://", "", url, flags=re.I)
    return re.sub(r"^www\.", "", label).rstrip("/")


@dataclass
class Footnotes:
    """Link footnotes numbered across one plain-text document."""

    urls: list[str] = field(default_factory=list)
    pending: list[int] = field(default_factory=list)

    def add(self, url: str) -> int:
        """Number a link; the same URL keeps its first number."""
        if url in self.urls:
            number = self.urls.index(url) + 1
        else:
            self.urls.append(url)
            number = len(self.urls)
        if number not in self.pending:
            self.pending.append(number)
        return number

    def flush(self) -> str:
        """The footnote lines for the links seen since the last flush."""
        lines = [f"[{n}] {self.urls[n - 1]}" for n in self.pending]
        self.pending = []
        return "\n".join(lines)


def wrap(text: str, indent: str = "", first: str | None = None, width: int = WIDTH) -> str:
    """Wrap one paragraph at ``width`` without breaking words, URLs or placeholders."""
    return textwrap.fill(
        " ".join(text.split()),
        width=width,
        initial_indent=indent if first is None else first,
        subsequent_indent=indent,
        break_long_words=False,
        break_on_hyphens=False,
    )


def to_text(
    markdown: str, notes: Footnotes | None = None, *, width: int = WIDTH, with_notes: bool = True
) -> str:
    """Markdown as plain text: wrapped, headings underlined, lists numbered, links as [n].

    With ``with_notes`` the section's footnote URLs follow it.
    """
    notes = notes if notes is not None else Footnotes()
    root = SyntaxTreeNode(parser().parse(markdown or ""))
    blocks = _blocks(root.children, notes, "", width)
    body = "\n\n".join(b for b in blocks if b)
    if with_notes:
        listed = notes.flush()
        if listed:
            body = f"{body}\n\n{listed}" if body else listed
    return body


def heading(title: str, underline: str = "-") -> str:
    """A plain-text heading: the title and a rule under it of the same length."""
    title = " ".join(title.split())
    return f"{title}\n{underline * len(title)}"


def _blocks(nodes, notes: Footnotes, indent: str, width: int) -> list[str]:
    out: list[str] = []
    for node in nodes:
        kind = node.type
        if kind == "paragraph":
            out.append(wrap(_inline(node, notes), indent, width=width))
        elif kind == "heading":
            out.append(indent + heading(_inline(node, notes), "=" if node.tag == "h1" else "-"))
        elif kind in ("bullet_list", "ordered_list"):
            start = int(node.attrs.get("start", 1)) if kind == "ordered_list" else 1
            items = []
            for i, item in enumerate(node.children):
                marker = f"{start + i}. " if kind == "ordered_list" else "- "
                items.append(_item(item, notes, indent, marker, width))
            # Tight lists keep items together; loose ones get a blank line between.
            sep = "\n" if all(_tight(item) for item in node.children) else "\n\n"
            out.append(sep.join(items))
        elif kind == "blockquote":
            inner = "\n\n".join(_blocks(node.children, notes, "", width - 2))
            out.append(
                "\n".join(indent + ("> " + line if line else ">") for line in inner.splitlines())
            )
        elif kind in ("fence", "code_block"):
            out.append(
                "\n".join(indent + "    " + line for line in node.content.rstrip("\n").splitlines())
            )
        elif kind == "hr":
            out.append(indent + "-" * 20)
        elif kind == "html_block":
            out.append(wrap(node.content, indent, width=width))
    return out


def _tight(item) -> bool:
    return all(c.hidden for c in item.children if c.type == "paragraph")


def _item(item, notes: Footnotes, indent: str, marker: str, width: int) -> str:
    hang = indent + " " * len(marker)
    parts = []
    for n, child in enumerate(item.children):
        if child.type == "paragraph":
            first = indent + marker if n == 0 else hang
            parts.append(wrap(_inline(child, notes), hang, first=first, width=width))
        else:
            block = "\n\n".join(_blocks([child], notes, hang, width))
            if n == 0:
                block = indent + marker + block.lstrip()
            parts.append(block)
    return "\n\n".join(parts) if parts else indent + marker.rstrip()


def _inline(node, notes: Footnotes) -> str:
    """The text of an inline run, links turned into ``text [n]``."""
    out: list[str] = []
    for child in node.children:
        if child.type == "inline":
            out.append(_inline(child, notes))
        elif child.type == "text":
            out.append(child.content)
        elif child.type in ("softbreak", "hardbreak"):
            out.append(" ")
        elif child.type == "code_inline":
            out.append(child.content)
        elif child.type == "link":
            label = _inline(child, notes).strip()
            url = rooted(str(child.attrs.get("href", "")))
            if not label or label == url or url.startswith("mailto:") and label in url:
                out.append(url if not label else label)
            else:
                out.append(f"{label} [{notes.add(url)}]")
        elif child.type == "image":
            alt = _inline(child, notes).strip() or "image"
            out.append(f"{alt} [{notes.add(rooted(str(child.attrs.get('src', ''))))}]")
        elif child.children:
            out.append(_inline(child, notes))
        else:
            out.append(child.content)
    return "".join(out)
