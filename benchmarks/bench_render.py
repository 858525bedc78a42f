"""Render speed: prints figures, asserts nothing (speed targets live here, not in tests).

    .venv/bin/python benchmarks/bench_render.py [--config brief.toml] [--issue 1] [--runs 200]
    .venv/bin/python benchmarks/bench_render.py --smoke   # every step once, no node: CI

Measures, in this run: the warm render of one issue (Markdown, Jinja2, MJML, text;
median of many), the MJML compile step alone with mjml-python (MRML), the same MJML
compiled by the official compiler (npm package ``mjml``) warm inside node and as
``npx mjml`` processes, and whole-process ``brief render`` and ``brief --help`` against
a bare ``python -c pass`` baseline. Node columns are skipped, with a note, when node
or the package is missing. ``BRIEF_MJML_NODE_DIR`` points at a folder where ``mjml``
is installed (default: a temporary folder, installed with ``npm install mjml``).
"""

from __future__ import annotations

import argparse
import json
import os
import shutil
import statistics
import subprocess
import sys
import tempfile
import time
from pathlib import Path

REPO = Path(__file__).resolve().parent.parent


def median_ms(fn, runs: int) -> float:
    """Median wall time of ``fn`` in milliseconds, after one warm-up call."""
    fn()
    times = []
    for _ in range(runs):
        t = time.perf_counter()
        fn()
        times.append((time.perf_counter() - t) * 1000)
    return statistics.median(times)


def process_ms(cmd: list[str], runs: int, cwd: Path) -> float:
    """Median wall time of a whole process in milliseconds."""
    times = []
    for _ in range(runs):
        t = time.perf_counter()
        subprocess.run(cmd, cwd=cwd, check=True, capture_output=True)
        times.append((time.perf_counter() - t) * 1000)
    return statistics.median(times)


def node_dir() -> Path | None:
    """A folder with the official ``mjml`` package installed, or None (with a note)."""
    if not shutil.which("node") or not shutil.which("npm"):
        print("official MJML: node/npm not found; skipping the node columns")
        return None
    folder = Path(os.environ.get("BRIEF_MJML_NODE_DIR") or tempfile.mkdtemp(prefix="mjml-"))
    if not (folder / "node_modules" / "mjml").is_dir():
        print(f"official MJML: npm install mjml into {folder} ...")
        done = subprocess.run(
            ["npm", "install", "--no-audit", "--no-fund", "mjml@4"],
            cwd=folder,
            capture_output=True,
            text=True,
        )
        if done.returncode != 0:
            print("official MJML: npm install failed; skipping the node columns")
            return None
    return folder


NODE_WARM = """
const mjml = require('mjml');
const fs = require('fs');
const src = fs.readFileSync(process.argv[2], 'utf8');
const runs = Number(process.argv[3]);
mjml(src, {validationLevel: 'skip'});
const times = [];
for (let i = 0; i < runs; i++) {
  const t = process.hrtime.bigint();
  mjml(src, {validationLevel: 'skip'});
  times.push(Number(process.hrtime.bigint() - t) / 1e6);
}
times.sort((a, b) => a - b);
console.log(JSON.stringify({median: times[Math.floor(times.length / 2)]}));
"""


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--config", default=str(REPO / "brief.toml"))
    ap.add_argument("--issue", default="1")
    ap.add_argument("--runs", type=int, default=200)
    ap.add_argument("--process-runs", type=int, default=7)
    ap.add_argument(
        "--smoke",
        action="store_true",
        help="every step at the smallest size, node columns off (CI: keeps the script alive)",
    )
    args = ap.parse_args()
    if args.smoke:
        args.runs, args.process_runs = 2, 1

    from mjml import mjml2html

    from pipeline.config import load_settings
    from pipeline.content.library import load_content
    from pipeline.render.issue import render_issue, render_mjml
    from pipeline.render.templating import environment

    settings = load_settings(args.config)
    library = load_content(settings)
    issue = library.issue(args.issue)
    env = environment(settings)
    source = render_mjml(issue, library, settings, env)
    rendered = render_issue(issue, library, settings, env)
    print(
        f"issue {issue.label}: MJML {len(source) / 1024:.1f} KB -> HTML "
        f"{len(rendered.html.encode()) / 1024:.1f} KB, text {len(rendered.text) / 1024:.1f} KB"
    )

    whole = median_ms(lambda: render_issue(issue, library, settings, env), args.runs)
    mrml = median_ms(lambda: mjml2html(source), args.runs)
    print(
        f"render_issue, warm (Markdown+Jinja2+MJML+text), median of {args.runs}: "
        f"{whole:.2f} ms  (target < 5 ms)"
    )
    print(f"MJML compile, mjml-python (MRML) in process, median of {args.runs}: {mrml:.2f} ms")

    # The smoke run stays on this machine: the node columns may download from npm.
    folder = None if args.smoke else node_dir()
    if folder:
        with tempfile.TemporaryDirectory() as tmp:
            mj = Path(tmp) / "issue.mjml"
            mj.write_text(source, encoding="utf-8")
            script = folder / "bench_warm.js"
            script.write_text(NODE_WARM, encoding="utf-8")
            out = subprocess.run(
                ["node", str(script), str(mj), str(args.runs)],
                cwd=folder,
                capture_output=True,
                text=True,
                check=True,
            )
            node_warm = json.loads(out.stdout)["median"]
            npx = process_ms(
                ["npx", "--no-install", "mjml", str(mj), "-o", str(Path(tmp) / "out.html")],
                args.process_runs,
                folder,
            )
        print(
            f"MJML compile, official mjml (node) warm in process, median of {args.runs}: "
            f"{node_warm:.2f} ms  -> MRML is {node_warm / mrml:.0f}x faster (target >= 10x)"
        )
        print(
            f"MJML compile, `npx mjml` whole process, median of {args.process_runs}: "
            f"{npx:.0f} ms  -> vs MRML in process {npx / mrml:.0f}x"
        )

    cli = [str(Path(sys.executable).parent / "brief"), "--config", str(settings.path)]
    with tempfile.TemporaryDirectory() as tmp:
        base = process_ms([sys.executable, "-c", "pass"], args.process_runs, REPO)
        helpms = process_ms([*cli, "--help"], args.process_runs, REPO)
        renderms = process_ms([*cli, "render", args.issue, "--out", tmp], args.process_runs, REPO)
    print(f"python -c pass (baseline), median of {args.process_runs}: {base:.0f} ms")
    print(
        f"brief --help, whole process: {helpms:.0f} ms ({helpms / base:.1f}x baseline; "
        "target < 200 ms)"
    )
    print(
        f"brief render {args.issue} (html, txt, eml), whole process: {renderms:.0f} ms "
        f"({renderms / base:.1f}x baseline)"
    )


if __name__ == "__main__":
    main()
