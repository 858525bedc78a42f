"""Send benchmark: ``brief send`` against fast sinks, baselines measured in the same run.

    .venv/bin/python benchmarks/bench_send.py                  # the full run (long)
    .venv/bin/python benchmarks/bench_send.py --sizes 2000 --big 20000 --join-size 20000
    .venv/bin/python benchmarks/bench_send.py --steps smtp-sink,http --backends sqlite
    .venv/bin/python benchmarks/bench_send.py --profile 20000  # what grows during a send
    .venv/bin/python benchmarks/bench_send.py --smoke          # every step once, tiny: CI
    .venv/bin/python benchmarks/bench_send.py --steps smtp-sink --sizes 5000 --dkim

Steps (``--steps``, comma-separated; all by default), each on SQLite and on PostgreSQL
(127.0.0.1:5432, trust auth, database ``test``, a fresh schema per measurement):

1. ``smtp-sink``: ``brief send`` through ``smtp`` with ``--connections`` connections to
   Postfix's ``smtp-sink`` (C), and the raw ceiling (bare smtplib, the same connection
   count, persistent connections, the same message bytes) against the same sink; ratio
   brief / raw, at each of ``--sizes`` (10,000 and 100,000), with peak RSS.
2. ``aiosmtpd``: the same against a counting aiosmtpd sink (pure Python: the sink is the
   bottleneck), at ``--aiosmtpd-sizes`` (default: ``--sizes``).
   With ``--dkim`` (and always in a smoke run), each of these also sends once more with
   ``[provider.smtp.dkim]`` set (a 2048-bit RSA key made for the run) on a fresh store:
   signed msg/s, its ratio to the unsigned send of the same run, and CPU per message.
3. ``http``: ``postmark`` (a batch HTTP API, 500 per call) with its base_url pointed at a
   loopback server, in a process of its own, that answers every batch at once with
   Postmark's documented success body: messages/s from one sender (``--http-size``).
4. ``noop``: a no-op provider registered through the ``brief.providers`` entry-point
   group as a third party's package would be (a module and a ``*.dist-info`` written to
   a temp dir put on PYTHONPATH), right after an import (``import_csv``, then ``brief
   send`` at once: no ANALYZE in between), at the last of ``--sizes`` and at ``--big``
   (1,000,000): time, msg/s, peak RSS, and time per message big / small (1.00 = linear).
5. ``join``: one sender against two joined senders (the second is ``brief send 1 --yes
   --join``, started once the first has sent its first rows) on PostgreSQL with the
   no-op provider, at ``--join-size``: total msg/s each way.

Every measured step runs in a process of its own, so a peak RSS belongs to that step
alone (``os.wait4``: the kernel's high-water mark of that one child). A send that runs
past ``--timeout`` seconds is stopped with SIGTERM (it finishes what the provider holds
and exits 75) and its rate so far is reported, marked "stopped". A step that cannot run
(no smtp-sink, no PostgreSQL) prints "skipped" with the reason. ``--profile N`` instead
runs one campaign in-process under tracemalloc and prints what grew between 20% and 95%
of the send. It prints figures; it asserts nothing.
"""

from __future__ import annotations

import argparse
import contextlib
import json
import os
import shutil
import signal
import smtplib
import socket
import subprocess
import sys
import tempfile
import threading
import time
import uuid
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path

REPO = Path(__file__).resolve().parent.parent
BRIEF = Path(sys.executable).parent / "brief"
PG_ADMIN = "postgresql+psycopg://postgres@127.0.0.1:5432/test"
BACKENDS = ("sqlite", "postgresql")
STEPS = ("smtp-sink", "aiosmtpd", "http", "noop", "join")
# Rows claimed at a time: a batch API's whole call (Postmark takes up to 500).
BATCH_SIZE = 500
SMTP_SINK = os.environ.get("BRIEF_BENCH_SMTP_SINK", "/usr/sbin/smtp-sink")
POSTMARK_TOKEN = "bench-server-token"
NOOP_NAME = "benchnoop"
# Which backend each step uses in a smoke run (the no-op step takes both).
SMOKE_BACKEND = {"smtp-sink": "sqlite", "aiosmtpd": "postgresql", "http": "postgresql"}
AIOSMTPD_LABEL = "aiosmtpd (pure-Python sink: the sink is the bottleneck)"

