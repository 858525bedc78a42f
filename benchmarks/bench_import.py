"""Import and audience benchmark for the subscriber store.

Generates CSVs of 100,000 and 1,000,000 rows (1% duplicates, 0.5% invalid), imports
each into a fresh SQLite file and a fresh PostgreSQL schema, and prints rows/s and the
importing process's peak RSS, then the audience streaming rate. Each run is a child
process so peak RSS belongs to that run alone.

    .venv/bin/python benchmarks/bench_import.py            # 100k and 1M, both backends
    .venv/bin/python benchmarks/bench_import.py --rows 100000 --backend sqlite
    .venv/bin/python benchmarks/bench_import.py --smoke    # 200 rows, both backends: CI
"""

from __future__ import annotations

import argparse
import json
import resource
import subprocess
import sys
import tempfile
import time
import uuid
from pathlib import Path

REPO = Path(__file__).resolve().parent.parent
PG_ADMIN = "postgresql+psycopg://postgres@127.0.0.1:5432/test"
DOMAINS = [f"mail{i}.example.{tld}" for i in range(40) for tld in ("com", "org", "net")]


def generate(path: Path, rows: int) -> None:
    """Write ``rows`` data rows: email, name, city, plan."""
    with path.open("w", encoding="utf-8", newline="") as out:
        out.write("email,name,city,plan\n")
        for i in range(rows):
            if i % 200 == 199:
                email = f"broken-{i}-at-nowhere"  # 0.5% invalid
            elif i % 100 == 99:
                email = f"Person.{i - 1}@{DOMAINS[(i - 1) % len(DOMAINS)].upper()}"  # 1% dups
            else:
                email = f"person.{i}@{DOMAINS[i % len(DOMAINS)]}"
            out.write(f"{email},Person {i},City {i % 500},{'pro' if i % 7 else 'free'}\n")


def child(url: str, csv_path: str) -> None:
    """Import one file and stream its audience; print figures as JSON."""
    sys.path.insert(0, str(REPO))
    from pipeline.store import audience, import_csv, open_store

    engine = open_store(url)
    started = time.perf_counter()
    report = import_csv(engine, csv_path, "main", confirmed=True, source="benchmark")
    took = time.perf_counter() - started
    started = time.perf_counter()
    streamed = sum(1 for _ in audience(engine, "main", batch_size=5000))
    stream_took = time.perf_counter() - started
    peak_kb = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss  # KiB on Linux
    print(
        json.dumps(
            {
                "rows": report.rows,
                "imported": report.imported,
                "duplicates": report.duplicates,
                "invalid": report.invalid,
                "seconds": took,
                "peak_rss_mb": peak_kb / 1024,
                "audience": streamed,
                "audience_seconds": stream_took,
            }
        )
    )
    engine.dispose()


def _pg_schema() -> tuple[str, str] | None:
    import sqlalchemy as sa

    schema = f"bench_{uuid.uuid4().hex[:8]}"
    try:
        engine = sa.create_engine(PG_ADMIN, connect_args={"connect_timeout": 3})
        with engine.begin() as conn:
            conn.exec_driver_sql(f'CREATE SCHEMA "{schema}"')
        engine.dispose()
    except Exception as exc:  # noqa: BLE001
        print(f"  postgresql: skipped ({str(exc).splitlines()[0]})")
        return None
    return schema, f"{PG_ADMIN}?options=-csearch_path%3D{schema}"


def _drop_pg(schema: str) -> None:
    import sqlalchemy as sa

    engine = sa.create_engine(PG_ADMIN)
    with engine.begin() as conn:
        conn.exec_driver_sql(f'DROP SCHEMA "{schema}" CASCADE')
    engine.dispose()


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--rows", type=int, action="append", help="rows (repeatable)")
    parser.add_argument("--backend", choices=["sqlite", "postgresql"], action="append")
    parser.add_argument(
        "--smoke", action="store_true", help="200 rows (CI: keeps the script alive)"
    )
    parser.add_argument("--child", nargs=2, metavar=("URL", "CSV"), help=argparse.SUPPRESS)
    args = parser.parse_args()
    if args.child:
        child(*args.child)
        return
    sizes = args.rows or ([200] if args.smoke else [100_000, 1_000_000])
    backends = args.backend or ["sqlite", "postgresql"]
    print(
        f"{'backend':<11} {'rows':>9} {'seconds':>8} {'rows/s':>8} {'peak RSS':>9}"
        f" {'audience/s':>11}"
    )
    with tempfile.TemporaryDirectory() as tmp:
        for size in sizes:
            csv_path = Path(tmp) / f"rows{size}.csv"
            generate(csv_path, size)
            for backend in backends:
                schema = None
                if backend == "sqlite":
                    url = f"sqlite:///{Path(tmp) / f'bench{size}.db'}"
                else:
                    made = _pg_schema()
                    if made is None:
                        continue
                    schema, url = made
                try:
                    done = subprocess.run(
                        [sys.executable, __file__, "--child", url, str(csv_path)],
                        capture_output=True,
                        text=True,
                        check=True,
                    )
                finally:
                    if schema:
                        _drop_pg(schema)
                r = json.loads(done.stdout.strip().splitlines()[-1])
                print(
                    f"{backend:<11} {r['rows']:>9,} {r['seconds']:>8.1f} "
                    f"{r['rows'] / r['seconds']:>8,.0f} {r['peak_rss_mb']:>7.0f}MB "
                    f"{r['audience'] / r['audience_seconds']:>11,.0f}"
                    f"   (imported {r['imported']:,}, duplicates {r['duplicates']:,},"
                    f" invalid {r['invalid']:,}, audience {r['audience']:,})",
                    flush=True,
                )


if __name__ == "__main__":
    main()
