"""Every item of the catalogue a candidate: the user's taste, optionally mixed with the query item.

:func:`_rank_catalogue` ranks the whole catalogue for each request, the
original project's ``user_items`` (x_u · y_i alone) and ``ensemble`` (the
factor cosine to the query item blended with x_u · y_i) methods, which
:func:`shared.scoring.score_catalogue` serves. It reads the same requests as
:func:`shared.scoring.ranking._rank` and leaves out the same blocked items;
it skips the neighbour sources, the ``pool`` and the category fall-back,
because its candidates are already every item.
"""
from __future__ import annotations

import numpy as np

from shared.model import Model
from shared.scoring.candidates import _Request
from shared.scoring.foldin import _fold_in_batch
from shared.scoring.params import ScoringParams
from shared.scoring.prepared import _Prepared, _scratch
from shared.scoring.ranking import Recommendation, _Blocked, _fill
from shared.scoring.segments import _top, blend_scores


def _catalogue_vectors(prep: _Prepared, requests: list[_Request]) -> list[np.ndarray | None]:
    """x_u of each request: its fixed vector, else folded in from its history (None: empty).

    Folded in whatever ``blend`` is: the taste decides whether a user gets a
    ranking of the catalogue at all.
    """
    vectors = [r.user_factors for r in requests]
    fold = [i for i, r in enumerate(requests) if r.user_factors is None]
    for i, x in zip(fold, _fold_in_batch(prep, [(requests[i].items, requests[i].confidence)
                                                for i in fold])):
        vectors[i] = x
    return vectors


def _rank_catalogue(model: Model, prep: _Prepared, requests: list[_Request],
                    params: ScoringParams,
                    unavailable: np.ndarray | None = None) -> list[Recommendation]:
    """The list of each request over the whole catalogue (see :func:`shared.scoring.score_catalogue`).

    A user without a vector (nothing in the history the model knows, or an
    all-zero fixed vector) gets the most popular items overall, strategy
    ``popular``. Otherwise every item scores x_u · y_i (float32 factors, one
    matrix-vector product per request, so a list does not depend on its
    batch); with a query item the model knows and ``blend`` < 1 that score is
    blended (:func:`blend_scores`, ``params.normalisation``) with the factor
    cosine to the query item, strategy ``ensemble``, else ``user_items``. The
    best ``n`` allowed items win, ties to the lower index.
    """
    scratch = _scratch(model, prep.n_items)
    y = prep.item_factors
    out = []
    for request, vector in zip(requests, _catalogue_vectors(prep, requests)):
        with _Blocked(scratch, prep.n_items, (request.blocked,), unavailable) as blocked:
            if vector is None or not np.any(vector):
                fill, _ = _fill(prep, np.zeros(0, dtype=np.int64), params.n, -1, blocked)
                items = fill[0] if fill else np.zeros(0, dtype=np.int64)
                scores = -np.arange(1, len(items) + 1, dtype=np.float32) / (len(items) + 1)
                out.append(Recommendation(items, scores, "popular"))
                continue
            score = (y @ vector.astype(np.float32)).astype(np.float64)
            strategy = "user_items"
            if request.query >= 0 and params.blend < 1:
                norms = np.linalg.norm(y, axis=1)
                norms[norms == 0] = 1.0
                cosine = (y @ y[request.query]) / (norms * norms[request.query])
                score = blend_scores(cosine, score, params.blend, params.normalisation)
                strategy = "ensemble"
            cand = np.arange(prep.n_items)
            keep = blocked.allowed(cand)
            items, scores = _top(cand[keep], score[keep], params.n)
        out.append(Recommendation(items, scores.astype(np.float32), strategy))
    return out
