"""Sessions in replay order and the published peers' lists.

:func:`session_order` (events by time, ties in file order),
:class:`Positions`, the peers' list files ``SessionId;Position;Recommendations;Scores``
(:func:`read_peer_lists`, :func:`read_peers`), their scoring against the
next-item truth (:func:`score_lists`) and that truth (:func:`next_item_truth`).
"""
from __future__ import annotations

import csv
from dataclasses import dataclass
from pathlib import Path

import numpy as np

from batch.columns import EventColumns
from batch.evaluate.metrics import KS, metrics_from_ranks, rank_of


@dataclass(frozen=True)
class Positions:
    """Next-item positions: after item ``position`` of ``session``, the target is the next item.

    Attributes
    ----------
    session : list of str
    position : ndarray of int
    target : list of str
    """

    session: list
    position: np.ndarray
    target: list

    def keys(self) -> list[tuple[str, int]]:
        return list(zip(self.session, self.position.tolist()))


def session_order(columns: EventColumns) -> np.ndarray:
    """Event rows in replay order: by time, ties in file order."""
    return np.argsort(columns.ts_ms, kind="stable")


def read_peer_lists(path: str | Path) -> dict[tuple[str, int], list[str]]:
    """A peer's lists from ``SessionId;Position;Recommendations;Scores``.

    Returns
    -------
    dict
        (session id, position) -> recommended item ids, best first.
    """
    lists: dict[tuple[str, int], list[str]] = {}
    with open(path, newline="") as fh:
        reader = csv.reader(fh, delimiter=";")
        header = next(reader)
        if header[:3] != ["SessionId", "Position", "Recommendations"]:
            raise ValueError(f"{path}: not a peer list file (header {header})")
        for row in reader:
            if not row:
                continue
            lists[(row[0], int(row[1]))] = [i for i in row[2].split(",") if i]
    return lists


def read_peers(peers_dir: str | Path | None) -> dict[str, dict[tuple[str, int], list[str]]]:
    """Every ``peers/*.csv``: method name -> its lists. Empty when there is no folder."""
    if peers_dir is None or not Path(peers_dir).is_dir():
        return {}
    return {path.stem: read_peer_lists(path) for path in sorted(Path(peers_dir).glob("*.csv"))}


def score_lists(lists: dict[tuple[str, int], list[str]], truth: dict[tuple[str, int], str],
                n: int = 20, ks=KS) -> dict[str, float]:
    """Next-item metrics of given lists (a peer's) against ``truth`` over truth's keys.

    A key without a list counts as a miss.
    """
    ranks = np.array([rank_of(target, lists.get(key, [])[:n]) for key, target in truth.items()],
                     dtype=np.int64)
    return metrics_from_ranks(ranks, ks)


def next_item_truth(columns: EventColumns) -> dict[tuple[str, int], str]:
    """(session id, position) -> the next item, for every position but each session's last."""
    order = session_order(columns)
    sessions: dict[int, list[int]] = {}
    for row in order.tolist():
        sessions.setdefault(int(columns.session[row]), []).append(row)
    truth = {}
    for code, rows in sessions.items():
        sid = str(columns.session_ids[code])
        for p in range(len(rows) - 1):
            truth[(sid, p)] = str(columns.item_ids[columns.item[rows[p + 1]]])
    return truth
