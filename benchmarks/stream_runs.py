"""Run ``benchmarks/stream.py`` several times, one after another, and keep every run.

The machines are shared and whole runs move together, so one run's figures
say little: this writes each run's ``stream.json`` into
``benchmarks/results/stream-runs.json`` (``runs``, with the medians across
them in ``median``) and copies the run with the median throughput to
``benchmarks/results/stream.json``. Arguments after ``--`` go to each run::

    python benchmarks/stream_runs.py [--runs 3] [-- --events 100000]
"""
from __future__ import annotations

import argparse
import json
import subprocess
import sys
import tempfile
from pathlib import Path
from statistics import median

ROOT = Path(__file__).resolve().parents[1]
RESULTS = ROOT / "benchmarks" / "results"

#: Per run, what stream-runs.json keeps: (name there, path in stream.json).
FIGURES = (("throughput_eps", ("throughput_eps",)), ("faust_noop_eps", ("faust_noop_eps",)),
           ("faust_noop_ratio", ("faust_noop_ratio",)), ("baseline_eps", ("baseline_eps",)),
           ("paper_profile_eps", ("paper_profile", "throughput_eps")),
           ("latency_p50_ms", ("latency_ms", "p50")), ("latency_p99_ms", ("latency_ms", "p99")))


def _get(result: dict, path: tuple[str, ...]):
    for key in path:
        result = result[key]
    return result


def main(argv=None) -> None:
    argv = sys.argv[1:] if argv is None else argv
    extra = argv[argv.index("--") + 1:] if "--" in argv else []
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--runs", type=int, default=3, help="runs of benchmarks/stream.py")
    args = parser.parse_args(argv[:argv.index("--")] if "--" in argv else argv)
    runs = []
    with tempfile.TemporaryDirectory(prefix="recsys-stream-runs-") as work:
        for number in range(1, args.runs + 1):
            out = Path(work) / f"run-{number}.json"
            print(f"run {number} of {args.runs}", file=sys.stderr, flush=True)
            subprocess.run([sys.executable, str(ROOT / "benchmarks" / "stream.py"), "--out",
                            str(out), *extra], check=True, cwd=ROOT)
            runs.append(json.loads(out.read_text()))
    rows = [{"measured_at": r["measured_at"], **{name: _get(r, path) for name, path in FIGURES},
             "latency_p99_runs_ms": [run["p99"] for run in r["latency_runs"]]} for r in runs]
    summary = {
        "what": f"{len(runs)} runs of benchmarks/stream.py one after another "
                "(benchmarks/stream_runs.py); stream.json is the run with the median throughput",
        "configuration": runs[0]["configuration"], "runs": rows,
        "median": {name: median(row[name] for row in rows) for name, _ in FIGURES},
    }
    RESULTS.mkdir(parents=True, exist_ok=True)
    (RESULTS / "stream-runs.json").write_text(json.dumps(summary, indent=2) + "\n")
    middle = sorted(runs, key=lambda r: r["throughput_eps"])[(len(runs) - 1) // 2]
    (RESULTS / "stream.json").write_text(json.dumps(middle, indent=2) + "\n")
    print(json.dumps(summary["median"], indent=2))


if __name__ == "__main__":
    main()
