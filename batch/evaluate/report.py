"""The report: report.json, report.md and the PNG plots.

:func:`write_report` writes them; the Markdown tables and the plots
(matplotlib, optional: without it the tables carry the numbers) are built by
the private helpers here.
"""
from __future__ import annotations

import json
from pathlib import Path

import numpy as np

from batch.evaluate.metrics import KS


def write_report(folder: str | Path, report: dict) -> Path:
    """report.json, report.md and the PNG plots into ``folder`` (created)."""
    folder = Path(folder)
    folder.mkdir(parents=True, exist_ok=True)
    (folder / "report.json").write_text(json.dumps(report, indent=2, default=json_default) + "\n")
    plots = _plots(folder, report)
    (folder / "report.md").write_text(_markdown(report, plots))
    return folder


def json_default(value):
    if isinstance(value, np.generic):
        return value.item()
    if isinstance(value, np.ndarray):
        return value.tolist()
    if isinstance(value, (set, tuple)):
        return list(value)
    raise TypeError(f"not JSON serialisable: {type(value)}")


def _table(rows: list[list], header: list[str]) -> str:
    lines = ["| " + " | ".join(header) + " |", "| " + " | ".join("---" for _ in header) + " |"]
    for row in rows:
        lines.append("| " + " | ".join(f"{v:.3f}" if isinstance(v, float) else str(v) for v in row)
                     + " |")
    return "\n".join(lines)


def _metric_rows(named: dict[str, dict], ks=KS) -> tuple[list[list], list[str]]:
    header = ["method", "positions"] + [f"{m}@{k}" for k in ks for m in ("HR", "MRR", "NDCG")]
    rows = []
    for name, m in named.items():
        rows.append([name, m["positions"]] + [m[f"{metric}@{k}"] for k in ks
                                              for metric in ("hr", "mrr", "ndcg")])
    return rows, header


def _markdown(report: dict, plots: list[str]) -> str:
    out = ["# Evaluation report", "",
           f"Generated {report['generated_at']} by `recsys evaluate`.", ""]
    model = report.get("model", {})
    out += ["## Data and model", "",
            f"- train: `{report['data'].get('train')}`",
            f"- test: `{report['data'].get('test')}`",
            f"- model version: `{model.get('version')}`; items {model.get('n_items')}; "
            f"training parameters: `{json.dumps(model.get('params', {}), default=str)}`", ""]
    out += ["## Scoring parameters", "", "```json",
            json.dumps(report["scoring_params"], indent=2), "```", "",
            "Training parameters: `" + json.dumps(report.get("training", {})) + "`", ""]
    if report.get("tuning"):
        t = report["tuning"]
        out += ["### How they were chosen", "", t["how"], "",
                "Starting point: `" + json.dumps(t["start"]) + "`", "",
                f"Trials: {t['trials']}.", "",
                f"Validation (fit on `{t['train']}`, replay of `{t['valid']}`), chosen parameters:",
                "", _table(*_metric_rows({"tuned (valid)": t["best_metrics"]})), ""]
        if t.get("ablations"):
            out += ["Ablations on validation:", "",
                    _table(*_metric_rows(t["ablations"])), ""]
    nxt = report.get("next_item")
    if nxt:
        out += ["## Next-item replay (session-rec protocol)", ""]
        rows = {"ours, all positions": nxt["all"]}
        if nxt.get("peer_positions"):
            rows["ours, peer positions"] = nxt["peer_positions"]
        for name, m in nxt.get("peers", {}).items():
            rows[f"{name} (peer), peer positions"] = m
        out += [_table(*_metric_rows(rows)), ""]
        if nxt.get("published_all_positions"):
            out += ["Published figures on all positions (the data set's README) against ours:", "",
                    _table([["ours", nxt["all"]["hr@20"], nxt["all"]["mrr@20"]]]
                           + [[name, m["hr@20"], m["mrr@20"]]
                              for name, m in nxt["published_all_positions"].items()],
                           ["method (all positions)", "HR@20", "MRR@20"]), ""]
        out += [
                f"Catalogue coverage of the top-{report['scoring_params']['n']} lists: "
                f"{nxt['coverage']:.3f} (all positions). Strategies used: "
                f"`{json.dumps(nxt['strategies'])}`. Replay: {nxt['events']} events in "
                f"{nxt['seconds']:.1f} s ({nxt['events'] / max(nxt['seconds'], 1e-9):,.0f} events/s "
                f"including state updates).", ""]
        if nxt.get("ablations"):
            out += ["Ablations on test (all positions; for the record, not for choosing):", "",
                    _table(*_metric_rows(nxt["ablations"])), ""]
    orig = report.get("original")
    if orig:
        out += [f"## Original project's protocol (MAP@{orig['k']}, {orig['users']} users)", "",
                _table([[name, m[f"map@{orig['k']}"], m["coverage"]]
                        for name, m in orig["methods"].items()],
                       ["method", f"MAP@{orig['k']}", "coverage"]), ""]
    if plots:
        out += ["## Plots", ""] + [f"![{p}]({p})" for p in plots] + [""]
    return "\n".join(out)


