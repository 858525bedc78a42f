"""``brief report ISSUE`` benchmark: an issue with 100,000 deliveries and 1,000,000 clicks.

Builds the store with set-based inserts (the subscribers, one delivery each, 20 links,
the clicks spread over people and links, one in ten a machine's, and some attributed
events), then times ``issue_report`` on SQLite and PostgreSQL. The baseline, measured
in the same run on the same rows, is the plainest question one can ask of those clicks:
``SELECT COUNT(*) FROM clicks WHERE issue_number = 1``. The ratio is what the whole
report (states, bounces, unique people per link, roll-ups) costs over that.

    .venv/bin/python benchmarks/bench_report.py                  # 100,000 / 1,000,000
    .venv/bin/python benchmarks/bench_report.py --deliveries 20000 --clicks 200000
    .venv/bin/python benchmarks/bench_report.py --smoke          # 1,000 / 10,000: CI
"""

from __future__ import annotations

import argparse
import json
import statistics
import sys
import tempfile
import time
from datetime import UTC, datetime
from pathlib import Path

REPO = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(REPO))
from benchmarks.pg import pg_schema  # noqa: E402

LINKS = 20
ROUNDS = 3


def _series(n: int) -> str:
    # A recursive CTE works on both backends (generate_series is PostgreSQL's alone).
    return f"WITH RECURSIVE n(i) AS (SELECT 1 UNION ALL SELECT i + 1 FROM n WHERE i < {n}) "


def build(url: str, deliveries: int, clicks: int):
    """The store at ``url`` with issue 1 sent to ``deliveries`` people and ``clicks``
    clicks on its links; returns the opened engine."""
    import sqlalchemy as sa

    from pipeline.store import open_store
    from pipeline.store.schema import campaigns, links

    engine = open_store(url)
    now = datetime.now(UTC)
    pg = engine.dialect.name == "postgresql"
    empty = "CAST('{}' AS JSONB)" if pg else "'{}'"
    with engine.begin() as conn:
        conn.execute(
            sa.text(
                _series(deliveries)
                + "INSERT INTO subscribers (id, email, email_hash, attributes, token_key,"
                " consent_seq, created_at) SELECT i, 'p' || i || '@example.org', 'h' || i,"
                f" {empty}, 'k', 0, :now FROM n"
            ),
            {"now": now},
        )
        cid = conn.execute(
            campaigns.insert()
            .values(
                issue_number=1,
                list_name="main",
                provider="outbox",
                subject="One",
                state="sent",
                created_at=now,
                started_at=now,
            )
            .returning(campaigns.c.id)
        ).scalar_one()
        conn.execute(
            sa.text(
                _series(deliveries)
                + "INSERT INTO deliveries (campaign_id, issue_number, subscriber_id, state,"
                " attempts, permanent, provider_id, created_at, updated_at)"
                " SELECT :cid, 1, i, CASE WHEN i % 100 = 0 THEN 'failed' ELSE 'sent' END, 1,"
                " (i % 200 = 0), 'pid-' || i, :now, :now FROM n"
            ),
            {"cid": cid, "now": now},
        )
        conn.execute(
            links.insert(),
            [
                {
                    "issue_number": 1,
                    "link_id": k,
                    "url": f"https://example.org/{k}",
                    "text": f"L{k}",
                }
                for k in range(1, LINKS + 1)
            ],
        )
        conn.execute(
            sa.text(
                _series(clicks)
                + "INSERT INTO clicks (issue_number, link_id, kind, subscriber_id, at, machine,"
                f" reasons) SELECT 1, 1 + i % {LINKS}, 'click',"
                # Spread over people; i % deliveries first keeps the product in 32 bits.
                f" 1 + ((i % {deliveries}) * 7919) % {deliveries},"
                " :now, (i % 10 = 0), '' FROM n"
            ),
            {"now": now},
        )
        for kind, detail, step in (
            ("unsubscribed", "list main", 97),
            ("complained", "suppressed: complaint", 997),
            ("bounced", "suppressed: hard_bounce", 499),
        ):
            conn.execute(
                sa.text(
                    _series(deliveries // step)
                    + "INSERT INTO events (subscriber_id, kind, source, detail, at, issue_number)"
                    f" SELECT i * {step}, :kind, 'bench', :detail, :now, 1 FROM n"
                ),
                {"kind": kind, "detail": detail, "now": now},
            )
    # Planner statistics and the visibility map, as autovacuum leaves them after a bulk
    # load (PostgreSQL's index-only scans need the latter).
    with engine.connect().execution_options(isolation_level="AUTOCOMMIT") as conn:
        conn.exec_driver_sql("VACUUM ANALYZE" if pg else "ANALYZE")
    return engine


def _median(fn) -> float:
    times = []
    for _ in range(ROUNDS):
        started = time.perf_counter()
        fn()
        times.append(time.perf_counter() - started)
    return statistics.median(times)


def measure(name: str, url: str, deliveries: int, clicks: int) -> None:
    import sqlalchemy as sa

    from pipeline.report.figures import issue_report

    started = time.perf_counter()
    engine = build(url, deliveries, clicks)
    built = time.perf_counter() - started
    report = issue_report(engine, 1)
    assert report.deliveries == deliveries, report.deliveries
    assert report.human_clicks + report.machine_clicks == clicks

    def baseline() -> None:
        with engine.connect() as conn:
            conn.execute(sa.text("SELECT COUNT(*) FROM clicks WHERE issue_number = 1")).scalar()

    base = _median(baseline)
    took = _median(lambda: issue_report(engine, 1))
    engine.dispose()
    figures = {
        "deliveries": deliveries,
        "clicks": clicks,
        "report_seconds": round(took, 3),
        "baseline_count_seconds": round(base, 3),
        "ratio_to_baseline": round(took / base, 2) if base else None,
        "build_seconds": round(built, 1),
    }
    print(f"  report {name}: {json.dumps(figures)}", flush=True)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--deliveries", type=int, default=100_000)
    parser.add_argument("--clicks", type=int, default=1_000_000)
    parser.add_argument("--smoke", action="store_true", help="1,000 / 10,000 (CI)")
    parser.add_argument(
        "--backends", default="sqlite,postgresql", help="comma-separated: sqlite, postgresql"
    )
    args = parser.parse_args()
    deliveries, clicks = (1_000, 10_000) if args.smoke else (args.deliveries, args.clicks)
    print(f"issue_report: {deliveries:,} deliveries, {clicks:,} clicks, median of {ROUNDS}")
    backends = args.backends.split(",")
    if "sqlite" in backends:
        with tempfile.TemporaryDirectory() as tmp:
            measure("sqlite", f"sqlite:///{Path(tmp) / 'report.db'}", deliveries, clicks)
    if "postgresql" in backends:
        with pg_schema() as pg:
            if pg is not None:
                measure("postgresql", pg, deliveries, clicks)


if __name__ == "__main__":
    main()
