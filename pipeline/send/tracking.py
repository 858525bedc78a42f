"""Tracked links: an issue's links turned, once per issue, into ``/c/`` links.

Each link of the rendered issue (not the unsubscribe or preferences links, not
``mailto:``) becomes ``{base_url}/c/{issue}.{link_id}.{click_token}``; the opens pixel
is ``{base_url}/o/{issue}.{click_token}.gif``. The static part carries the issue and the
link id; ``click_token`` is the one per-recipient value (``store.clicks.click_token``:
subscriber id and an HMAC under the person's own key), filled in by the same
substitution as the unsubscribe link, so nothing is rendered per recipient.
"""

from __future__ import annotations

import html as htmlmod
import re
from dataclasses import dataclass, replace
from typing import Any

from pipeline.config import Settings
from pipeline.mail import PLACEHOLDERS
from pipeline.store.clicks import Link

_ANCHOR = re.compile(r"(<a\b[^>]*?\bhref=)\"([^\"]*)\"([^>]*>)(.*?)</a>", re.I | re.S)
_TAG = re.compile(r"<[^>]+>")
_TEXT_URL = re.compile(r"https?://[^\s<>\"\]]+")
_BODY_END = re.compile(r"</body>", re.I)


@dataclass(frozen=True)
class Tracked:
    """The issue with tracked links, and the links it carries (for the ``links`` table)."""

    rendered: Any
    links: tuple[Link, ...]


def _trackable(url: str, base_url: str) -> bool:
    # The reader's own consent links stay direct: they are the way out, never a count.
    if not url.startswith(("https://", "http://")):
        return False
    return not url.startswith((f"{base_url}/unsubscribe", f"{base_url}/preferences"))


def track(rendered: Any, settings: Settings) -> Tracked:
    """``rendered`` with its links tracked (and the pixel when opens are on), per settings.

    With ``[tracking] clicks = false`` the links are untouched and none are returned.
    """
    base = settings.newsletter.base_url
    issue = int(rendered.issue_number)
    mark = PLACEHOLDERS["click_token"]
    ids: dict[str, int] = {}
    texts: dict[str, str] = {}
    html, text = rendered.html, rendered.text
    if settings.tracking.clicks:

        def tracked(url: str) -> str:
            return f"{base}/c/{issue}.{ids[url]}.{mark}"

        def anchor(m: re.Match[str]) -> str:
            url = htmlmod.unescape(m.group(2))
            if not _trackable(url, base):
                return m.group(0)
            if url not in ids:
                ids[url] = len(ids) + 1
            label = " ".join(htmlmod.unescape(_TAG.sub(" ", m.group(4))).split())
            texts.setdefault(url, label[:500])
            return f'{m.group(1)}"{tracked(url)}"{m.group(3)}{m.group(4)}</a>'

        html = _ANCHOR.sub(anchor, html)
        # The text part's footnotes carry the same URLs: the same link ids.
        text = _TEXT_URL.sub(
            lambda m: tracked(m.group(0)) if m.group(0) in ids else m.group(0), text
        )
    if settings.tracking.opens:
        pixel = (
            f'<img src="{base}/o/{issue}.{mark}.gif" width="1" height="1" alt="" '
            'style="display:block;width:1px;height:1px;border:0" />'
        )
        found = list(_BODY_END.finditer(html))
        html = (
            html[: found[-1].start()] + pixel + html[found[-1].start() :] if found else html + pixel
        )
    links = tuple(Link(link_id, url, texts.get(url, "")) for url, link_id in ids.items())
    if html is rendered.html and text is rendered.text:
        return Tracked(rendered, links)
    return Tracked(replace(rendered, html=html, text=text), links)