def _plots(folder: Path, report: dict) -> list[str]:
    try:
        import matplotlib
        matplotlib.use("Agg")
        import matplotlib.pyplot as plt
    except ImportError:  # plots are optional; the tables carry the numbers
        return []
    made = []
    nxt = report.get("next_item")
    if nxt:
        fig, axes = plt.subplots(1, 3, figsize=(13, 4))
        for ax, metric in zip(axes, ("hr", "mrr", "ndcg")):
            for label, m, style in (("ours, all", nxt["all"], "o-"),
                                    ("ours, peer positions", nxt.get("peer_positions"), "s-")):
                if m:
                    ax.plot(KS, [m[f"{metric}@{k}"] for k in KS], style, label=label)
            for name, m in nxt.get("peers", {}).items():
                ax.plot(KS, [m[f"{metric}@{k}"] for k in KS], "x--", alpha=0.7,
                        label=f"{name} (peer positions)")
            ax.set_xlabel("k")
            ax.set_title(f"{metric.upper()}@k")
            ax.set_xticks(KS)
            ax.grid(alpha=0.3)
        axes[0].legend(fontsize=7)
        fig.tight_layout()
        fig.savefig(folder / "metrics_vs_k.png", dpi=110)
        plt.close(fig)
        made.append("metrics_vs_k.png")
        bars = dict(nxt.get("ablations") or {})
        if bars:
            fig, ax = plt.subplots(figsize=(11, 4.5))
            names = list(bars)
            x = np.arange(len(names))
            ax.bar(x - 0.2, [bars[n]["hr@20"] for n in names], 0.4, label="HR@20")
            ax.bar(x + 0.2, [bars[n]["mrr@20"] for n in names], 0.4, label="MRR@20")
            published = nxt.get("published_all_positions", {}).get("vsknn")
            if published:
                ax.axhline(published["hr@20"], color="C0", ls=":", label="vsknn HR@20 (published)")
                ax.axhline(published["mrr@20"], color="C1", ls=":", label="vsknn MRR@20 (published)")
            ax.set_xticks(x)
            ax.set_xticklabels(names, rotation=30, ha="right", fontsize=8)
            ax.set_title("Strategies side by side (test, all positions)")
            ax.legend(fontsize=7)
            fig.tight_layout()
            fig.savefig(folder / "strategies.png", dpi=110)
            plt.close(fig)
            made.append("strategies.png")
    orig = report.get("original")
    if orig:
        fig, ax = plt.subplots(figsize=(8, 4))
        names = list(orig["methods"])
        ax.bar(names, [orig["methods"][n][f"map@{orig['k']}"] for n in names])
        ax.set_ylabel(f"MAP@{orig['k']}")
        ax.set_title("Original protocol: first event as query")
        ax.tick_params(axis="x", labelrotation=20, labelsize=8)
        fig.tight_layout()
        fig.savefig(folder / "original_map.png", dpi=110)
        plt.close(fig)
        made.append("original_map.png")
    return made
