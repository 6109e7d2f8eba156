"""Benchmark: a whole retrain against a bare ``implicit`` fit of the same matrix.

Draws N events of the synthetic shop, fits ``implicit`` ALS alone on their
confidence matrix with the configured parameters (``implicit_fit_s``), then
runs the whole retrain into a temporary store (``wall_s``: matrix, ALS,
neighbours, popularity, save). Targets: ``ratio`` = wall_s / implicit_fit_s
<= 1.5 and ``peak_rss_mb`` <= 4096 (the whole process, input included).

Usage::

    nice python benchmarks/retrain.py --events 3000000

Writes ``benchmarks/results/retrain.json`` (``--out`` to change).
"""
from __future__ import annotations

import argparse
import json
import os
import platform
import resource
import sys
import tempfile
import time
from pathlib import Path

import implicit.cpu.als
from threadpoolctl import threadpool_limits

from batch.matrix import build_interactions
from batch.retrain import retrain
from batch.synthetic import generate_columns
from batch.training import TrainingParams
from shared.config import load_settings

RESULTS = Path(__file__).resolve().parent / "results" / "retrain.json"
TARGETS = {"ratio": 1.5, "peak_rss_mb": 4096}


def peak_rss_mb() -> float:
    """Peak resident memory of this process so far (Linux reports KiB)."""
    return resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024


def bare_fit_seconds(columns, params: TrainingParams) -> float:
    """Seconds of ``implicit``'s fit alone on the retrain's matrix, same parameters."""
    user_items = build_interactions(columns, params.weights).user_items
    with threadpool_limits(1, "blas"):
        als = implicit.cpu.als.AlternatingLeastSquares(
            factors=params.factors, regularization=params.regularization, alpha=1.0,
            iterations=params.iterations, random_state=0)
        started = time.perf_counter()
        als.fit(user_items, show_progress=False)
        return time.perf_counter() - started


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--events", type=int, default=33_000_000)
    parser.add_argument("--seed", type=int, default=0)
    parser.add_argument("--out", type=Path, default=RESULTS)
    args = parser.parse_args(argv)
    params = TrainingParams.from_settings(load_settings())

    started = time.perf_counter()
    columns, _ = generate_columns(args.events, seed=args.seed)
    generate_s = time.perf_counter() - started
    input_rss_mb = peak_rss_mb()
    print(f"generated {len(columns):,} events in {generate_s:.1f} s", file=sys.stderr)

    implicit_fit_s = bare_fit_seconds(columns, params)
    print(f"bare implicit fit {implicit_fit_s:.1f} s", file=sys.stderr)

    with tempfile.TemporaryDirectory() as store:
        started = time.perf_counter()
        model, _ = retrain(columns, store, keep_versions=1, progress=True,
                           source={"kind": "synthetic", "events": args.events, "seed": args.seed},
                           params=params)
        wall_s = time.perf_counter() - started

    counts = model.meta["counts"]
    result = {
        "events": counts["events_read"], "users": counts["users"], "items": counts["items"],
        "sessions": counts["sessions"], "nnz": counts["nnz"],
        "wall_s": round(wall_s, 2), "implicit_fit_s": round(implicit_fit_s, 2),
        "ratio": round(wall_s / implicit_fit_s, 3), "peak_rss_mb": round(peak_rss_mb(), 1),
        "input_peak_rss_mb": round(input_rss_mb, 1), "generate_s": round(generate_s, 2),
        "timings_s": model.meta["timings_s"],
        "params": {k: v for k, v in model.meta["params"].items() if k != "signal_weights"},
        "targets": TARGETS, "cpus": os.cpu_count(), "machine": platform.machine(),
        "measured_at": time.strftime("%Y-%m-%dT%H:%M:%SZ", time.gmtime()),
    }
    result["meets_targets"] = all(result[name] <= limit for name, limit in TARGETS.items())
    args.out.parent.mkdir(parents=True, exist_ok=True)
    args.out.write_text(json.dumps(result, indent=2) + "\n")
    print(json.dumps(result, indent=2))
    return 0


if __name__ == "__main__":
    sys.exit(main())
