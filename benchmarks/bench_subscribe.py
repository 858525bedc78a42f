"""Does /subscribe's answer time tell who is on the list? (issue 10, item 8)

Serves the public app with uvicorn on loopback, mailing through a real SMTP server
(aiosmtpd) that takes ``--delay`` ms per message like a remote provider, and posts the
form for four kinds of address, interleaved: new, pending, confirmed and suppressed.
Prints the median and 90th percentile answer time per kind, on each backend.

    .venv/bin/python benchmarks/bench_subscribe.py [--rounds 40] [--delay 50]
    BRIEF_CODE=/path/to/old/checkout .venv/bin/python benchmarks/bench_subscribe.py
"""

from __future__ import annotations

import argparse
import asyncio
import os
import re
import shutil
import statistics
import sys
import tempfile
import time
import uuid
from pathlib import Path

REPO = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(REPO))  # BRIEF_CODE=path measures another checkout's code
if os.environ.get("BRIEF_CODE"):
    sys.path.insert(0, os.environ["BRIEF_CODE"])
PG_ADMIN = "postgresql+psycopg://postgres@127.0.0.1:5432/test"
KINDS = ("new", "pending", "confirmed", "suppressed")


class SlowHandler:
    """Accepts every message after ``delay`` seconds, as a provider's round trip would."""

    def __init__(self, delay: float):
        self.delay = delay

    async def handle_DATA(self, server, session, envelope):
        await asyncio.sleep(self.delay)
        return "250 OK"


def project(root: Path, smtp_port: int, base: str, url: str) -> Path:
    for name in ("glossary", "museum", "issues", "templates"):
        shutil.copytree(REPO / name, root / name)
    text = (REPO / "brief.toml").read_text(encoding="utf-8")
    text = re.sub(r'(?m)^name = "outbox"', 'name = "smtp"', text)
    text = re.sub(r"(?m)^port = \d+", f"port = {smtp_port}", text)
    text = re.sub(r'(?m)^tls = "starttls"', 'tls = "none"', text)
    text = re.sub(r'(?m)^base_url = ".*"$', f'base_url = "{base}"', text)
    text = re.sub(r'(?m)^url = ".*"$', f'url = "{url}"', text)
    text = text.replace(
        "[web]\n",
        "[web]\nsubscribe_per_ip_per_hour = 100000\nsubscribe_per_address_per_hour = 100000\n",
    )
    (root / "brief.toml").write_text(text, encoding="utf-8")
    return root / "brief.toml"


def run(backend: str, rounds: int, delay: float) -> dict[str, list[float]]:
    import httpx
    import sqlalchemy as sa
    from aiosmtpd.controller import Controller

    from pipeline.config import load_settings

    try:
        from pipeline.send.notices import queued
    except ImportError:  # before the queue (to measure the old code): mail went in-request

        def queued(engine):
            return []

    from pipeline.store import add_subscriber, open_store, suppress
    from pipeline.web.public import create_app
    from tests.servers import free_port, serve_in_thread

    schema = None
    with tempfile.TemporaryDirectory() as tmp:
        if backend == "sqlite":
            url = f"sqlite:///{tmp}/brief.db"
        else:
            schema = f"bench_{uuid.uuid4().hex[:10]}"
            admin = sa.create_engine(PG_ADMIN)
            with admin.begin() as conn:
                conn.exec_driver_sql(f'CREATE SCHEMA "{schema}"')
            url = f"{PG_ADMIN}?options=-csearch_path%3D{schema}"
        smtp_port, port = free_port(), free_port()
        base = f"http://127.0.0.1:{port}"
        settings = load_settings(project(Path(tmp), smtp_port, base, url), env={})
        engine = open_store(settings.database.url)
        people = {kind: [f"{kind}{i}@example.com" for i in range(rounds)] for kind in KINDS}
        for i in range(rounds):
            add_subscriber(engine, people["pending"][i], source="bench")
            add_subscriber(engine, people["confirmed"][i], confirmed=True, source="bench")
            suppress(engine, people["suppressed"][i], "complaint", "bench")
        smtp = Controller(SlowHandler(delay), hostname="127.0.0.1", port=smtp_port)
        smtp.start()
        times: dict[str, list[float]] = {kind: [] for kind in KINDS}
        try:
            app = create_app(settings, engine=engine)
            with serve_in_thread(app, port, access_log=False), httpx.Client() as client:
                for i in range(rounds):
                    for kind in KINDS:
                        start = time.perf_counter()
                        answer = client.post(
                            f"{base}/subscribe",
                            data={"email": people[kind][i], "list": "main", "website": ""},
                        )
                        times[kind].append((time.perf_counter() - start) * 1000)
                        assert answer.status_code == 200, answer.status_code
                # Let the background sender finish before the folder goes away.
                deadline = time.monotonic() + 60
                while queued(engine) and time.monotonic() < deadline:
                    time.sleep(0.1)
        finally:
            smtp.stop()
            engine.dispose()
            if schema is not None:
                with admin.begin() as conn:
                    conn.exec_driver_sql(f'DROP SCHEMA "{schema}" CASCADE')
                admin.dispose()
    return times


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--rounds", type=int, default=40)
    parser.add_argument("--delay", type=float, default=50.0, help="SMTP delay per message, ms")
    parser.add_argument("--backend", choices=["sqlite", "postgresql", "both"], default="both")
    parser.add_argument(
        "--smoke", action="store_true", help="two rounds, no delay: CI checks it still runs"
    )
    args = parser.parse_args()
    if args.smoke:
        args.rounds, args.delay = 2, 0.0
    backends = ["sqlite", "postgresql"] if args.backend == "both" else [args.backend]
    print(f"| backend | address | median ms | p90 ms |  (SMTP delay {args.delay:.0f} ms)")
    print("| --- | --- | --- | --- |")
    for backend in backends:
        times = run(backend, args.rounds, args.delay / 1000)
        for kind in KINDS:
            values = sorted(times[kind])
            p90 = values[max(0, int(len(values) * 0.9) - 1)]
            print(f"| {backend} | {kind} | {statistics.median(values):.1f} | {p90:.1f} |")


if __name__ == "__main__":
    main()