AIOSMTPD_SINK = r"""
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

# A Postmark ``POST /email/batch`` that takes every batch at once. The answer is the
# documented success body: HTTP 200 with one element per message, in order, each
# {"ErrorCode": 0, "Message": "OK", "MessageID", "SubmittedAt", "To"} (Postmark's "Send
# batch emails" docs; the same element shape in ActiveCampaign/postmark.js README.md,
# "Sending Batch Messages"). To stay out of the sender's way on a small machine it
# counts the messages of a batch by their "Metadata" key instead of parsing 20 MB of
# JSON; with "check" it parses every batch and checks the request's shape instead.
POSTMARK_SINK = r"""
import json, sys, threading
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
CHECK = sys.argv[3] == "check"
TOKEN = sys.argv[2]
lock = threading.Lock()
total = [0, 0]  # messages, calls
class Handler(BaseHTTPRequestHandler):
    protocol_version = "HTTP/1.1"
    def log_message(self, *args):
        pass
    def do_POST(self):
        body = self.rfile.read(int(self.headers["Content-Length"]))
        if self.path != "/email/batch" or self.headers.get("X-Postmark-Server-Token") != TOKEN:
            return self._answer(401, {"ErrorCode": 10, "Message": "Bad or missing API token"})
        if CHECK:
            batch = json.loads(body)
            assert isinstance(batch, list) and 1 <= len(batch) <= 500, len(batch)
            for m in batch:
                assert {"From", "To", "Subject", "HtmlBody", "TextBody"} <= m.keys(), m.keys()
            to = [m["To"] for m in batch]
        else:
            # With or without a space after the colon; inside a body it would be \"Metadata\".
            to = [""] * body.count(b'"Metadata":')
        with lock:
            total[0] += len(to)
            total[1] += 1
            first = total[0] - len(to)
        self._answer(200, [
            {"ErrorCode": 0, "Message": "OK", "MessageID": f"bench-{first + i}",
             "SubmittedAt": "2026-11-26T12:00:00.0000000-05:00", "To": t}
            for i, t in enumerate(to)
        ])
    def _answer(self, status, doc):
        data = json.dumps(doc).encode()
        self.send_response(status)
        self.send_header("Content-Type", "application/json")
        self.send_header("Content-Length", str(len(data)))
        self.end_headers()
        self.wfile.write(data)
server = ThreadingHTTPServer(("127.0.0.1", int(sys.argv[1])), Handler)
server.daemon_threads = True
threading.Thread(target=server.serve_forever, daemon=True).start()
print("ready", flush=True)
sys.stdin.read()
server.shutdown()
print(total[0], flush=True)
"""

# The third party's provider: takes every message, sends nothing.
NOOP_MODULE = '''\
"""A no-op mail provider for the send benchmark, installed as a third party's would be."""

from pipeline.providers.base import Result


class NoopProvider:
    name = "benchnoop"
    max_batch = 500  # as a batch API (Postmark) takes
    idempotent = False
    settings_schema = {}  # no [provider.benchnoop] keys
    secrets = ()

    def __init__(self, setup):
        self.setup = setup

    def open(self):
        pass

    def push(self, messages):
        return [Result.sent(m.key, None) for m in messages]

    def close(self):
        pass
