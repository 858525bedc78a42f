"""Click endpoint benchmark (issue 14): ``brief serve`` answering tracked links at a
steady request rate, and what tracked links cost a send; baselines in the same run.

    .venv/bin/python benchmarks/bench_clicks.py [--rate 500] [--seconds 10] [--people 200]
    .venv/bin/python benchmarks/bench_clicks.py --smoke     # tiny: CI checks it still runs

Per backend (SQLite, and PostgreSQL at 127.0.0.1:5432 in a fresh schema): issue 1 is sent
through ``outbox`` to ``--people`` subscribers; ``brief serve`` runs as its own process
(uvicorn, as in production) on loopback; an asyncio httpx client fires requests on a fixed
schedule (open loop, ``--rate`` per second for ``--seconds``) at

1. ``baseline``: the same server's 404 page for a malformed ``/c/`` path (routing,
   middleware and a page, no store), then
2. ``click``: the tracked links of the sent ``.eml`` files, every recipient's every link,

and prints median and p99 answer times, the rate reached, and the ratio click / baseline;
then waits for the batched recorder and checks every click was written.

``send``: each recipient's complete message built (``for_recipient(...).raw``, the send's
per-message work) with ``[tracking] clicks`` on and off, best of three: the ratio is what
tracked links cost a send (substitution only). It prints figures; it asserts nothing.
"""

from __future__ import annotations

import argparse
import asyncio
import email
import os
import re
import shutil
import socket
import statistics
import subprocess
import sys
import tempfile
import time
import uuid
from contextlib import contextmanager
from dataclasses import replace
from email import policy
from pathlib import Path

REPO = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(REPO))
PG_ADMIN = "postgresql+psycopg://postgres@127.0.0.1:5432/test"
TRACKED = re.compile(r"https?://[^\s\"<>]+/c/[0-9]+\.[0-9]+\.[A-Za-z0-9._-]+")
AGENT = "Mozilla/5.0 (X11; Linux x86_64; rv:128.0) Gecko/20100101 Firefox/128.0"


def _free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


@contextmanager
def _database(backend: str, tmp: Path):
    if backend == "sqlite":
        yield f"sqlite:///{tmp}/brief.db"
        return
    import sqlalchemy as sa

    schema = f"bench_{uuid.uuid4().hex[:10]}"
    admin = sa.create_engine(PG_ADMIN)
    with admin.begin() as conn:
        conn.exec_driver_sql(f'CREATE SCHEMA "{schema}"')
    try:
        yield f"{PG_ADMIN}?options=-csearch_path%3D{schema}"
    finally:
        with admin.begin() as conn:
            conn.exec_driver_sql(f'DROP SCHEMA "{schema}" CASCADE')
        admin.dispose()


def _project(root: Path, base: str, url: str) -> Path:
    for name in ("glossary", "museum", "issues", "templates"):
        shutil.copytree(REPO / name, root / name)
    text = (REPO / "brief.toml").read_text(encoding="utf-8")
    text = re.sub(r'(?m)^base_url = ".*"$', f'base_url = "{base}"', text)
    text = re.sub(r'(?m)^url = ".*"$', f'url = "{url}"', text)
    (root / "brief.toml").write_text(text, encoding="utf-8")
    return root / "brief.toml"


def _send(toml: Path, people: int):
    from pipeline.config import load_settings
    from pipeline.content.library import load_library
    from pipeline.send import send_campaign
    from pipeline.store import add_subscriber, open_store

    settings = load_settings(toml, env={})
    engine = open_store(settings.database.url)
    for i in range(people):
        add_subscriber(engine, f"r{i}@example.com", confirmed=True, source="bench")
    library = load_library(settings.root)
    send_campaign(engine, settings, library, library.issue(1), "main")
    links: list[str] = []
    for p in sorted((settings.root / ".brief" / "outbox").rglob("*.eml")):
        msg = email.message_from_bytes(p.read_bytes(), policy=policy.default)
        html = msg.get_body(preferencelist=("html",)).get_content()
        links += dict.fromkeys(TRACKED.findall(html.replace("&amp;", "&")))
    return settings, engine, library, links


def send_cost(settings, engine, library, rounds: int) -> dict:
    """Messages built per second with tracked links and without, best of three."""
    from pipeline.render.issue import render_issue
    from pipeline.send.message import MessageFactory
    from pipeline.store import audience

    rendered = render_issue(library.issue(1), library, settings)
    people = list(audience(engine, "main"))
    rates = {}
    for label, clicks in (("tracked", True), ("untracked", False)):
        s = replace(settings, tracking=replace(settings.tracking, clicks=clicks))
        factory = MessageFactory(rendered, s, commit="bench")
        best = float("inf")
        for _ in range(3):
            start = time.perf_counter()
            for _ in range(rounds):
                for r in people:
                    len(factory.for_recipient(f"k{r.subscriber_id}", r).raw)
            best = min(best, time.perf_counter() - start)
        rates[label] = rounds * len(people) / best
    return {
        "tracked_per_s": round(rates["tracked"]),
        "untracked_per_s": round(rates["untracked"]),
        "ratio": round(rates["tracked"] / rates["untracked"], 3),
    }


