"""The fault scenarios of ``tests/faults`` run once each, their figures written to a file.

Each scenario replays events through real worker processes on a real broker,
does its fault (``kill -9``, a worker joining and leaving, the broker stopped,
poison input, bad models, an exception in the agent, a retrain killed in its
save) and compares everything the workers wrote with an uninterrupted run
over the same events. Per scenario the file records ``events``, ``lost``
(valid events without a list), ``duplicate_lists`` (lists sent more than
once, by ``event_id``), ``state_equal`` (every ``users`` row in the changelog
equals the uninterrupted run's) and the scenario's own figures
(``kills``, ``recovery_s_max``: seconds from a restart to its first new list).

Usage::

    python benchmarks/faults.py [--only kill9 poison ...]

Starts the project's own broker (or uses ``KAFKA_BOOTSTRAP``) and writes
``benchmarks/results/faults.json`` (``--out`` to change).
"""
from __future__ import annotations

import argparse
import json
import os
import platform
import sys
import tempfile
import time
from contextlib import ExitStack
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
sys.path[:0] = [str(ROOT), str(ROOT / "tests"), str(ROOT / "tests" / "faults")]

import scenarios  # noqa: E402

from shared.broker import ephemeral_broker  # noqa: E402
from shared.config import load_settings  # noqa: E402

RESULTS = ROOT / "benchmarks" / "results" / "faults.json"


def _scenarios() -> dict:
    found = {"kill9": scenarios.kill9,
             "kill9_replaced": lambda setup: scenarios.kill9(setup, replaced=True),
             "poison": scenarios.poison,
             "agent_error": scenarios.agent_error}
    for module_name, names in (("scenarios_group", ("rebalance", "outage")),
                               ("scenarios_models", ("models", "retrain_kill"))):
        module = __import__(module_name)
        found.update({name: getattr(module, name) for name in names})
    return found


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--only", nargs="*", help="scenarios to run (default: all)")
    parser.add_argument("--out", type=Path, default=RESULTS)
    args = parser.parse_args(argv)
    every = _scenarios()
    chosen = args.only or list(every)
    unknown = set(chosen) - set(every)
    if unknown:
        parser.error(f"unknown scenarios {sorted(unknown)}; choose from {sorted(every)}")
    with ExitStack() as stack:
        tmp = Path(stack.enter_context(tempfile.TemporaryDirectory()))
        broker = None
        if "KAFKA_BOOTSTRAP" in os.environ:
            bootstrap = os.environ["KAFKA_BOOTSTRAP"]
        else:
            broker = stack.enter_context(
                ephemeral_broker(Path(load_settings().kafka_home).expanduser()))
            bootstrap = broker.bootstrap
        model, path = scenarios.train(tmp / "model")
        setup = scenarios.Setup(bootstrap, path, model, tmp / "runs", broker)
        results = {}
        for name in chosen:
            started = time.monotonic()
            print(f"{name}: running", file=sys.stderr, flush=True)
            result = every[name](setup)
            results[name] = {**result.record(), "wall_s": round(time.monotonic() - started, 1)}
            problems = result.verdict.problems()
            print(f"{name}: {json.dumps(results[name])}" + (f"\n  {problems}" if problems else ""),
                  file=sys.stderr, flush=True)
    document = {"machine": {"cpus": os.cpu_count(), "python": platform.python_version()},
                "created": time.strftime("%Y-%m-%dT%H:%M:%SZ", time.gmtime()),
                "scenarios": results}
    args.out.parent.mkdir(parents=True, exist_ok=True)
    args.out.write_text(json.dumps(document, indent=2) + "\n")
    print(table(results))
    return 0


#: The figures of each scenario shown in the table beside the common ones.
KEY_FIGURES = {
    "kill9": ("kills", "users", "recovery_s_max"),
    "kill9_replaced": ("kills", "users", "recovery_s_max"),
    "rebalance": ("workers_max", "users", "handover_s"),
    "outage": ("outage_s", "recovery_s"),
    "poison": ("bad_events", "copies", "duplicates_counted"),
    "models": ("refused", "served_version_constant", "swapped_after_refusals"),
    "agent_error": ("list_errors", "write_error_exit_status", "recovery_s_max"),
    "retrain_kill": ("killed_in_save", "tmp_removed", "swapped_after_kill"),
}


def table(results: dict) -> str:
    """The figures as a Markdown table (the one in docs/guarantees.md)."""
    lines = ["| scenario | events | lost | duplicate lists | state equal | its own figures |",
             "|---|---:|---:|---:|---|---|"]
    for name, figures in results.items():
        own = ", ".join(f"{key} {figures[key]}" for key in KEY_FIGURES.get(name, ())
                        if key in figures)
        lines.append(f"| {name} | {figures['events']:,} | {figures['lost']} | "
                     f"{figures['duplicate_lists']:,} | {figures['state_equal']} | {own} |")
    return "\n".join(lines)


if __name__ == "__main__":
    sys.exit(main())
