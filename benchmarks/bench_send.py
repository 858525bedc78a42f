"""Send benchmark: ``brief``'s smtp path against the raw smtplib ceiling, same run, same sink.

    .venv/bin/python benchmarks/bench_send.py            # 10,000 and 100,000 subscribers
    .venv/bin/python benchmarks/bench_send.py 2000       # a quick look

Each size runs in a fresh child process (so peak RSS belongs to that size) against a
counting aiosmtpd sink in its own process on loopback. The child measures, in order:
the per-recipient build rate on one core; the raw ceiling (bare smtplib, one persistent
connection per thread, the same message size and connection count); and the full
campaign (ledger in SQLite, workers, rate limiter) through the ``smtp`` provider.
It prints figures; it asserts nothing.
"""

from __future__ import annotations

import json
import os
import shutil
import smtplib
import socket
import subprocess
import sys
import tempfile
import threading
import time
from pathlib import Path

REPO = Path(__file__).resolve().parent.parent
CONCURRENCY = 4

SINK = r"""
import asyncio, sys
from aiosmtpd.controller import Controller
class Counter:
    n = 0
    async def handle_DATA(self, server, session, envelope):
        Counter.n += len(envelope.rcpt_tos)
        return "250 OK"
c = Controller(Counter(), hostname="127.0.0.1", port=int(sys.argv[1]), data_size_limit=None)
c.start()
print("ready", flush=True)
sys.stdin.read()
c.stop()
print(Counter.n, flush=True)
"""


def _free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def _rss_mb() -> float:
    with open("/proc/self/status") as fh:
        for line in fh:
            if line.startswith("VmRSS:"):
                return int(line.split()[1]) / 1024
    return 0.0


class PeakRss:
    """Samples this process's resident memory every 50 ms while running."""

    def __init__(self):
        self.peak = _rss_mb()
        self._stop = threading.Event()
        self._t = threading.Thread(target=self._run, daemon=True)

    def _run(self):
        while not self._stop.wait(0.05):
            self.peak = max(self.peak, _rss_mb())

    def __enter__(self):
        self._t.start()
        return self

    def __exit__(self, *exc):
        self._stop.set()
        self._t.join()


def _project(tmp: Path, port: int) -> Path:
    root = tmp / "newsletter"
    root.mkdir()
    for name in ("glossary", "museum", "issues", "templates"):
        shutil.copytree(REPO / name, root / name)
    text = (REPO / "brief.toml").read_text()
    text = text.replace('name = "outbox"', 'name = "smtp"').replace("port = 587", f"port = {port}")
    text = text.replace('tls = "starttls"', 'tls = "none"')
    text = text.replace("concurrency = 4", f"concurrency = {CONCURRENCY}\nbatch_size = 200")
    (root / "brief.toml").write_text(text)
    return root


def raw_ceiling(port: int, payload: bytes, count: int, threads: int) -> float:
    """Messages/s through bare smtplib: persistent connections, no ledger, no building."""

    def worker(n: int) -> None:
        conn = smtplib.SMTP("127.0.0.1", port)
        conn.ehlo()
        for i in range(n):
            conn.sendmail("brief@example.com", [f"raw{i}@example.com"], payload)
        conn.quit()

    per = [count // threads + (1 if i < count % threads else 0) for i in range(threads)]
    ts = [threading.Thread(target=worker, args=(n,)) for n in per]
    start = time.perf_counter()
    for t in ts:
        t.start()
    for t in ts:
        t.join()
    return count / (time.perf_counter() - start)


def child(size: int) -> dict:
    from pipeline.config import load_settings
    from pipeline.content import load_library
    from pipeline.message import MessageFactory
    from pipeline.send import delivery_key, render, send_campaign
    from pipeline.store import audience, import_csv, open_store

    port = _free_port()
    sink = subprocess.Popen(
        [sys.executable, "-c", SINK, str(port)],
        stdin=subprocess.PIPE,
        stdout=subprocess.PIPE,
        text=True,
    )
    assert sink.stdout.readline().strip() == "ready"
    with tempfile.TemporaryDirectory() as tmpdir:
        tmp = Path(tmpdir)
        root = _project(tmp, port)
        settings = load_settings(root / "brief.toml", env={})
        engine = open_store(settings.database.url)
        csv = tmp / "people.csv"
        with csv.open("w") as fh:
            fh.write("email,name\n")
            for i in range(size):
                fh.write(f"reader{i}@example.com,Reader {i}\n")
        import_csv(engine, csv, "main", confirmed=True, source="benchmark")
        library = load_library(root)
        issue = library.issue(1)
        rendered = render(issue, library, settings)
        factory = MessageFactory(rendered, settings, list_name="main")

        # Build rate on one core, over real recipients with their tokens.
        people = []
        for r in audience(engine, "main"):
            people.append(r)
            if len(people) >= min(size, 20_000):
                break
        start = time.perf_counter()
        for r in people:
            msg = factory.for_recipient(delivery_key(1, r.subscriber_id), r)
        build_rate = len(people) / (time.perf_counter() - start)
        message_bytes = len(msg.raw)
        del people

        raw = raw_ceiling(port, msg.raw, size, CONCURRENCY)

        before = _rss_mb()
        with PeakRss() as rss:
            start = time.perf_counter()
            report = send_campaign(engine, settings, library, issue, "main", rendered=rendered)
            elapsed = time.perf_counter() - start
        engine.dispose()
    sink.stdin.close()
    received = int(sink.stdout.read().strip() or 0)
    sink.wait()
    return {
        "size": size,
        "message_bytes": message_bytes,
        "build_per_s": round(build_rate),
        "raw_per_s": round(raw, 1),
        "brief_per_s": round(report.sent / elapsed, 1),
        "ratio": round(report.sent / elapsed / raw, 3),
        "sent": report.sent,
        "sink_received": received,
        "rss_before_send_mb": round(before, 1),
        "peak_rss_during_send_mb": round(rss.peak, 1),
        "seconds": round(elapsed, 1),
    }


def main(argv: list[str]) -> None:
    if argv[:1] == ["--child"]:
        print(json.dumps(child(int(argv[1]))), flush=True)
        return
    sizes = [int(a) for a in argv] or [10_000, 100_000]
    print(
        f"send benchmark: smtp provider, {CONCURRENCY} connections, aiosmtpd sink on loopback "
        f"(cpu: {os.cpu_count()})"
    )
    rows = []
    for size in sizes:
        out = subprocess.run(
            [sys.executable, __file__, "--child", str(size)],
            capture_output=True,
            text=True,
            cwd=REPO,
        )
        if out.returncode:
            print(out.stderr, file=sys.stderr)
            raise SystemExit(out.returncode)
        row = json.loads(out.stdout.strip().splitlines()[-1])
        rows.append(row)
        print(
            f"{row['size']:>7,} recipients  message {row['message_bytes']:,} B  "
            f"build {row['build_per_s']:,}/s  raw {row['raw_per_s']:,}/s  "
            f"brief {row['brief_per_s']:,}/s  ratio {row['ratio']:.0%}  "
            f"peak RSS during send {row['peak_rss_during_send_mb']} MB "
            f"(before {row['rss_before_send_mb']} MB)  sink got {row['sink_received']:,} "
            f"(raw + brief)"
        )
    if len(rows) > 1:
        a, b = rows[0], rows[-1]
        print(
            f"memory growth {a['size']:,} -> {b['size']:,}: "
            f"{b['peak_rss_during_send_mb'] - a['peak_rss_during_send_mb']:+.1f} MB"
        )


if __name__ == "__main__":
    main(sys.argv[1:])