async def _paced(urls: list[str], rate: float, seconds: float) -> dict:
    import httpx

    count = max(1, int(rate * seconds))
    times: list[float] = []
    statuses: dict[int, int] = {}
    limits = httpx.Limits(max_connections=200, max_keepalive_connections=200)
    # No timeout: an overloaded server's queueing is part of the answer time measured.
    async with httpx.AsyncClient(
        limits=limits, headers={"user-agent": AGENT}, timeout=httpx.Timeout(None)
    ) as client:

        async def one(url: str, at: float) -> None:
            delay = at - time.perf_counter()
            if delay > 0:
                await asyncio.sleep(delay)
            start = time.perf_counter()
            answer = await client.get(url)
            times.append((time.perf_counter() - start) * 1000)
            statuses[answer.status_code] = statuses.get(answer.status_code, 0) + 1

        t0 = time.perf_counter() + 0.2
        started = time.perf_counter()
        await asyncio.gather(*(one(urls[i % len(urls)], t0 + i / rate) for i in range(count)))
        took = time.perf_counter() - started - 0.2
    times.sort()
    return {
        "requests": count,
        "rate": round(count / took),
        "median_ms": round(statistics.median(times), 2),
        "p99_ms": round(times[min(len(times) - 1, int(len(times) * 0.99))], 2),
        "statuses": statuses,
    }


def _serve(toml: Path, port: int) -> subprocess.Popen:
    env = {k: v for k, v in os.environ.items() if not k.startswith("BRIEF_")}
    proc = subprocess.Popen(
        [sys.executable, "-m", "pipeline", "--config", str(toml), "serve", "--port", str(port)],
        cwd=REPO,
        env=env,
        stdout=subprocess.DEVNULL,
        stderr=subprocess.PIPE,
    )
    deadline = time.monotonic() + 30
    while time.monotonic() < deadline:
        if proc.poll() is not None:
            raise SystemExit(f"brief serve exited: {proc.stderr.read().decode()}")
        with socket.socket() as s:
            if s.connect_ex(("127.0.0.1", port)) == 0:
                return proc
        time.sleep(0.1)
    proc.kill()
    raise SystemExit("brief serve did not start")


def run(backend: str, o: argparse.Namespace) -> None:
    import sqlalchemy as sa

    from pipeline.store.schema import clicks

    with tempfile.TemporaryDirectory() as tmp, _database(backend, Path(tmp)) as url:
        port = _free_port()
        base = f"http://127.0.0.1:{port}"
        toml = _project(Path(tmp), base, url)
        settings, engine, library, links = _send(toml, o.people)
        cost = send_cost(settings, engine, library, o.send_rounds)
        print(f"  send {backend} {o.people}: {cost}")
        proc = _serve(toml, port)
        try:
            warm = max(20, int(o.rate))
            asyncio.run(_paced([f"{base}/c/0"] + links, o.rate, warm / o.rate))
            base_row = asyncio.run(_paced([f"{base}/c/0"], o.rate, o.seconds))
            with engine.begin() as conn:
                conn.execute(clicks.delete())
            click_row = asyncio.run(_paced(links, o.rate, o.seconds))
            deadline = time.monotonic() + 30
            written = 0
            while time.monotonic() < deadline:
                with engine.connect() as conn:
                    written = conn.execute(
                        sa.select(sa.func.count()).select_from(clicks)
                    ).scalar_one()
                if written >= click_row["requests"]:
                    break
                time.sleep(0.2)
        finally:
            proc.terminate()
            proc.wait(timeout=30)
            engine.dispose()
        click_row["recorded"] = written
        click_row["median_ratio"] = round(click_row["median_ms"] / base_row["median_ms"], 2)
        click_row["p99_ratio"] = round(click_row["p99_ms"] / base_row["p99_ms"], 2)
        print(f"  baseline {backend} {o.rate:g}/s: {base_row}")
        print(f"  click {backend} {o.rate:g}/s: {click_row}")


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--rate", type=float, default=500.0, help="requests per second")
    parser.add_argument("--seconds", type=float, default=10.0)
    parser.add_argument("--people", type=int, default=200)
    parser.add_argument("--send-rounds", type=int, default=20, help="builds of every message")
    parser.add_argument("--backend", choices=["sqlite", "postgresql", "both"], default="both")
    parser.add_argument("--smoke", action="store_true", help="tiny: CI checks it still runs")
    o = parser.parse_args()
    if o.smoke:
        o.rate, o.seconds, o.people, o.send_rounds = 50.0, 1.0, 5, 1
    backends = ["sqlite", "postgresql"] if o.backend == "both" else [o.backend]
    for backend in backends:
        try:
            run(backend, o)
        except Exception as exc:  # noqa: BLE001 - a backend that cannot run is reported
            if backend == "postgresql" and "connect" in str(exc).lower():
                print(f"  {backend}: skipped ({type(exc).__name__}: {exc})")
            else:
                raise


if __name__ == "__main__":
    main()
