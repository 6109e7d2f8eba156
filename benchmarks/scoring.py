"""Benchmark the scoring path: cost per event of score_event and of score_events in batches.

A synthetic shop is trained here (``generate_columns`` + ``retrain``, as in
``benchmarks/stream.py``), so the script runs on a fresh machine. The scored
events (another seed) come from a shop with as many shoppers as the training
one, so that histories are as long as in the first events of a stream; they
are parsed and applied to shoppers' states as the worker does, and every
state is then scored, BLAS held to one thread:

- ``score_event``: one event at a time, the per-event baseline;
- ``score_events/B``: :func:`shared.scoring.score_events` on batches of B.

Two parameter sets: ``defaults`` (what a shop runs: every source, with decays
and a window) and ``paper`` (``profiles/paper.toml``: similar items of the
query item, blend 0.5, min-max). Each figure is
the best of ``--repeat`` passes over all events; ``cost_ratio`` is the cost
per event over the baseline's (below 1: cheaper). Every batched list is
checked to equal the baseline's, bit for bit. Writes ``benchmarks/results/scoring.json``::

    python benchmarks/scoring.py [--train-events 500000] [--events 20000] [--repeat 5]
"""
from __future__ import annotations

import argparse
import dataclasses
import json
import os
import platform
import shutil
import sys
import tempfile
import time
from pathlib import Path

import numpy as np
from threadpoolctl import threadpool_limits

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))

from batch.evaluate import load_profile  # noqa: E402
from batch.retrain import retrain  # noqa: E402
from batch.synthetic import ShopParams, generate_columns  # noqa: E402
from batch.synthetic_file import write_jsonl  # noqa: E402
from batch.training import TrainingParams  # noqa: E402
from shared.config import Settings, load_settings  # noqa: E402
from shared.events import parse_event  # noqa: E402
from shared.scoring import (  # noqa: E402
    History,
    ScoringParams,
    Session,
    add_to_history,
    add_to_session,
    prepare,
    score_event,
    score_events,
)
from shared.signals import SignalWeights  # noqa: E402

BATCH_SIZES = (1, 16, 64, 256)
BUY = "buy"


def shopper_states(lines: list[bytes], weights: SignalWeights,
                   params: ScoringParams) -> list[tuple]:
    """``(history, session, item_id, category)`` after each event, as the worker's state rules
    leave them (events weighted 0 leave the history alone)."""
    histories: dict[str, History] = {}
    sessions: dict[str, Session] = {}
    requests = []
    for line in lines:
        event = parse_event(line)
        history = histories.get(event.user_id, History())
        preference = weights.preference_one(event.type_code, event.dwell_ms)
        if preference > 0:
            history = histories[event.user_id] = add_to_history(
                history, event.item_id, weights.confidence(preference), event.ts_ms,
                history_max=params.history_max, decay_half_life_s=params.decay_half_life_s,
                bought=event.type == BUY)
        session = sessions[event.session_id] = add_to_session(
            sessions.get(event.session_id, Session()), event.item_id, max_len=params.session_max)
        requests.append((history, session, event.item_id, event.category))
    return requests


def one_by_one(model, requests, params) -> list:
    return [score_event(model, h, s, q, params, query_category=c) for h, s, q, c in requests]


def in_batches(model, requests, params, size: int) -> list:
    return [rec for start in range(0, len(requests), size)
            for rec in score_events(model, requests[start:start + size], params)]


def same_lists(got: list, want: list) -> bool:
    return len(got) == len(want) and all(
        a.items.tobytes() == b.items.tobytes() and a.scores.tobytes() == b.scores.tobytes()
        and a.strategy == b.strategy for a, b in zip(got, want))


def bench(model, requests, params, repeat: int) -> dict:
    """Best seconds per pass of each mode, the modes interleaved pass by pass."""
    modes = {"score_event": lambda: one_by_one(model, requests, params)}
    for size in BATCH_SIZES:
        modes[f"score_events/{size}"] = lambda size=size: in_batches(model, requests, params, size)
    baseline = modes["score_event"]()
    for name, run in modes.items():
        if not same_lists(run(), baseline):
            raise SystemExit(f"{name} gives other lists than score_event")
    best = dict.fromkeys(modes, float("inf"))
    for _ in range(repeat):
        for name, run in modes.items():
            started = time.perf_counter()
            run()
            best[name] = min(best[name], time.perf_counter() - started)
    base_us = best["score_event"] / len(requests) * 1e6
    rows = {}
    for name, seconds in best.items():
        us = seconds / len(requests) * 1e6
        rows[name] = {"us_per_event": round(us, 2), "events_per_s": round(len(requests) / seconds),
                      "cost_ratio": round(us / base_us, 3)}
    return rows


def main(argv=None) -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--train-events", type=int, default=500_000)
    parser.add_argument("--events", type=int, default=20_000)
    parser.add_argument("--repeat", type=int, default=5)
    parser.add_argument("--out", default=str(ROOT / "benchmarks" / "results" / "scoring.json"))
    args = parser.parse_args(argv)

    settings = load_settings()
    work = Path(tempfile.mkdtemp(prefix="recsys-bench-scoring-"))
    try:
        columns, _ = generate_columns(args.train_events, seed=1)
        model, _ = retrain(columns, work / "models", params=TrainingParams.from_settings(settings),
                           progress=False)
        shop = ShopParams()
        write_jsonl(work / "events.jsonl", args.events, seed=2,
                    params=dataclasses.replace(shop, n_users=shop.users_for(args.train_events)))
        lines = (work / "events.jsonl").read_bytes().splitlines()
    finally:
        shutil.rmtree(work, ignore_errors=True)
    weights = SignalWeights.from_meta(model.meta) or SignalWeights.from_settings(settings)
    configs = {"defaults": ScoringParams.from_settings(Settings()),
               "paper": load_profile("paper").scoring}
    prepare(model)
    results, history_items = {}, {}
    with threadpool_limits(1):
        for config, params in configs.items():
            requests = shopper_states(lines, weights, params)
            history_items[config] = round(float(np.mean([len(h.items) for h, *_ in requests])), 1)
            results[config] = bench(model, requests, params, args.repeat)
    print(f"{'params':9s} {'mode':16s} {'us/event':>9s} {'events/s':>9s} {'cost ratio':>10s}")
    for config, rows in results.items():
        for mode, row in rows.items():
            print(f"{config:9s} {mode:16s} {row['us_per_event']:9.1f} {row['events_per_s']:9,d} "
                  f"{row['cost_ratio']:10.3f}")
    result = {
        "events": len(lines), "train_events": args.train_events, "items": model.n_items,
        "factors": int(model.item_factors.shape[1]), "repeat": args.repeat, "blas_threads": 1,
        "identical_lists": True, "mean_history_items": history_items, "results": results,
        "params": {config: params.as_dict() for config, params in configs.items()},
        "numpy": np.__version__, "python": platform.python_version(), "cpus": os.cpu_count(),
        "machine": platform.machine(),
        "measured_at": time.strftime("%Y-%m-%dT%H:%M:%SZ", time.gmtime()),
        "targets": {"defaults_batch_256_us_per_event": 50.0},
    }
    Path(args.out).parent.mkdir(parents=True, exist_ok=True)
    Path(args.out).write_text(json.dumps(result, indent=2) + "\n")
    print(f"wrote {args.out}", file=sys.stderr)


if __name__ == "__main__":
    main()
