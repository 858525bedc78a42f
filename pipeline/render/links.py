"""Link checks for `brief check --links`: every external link of the unsent issues (the
issue file and the entries and stories it carries) and every museum story's sources,
fetched with HEAD (GET when a server refuses HEAD), a few at a time, redirects followed
up to a cap, each located at ``path:line``.

A link that answered well is remembered in ``.brief/linkcheck.json`` with the time, and
not fetched again for a day, so a second run is quick; a broken one is fetched again
every run (the server may be back, or the editor may have fixed the link).
"""

from __future__ import annotations

import json
import os
import re
import threading
from collections.abc import Callable, Iterable
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass
from datetime import UTC, datetime, timedelta
from pathlib import Path

import requests

from pipeline.content.library import Library, shown_path
from pipeline.private import open_private, private_dirs

CACHE_FILE = "linkcheck.json"
FRESH_FOR = timedelta(days=1)
TIMEOUT_SECONDS = 10.0
WORKERS = 4
MAX_REDIRECTS = 5
# Servers that refuse or mishandle HEAD answer these; a GET tells the truth.
HEAD_REFUSED = frozenset({400, 403, 404, 405, 406, 429, 500, 501, 503})
USER_AGENT = "Brief-linkcheck/1 (newsletter preflight)"

# A URL in Markdown or YAML: stops at whitespace and at the brackets and quotes around it.
# Parentheses are kept when balanced (``…/wiki/Foo_(bar)``), so a Markdown link's closing
# bracket ends the URL but a Wikipedia title's does not.
_URL = re.compile(r"""https?://(?:[^\s<>()\[\]"'`]|\([^\s<>()"'`]*\))+""", re.I)
_TRAILING = ".,;:!?*_"


@dataclass(frozen=True)
class Link:
    """One external URL where the content names it."""

    url: str
    path: str
    line: int


@dataclass(frozen=True)
class LinkResult:
    """What fetching a URL gave: ``ok``, the final status (None without an answer) and why."""

    url: str
    ok: bool
    status: int | None
    reason: str
    checked_at: datetime
    cached: bool = False


@dataclass(frozen=True)
class LinkReport:
    """The broken links where they are named, and how many URLs were fetched or reused."""

    broken: tuple[tuple[Link, LinkResult], ...]
    checked: int
    from_cache: int

    def lines(self) -> list[str]:
        """One ``path:line: broken link URL: why`` line per place a broken link appears."""
        return [
            f"{link.path}:{link.line}: broken link {link.url}: {result.reason}"
            for link, result in self.broken
        ]


def urls_in(text: str) -> Iterable[tuple[int, str]]:
    """(line, URL) for every http(s) URL in ``text``, trailing punctuation left off."""
    for n, line in enumerate(text.splitlines(), 1):
        for m in _URL.finditer(line):
            yield n, m[0].rstrip(_TRAILING)


def external_links(library: Library) -> list[Link]:
    """Every external link of the unsent issues and every museum story's sources."""
    root = library.root
    files: list[Path] = []
    for issue in library.issues:
        if issue.status == "sent":
            continue  # history: what went out went out
        files.append(issue.path)
        files += [library.glossary[s].path for s in issue.glossary if s in library.glossary]
        files += [library.museum[s].path for s in issue.museum if s in library.museum]
    files += [story.path for story in library.museum.values()]
    seen: set[Path] = set()
    out: list[Link] = []
    for path in files:
        if path in seen:
            continue
        seen.add(path)
        try:
            text = path.read_text(encoding="utf-8")
        except OSError:
            continue
        shown = shown_path(path, root)
        out += [Link(url, shown, n) for n, url in urls_in(text)]
    return out