'''


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


class Skipped(Exception):
    """A step that cannot run here (a sink or the database missing): printed, not fatal."""


# ---------------------------------------------------------------------------
# Children: each prints one JSON line on stdout


def _load(root: Path):
    from pipeline.config import load_settings
    from pipeline.content.library import load_library
    from pipeline.send import render
    from pipeline.store import open_store

    settings = load_settings(root / "brief.toml", env={})
    library = load_library(root)
    issue = library.issue(1)
    rendered = render(issue, library, settings)
    return settings, library, issue, rendered, open_store(settings.database.url)


def child_prepare(root: Path, size: int, with_message: bool) -> dict:
    """``size`` subscribers imported with ``import_csv`` (nothing else: no ANALYZE), and
    one built message for the raw runs when asked."""
    from pipeline.config import load_settings
    from pipeline.store import audience, import_csv, open_store

    engine = open_store(load_settings(root / "brief.toml", env={}).database.url)
    csv = root.parent / "people.csv"
    with csv.open("w") as fh:
        fh.write("email,name\n")
        for i in range(size):
            fh.write(f"reader{i}@example.com,Reader {i}\n")
    start = time.perf_counter()
    import_csv(engine, csv, "main", confirmed=True, source="benchmark")
    took = time.perf_counter() - start
    csv.unlink()
    engine.dispose()
    out: dict = {"import_seconds": round(took, 1)}
    if with_message:
        from pipeline.send import delivery_key
        from pipeline.send.message import MessageFactory

        settings, _library, _issue, rendered, engine = _load(root)
        factory = MessageFactory(rendered, settings, list_name="main")
        r = next(iter(audience(engine, "main")))
        raw = factory.for_recipient(delivery_key(1, r.subscriber_id), r).raw
        (root.parent / "message.eml").write_bytes(raw)
        engine.dispose()
        out["message_bytes"] = len(raw)
    return out


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
# The parent: scratch projects and databases, sinks, children with their peak RSS


@dataclass(frozen=True)
class Run:
    """A finished child: its last JSON document, peak RSS, wall time and when it ran."""

    doc: dict
    peak_rss_mb: float
    cpu_seconds: float  # user + system CPU of the child (os.wait4)
    wall: float
    started: float
    ended: float
    exit_code: int
    stopped: bool  # stopped by the timeout (SIGTERM)
    output: str


def _measured(
    args: list[str],
    env: dict[str, str] | None = None,
    *,
    timeout: float | None = None,
    allowed: tuple[int, ...] = (0,),
) -> Run:
    """Run a child to the end; its peak RSS comes from its own rusage (``os.wait4``)."""
    with tempfile.TemporaryFile() as out, tempfile.TemporaryFile() as err:
        started = time.perf_counter()
        proc = subprocess.Popen(args, stdout=out, stderr=err, cwd=REPO, env=env)
        stopped = threading.Event()

        def stop() -> None:
            stopped.set()
            proc.send_signal(signal.SIGTERM)

        timer = threading.Timer(timeout, stop) if timeout else None
        if timer:
            timer.start()
        # wait4 gives this child's own rusage; RUSAGE_CHILDREN would be the max over
        # every child so far, the importing one included.
        _pid, status, usage = os.wait4(proc.pid, 0)
        ended = time.perf_counter()
        if timer:
            timer.cancel()
        proc.returncode = os.waitstatus_to_exitcode(status)
        out.seek(0)
        err.seek(0)
        stdout, stderr = out.read().decode(), err.read().decode()
    code = proc.returncode
    if code not in allowed and not (stopped.is_set() and code == 75):
        print(f"{' '.join(args[:6])}... exited {code}\n{stdout}{stderr}", file=sys.stderr)
        raise SystemExit(1)
    # Our children print one JSON line last; ``brief --json`` prints one indented document.
    text = stdout.strip()
    try:
        doc = json.loads(text) if text.startswith("{") else json.loads(text.splitlines()[-1])
    except (ValueError, IndexError):
        doc = {}
    return Run(
        doc,
        round(usage.ru_maxrss / 1024, 1),
        round(usage.ru_utime + usage.ru_stime, 2),
        round(ended - started, 2),
        started,
        ended,
        code,
        stopped.is_set(),
        stdout + stderr,
    )


def _self(*args: object) -> list[str]:
    return [sys.executable, __file__, "--child", *map(str, args)]


def _wait_port(port: int, proc: subprocess.Popen, what: str) -> None:
    deadline = time.monotonic() + 10
    while time.monotonic() < deadline:
        if proc.poll() is not None:
            raise Skipped(f"{what} exited {proc.returncode} at start")
        with contextlib.suppress(OSError), socket.create_connection(("127.0.0.1", port), 0.2):
            return
        time.sleep(0.05)
    raise Skipped(f"{what} did not listen on port {port} within 10 s")


class Sink:
    """A sink in a process of its own: smtp-sink, aiosmtpd or the Postmark batch server."""

    def __init__(self, kind: str, check: bool = False):
        self.kind = kind
        self.check = check

    def __enter__(self) -> Sink:
        self.port = _free_port()
        if self.kind == "smtp-sink":
            if not os.access(SMTP_SINK, os.X_OK):
                raise Skipped(
                    f"smtp-sink: {SMTP_SINK} not found; install the Debian package postfix "
                    "(.ci/run does: apt-get install postfix)"
                )
            # -u: the user smtp-sink drops to (it refuses to run as root without one);
            # 1024: the listen backlog.
            user = ["-u", "nobody"] if os.geteuid() == 0 else []
            args = [SMTP_SINK, *user, f"127.0.0.1:{self.port}", "1024"]
            self.proc = subprocess.Popen(args, stdin=subprocess.DEVNULL, stderr=subprocess.PIPE)
            _wait_port(self.port, self.proc, "smtp-sink")
            return self
        script = AIOSMTPD_SINK if self.kind == "aiosmtpd" else POSTMARK_SINK
        extra = [] if self.kind == "aiosmtpd" else [POSTMARK_TOKEN, "check" if self.check else "-"]
        self.proc = subprocess.Popen(
            [sys.executable, "-c", script, str(self.port), *extra],
            stdin=subprocess.PIPE,
            stdout=subprocess.PIPE,
            text=True,
        )
        if self.proc.stdout.readline().strip() != "ready":
            raise Skipped(f"{self.kind} sink did not start")
        return self

    def received(self) -> int | None:
        """How many messages the sink took (None: smtp-sink does not count for us)."""
        if self.kind == "smtp-sink":
            return None
        self.proc.stdin.close()
        n = int(self.proc.stdout.read().strip() or 0)
        self.proc.wait()
        return n

    def __exit__(self, *exc) -> None:
        if self.proc.poll() is None:
            self.proc.kill()
            self.proc.wait()


@contextlib.contextmanager
def _database(backend: str, tmp: Path) -> Iterator[str]:
    """A fresh, empty database: a SQLite file under ``tmp`` or a PostgreSQL schema."""
    if backend == "sqlite":
        yield f"sqlite:///{tmp / 'brief.db'}"
        return
    import sqlalchemy as sa

    schema = f"bench_send_{uuid.uuid4().hex[:10]}"
    try:
        admin = sa.create_engine(PG_ADMIN, connect_args={"connect_timeout": 3})
        with admin.begin() as conn:
            conn.exec_driver_sql(f'CREATE SCHEMA "{schema}"')
    except Exception as exc:  # noqa: BLE001 - any failure means "not reachable"
        raise Skipped(f"PostgreSQL at 127.0.0.1:5432: {str(exc).strip().splitlines()[0]}") from None
    try:
        yield f"{PG_ADMIN}?options=-csearch_path%3D{schema}"
    finally:
        with admin.begin() as conn:
            conn.exec_driver_sql(f'DROP SCHEMA "{schema}" CASCADE')
        admin.dispose()


def _noop_package(tmp: Path) -> Path:
    """A third party's provider package in ``tmp/noop``: a module and its dist-info with
    the ``brief.providers`` entry point, found by importlib.metadata on PYTHONPATH."""
    where = tmp / "noop"
    info = where / "brief_bench_noop-1.0.dist-info"
    info.mkdir(parents=True)
    (where / "brief_bench_noop.py").write_text(NOOP_MODULE)
    (info / "METADATA").write_text("Metadata-Version: 2.1\nName: brief-bench-noop\nVersion: 1.0\n")
    (info / "entry_points.txt").write_text(
        f"[brief.providers]\n{NOOP_NAME} = brief_bench_noop:NoopProvider\n"
    )
    return where


@dataclass(frozen=True)
class Project:
    """A scratch newsletter (the repo's content) and what its children need."""

    root: Path
    env: dict[str, str]
    url: str  # the store

    def send(self, *extra: str, timeout: float | None = None, allowed=(0,)) -> Run:
        """``brief send 1 --yes --json`` as an operator runs it."""
        cmd = [str(BRIEF), "--config", str(self.root / "brief.toml"), "send", "1", "--yes"]
        return _measured([*cmd, "--json", *extra], self.env, timeout=timeout, allowed=allowed)

    def prepare(self, size: int, with_message: bool = False) -> dict:
        """Import ``size`` subscribers in a child of its own."""
        return _measured(_self("prepare", self.root, size, int(with_message)), self.env).doc


@contextlib.contextmanager
def project(
    backend: str,
    provider: str,
    port: int = 0,
    connections: int = 4,
    rate: float = 0,
    dkim: bool = False,
) -> Iterator[Project]:
    """A scratch project on a fresh database of ``backend`` sending through ``provider``."""
    with tempfile.TemporaryDirectory(prefix="bench-send-") as tmpdir:
        tmp = Path(tmpdir)
        root = tmp / "newsletter"
        root.mkdir()
        for name in ("glossary", "museum", "issues", "templates"):
            shutil.copytree(REPO / name, root / name)
        env = {k: v for k, v in os.environ.items() if not k.startswith("BRIEF_")}
        with _database(backend, tmp) as url:
            text = (REPO / "brief.toml").read_text()
            text = text.replace('url = "sqlite:///.brief/brief.db"', f"url = {json.dumps(url)}")
            text = text.replace('name = "outbox"', f'name = "{provider}"')
            text = text.replace("rate_per_second = 0", f"rate_per_second = {rate}")
            text = text.replace(
                "concurrency = 4", f"concurrency = {connections}\nbatch_size = {BATCH_SIZE}"
            )
            if provider == "smtp":
                text = text.replace("port = 587", f"port = {port}")
                text = text.replace('tls = "starttls"', 'tls = "none"')
                if dkim:
                    _dkim_key(root / "dkim.pem")
                    text += '\n[provider.smtp.dkim]\nselector = "bench"\nkey_file = "dkim.pem"\n'
            elif provider == "postmark":
                text += f'\n[provider.postmark]\nbase_url = "http://127.0.0.1:{port}"\n'
                env["BRIEF_POSTMARK_TOKEN"] = POSTMARK_TOKEN
            elif provider == NOOP_NAME:
                path = [str(_noop_package(tmp)), env.get("PYTHONPATH", "")]
                env["PYTHONPATH"] = os.pathsep.join(p for p in path if p)
            (root / "brief.toml").write_text(text)
            yield Project(root, env, url)


def _dkim_key(path: Path) -> None:
    """A 2048-bit RSA key in PEM, as an operator makes one with openssl genrsa."""
    from cryptography.hazmat.primitives import serialization
    from cryptography.hazmat.primitives.asymmetric import rsa

    key = rsa.generate_private_key(public_exponent=65537, key_size=2048)
    path.write_bytes(
        key.private_bytes(
            serialization.Encoding.PEM,
            serialization.PrivateFormat.PKCS8,
            serialization.NoEncryption(),
        )
    )


# ---------------------------------------------------------------------------
# The steps


@dataclass(frozen=True)
class Options:
    backends: tuple[str, ...]
    sizes: tuple[int, ...]
    aiosmtpd_sizes: tuple[int, ...]
    http_size: int
    big: int
    join_size: int
    connections: int
    timeout: float
    smoke: bool
    dkim: bool = False


def _send_row(run: Run, size: int) -> dict:
    d = run.doc
    rate = d.get("rate") or (d.get("sent_now", 0) / run.wall if run.wall else 0)
    return {
        "recipients": size,
        "sent": d.get("sent_now", d.get("sent", 0)),
        "send_seconds": d.get("seconds"),
        "process_seconds": run.wall,
        "brief_per_s": rate,
        "peak_rss_mb": run.peak_rss_mb,
        "cpu_seconds": run.cpu_seconds,
        # CPU of the whole process (start-up and import included) per message sent
        "cpu_us_per_msg": round(run.cpu_seconds / max(1, d.get("sent_now", 0)) * 1e6),
        "stopped": run.stopped,
    }


def step_smtp(kind: str, backend: str, size: int, o: Options) -> dict:
    """brief through ``smtp`` and the raw smtplib ceiling, both against one sink."""
    with Sink(kind) as sink, project(backend, "smtp", sink.port, o.connections) as p:
        prep = p.prepare(size, with_message=True)
        payload = p.root.parent / "message.eml"
        raw = _measured(_self("raw", sink.port, payload, size, o.connections))
        send = p.send(timeout=o.timeout)
        received = sink.received()
    row = _send_row(send, size)
    row |= {
        "backend": backend,
        "message_bytes": prep["message_bytes"],
        "raw_per_s": raw.doc["raw_per_s"],
        "raw_peak_rss_mb": raw.peak_rss_mb,
        "raw_cpu_us_per_msg": round(raw.cpu_seconds / size * 1e6),
        "ratio": round(row["brief_per_s"] / raw.doc["raw_per_s"], 3),
        "sink_received": received,
    }
    if o.dkim:
        # The same send signed, on a fresh store against a fresh sink of the same kind.
        with Sink(kind) as sink, project(backend, "smtp", sink.port, o.connections, dkim=True) as p:
            p.prepare(size)
            signed = _send_row(p.send(timeout=o.timeout), size)
            sink.received()
        row |= {
            "dkim_per_s": signed["brief_per_s"],
            "dkim_ratio": round(signed["brief_per_s"] / row["brief_per_s"], 3),
            "dkim_cpu_us_per_msg": signed["cpu_us_per_msg"],
            "dkim_peak_rss_mb": signed["peak_rss_mb"],
            "dkim_stopped": signed["stopped"],
        }
    return row


def step_http(backend: str, size: int, o: Options) -> dict:
    """``postmark`` against a loopback batch server that accepts every call at once."""
    with Sink("postmark", check=o.smoke) as sink, project(backend, "postmark", sink.port) as p:
        p.prepare(size)
        send = p.send(timeout=o.timeout)
        received = sink.received()
    return _send_row(send, size) | {"backend": backend, "sink_received": received}


def step_noop(backend: str, size: int, o: Options) -> dict:
    """The no-op provider right after an import: nothing between import and send."""
    with project(backend, NOOP_NAME) as p:
        prep = p.prepare(size)
        send = p.send(timeout=o.timeout)
    return _send_row(send, size) | {"backend": backend, "import_seconds": prep["import_seconds"]}


def _first_sent(url: str, first: threading.Thread) -> None:
    """Wait until the first sender has recorded a sent row (or has finished)."""
    import sqlalchemy as sa

    engine = sa.create_engine(url)
    try:
        while first.is_alive():
            with contextlib.suppress(sa.exc.DBAPIError), engine.connect() as conn:
                q = "SELECT 1 FROM deliveries WHERE state = 'sent' LIMIT 1"
                if conn.exec_driver_sql(q).first():
                    return
            time.sleep(0.05)
    finally:
        engine.dispose()


def step_join(size: int, o: Options) -> dict:
    """One sender, then two joined senders, on PostgreSQL with the no-op provider."""
    # The smoke size is tiny: a rate limit keeps the first sender busy until the second joins.
    rate = 500 if o.smoke else 0
    with project("postgresql", NOOP_NAME, rate=rate) as p:
        p.prepare(size)
        one = p.send(timeout=o.timeout)
    with project("postgresql", NOOP_NAME, rate=rate) as p:
        p.prepare(size)
        runs: dict[str, Run] = {}
        first = threading.Thread(target=lambda: runs.setdefault("first", p.send(timeout=o.timeout)))
        first.start()
        _first_sent(p.url, first)
        # Exit 1 with "nothing to join": the first finished before the second started.
        runs["second"] = p.send("--join", timeout=o.timeout, allowed=(0, 1))
        first.join()
    a, b = runs["first"], runs["second"]
    span = max(a.ended, b.ended) - a.started
    joined = b.exit_code == 0 or b.stopped
    return {
        "recipients": size,
        "one_per_s": round(one.doc.get("sent_now", 0) / one.wall, 1),
        "one_seconds": one.wall,
        "one_peak_rss_mb": one.peak_rss_mb,
        "two_per_s": round((a.doc.get("sent_now", 0) + b.doc.get("sent_now", 0)) / span, 1),
        "two_seconds": round(span, 2),
        "first_sent": a.doc.get("sent_now", 0),
        "second_sent": b.doc.get("sent_now", 0) if joined else 0,
        "second_joined": joined,
        "second_started_after": round(b.started - a.started, 2),
        "peak_rss_mb": (a.peak_rss_mb, b.peak_rss_mb),
        "stopped": one.stopped or a.stopped or b.stopped,
    }


# ---------------------------------------------------------------------------
# Printing


def _table(head: tuple[str, ...], lines: list[tuple[str, ...]]) -> None:
    widths = [max(len(h), *(len(line[i]) for line in lines)) for i, h in enumerate(head)]
    for line in (head, *lines):
        print("  " + "  ".join(cell.rjust(w) for cell, w in zip(line, widths, strict=True)))
    print(flush=True)


def _rate(row: dict, key: str = "brief_per_s") -> str:
    return f"{row[key]:,.0f} msg/s" + (" (stopped)" if row.get("stopped") else "")


def _flatness(rows: list[dict], what: str) -> None:
    for backend in BACKENDS:
        mine = [r for r in rows if r["backend"] == backend]
        if len(mine) > 1:
            a, b = mine[0], mine[-1]
            print(
                f"  {what} {backend}: peak RSS {b['recipients']:,} / {a['recipients']:,} = "
                f"{b['peak_rss_mb'] / a['peak_rss_mb']:.2f}x "
                f"({b['peak_rss_mb'] - a['peak_rss_mb']:+.1f} MB; flat is 1.00x)"
            )


def print_smtp(title: str, rows: list[dict], connections: int) -> None:
    if not rows:
        return
    print(
        f"{title}: brief send through smtp and bare smtplib, {connections} connections each, "
        f"message {rows[0]['message_bytes']:,} B"
    )
    head = ("backend", "recipients", "raw ceiling", "brief send", "ratio", "send RSS", "raw RSS")
    lines = [
        (
            r["backend"],
            f"{r['recipients']:,}",
            f"{r['raw_per_s']:,.0f} msg/s",
            _rate(r),
            f"{r['ratio']:.0%}",
            f"{r['peak_rss_mb']} MB",
            f"{r['raw_peak_rss_mb']} MB",
        )
        for r in rows
    ]
    _table(head, lines)
    _flatness(rows, title)
    signed = [r for r in rows if "dkim_per_s" in r]
    if signed:
        print(f"{title}, the same sends DKIM-signed (rsa-sha256, 2048-bit key, relaxed/relaxed):")
        _table(
            ("backend", "recipients", "unsigned", "signed", "signed / unsigned", "CPU/msg"),
            [
                (
                    r["backend"],
                    f"{r['recipients']:,}",
                    _rate(r),
                    f"{r['dkim_per_s']:,.0f} msg/s",
                    f"{r['dkim_ratio']:.0%}",
                    f"{r['cpu_us_per_msg']:,} -> {r['dkim_cpu_us_per_msg']:,} us",
                )
                for r in signed
            ],
        )


def print_sends(title: str, rows: list[dict], extra: tuple[str, str] | None = None) -> None:
    if not rows:
        return
    print(title)
    head = ("backend", "recipients", "rate", "send", "process", "peak RSS")
    if extra:
        head += (extra[1],)
    lines = []
    for r in rows:
        line = (
            r["backend"],
            f"{r['recipients']:,}",
            _rate(r),
            f"{r['send_seconds']} s",
            f"{r['process_seconds']} s",
            f"{r['peak_rss_mb']} MB",
        )
        if extra:
            line += (str(r[extra[0]]),)
        lines.append(line)
    _table(head, lines)


def print_linear(rows: list[dict]) -> None:
    for backend in BACKENDS:
        mine = [r for r in rows if r["backend"] == backend and r["send_seconds"]]
        if len(mine) > 1 and not any(r["stopped"] for r in mine):
            a, b = mine[0], mine[-1]
            per_a = a["send_seconds"] / a["recipients"]
            per_b = b["send_seconds"] / b["recipients"]
            print(
                f"  no-op {backend}: time per message at {b['recipients']:,} / at "
                f"{a['recipients']:,} = {per_b / per_a:.2f} (1.00 = linear); peak RSS "
                f"{b['peak_rss_mb'] / a['peak_rss_mb']:.2f}x"
            )
    print()


# ---------------------------------------------------------------------------
# Main


def _attempt(what: str, fn, *args):
    """Run one step; a step that cannot run here prints why and the run goes on."""
    try:
        row = fn(*args)
    except Skipped as exc:
        print(f"  {what}: skipped ({exc})", flush=True)
        return None
    print(f"  {what}: {json.dumps(row)}", flush=True)
    return row


def run(steps: list[str], o: Options) -> None:
    print(
        f"send benchmark: {os.cpu_count()} CPUs, steps {', '.join(steps)}, backends "
        f"{', '.join(o.backends)}; each step in a fresh process",
        flush=True,
    )
    results: dict[str, list[dict]] = {s: [] for s in STEPS}

    def backends(step: str) -> tuple[str, ...]:
        # A smoke run takes every step once, the two backends shared out between them.
        if o.smoke and step in SMOKE_BACKEND:
            return tuple(b for b in o.backends if b == SMOKE_BACKEND[step])
        return o.backends

    plan: list[tuple[str, str, object, tuple]] = []
    for kind, sizes in (("smtp-sink", o.sizes), ("aiosmtpd", o.aiosmtpd_sizes)):
        if kind in steps:
            plan += [
                (kind, f"{kind} {b} {n:,}", step_smtp, (kind, b, n, o))
                for b in backends(kind)
                for n in sizes
            ]
    if "http" in steps:
        plan += [
            ("http", f"http {b} {o.http_size:,}", step_http, (b, o.http_size, o))
            for b in backends("http")
        ]
    if "noop" in steps:
        noop_sizes = sorted({o.sizes[-1], o.big})
        plan += [
            ("noop", f"noop {b} {n:,}", step_noop, (b, n, o))
            for b in backends("noop")
            for n in noop_sizes
        ]
    if "join" in steps and "postgresql" in o.backends:
        plan.append(("join", f"join postgresql {o.join_size:,}", step_join, (o.join_size, o)))
    for step, what, fn, args in plan:
        row = _attempt(what, fn, *args)
        if row is not None:
            results[step].append(row)
    print()
    print_smtp("smtp-sink (Postfix, C)", results["smtp-sink"], o.connections)
    print_smtp(AIOSMTPD_LABEL, results["aiosmtpd"], o.connections)
    print_sends(
        "postmark (batch HTTP, 500 per call) against a loopback server that accepts at once",
        results["http"],
        ("sink_received", "server got"),
    )
    print_sends(
        f"no-op provider ({NOOP_NAME}, entry point, max_batch 500) right after an import",
        results["noop"],
        ("import_seconds", "import s"),
    )
    print_linear(results["noop"])
    for r in results["join"]:
        print("PostgreSQL, no-op provider: one sender against two joined senders")
        _table(
            ("recipients", "one sender", "two senders", "two / one", "split", "peak RSS"),
            [
                (
                    f"{r['recipients']:,}",
                    f"{r['one_per_s']:,.0f} msg/s ({r['one_seconds']} s)",
                    f"{r['two_per_s']:,.0f} msg/s ({r['two_seconds']} s)",
                    f"{r['two_per_s'] / r['one_per_s']:.2f}x" if r["one_per_s"] else "-",
                    f"{r['first_sent']:,} + {r['second_sent']:,}",
                    f"{r['one_peak_rss_mb']} / {r['peak_rss_mb'][0]} + {r['peak_rss_mb'][1]} MB",
                )
            ],
        )
        if not r["second_joined"]:
            print("  the first sender finished before the second could join")


def profile(size: int) -> None:
    """Prepare ``size`` subscribers, then run the send in-process under tracemalloc."""
    with Sink("aiosmtpd") as sink, project("sqlite", "smtp", sink.port) as p:
        p.prepare(size)
        subprocess.run(_self("profile", p.root), check=True, cwd=REPO, env=p.env)
        sink.received()


def _sizes(text: str) -> tuple[int, ...]:
    return tuple(int(s.replace("_", "")) for s in text.split(","))


def main(argv: list[str]) -> None:
    if argv[:1] == ["--child"]:
        kind, args = argv[1], argv[2:]
        if kind == "prepare":
            out = child_prepare(Path(args[0]), int(args[1]), args[2] == "1")
        elif kind == "raw":
            out = child_raw(int(args[0]), Path(args[1]), int(args[2]), int(args[3]))
        elif kind == "profile":
            return child_profile(Path(args[0]))
        else:
            raise SystemExit(f"unknown child {kind!r}")
        print(json.dumps(out), flush=True)
        return
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--steps", default=",".join(STEPS), help="comma-separated: %(default)s")
    parser.add_argument("--backends", default=",".join(BACKENDS))
    parser.add_argument("--sizes", type=_sizes, default=(10_000, 100_000), help="smtp steps")
    parser.add_argument("--aiosmtpd-sizes", type=_sizes, help="default: --sizes")
    parser.add_argument("--http-size", type=int, default=100_000)
    parser.add_argument("--big", type=int, default=1_000_000, help="no-op provider")
    parser.add_argument("--join-size", type=int, default=200_000)
    parser.add_argument("--connections", type=int, default=4)
    parser.add_argument("--timeout", type=float, default=3600, help="seconds per send")
    parser.add_argument("--profile", type=int, metavar="N", help="profile one send of N")
    parser.add_argument("--smoke", action="store_true", help="every step once, tiny (CI)")
    parser.add_argument("--dkim", action="store_true", help="smtp steps: also send signed")
    a = parser.parse_args(argv)
    if a.profile:
        return profile(a.profile)
    steps = [s for s in a.steps.split(",") if s]
    unknown = set(steps) - set(STEPS)
    if unknown:
        parser.error(f"unknown steps {sorted(unknown)}; known: {', '.join(STEPS)}")
    o = Options(
        tuple(a.backends.split(",")),
        a.sizes,
        a.aiosmtpd_sizes or a.sizes,
        a.http_size,
        a.big,
        a.join_size,
        a.connections,
        a.timeout,
        a.smoke,
        a.dkim,
    )
    if a.smoke:
        # The smallest sizes through every step once (CI runs this so the script cannot rot).
        o = Options(o.backends, (40,), (40,), 40, 40, 3000, 2, 120, True, dkim=True)
        profile(40)
    run(steps, o)


if __name__ == "__main__":
    main(sys.argv[1:])
