"""Import and audience benchmark for the subscriber store.

Generates CSVs of 100,000 and 1,000,000 rows (1% duplicates, 0.5% invalid), imports
each into a fresh SQLite file and a fresh PostgreSQL schema, and prints rows/s and the
importing process's peak RSS, then the audience streaming rate. Each run is a child
process so peak RSS belongs to that run alone.

Then de-duplication (issue 13): files of N copies of one address (10,000 and 100,000 by
default), each against a baseline measured in the same run, a file of N different
addresses: "vs distinct" is the ratio of the two, "growth" how the time grew with ten
times the copies (about 10 when linear, about 100 when quadratic).

    .venv/bin/python benchmarks/bench_import.py            # 100k and 1M, both backends
    .venv/bin/python benchmarks/bench_import.py --rows 100000 --backend sqlite
    .venv/bin/python benchmarks/bench_import.py --rows 0 --dups 100000   # dedup only
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


def generate_copies(path: Path, rows: int, distinct: bool) -> None:
    """``rows`` copies of one address, or (the baseline) ``rows`` different addresses."""
    with path.open("w", encoding="utf-8", newline="") as out:
        out.write("email\n")
        for i in range(rows):
            out.write(f"person.{i if distinct else 0}@example.org\n")


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


def _run(backend: str, tmp: str, label: str, csv_path: Path) -> dict | None:
    """Import ``csv_path`` into a fresh store of ``backend`` in a child process."""
    schema = None
    if backend == "sqlite":
        url = f"sqlite:///{Path(tmp) / f'bench-{label}-{uuid.uuid4().hex[:6]}.db'}"
    else:
        made = _pg_schema()
        if made is None:
            return None
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
    return json.loads(done.stdout.strip().splitlines()[-1])


def dedup(sizes: list[int], backends: list[str], tmp: str) -> None:
    """N copies of one address against N different addresses, at each size."""
    print(
        f"\n{'dedup':<11} {'copies':>9} {'seconds':>8} {'distinct':>9} {'vs distinct':>12}"
        f" {'growth':>7}"
    )
    for backend in backends:
        previous: tuple[int, float] | None = None
        for size in sizes:
            copies, distinct = Path(tmp) / f"copies{size}.csv", Path(tmp) / f"distinct{size}.csv"
            generate_copies(copies, size, distinct=False)
            generate_copies(distinct, size, distinct=True)
            base = _run(backend, tmp, f"distinct{size}", distinct)
            dup = _run(backend, tmp, f"copies{size}", copies)
            if base is None or dup is None:
                continue
            assert dup["imported"] == 1 and dup["duplicates"] == size - 1, dup
            growth = ""
            if previous is not None:
                factor = size / previous[0]
                growth = f"{dup['seconds'] / previous[1]:.1f}x/{factor:.0f}x"
            print(
                f"{backend:<11} {size:>9,} {dup['seconds']:>8.2f} {base['seconds']:>9.2f} "
                f"{dup['seconds'] / base['seconds']:>12.2f} {growth:>7}",
                flush=True,
            )
            previous = (size, dup["seconds"])


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--rows", type=int, action="append", help="rows (repeatable; 0: none)")
    parser.add_argument(
        "--dups", type=int, action="append", help="copies of one address (repeatable)"
    )
    parser.add_argument("--backend", choices=["sqlite", "postgresql"], action="append")
    parser.add_argument(
        "--smoke", action="store_true", help="200 rows (CI: keeps the script alive)"
    )
    parser.add_argument("--child", nargs=2, metavar=("URL", "CSV"), help=argparse.SUPPRESS)
    args = parser.parse_args()
    if args.child:
        child(*args.child)
        return
    sizes = [n for n in (args.rows or ([200] if args.smoke else [100_000, 1_000_000])) if n]
    dup_sizes = args.dups or ([20, 200] if args.smoke else [10_000, 100_000])
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
                r = _run(backend, tmp, f"rows{size}", csv_path)
                if r is None:
                    continue
                print(
                    f"{backend:<11} {r['rows']:>9,} {r['seconds']:>8.1f} "
                    f"{r['rows'] / r['seconds']:>8,.0f} {r['peak_rss_mb']:>7.0f}MB "
                    f"{r['audience'] / r['audience_seconds']:>11,.0f}"
                    f"   (imported {r['imported']:,}, duplicates {r['duplicates']:,},"
                    f" invalid {r['invalid']:,}, audience {r['audience']:,})",
                    flush=True,
                )
        dedup(sorted(dup_sizes), backends, tmp)


if __name__ == "__main__":
    main()
