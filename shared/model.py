"""The model the batch job publishes and the worker and evaluation score with.

A :class:`Model` is plain arrays plus metadata; ``shared.model_store`` saves
and loads it as ``.npy`` files and a ``meta.json`` (never pickled). Rows are
item *indices*; ``item_ids[index]`` is the external id.
"""
from __future__ import annotations

from dataclasses import dataclass, field
from functools import cached_property

import numpy as np

#: Array fields saved as ``<name>.npy``, in this order.
ARRAY_FIELDS: tuple[str, ...] = (
    "item_ids", "item_factors", "similar_items", "similar_scores",
    "cooc_items", "cooc_scores", "next_items", "next_scores",
    "popularity", "item_category", "categories",
)

#: Dimensions and dtype kind of each array field, as ``shared.model_store`` checks them on
#: load: "U" text, "i" signed integer (neighbour lists and categories pad with -1, so
#: unsigned will not do), "f" float32 or float64.
ARRAY_LAYOUT: dict[str, tuple[int, str]] = {
    "item_ids": (1, "U"), "item_factors": (2, "f"),
    "similar_items": (2, "i"), "similar_scores": (2, "f"),
    "cooc_items": (2, "i"), "cooc_scores": (2, "f"),
    "next_items": (2, "i"), "next_scores": (2, "f"),
    "popularity": (1, "f"), "item_category": (1, "i"), "categories": (1, "U"),
}


@dataclass(frozen=True, eq=False)
class Model:
    """One published model version.

    A model loaded by ``shared.model_store.load_model`` has the layout of
    :data:`ARRAY_LAYOUT`, only finite floats, distinct ``item_ids``, at least
    one item and one factor, and every index (neighbour, category) in range;
    scoring relies on that and does not check again.

    Attributes
    ----------
    version : str
    item_ids : ndarray of str, shape (n_items,)
    item_factors : ndarray of float32, shape (n_items, n_factors)
        ALS item factors Y.
    similar_items, similar_scores : ndarray, shape (n_items, k)
        Each item's most similar items by factor cosine, best first; -1 pads.
    cooc_items, cooc_scores : ndarray, shape (n_items, k)
        Items seen in the same shopper sessions, best first; -1 pads.
    next_items, next_scores : ndarray, shape (n_items, k)
        Items that followed the item within sessions, best first; -1 pads.
    popularity : ndarray of float32, shape (n_items,)
    item_category : ndarray of int32, shape (n_items,)
        Code into ``categories``; -1 when unknown.
    categories : ndarray of str
    meta : dict
        The contents of ``meta.json``; ``meta["params"]`` holds the training
        parameters (``regularization``, ``alpha``, ``factors``, ...).
    """

    version: str
    item_ids: np.ndarray
    item_factors: np.ndarray
    similar_items: np.ndarray
    similar_scores: np.ndarray
    cooc_items: np.ndarray
    cooc_scores: np.ndarray
    next_items: np.ndarray
    next_scores: np.ndarray
    popularity: np.ndarray
    item_category: np.ndarray
    categories: np.ndarray
    meta: dict = field(default_factory=dict)

    @property
    def n_items(self) -> int:
        return len(self.item_ids)

    @cached_property
    def item_index(self) -> dict[str, int]:
        """External item id -> row."""
        return {item_id: row for row, item_id in enumerate(self.item_ids.tolist())}

    @cached_property
    def gram(self) -> np.ndarray:
        """YᵀY in float64, precomputed once per model for the fold-in."""
        y = self.item_factors.astype(np.float64)
        return y.T @ y

    @property
    def regularization(self) -> float:
        return float(self.meta["params"]["regularization"])