def fetch(
    session: requests.Session, url: str, now: datetime, timeout: float = TIMEOUT_SECONDS
) -> LinkResult:
    """HEAD ``url`` (then GET if the server refuses HEAD), following redirects up to the cap."""

    def result(ok: bool, status: int | None, reason: str) -> LinkResult:
        return LinkResult(url, ok, status, reason, now)

    try:
        resp = session.head(url, allow_redirects=True, timeout=timeout)
        if resp.status_code in HEAD_REFUSED:
            resp.close()
            resp = session.get(url, allow_redirects=True, timeout=timeout, stream=True)
        resp.close()  # the body is never read: the status says it all
    except requests.exceptions.TooManyRedirects:
        return result(False, None, f"more than {MAX_REDIRECTS} redirects")
    except requests.exceptions.Timeout:
        return result(False, None, f"no answer within {timeout:g} s")
    except requests.exceptions.RequestException as exc:
        return result(False, None, f"cannot connect ({type(exc).__name__})")
    status = resp.status_code
    hops = len(resp.history)
    via = f" after {hops} redirect{'s' if hops != 1 else ''}" if hops else ""
    if status >= 400:
        return result(False, status, f"HTTP {status} {resp.reason or ''}".rstrip() + via)
    return result(True, status, f"HTTP {status}{via}")


def load_cache(path: Path) -> dict[str, LinkResult]:
    """The remembered results; an unreadable cache is an empty one (it is only a cache)."""
    try:
        data = json.loads(path.read_text(encoding="utf-8"))
        out = {}
        for url, item in data.get("links", {}).items():
            when = datetime.fromisoformat(item["checked_at"])
            if when.tzinfo is None:
                continue
            out[url] = LinkResult(url, bool(item["ok"]), item.get("status"), item["reason"], when)
        return out
    except (OSError, ValueError, KeyError, TypeError, AttributeError):
        return {}


def save_cache(path: Path, results: Iterable[LinkResult]) -> None:
    """Write the cache whole, through a temporary file, so a crash leaves the old one."""
    private_dirs(path.parent)
    data = {
        "links": {
            r.url: {
                "ok": r.ok,
                "status": r.status,
                "reason": r.reason,
                "checked_at": r.checked_at.isoformat(),
            }
            for r in sorted(results, key=lambda r: r.url)
        }
    }
    tmp = path.with_name(f".{path.name}.{os.getpid()}.tmp")
    with open_private(tmp) as fh:
        json.dump(data, fh, indent=1)
    os.replace(tmp, path)


def check_links(
    links: list[Link],
    cache_path: Path,
    now: datetime,
    *,
    timeout: float = TIMEOUT_SECONDS,
    workers: int = WORKERS,
    session_factory: Callable[[], requests.Session] | None = None,
) -> LinkReport:
    """Fetch each distinct URL once (a good answer younger than a day is reused)."""
    cache = load_cache(cache_path)
    urls = sorted({link.url for link in links})
    reused = {
        u: cache[u]
        for u in urls
        if u in cache and cache[u].ok and now - cache[u].checked_at < FRESH_FOR
    }
    todo = [u for u in urls if u not in reused]
    local = threading.local()

    def session() -> requests.Session:
        # One session per worker thread: requests' sessions are not shared across threads.
        if not hasattr(local, "session"):
            s = session_factory() if session_factory else requests.Session()
            s.max_redirects = MAX_REDIRECTS
            s.headers["User-Agent"] = USER_AGENT
            local.session = s
        return local.session

    with ThreadPoolExecutor(max_workers=max(1, workers)) as pool:
        fetched = dict(
            zip(todo, pool.map(lambda u: fetch(session(), u, now, timeout), todo), strict=True)
        )
    results = {**reused, **fetched}
    # Keep what other content still names: a result for a URL not checked this time
    # stays until it is a day old.
    kept = {u: r for u, r in cache.items() if u not in results and now - r.checked_at < FRESH_FOR}
    save_cache(cache_path, [*kept.values(), *results.values()])
    broken = tuple(
        (link, results[link.url])
        for link in sorted(links, key=lambda lk: (lk.path, lk.line, lk.url))
        if not results[link.url].ok
    )
    return LinkReport(broken, len(fetched), len(reused))


def check_library_links(
    library: Library, state_dir: Path, now: datetime | None = None, **options
) -> LinkReport:
    """`brief check --links`: the library's external links, with the cache in ``state_dir``."""
    now = now or datetime.now(UTC)
    return check_links(external_links(library), state_dir / CACHE_FILE, now, **options)
