"""Benchmark: what a shop runs (the defaults) on yoochoose-100k's test set, beside the published methods.

Runs ``recsys evaluate`` (:func:`batch.evaluate.run`, nothing re-implemented)
on the settings of the environment: with none set, the defaults, which are
what ``recsys evaluate --tune train_tr.txt train_valid.txt`` chose (recorded
in ``profiles/yoochoose-tuned.toml``). ALS is fit on ``train_full.txt``,
``test.txt`` is replayed through the worker's scoring path (next-item
protocol), and HR@20 / MRR@20 are compared with

- the peers' lists in ``peers/*.csv``, scored by the same code on the 387
  positions they cover, and
- the figures for all 10,152 positions in the data set's ``published.json``
  (session-rec's own runs), which are published, not recomputed here.

With ``--tune`` the parameters are chosen afresh on train_tr -> train_valid
(several minutes) instead. The JSON's ``configuration`` says which ran:
``defaults``, ``tuned here`` or ``settings`` (some set by the environment or a
configuration file).

Usage::

    python benchmarks/eval_yoochoose.py [--report reports/yoochoose-100k] [--tune]

Writes ``benchmarks/results/eval-yoochoose.json`` (``--out``) and the report
folder (report.md, report.json, plots, and params.json: the parameters, for
``recsys evaluate --params``).
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
from batch.readers import REFERENCE_DATA_DIR
from batch.training import TrainingParams
from shared.config import Settings, load_settings
from shared.scoring import ScoringParams

ROOT = Path(__file__).resolve().parents[1]
RESULTS = Path(__file__).resolve().parent / "results" / "eval-yoochoose.json"
DATA = REFERENCE_DATA_DIR / "yoochoose-100k"
#: The profile that records what ``recsys evaluate --tune`` chose on yoochoose-100k.
PROFILE = "yoochoose-tuned"
METRICS = ("hr@20", "mrr@20", "positions")


def shown(path) -> str:
    """``path`` relative to the repository."""
    return os.path.relpath(Path(path).resolve(), ROOT)


def pick(metrics: dict) -> dict:
    return {name: metrics[name] for name in METRICS}


def configuration(scoring: dict, training: dict, *, tuned_here: bool) -> str:
    """Which configuration a report ran on: ``tuned here``, ``defaults`` or ``settings``."""
    if tuned_here:
        return "tuned here"
    defaults = Settings()
    if (scoring == ScoringParams.from_settings(defaults).as_dict()
            and training == TrainingParams.from_settings(defaults).reported()):
        return "defaults"
    return "settings"


def summary(report: dict, *, tuned_here: bool, seconds: float, report_dir: Path) -> dict:
    """The benchmark's JSON from ``recsys evaluate``'s report."""
    nxt = report["next_item"]
    tuning = report.get("tuning") or {}
    scoring, training = report["scoring_params"], report["training"]
    profile = evaluate.load_profile(PROFILE)
    recorded = (scoring == profile.scoring.as_dict()
                and training == profile.training.reported())
    published = evaluate.published_figures(Path(report["data"]["test"]).parent)
    how = tuning.get("how") or ("recsys evaluate --tune on train_tr -> train_valid; "
                                "the test set was not read")
    return {
        "configuration": configuration(scoring, training, tuned_here=tuned_here),
        "data": {"train": shown(report["data"]["train"]), "test": shown(report["data"]["test"]),
                 "peers": shown(Path(report["data"]["test"]).parent / "peers")},
        "protocol": ("next-item (session-rec): after each item of a test session, a list of "
                     "20 is scored against the session's next item; items unknown to the "
                     "model stay in the denominator"),
        "all": {**pick(nxt["all"]), "coverage": nxt["coverage"], "peers": {
            name: {**figures, "positions": published.positions,
                   "figures": "published (data set README, session-rec's own code), not recomputed"}
            for name, figures in published.methods.items()}},
        "peer_positions": {**pick(nxt["peer_positions"]), "peers": {
            name: {**pick(m),
                   "figures": "recomputed from peers/*.csv by batch.evaluate.score_lists"}
            for name, m in nxt["peers"].items()}},
        "params": {
            "scoring": scoring, "training": training,
            "source": ("chosen afresh by this run (--tune)" if tuned_here else
                       "the settings (recsys config); with none set, the defaults"),
            "equal_to_recorded": recorded,
            "how_chosen": how,
            "start": tuning.get("start"),
            "tuned_on": {"train": shown(tuning.get("train", DATA / "train_tr.txt")),
                         "valid": shown(tuning.get("valid", DATA / "train_valid.txt"))},
            "validation": pick(tuning["best_metrics"]) if "best_metrics" in tuning else None,
            "trials": tuning.get("trials")},
        "model": {"version": report["model"]["version"], "n_items": report["model"]["n_items"],
                  "params": report["model"]["params"]},
        "replay": {"events": nxt["events"], "seconds": nxt["seconds"],
                   "strategies": nxt["strategies"]},
        "report": shown(report_dir),
        "wall_s": round(seconds, 1),
        "machine": {"python": platform.python_version(), "processor": platform.machine()},
    }


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--report", default=str(ROOT / "reports" / "yoochoose-100k"),
                        help="folder for report.md/json and the plots")
    parser.add_argument("--out", default=str(RESULTS), help="the benchmark's JSON")
    parser.add_argument("--data", default=str(DATA), help="the yoochoose-100k folder")
    parser.add_argument("--tune", action="store_true",
                        help="choose the parameters on train_tr -> train_valid instead of "
                             "using the settings (several minutes)")
    args = parser.parse_args(argv)
    data, report_dir = Path(args.data), Path(args.report)
    started = time.perf_counter()
    cli = ["--train", str(data / "train_full.txt"), "--test", str(data / "test.txt"),
           "--report", str(report_dir), "--peers", str(data / "peers"), "--ablations"]
    if args.tune:
        cli += ["--tune", str(data / "train_tr.txt"), str(data / "train_valid.txt")]
    evaluate_parser = argparse.ArgumentParser()
    evaluate.add_arguments(evaluate_parser)
    evaluate.run(evaluate_parser.parse_args(cli), load_settings())
    report = json.loads((report_dir / "report.json").read_text())
    (report_dir / "params.json").write_text(json.dumps(
        {"scoring_params": report["scoring_params"], "training": report["training"],
         **({"tuning": report["tuning"]} if report.get("tuning") else {})}, indent=2) + "\n")
    out = summary(report, tuned_here=args.tune, seconds=time.perf_counter() - started,
                  report_dir=report_dir)
    Path(args.out).parent.mkdir(parents=True, exist_ok=True)
    Path(args.out).write_text(json.dumps(out, indent=2) + "\n")
    print(json.dumps({"all": {k: out["all"][k] for k in METRICS},
                      "peer_positions": {k: out["peer_positions"][k] for k in METRICS},
                      "wall_s": out["wall_s"]}), file=sys.stderr)
    return 0


if __name__ == "__main__":
    sys.exit(main())
