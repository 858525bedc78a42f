"""The web archive: sent issues, the glossary A–Z, the Failure Museum and the Atom feed.

One model, two shells: ``brief serve`` answers a request by rendering one page from
``pages()``, and ``brief site build`` writes every page of the same mapping to disk.
Issue pages are rendered from the content with ``templates/web/issue.html.j2``, not
from the email HTML: the email carries inline styles a strict CSP would refuse, and a
web page wants real headings and links rather than table layout.
"""

from __future__ import annotations

import mimetypes
import os
import shutil
import tempfile
from collections.abc import Callable, Mapping
from dataclasses import dataclass
from datetime import datetime
from pathlib import Path

from pipeline.config import Settings
from pipeline.content import calendar
from pipeline.content.fingerprint import Edit
from pipeline.content.library import GlossaryEntry, Issue, Library, MuseumStory
from pipeline.render.markdown import ASSETS_DIR
from pipeline.render.templating import environment, render_template

STATIC_FILES = ("style.css",)


@dataclass(frozen=True)
class Archive:
    """What the public may read: sent issues and the entries and stories they carried."""

    issues: tuple[Issue, ...]
    glossary: tuple[GlossaryEntry, ...]
    museum: tuple[MuseumStory, ...]
    carried_by: Mapping[str, Issue]

    def by_letter(self) -> list[tuple[str, list[GlossaryEntry]]]:
        """Published glossary entries grouped A–Z by the first letter of the term."""
        groups: dict[str, list[GlossaryEntry]] = {}
        for entry in self.glossary:
            first = entry.term[:1].upper()
            groups.setdefault(first if first.isalpha() else "#", []).append(entry)
        return sorted(groups.items())

    def issue_for(self, kind: str, slug: str) -> Issue | None:
        """The sent issue that published ``kind:slug``."""
        return self.carried_by.get(f"{kind}:{slug}")


@dataclass(frozen=True)
class Page:
    """One addressable page: its URL path, content type and a renderer."""

    path: str
    content_type: str
    render: Callable[[], bytes]

    @property
    def file(self) -> str:
        """Where the page lives under a static build folder."""
        if self.path.endswith("/"):
            return self.path.lstrip("/") + "index.html"
        return self.path.lstrip("/")


def archive(library: Library) -> Archive:
    """Sent issues, newest first, and everything they published (an entry is public once sent)."""
    sent = tuple(
        sorted(
            (i for i in library.issues if i.status == "sent"), key=lambda i: i.number, reverse=True
        )
    )
    carried: dict[str, Issue] = {}
    for issue in sent:
        for slug in issue.glossary:
            carried[f"glossary:{slug}"] = issue
        for slug in issue.museum:
            carried[f"museum:{slug}"] = issue
    glossary = tuple(
        sorted(
            (e for e in library.glossary.values() if f"glossary:{e.slug}" in carried),
            key=lambda e: e.term.casefold(),
        )
    )
    museum = tuple(
        sorted(
            (s for s in library.museum.values() if f"museum:{s.slug}" in carried),
            key=lambda s: s.date,
            reverse=True,
        )
    )
    return Archive(sent, glossary, museum, carried)


def issue_path(issue: Issue) -> str:
    """The archive path of an issue: ``/issues/NNN/``."""
    return f"/issues/{issue.number:03d}/"


def sent_at(issue: Issue, settings: Settings) -> datetime:
    """When an issue went out: its date at the send time, in the newsletter's zone."""
    return calendar.slot_at(settings.schedule, issue.date, issue.send_time)


def pages(
    library: Library, settings: Settings, edits: Mapping[int, Edit] | None = None
) -> dict[str, Page]:
    """Every page of the archive by URL path, each rendered only when asked for.

    ``edits`` (``send.edits``) marks sent issues edited since: their page says when and
    what changed.
    """
    edits = edits or {}
    env = environment(settings)
    arc = archive(library)
    common = {"archive": arc, "issue_path": issue_path}

    def html(name: str, **values) -> Callable[[], bytes]:
        return lambda: render_template(env, name, **common, **values).encode("utf-8")

    out: dict[str, Page] = {}

    def add(path: str, render: Callable[[], bytes], ctype: str = "text/html; charset=utf-8"):
        out[path] = Page(path, ctype, render)

    add("/", html("web/index.html.j2", title=settings.newsletter.name))
    add("/issues/", html("web/issues.html.j2", title="All issues"))
    for issue in arc.issues:
        add(
            issue_path(issue),
            html(
                "web/issue.html.j2",
                title=issue.subject,
                issue=issue,
                glossary=[library.glossary[s] for s in issue.glossary],
                museum=[library.museum[s] for s in issue.museum],
                sent=sent_at(issue, settings),
                edit=edits.get(issue.number),
            ),
        )
    add("/glossary/", html("web/glossary_index.html.j2", title="The AI Glossary"))
    for entry in arc.glossary:
        add(
            f"/glossary/{entry.slug}/",
            html(
                "web/glossary_entry.html.j2",
                title=entry.term,
                entry=entry,
                issue=arc.issue_for("glossary", entry.slug),
            ),
        )
    add("/museum/", html("web/museum_index.html.j2", title="The Failure Museum"))
    for story in arc.museum:
        add(
            f"/museum/{story.slug}/",
            html(
                "web/museum_story.html.j2",
                title=story.title,
                story=story,
                issue=arc.issue_for("museum", story.slug),
            ),
        )
    # The archive copy of an issue links here instead of a personal unsubscribe link.
    add("/unsubscribe/", html("web/unsubscribe_help.html.j2", title="Unsubscribe"))
    # A sample or [TEST] copy has no personal preferences link: it leads here.
    add(
        "/preferences/",
        html(
            "web/message.html.j2",
            title="Your preferences",
            paragraphs=(
                "Each email ends with a personal link to your preferences, where you choose "
                "which lists you get; it needs no login.",
                f"Can't find an email? Write to {settings.newsletter.reply_to} and a person "
                "will change them for you.",
            ),
        ),
    )
    add("/feed.xml", lambda: feed(arc, settings), "application/atom+xml; charset=utf-8")
    for name in STATIC_FILES:
        path = settings.root / "templates" / "web" / "static" / name
        add(f"/static/{name}", lambda p=path: p.read_bytes(), "text/css; charset=utf-8")
    out.update(asset_pages(settings))
    return out


