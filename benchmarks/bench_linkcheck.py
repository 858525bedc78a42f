"""Link-check speed: prints figures, asserts nothing.

    .venv/bin/python benchmarks/bench_linkcheck.py [--links 40] [--delay-ms 100]
    .venv/bin/python benchmarks/bench_linkcheck.py --smoke   # a few links, once: CI

A threaded HTTP server on loopback answers every request after ``--delay-ms`` (a remote
site's round trip). In this one run: the links checked one at a time (the baseline),
then with the checker's 4 threads (a cold cache), then again with the cache of the run
before (the second `brief check --links` of a day). Ratios are against the baseline.
"""

from __future__ import annotations

import argparse
import sys
import tempfile
import threading
import time
from datetime import UTC, datetime
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from pathlib import Path

REPO = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(REPO))


def serve(delay: float) -> tuple[ThreadingHTTPServer, list[str]]:
    """A loopback server answering 200 after ``delay`` seconds; the paths it was asked."""
    asked: list[str] = []

    class Handler(BaseHTTPRequestHandler):
        def do_HEAD(self) -> None:  # noqa: N802 (http.server's naming)
            asked.append(self.path)
            time.sleep(delay)
            self.send_response(200)
            self.send_header("Content-Length", "0")
            self.end_headers()

        def log_message(self, *args) -> None:
            pass

    server = ThreadingHTTPServer(("127.0.0.1", 0), Handler)
    threading.Thread(target=server.serve_forever, daemon=True).start()
    return server, asked


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--links", type=int, default=40)
    ap.add_argument("--delay-ms", type=float, default=100.0)
    ap.add_argument("--smoke", action="store_true", help="4 links, 10 ms: proves it runs")
    args = ap.parse_args()
    count, delay = (4, 0.01) if args.smoke else (args.links, args.delay_ms / 1000)

    from pipeline.render.links import Link, check_links

    server, asked = serve(delay)
    base = f"http://127.0.0.1:{server.server_address[1]}"
    links = [Link(f"{base}/page/{n}", "issues/bench.md", n) for n in range(1, count + 1)]
    now = datetime.now(UTC)
    rows = []
    with tempfile.TemporaryDirectory() as tmp:

        def timed(label: str, cache: Path, workers: int) -> float:
            asked.clear()
            t = time.perf_counter()
            report = check_links(links, cache, now, workers=workers)
            took = time.perf_counter() - t
            assert not report.broken, report.lines()
            rows.append((label, took, len(asked)))
            return took

        baseline = timed("one at a time (baseline)", Path(tmp) / "a.json", 1)
        timed("4 threads, cold cache", Path(tmp) / "b.json", 4)
        timed("4 threads, second run (cache)", Path(tmp) / "b.json", 4)
    server.shutdown()
    print(f"{count} links, server answering after {delay * 1000:.0f} ms")
    for label, took, requests in rows:
        print(
            f"  {label:32} {took * 1000:8.1f} ms  {requests:4d} requests  "
            f"ratio {took / baseline:.3f}"
        )


if __name__ == "__main__":
    main()
