"""Send benchmark: ``brief send`` through ``smtp`` against the raw smtplib ceiling, same run.

    .venv/bin/python benchmarks/bench_send.py               # 10,000 and 100,000 subscribers
    .venv/bin/python benchmarks/bench_send.py 2000          # a quick look
    .venv/bin/python benchmarks/bench_send.py --profile 20000   # what grows during a send
    .venv/bin/python benchmarks/bench_send.py --smoke       # both modes at 40: CI

For each size, every measured step runs in a process of its own, so a peak RSS
belongs to that step alone (read with ``os.wait4`` from the kernel's high-water
mark of that one child):

1. prepare: a scratch project (the repo's content, ``smtp`` on loopback) and its
   SQLite database with N imported subscribers; not measured.
2. build: the per-recipient build rate on one core, over real recipients.
3. raw: the ceiling, bare smtplib with the same connection count, persistent
   connections and the same message bytes; no ledger, no building.
4. send: ``brief send 1 --yes --json`` as an operator runs it (CLI, content,
   render, ledger in SQLite, workers, rate limiter, the ``smtp`` provider).

A counting aiosmtpd sink runs in its own process on loopback for each size.
``--profile N`` instead runs the campaign in-process under tracemalloc and prints
what grew between 20% and 95% of the send. It prints figures; it asserts nothing.
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
BRIEF = Path(sys.executable).parent / "brief"
CONCURRENCY = 4
BUILD_SAMPLE = 20_000

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


# ---------------------------------------------------------------------------
# Children: each prints one JSON line on stdout


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


def _load(root: Path):
    from pipeline.config import load_settings
    from pipeline.content import load_library
    from pipeline.send import render
    from pipeline.store import open_store

    settings = load_settings(root / "brief.toml", env={})
    library = load_library(root)
    issue = library.issue(1)
    rendered = render(issue, library, settings)
    return settings, library, issue, rendered, open_store(settings.database.url)


def child_prepare(tmp: Path, size: int, port: int) -> dict:
    """The scratch project, N subscribers imported, and one built message for the raw run."""
    from pipeline.config import load_settings
    from pipeline.message import MessageFactory
    from pipeline.send import delivery_key
    from pipeline.store import audience, import_csv, open_store

    root = _project(tmp, port)
    engine = open_store(load_settings(root / "brief.toml", env={}).database.url)
    csv = tmp / "people.csv"
    with csv.open("w") as fh:
        fh.write("email,name\n")
        for i in range(size):
            fh.write(f"reader{i}@example.com,Reader {i}\n")
    import_csv(engine, csv, "main", confirmed=True, source="benchmark")
    engine.dispose()
    settings, _library, _issue, rendered, engine = _load(root)
    factory = MessageFactory(rendered, settings, list_name="main")
    r = next(iter(audience(engine, "main")))
    raw = factory.for_recipient(delivery_key(1, r.subscriber_id), r).raw
    (tmp / "message.eml").write_bytes(raw)
    engine.dispose()
    return {"root": str(root), "message_bytes": len(raw)}


def child_build(root: Path) -> dict:
    """Messages built per second on one core, from real recipients with their tokens."""
    from pipeline.message import MessageFactory
    from pipeline.send import delivery_key
    from pipeline.store import audience

    settings, _library, _issue, rendered, engine = _load(root)
    factory = MessageFactory(rendered, settings, list_name="main")
    people = []
    for r in audience(engine, "main"):
        people.append(r)
        if len(people) >= BUILD_SAMPLE:
            break
    start = time.perf_counter()
    for r in people:
        factory.for_recipient(delivery_key(1, r.subscriber_id), r)
    rate = len(people) / (time.perf_counter() - start)
    engine.dispose()
    return {"build_per_s": round(rate), "built": len(people)}


def child_raw(port: int, payload_path: Path, count: int, threads: int) -> dict:
    """Messages/s through bare smtplib: persistent connections, no ledger, no building."""
    payload = payload_path.read_bytes()

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
    return {"raw_per_s": round(count / (time.perf_counter() - start), 1)}


def _c_memory() -> tuple[float, float, float]:
    """(SQLite's own allocations, glibc heap in use, glibc heap free) in MB, outside Python's
    view: what tracemalloc cannot see."""
    import ctypes
    import ctypes.util

    class MallInfo2(ctypes.Structure):
        _fields_ = [
            (n, ctypes.c_size_t)
            for n in ("arena", "ordblks", "smblks", "hblks", "hblkhd", "usmblks", "fsmblks")
            + ("uordblks", "fordblks", "keepcost")
        ]

    libc = ctypes.CDLL(None)
    libc.mallinfo2.restype = MallInfo2
    sqlite = ctypes.CDLL(ctypes.util.find_library("sqlite3"))
    sqlite.sqlite3_memory_used.restype = ctypes.c_int64
    info = libc.mallinfo2()
    mb = 2**20
    return (
        sqlite.sqlite3_memory_used() / mb,
        (info.uordblks + info.hblkhd) / mb,
        info.fordblks / mb,
    )


def child_profile(root: Path) -> None:
    """The campaign in-process under tracemalloc: memory at every tenth of the send, and
    what grew on the Python heap between 20% and 95% sent."""
    import gc
    import tracemalloc

    from pipeline.send import send_campaign

    settings, library, issue, rendered, engine = _load(root)
    tracemalloc.start(8)
    marks: dict[str, tuple] = {}
    tenths: list[tuple] = []

    def progress(p) -> None:
        if p.sent >= (len(tenths) + 1) * p.total / 10:
            gc.collect()
            tenths.append((p.sent, _rss_mb(), tracemalloc.get_traced_memory()[0], _c_memory()))
        for name, share in (("early", 0.2), ("late", 0.95)):
            if name not in marks and p.sent >= share * p.total:
                gc.collect()
                marks[name] = (p.sent, _rss_mb(), tracemalloc.take_snapshot())

    report = send_campaign(
        engine, settings, library, issue, "main", rendered=rendered, progress=progress
    )
    print(f"sent {report.sent:,} ({report.rate:.0f}/s under tracemalloc); MB at each tenth:")
    print(f"  {'sent':>8} {'RSS':>7} {'python':>7} {'sqlite':>7} {'malloc':>7} {'free':>7}")
    for sent, rss, py, (sq, used, free) in tenths:
        print(f"  {sent:>8,} {rss:7.1f} {py / 2**20:7.1f} {sq:7.1f} {used:7.1f} {free:7.1f}")
    (n0, rss0, s0), (n1, rss1, s1) = marks["early"], marks["late"]
    # A smoke-sized send can finish in one batch: both marks then fall on the same count.
    sent = max(n1 - n0, 1)
    diff = s1.compare_to(s0, "traceback")
    grown = sum(d.size_diff for d in diff)
    print(f"between {n0:,} and {n1:,} sent ({sent:,} messages):")
    print(f"  RSS {rss0:.1f} -> {rss1:.1f} MB ({(rss1 - rss0) * 2**20 / sent:+.0f} B/message)")
    print(f"  Python heap (tracemalloc) {grown / 2**20:+.2f} MB ({grown / sent:+.1f} B/message)")
    for d in sorted(diff, key=lambda d: -d.size_diff)[:8]:
        if d.size_diff <= 0:
            break
        print(f"  {d.size_diff / 1024:+9.1f} KiB {d.count_diff:+7d} blocks")
        for line in d.traceback.format()[-4:]:
            print("      " + line)
    engine.dispose()


# ---------------------------------------------------------------------------
# The parent: runs the children, reads each one's peak RSS from the kernel


def _measured(args: list[str], env: dict[str, str] | None = None) -> tuple[dict, float, float]:
    """Run a child to the end; returns (its last JSON line, its peak RSS in MB, wall s)."""
    with tempfile.TemporaryFile() as out, tempfile.TemporaryFile() as err:
        start = time.perf_counter()
        proc = subprocess.Popen(args, stdout=out, stderr=err, cwd=REPO, env=env)
        # wait4 gives this child's own rusage; RUSAGE_CHILDREN would be the max over
        # every child so far, the importing one included.
        _pid, status, usage = os.wait4(proc.pid, 0)
        wall = time.perf_counter() - start
        proc.returncode = os.waitstatus_to_exitcode(status)
        out.seek(0)
        err.seek(0)
        stdout, stderr = out.read().decode(), err.read().decode()
    if proc.returncode:
        print(
            f"{' '.join(args[:4])}... exited {proc.returncode}\n{stdout}{stderr}", file=sys.stderr
        )
        raise SystemExit(1)
    # Our children print one JSON line last; ``brief --json`` prints one indented document.
    text = stdout.strip()
    doc = json.loads(text) if text.startswith("{") else json.loads(text.splitlines()[-1])
    return doc, usage.ru_maxrss / 1024, wall


def _self(*args: object) -> list[str]:
    return [sys.executable, __file__, "--child", *map(str, args)]


class Sink:
    """The counting aiosmtpd sink, a process of its own."""

    def __enter__(self):
        self.port = _free_port()
        self.proc = subprocess.Popen(
            [sys.executable, "-c", SINK, str(self.port)],
            stdin=subprocess.PIPE,
            stdout=subprocess.PIPE,
            text=True,
        )
        assert self.proc.stdout.readline().strip() == "ready"
        return self

    def received(self) -> int:
        self.proc.stdin.close()
        n = int(self.proc.stdout.read().strip() or 0)
        self.proc.wait()
        return n

    def __exit__(self, *exc):
        if self.proc.poll() is None:
            self.proc.kill()
            self.proc.wait()


def measure(size: int) -> dict:
    """One size: prepare, then build, raw ceiling and ``brief send`` each in a fresh process."""
    env = {k: v for k, v in os.environ.items() if not k.startswith("BRIEF_")}
    with tempfile.TemporaryDirectory() as tmpdir, Sink() as sink:
        tmp = Path(tmpdir)
        prep, _, _ = _measured(_self("prepare", tmp, size, sink.port))
        root = Path(prep["root"])
        build, build_rss, _ = _measured(_self("build", root))
        raw, raw_rss, _ = _measured(_self("raw", sink.port, tmp / "message.eml", size, CONCURRENCY))
        send_cmd = [str(BRIEF), "--config", str(root / "brief.toml"), "send", "1"]
        report, send_rss, wall = _measured([*send_cmd, "--list", "main", "--yes", "--json"], env)
        received = sink.received()
    return {
        "size": size,
        "message_bytes": prep["message_bytes"],
        "build_per_s": build["build_per_s"],
        "build_peak_rss_mb": round(build_rss, 1),
        "raw_per_s": raw["raw_per_s"],
        "raw_peak_rss_mb": round(raw_rss, 1),
        "brief_per_s": report["rate"],
        "ratio": round(report["rate"] / raw["raw_per_s"], 3),
        "sent": report["sent"],
        "send_seconds": report["seconds"],
        "send_process_seconds": round(wall, 1),
        "send_peak_rss_mb": round(send_rss, 1),
        "sink_received": received,
    }


def profile(size: int) -> None:
    """Prepare ``size`` subscribers, then run the send in-process under tracemalloc."""
    with tempfile.TemporaryDirectory() as tmpdir, Sink() as sink:
        tmp = Path(tmpdir)
        prep, _, _ = _measured(_self("prepare", tmp, size, sink.port))
        subprocess.run(_self("profile", prep["root"]), check=True, cwd=REPO)
        sink.received()


def _table(rows: list[dict]) -> None:
    head = (
        "recipients",
        "build (1 core)",
        "raw ceiling",
        "brief send",
        "ratio",
        "send peak RSS",
        "raw peak RSS",
    )
    lines = [
        (
            f"{r['size']:,}",
            f"{r['build_per_s']:,} msg/s",
            f"{r['raw_per_s']:,} msg/s",
            f"{r['brief_per_s']:,} msg/s",
            f"{r['ratio']:.0%}",
            f"{r['send_peak_rss_mb']} MB",
            f"{r['raw_peak_rss_mb']} MB",
        )
        for r in rows
    ]
    widths = [max(len(h), *(len(line[i]) for line in lines)) for i, h in enumerate(head)]
    for line in (head, *lines):
        print("  ".join(cell.rjust(w) for cell, w in zip(line, widths, strict=True)))


def main(argv: list[str]) -> None:
    if argv[:1] == ["--child"]:
        kind, args = argv[1], argv[2:]
        if kind == "prepare":
            out = child_prepare(Path(args[0]), int(args[1]), int(args[2]))
        elif kind == "build":
            out = child_build(Path(args[0]))
        elif kind == "raw":
            out = child_raw(int(args[0]), Path(args[1]), int(args[2]), int(args[3]))
        elif kind == "profile":
            return child_profile(Path(args[0]))
        else:
            raise SystemExit(f"unknown child {kind!r}")
        print(json.dumps(out), flush=True)
        return
    if argv[:1] == ["--smoke"]:
        # The smallest size through every path (CI runs this so the script cannot rot).
        argv = ["40"]
        profile(40)
    if argv[:1] == ["--profile"]:
        return profile(int(argv[1]) if len(argv) > 1 else 20_000)
    sizes = [int(a) for a in argv] or [10_000, 100_000]
    print(
        f"send benchmark: brief send through smtp, {CONCURRENCY} connections, aiosmtpd sink "
        f"on loopback (cpu: {os.cpu_count()}); each step a fresh process"
    )
    rows = []
    for size in sizes:
        row = measure(size)
        rows.append(row)
        print(
            f"{row['size']:>7,}: message {row['message_bytes']:,} B, sent {row['sent']:,}, "
            f"sink got {row['sink_received']:,} (raw + brief), send {row['send_seconds']} s "
            f"in a {row['send_process_seconds']} s process; build process peak "
            f"{row['build_peak_rss_mb']} MB",
            flush=True,
        )
    print()
    _table(rows)
    if len(rows) > 1:
        a, b = rows[0], rows[-1]
        print(
            f"send peak RSS {b['size']:,} / {a['size']:,}: "
            f"{b['send_peak_rss_mb'] / a['send_peak_rss_mb']:.2f}x "
            f"({b['send_peak_rss_mb'] - a['send_peak_rss_mb']:+.1f} MB; flat is 1.00x)"
        )


if __name__ == "__main__":
    main(sys.argv[1:])
