"""``recsys evaluate``: offline evaluation through the worker's own scoring path.

The command line: :func:`add_arguments` and :func:`run` (what ``recsys
evaluate`` calls), the ``--params`` file (:func:`params_from_json`,
:func:`chosen_by`), the ``--tune`` step on a training and a validation file,
and :func:`main` (``python -m batch.evaluate``). A ``published.json`` in the
folder that holds the ``--peers`` folder (see
:mod:`batch.evaluate.dataset_files`) puts the peers' published figures in the
report beside the recomputed ones.
"""
from __future__ import annotations

import argparse
import json
import os
import sys
from datetime import UTC, datetime
from pathlib import Path

from batch.evaluate.dataset_files import published_figures
from batch.evaluate.peers import next_item_truth, read_peers, score_lists
from batch.evaluate.protocols import evaluate_original
from batch.evaluate.replay import replay_next_item, write_lists
from batch.evaluate.report import write_report
from batch.evaluate.tuning import (TRAIN_GRID, TUNE_GRID, _settings_or_default, ablations, fit,
                                   tune, tune_start, tune_training)
from batch.readers import read_events
from batch.training import TrainingParams
from shared.model_store import load_model
from shared.scoring import ScoringParams, SourceWeights


def add_arguments(parser: argparse.ArgumentParser) -> None:
    """Options of ``recsys evaluate``."""
    parser.add_argument("--train", required=True, help="events the model is fit on")
    parser.add_argument("--test", required=True, help="later events to evaluate on")
    parser.add_argument("--report", required=True, help="folder for report.md/json and plots")
    parser.add_argument("--format", default=None, help="input format (default: detected)")
    parser.add_argument("--model", default=None,
                        help="a stored model version to score with instead of fitting on --train")
    parser.add_argument("--peers", default=None,
                        help="folder of peers' lists (SessionId;Position;Recommendations;Scores)")
    parser.add_argument("--protocol", choices=("both", "next-item", "original"), default="both",
                        help="next-item: a list after each item of a test session, scored "
                             "against the next one (session-rec's protocol); original: MAP@3 "
                             "of each test user's first event (the original project's); "
                             "default: both")
    parser.add_argument("--lists", default=None,
                        help="also write the replay's lists in the peers' format to this file")
    parser.add_argument("--tune", nargs=2, metavar=("TRAIN_PART", "VALID_PART"), default=None,
                        help="choose the scoring parameters on these files first (never the test)")
    parser.add_argument("--params", default=None,
                        help="JSON file of scoring parameters (a report.json's scoring_params; "
                             "its training parameters and tuning record are taken too)")
    parser.add_argument("--ablations", action="store_true",
                        help="also replay with each candidate source switched off / alone")



def params_from_json(value: dict) -> ScoringParams:
    """:class:`ScoringParams` from :meth:`ScoringParams.as_dict` output."""
    value = dict(value)
    value["sources"] = SourceWeights(**value.get("sources", {}))
    return ScoringParams(**value)


def chosen_by(loaded: dict, params: ScoringParams, training: TrainingParams) -> dict | None:
    """The ``tuning`` record of a loaded report.json when it chose exactly these parameters.

    A report made with ``--params`` from a tuned report then still says how
    its parameters were chosen (and on which validation figures).
    """
    tuning = loaded.get("tuning")
    if not isinstance(tuning, dict):
        return None
    if (tuning.get("scoring_params") != params.as_dict()
            or tuning.get("training") != training.reported()):
        return None
    return tuning


def run(args, settings=None) -> int:
    """``recsys evaluate``: optionally tune on train/valid, fit, evaluate, write the report.

    A missing, unreadable or malformed input stops it with one line saying
    which (exit status 2), before any work.
    """
    try:
        _check_inputs(args)
        return _evaluate(args, settings)
    except (OSError, ValueError) as exc:  # FormatError, BadRowError, ModelError are ValueErrors
        print(f"recsys evaluate: {exc}", file=sys.stderr)
        return 2


def _check_inputs(args) -> None:
    """Every file and folder the arguments name exists and can be read; a --params file parses."""
    files = [("--train", args.train), ("--test", args.test), ("--params", args.params),
             *((("--tune", part) for part in args.tune) if args.tune else ())]
    for option, path in files:
        if path is not None and not Path(path).is_file():
            raise FileNotFoundError(f"{option} {path}: no such file")
        if path is not None and not os.access(path, os.R_OK):
            raise PermissionError(f"{option} {path}: not readable")
    for option, path in (("--peers", args.peers), ("--model", args.model)):
        if path is not None and not Path(path).is_dir():
            raise FileNotFoundError(f"{option} {path}: no such folder")
    if args.params:
        try:
            json.loads(Path(args.params).read_text())
        except ValueError as exc:
            raise ValueError(f"--params {args.params} is not JSON: {exc}") from None


