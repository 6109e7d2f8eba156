"""Benchmark: what per-event fold-in is worth against stale batch-only user vectors.

Runs :func:`batch.evaluate.realtime_vs_stale` (nothing re-implemented): a
synthetic shop with ground truth, ALS fit on the first 80 % of its events
(:func:`batch.retrain.train_model`), the rest replayed in time order through
the worker's scoring twice, once with the user's vector folded in after every
event (the worker's path) and once with each user's vector fixed at training
time. HR@20, MRR@20 of the next item and the share of listed items in the
shopper's preferred categories, for returning users and for anonymous or new
visitors.

Usage::

    python benchmarks/eval_synthetic.py [--events 300000] [--seed 7] [--report DIR]

Writes ``benchmarks/results/eval-synthetic.json`` (``--out``) and, with
``--report``, report.md and report.json into that folder. Scoring and training
parameters are the configured ones (``recsys config``).
"""
from __future__ import annotations

import argparse
import json
import os
import platform
import sys
import time
from pathlib import Path

from batch import evaluate
from shared.config import load_settings

RESULTS = Path(__file__).resolve().parent / "results" / "eval-synthetic.json"


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--events", type=int, default=evaluate.SYNTHETIC_EVENTS)
    parser.add_argument("--seed", type=int, default=evaluate.SYNTHETIC_SEED)
    parser.add_argument("--train-share", type=float, default=evaluate.SYNTHETIC_TRAIN_SHARE)
    parser.add_argument("--out", default=str(RESULTS))
    parser.add_argument("--report", default=None, help="also write report.md/json here")
    args = parser.parse_args(argv)
    log = lambda text: print(text, file=sys.stderr, flush=True)  # noqa: E731
    started = time.perf_counter()
    result = evaluate.realtime_vs_stale(args.events, seed=args.seed, train_share=args.train_share,
                                        settings=load_settings(), log=log)
    result["benchmark"] = {"wall_s": round(time.perf_counter() - started, 2),
                           "python": platform.python_version(), "cpus": os.cpu_count(),
                           "machine": platform.machine()}
    out = Path(args.out)
    out.parent.mkdir(parents=True, exist_ok=True)
    out.write_text(json.dumps(result, indent=2, default=evaluate.json_default) + "\n")
    markdown = evaluate.realtime_markdown(result)
    if args.report:
        folder = Path(args.report)
        folder.mkdir(parents=True, exist_ok=True)
        (folder / "report.json").write_text(
            json.dumps(result, indent=2, default=evaluate.json_default) + "\n")
        (folder / "report.md").write_text("# Evaluation report\n\n" + markdown)
    print(markdown)
    log(f"eval_synthetic: {out}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
