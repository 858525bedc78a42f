"""``brief db copy`` benchmark: the whole store from SQLite to PostgreSQL and back.

Builds a SQLite store of N confirmed subscribers (an import: subscribers, memberships,
one consent event each, and a ledger row each from one campaign), then copies it
SQLite -> PostgreSQL and that copy PostgreSQL -> SQLite with ``copy_store``. The
baseline, measured in the same run on the same rows, is the floor for moving them: each
table read whole and inserted in ONE transaction, with no batches, no high-water marks,
no resumability. The ratio is what batching and resumability cost.

    .venv/bin/python benchmarks/bench_copy.py                # 100,000 subscribers
    .venv/bin/python benchmarks/bench_copy.py --rows 300000 --batch 5000
    .venv/bin/python benchmarks/bench_copy.py --smoke        # 300 subscribers: CI
"""

from __future__ import annotations

import argparse
import json
import sys
import tempfile
import time
from pathlib import Path

REPO = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(REPO))
from benchmarks.pg import pg_schema  # noqa: E402


def build_source(url: str, rows: int, tmp: Path) -> int:
    """A store with ``rows`` confirmed subscribers and a campaign's ledger; total rows."""
    from pipeline.store import import_csv, open_store
    from pipeline.store.copy import copied_tables
    from pipeline.store.ledger import enqueue_audience, start_campaign

    csv_path = tmp / "people.csv"
    with csv_path.open("w", encoding="utf-8") as out:
        out.write("email,name,city\n")
        for i in range(rows):
            out.write(f"person.{i}@example.org,Person {i},City {i % 500}\n")
    engine = open_store(url)
    import_csv(engine, str(csv_path), "main", confirmed=True, source="benchmark")
    campaign = start_campaign(
        engine, 1, "main", provider="outbox", subject="One", content_commit="x", holder="b:1"
    )
    enqueue_audience(engine, campaign)
    with engine.connect() as conn:
        import sqlalchemy as sa

        total = sum(
            conn.execute(sa.select(sa.func.count()).select_from(t)).scalar_one()
            for t in copied_tables()
        )
    engine.dispose()
    return total


def floor(source_url: str, target_url: str) -> float:
    """Seconds to migrate the target and move every table in one transaction, nothing
    else (the baseline; ``copy_store`` migrates its target too)."""
    import sqlalchemy as sa

    from pipeline.store import open_store
    from pipeline.store.copy import _row_for_insert, copied_tables

    started = time.perf_counter()
    source, target = open_store(source_url), open_store(target_url)
    with source.connect() as src, target.begin() as dst:
        for table in copied_tables():
            rows = src.execute(sa.select(table)).mappings().all()
            if rows:
                dst.execute(table.insert(), [_row_for_insert(r) for r in rows])
    took = time.perf_counter() - started
    source.dispose()
    target.dispose()
    return took


def timed_copy(source_url: str, target_url: str, batch: int) -> tuple[float, int]:
    from pipeline.store.copy import copy_store

    started = time.perf_counter()
    report = copy_store(source_url, target_url, batch_size=batch)
    took = time.perf_counter() - started
    assert report.mismatched == (), report.mismatched
    return took, report.copied


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--rows", type=int, default=100_000, help="subscribers")
    parser.add_argument("--batch", type=int, default=2000, help="rows per target transaction")
    parser.add_argument("--smoke", action="store_true", help="300 subscribers (CI)")
    args = parser.parse_args()
    rows = 300 if args.smoke else args.rows
    with tempfile.TemporaryDirectory() as tmp_name:
        tmp = Path(tmp_name)
        source = f"sqlite:///{tmp / 'source.db'}"
        total = build_source(source, rows, tmp)
        print(f"{rows:,} subscribers, {total:,} rows in all tables; batch {args.batch:,}")
        with pg_schema() as pg_copy, pg_schema() as pg_floor:
            if pg_copy is None or pg_floor is None:
                return
            base = floor(source, pg_floor)
            took, copied = timed_copy(source, pg_copy, args.batch)
            _line("sqlite->postgresql", rows, copied, took, base)
            back = f"sqlite:///{tmp / 'back.db'}"
            base = floor(pg_copy, f"sqlite:///{tmp / 'floor.db'}")
            took, copied = timed_copy(pg_copy, back, args.batch)
            _line("postgresql->sqlite", rows, copied, took, base)


def _line(direction: str, people: int, copied: int, took: float, base: float) -> None:
    figures = {
        "rows": copied,
        "seconds": round(took, 2),
        "rows_per_s": round(copied / took),
        "floor_seconds": round(base, 2),
        "ratio_to_floor": round(took / base, 2),
    }
    print(f"  copy {direction} {people:,}: {json.dumps(figures)}", flush=True)


if __name__ == "__main__":
    main()