def asset_pages(settings: Settings) -> dict[str, Page]:
    """Every file under ``assets/`` as a page at ``/assets/<path>``.

    Only files found by walking the folder are served, so a request path is looked up,
    never joined onto the disk: ``..``, encoded or not, names no page. Hidden files and
    links pointing out of the folder are not published.
    """
    folder = settings.root / ASSETS_DIR
    if not folder.is_dir():
        return {}
    top = folder.resolve()
    found: dict[str, Page] = {}
    for path in sorted(folder.rglob("*")):
        rel = path.relative_to(folder).as_posix()
        if any(part.startswith(".") for part in rel.split("/")) or not path.is_file():
            continue
        real = path.resolve()
        if not real.is_relative_to(top):
            continue
        ctype = mimetypes.guess_type(path.name)[0] or "application/octet-stream"
        url = f"/{ASSETS_DIR}/{rel}"
        found[url] = Page(url, ctype, lambda p=real: p.read_bytes())
    return found


def feed(arc: Archive, settings: Settings) -> bytes:
    """The Atom feed of sent issues (feedgen), newest first."""
    from feedgen.feed import FeedGenerator

    base = settings.newsletter.base_url
    fg = FeedGenerator()
    fg.id(f"{base}/feed.xml")
    fg.title(settings.newsletter.name)
    fg.author({"name": settings.newsletter.from_name})
    fg.link(href=f"{base}/", rel="alternate")
    fg.link(href=f"{base}/feed.xml", rel="self")
    fg.language(settings.newsletter.language)
    fg.subtitle(f"Every issue of {settings.newsletter.name}")
    if arc.issues:
        fg.updated(sent_at(arc.issues[0], settings))
    else:
        fg.updated(
            datetime.combine(
                settings.schedule.anchor,
                settings.schedule.send_time,
                tzinfo=settings.schedule.timezone,
            )
        )
    # feedgen prepends entries, so add oldest first to keep newest at the top.
    for issue in reversed(arc.issues):
        url = f"{base}{issue_path(issue)}"
        fe = fg.add_entry()
        fe.id(url)
        fe.title(issue.subject)
        fe.link(href=url, rel="alternate")
        when = sent_at(issue, settings)
        fe.published(when)
        fe.updated(when)
        fe.summary(issue.preheader or issue.subject)
    return fg.atom_str(pretty=True)


def build_site(
    library: Library, settings: Settings, out: Path, edits: Mapping[int, Edit] | None = None
) -> list[Path]:
    """Write the whole archive as static files under ``out``; returns the files written.

    Pages are written to a sibling temporary folder first and swapped in, so a failed
    build never leaves a half-written site behind.
    """
    out = out.resolve()
    out.parent.mkdir(parents=True, exist_ok=True)
    rendered = {p.file: p.render() for p in pages(library, settings, edits).values()}
    staging = Path(tempfile.mkdtemp(prefix=f".{out.name}-", dir=out.parent))
    try:
        for rel, data in rendered.items():
            target = staging / rel
            target.parent.mkdir(parents=True, exist_ok=True)
            target.write_bytes(data)
        if out.exists():
            old = out.with_name(f".{out.name}-old-{os.getpid()}")
            out.rename(old)
            staging.rename(out)
            shutil.rmtree(old, ignore_errors=True)
        else:
            staging.rename(out)
    except BaseException:
        shutil.rmtree(staging, ignore_errors=True)
        raise
    return sorted(out / rel for rel in rendered)


def rebuild_after_send(
    library_loader,
    settings: Settings,
    edits_for: Callable[[Library], Mapping[int, Edit]] | None = None,
) -> list[Path] | None:
    """Rebuild the archive after a finished send when ``[site] rebuild_after_send``;
    None when it is off. ``library_loader`` gives the content as it is now (the issue
    file says sent); ``edits_for`` (``send.edits``) marks earlier issues edited since
    their send, as `brief site build` does."""
    if not settings.site.rebuild_after_send:
        return None
    library = library_loader()
    edits = edits_for(library) if edits_for else None
    return build_site(library, settings, settings.site.target(settings.root), edits)
