"""A four-item model for the examples in the docstrings and for tests.

Kept apart from the scoring code because it is data, not a rule: every module
whose examples score something imports it from here.
"""
from __future__ import annotations

import numpy as np

from shared.model import Model


def _example_model() -> Model:
    """A four-item model for the examples: 0 ~ 1, 2 ~ 3 in factor space."""
    y = np.array([[1.0, 0.1], [0.9, 0.2], [0.1, 1.0], [0.2, 0.9]], dtype=np.float32)
    pad = np.full((4, 2), -1, dtype=np.int32)
    zeros = np.zeros((4, 2), dtype=np.float32)
    return Model(
        version="example", item_ids=np.array(["i0", "i1", "i2", "i3"]), item_factors=y,
        similar_items=np.array([[1, 2], [0, 3], [3, 0], [2, 1]], dtype=np.int32),
        similar_scores=np.array([[0.99, 0.2], [0.99, 0.4], [0.99, 0.2], [0.99, 0.4]],
                                dtype=np.float32),
        cooc_items=pad, cooc_scores=zeros, next_items=pad, next_scores=zeros,
        popularity=np.array([3.0, 2.0, 1.0, 5.0], dtype=np.float32),
        item_category=np.array([0, 0, 1, 1], dtype=np.int32), categories=np.array(["a", "b"]),
        meta={"params": {"regularization": 0.1}})
