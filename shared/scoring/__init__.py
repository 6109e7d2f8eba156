"""The scoring path: a shopper's state in, a ranked list out.

The public face is :mod:`shared.scoring.api`: :func:`score_events` (a batch
of :class:`Request`), :func:`score_event` (a batch of one) and
:func:`score_catalogue` (every item a candidate); its docstring describes
the algorithm and the worker's per-event path. This package re-exports the
names callers use (import from ``shared.scoring``, not from the modules),
one concept per module:

- :mod:`~shared.scoring.api`: :class:`Request`, :func:`score_events`,
  :func:`score_event`, :func:`score_catalogue`.
- :mod:`~shared.scoring.params`: :class:`SourceWeights`, :class:`ScoringParams`,
  :data:`SOURCES`, :data:`NORMALISATIONS`.
- :mod:`~shared.scoring.history`: :class:`History`, :class:`Session`, their
  update rules (:func:`add_to_history`, :func:`add_to_session`,
  :func:`add_shown`) and :func:`to_indices` / :func:`history_arrays`.
- :mod:`~shared.scoring.foldin`: :func:`fold_in_user` and the batched
  (Woodbury) fold-in, :func:`_fold_in_batch`.
- :mod:`~shared.scoring.prepared`: the per-model cache (:func:`prepare`) and
  the per-thread scratch arrays.
- :mod:`~shared.scoring.segments`: the maths of one list: :func:`normalise`,
  :func:`blend_scores`, :func:`anchor_weights`, the best ``n``.
- :mod:`~shared.scoring.kernels`: the compiled per-list loops that rank a
  batch: merging candidates, the best ``k``, normalising, the blend.
- :mod:`~shared.scoring.candidates`: requests in model indices, their anchors
  and candidates with their similarity (steps 1 to 4).
- :mod:`~shared.scoring.ranking`: personal scores, blend, the best ``n`` and
  the fall-backs (steps 5 to 7), :class:`Recommendation`, :func:`popular_items`.
- :mod:`~shared.scoring.catalogue`: the ranking of the whole catalogue
  behind :func:`score_catalogue`.
- :mod:`~shared.scoring.example`: the small model of the examples.

"""

from __future__ import annotations

from shared.scoring.api import Request, score_catalogue, score_event, score_events
from shared.scoring.foldin import fold_in_user
from shared.scoring.history import (History, Session, add_shown, add_to_history, add_to_session,
                                    history_arrays, to_indices)
from shared.scoring.params import NORMALISATIONS, SOURCES, ScoringParams, SourceWeights
from shared.scoring.prepared import prepare
from shared.scoring.ranking import Recommendation, popular_items
from shared.scoring.segments import anchor_weights, blend_scores, normalise

__all__ = [
    "Request", "Recommendation", "SourceWeights", "ScoringParams", "History", "Session",
    "score_events", "score_event", "score_catalogue",
    "fold_in_user", "add_to_history", "add_to_session", "add_shown", "to_indices",
    "history_arrays", "normalise", "blend_scores", "popular_items", "anchor_weights",
    "prepare", "SOURCES", "NORMALISATIONS",
]