def _evaluate(args, settings) -> int:
    settings = _settings_or_default(settings)
    log = lambda text: print(text, file=sys.stderr, flush=True)  # noqa: E731
    params = tune_start(settings) if args.tune else ScoringParams.from_settings(settings)
    training = TrainingParams.from_settings(settings)
    chosen = None
    if args.params:
        loaded = json.loads(Path(args.params).read_text())
        params = params_from_json(loaded.get("scoring_params", loaded))
        training = training.updated(loaded.get("training", {}))
        chosen = chosen_by(loaded, params, training)
    report: dict = {"generated_at": datetime.now(UTC).isoformat(timespec="seconds"),
                    "data": {"train": str(args.train), "test": str(args.test)}}
    if args.params:
        report["params_file"] = str(args.params)
    if chosen and not args.tune:
        report["tuning"] = chosen
    if args.tune:
        report["tuning"] = _tune_on(args.tune, args.format, params, training,
                                    ablate=args.ablations, log=log)
        params = params_from_json(report["tuning"]["scoring_params"])
        training = training.updated(report["tuning"]["training"])
    weights = training.weights
    report["scoring_params"] = params.as_dict()
    report["training"] = training.reported()
    train, _ = read_events(args.train, args.format)
    if args.model:
        model = load_model(args.model)
    else:
        log(f"evaluate: fitting on {args.train}")
        model = fit(train, training, source={"kind": "file", "path": str(args.train)})
    report["model"] = {"version": model.version, "n_items": model.n_items,
                       "params": model.meta.get("params", {}), "data": model.meta.get("data", {})}
    test, _ = read_events(args.test, args.format)
    if args.protocol in ("both", "next-item"):
        log(f"evaluate: next-item replay of {args.test}")
        replay = replay_next_item(model, test, params, weights)
        peers = read_peers(args.peers)
        peer_keys = set().union(*(set(lists) for lists in peers.values())) if peers else None
        nxt = {"all": replay.metrics(), "coverage": replay.coverage(model.n_items),
               "strategies": replay.strategies, "seconds": round(replay.seconds, 2),
               "events": replay.events}
        if peer_keys:
            truth = next_item_truth(test)
            nxt["peer_positions"] = replay.metrics(only=peer_keys)
            nxt["peer_coverage"] = replay.coverage(model.n_items, only=peer_keys)
            peer_truth = {key: truth[key] for key in truth if key in peer_keys}
            nxt["peers"] = {name: score_lists(lists, peer_truth, n=params.n)
                            for name, lists in peers.items()}
        if args.ablations:
            nxt["ablations"] = {name: replay_next_item(model, test, p, weights).metrics()
                                for name, p in ablations(params).items()}
        published = published_figures(Path(args.peers).resolve().parent) if args.peers else None
        if published is not None:
            nxt["published_all_positions"] = published.methods
        report["next_item"] = nxt
        if args.lists:
            write_lists(args.lists, replay)
    if args.protocol in ("both", "original"):
        log("evaluate: original protocol")
        report["original"] = evaluate_original(model, train, test, weights, params)
    folder = write_report(args.report, report)
    log(f"evaluate: report in {folder}")
    return 0


def _tune_on(files, fmt, params: ScoringParams, training: TrainingParams, *, ablate: bool,
             log) -> dict:
    """Scoring grid, then training grid, then the scoring grid once more; test never read."""
    train_file, valid_file = files
    log(f"evaluate: tuning on {train_file} -> {valid_file}")
    columns, _ = read_events(train_file, fmt)
    valid, _ = read_events(valid_file, fmt)
    start = params
    model = fit(columns, training)
    params, trail = tune(model, valid, params, training.weights, log=log)
    training, model, train_trail = tune_training(columns, valid, params, training, log=log)
    weights = training.weights
    params, trail2 = tune(model, valid, params, weights, rounds=1, log=log)
    out = {
        "train": str(train_file), "valid": str(valid_file),
        "how": ("Coordinate descent, maximising HR@20 + MRR@20 of the next-item replay of the "
                "validation part with a model fit on the training part: two passes over the "
                "scoring grid (TUNE_GRID) from the starting point below, one pass over the "
                "training grid (TRAIN_GRID, a refit per value), one more pass over the scoring "
                "grid. The test set was not read."),
        "start": start.as_dict(), "grid": {k: list(v) for k, v in TUNE_GRID.items()},
        "training_grid": {k: list(v) for k, v in TRAIN_GRID.items()},
        "trials": len(trail) + len(train_trail) + len(trail2),
        "scoring_params": params.as_dict(), "training": training.reported(),
        "best_metrics": replay_next_item(model, valid, params, weights).metrics()}
    if ablate:
        out["ablations"] = {name: replay_next_item(model, valid, p, weights).metrics()
                            for name, p in ablations(params).items()}
    return out


def main(argv: list[str] | None = None) -> int:
    """``python -m batch.evaluate`` (the same as ``recsys evaluate``)."""
    parser = argparse.ArgumentParser(prog="recsys evaluate", description=__doc__.split("\n")[0])
    add_arguments(parser)
    return run(parser.parse_args(argv))
