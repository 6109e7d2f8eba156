"""Neighbour lists and popularity: exact on hand-built inputs, the same in blocks."""
import numpy as np
import pytest

import batch.neighbours as nb
from batch.neighbours import cooccurrence_neighbours, popularity, sequence_neighbours, similar_by_cosine


def test_cosine_neighbours_exact_best_first_without_self():
    y = np.array([[1.0, 0.0, 0.0],
                  [2.0, 2.0, 0.0],    # cos with 0: 0.707
                  [0.0, 0.0, 3.0],
                  [1.0, 0.1, 0.0],    # close to 0
                  [-1.0, 0.0, 0.0]])  # opposite of 0
    items, scores = similar_by_cosine(y, 3)
    assert items.dtype == np.int32 and scores.dtype == np.float32
    assert items.tolist() == [[3, 1, 2], [3, 0, 2], [0, 1, 3], [0, 1, 2], [2, 1, 3]]
    assert scores[0].tolist() == pytest.approx([1 / np.sqrt(1.01), 1 / np.sqrt(2), 0.0], abs=1e-6)
    assert scores[4, 2] == pytest.approx(-1 / np.sqrt(1.01), abs=1e-6)


def test_cosine_pads_when_k_exceeds_other_items_and_handles_zero_vectors():
    items, scores = similar_by_cosine(np.array([[1.0, 0.0], [0.0, 0.0], [1.0, 1.0]]), 4)
    assert items.tolist() == [[2, 1, -1, -1], [0, 2, -1, -1], [0, 1, -1, -1]]
    assert scores[1].tolist() == [0.0, 0.0, 0.0, 0.0]


def test_cosine_blocks_give_the_same_lists(monkeypatch):
    y = np.random.default_rng(3).normal(size=(50, 4))
    whole = similar_by_cosine(y, 5)
    monkeypatch.setattr(nb, "DENSE_BLOCK_ELEMENTS", 7 * 50)
    blocked = similar_by_cosine(y, 5)
    np.testing.assert_array_equal(whole[0], blocked[0])
    np.testing.assert_allclose(whole[1], blocked[1], rtol=1e-6)  # BLAS may round differently


def test_cosine_ties_at_the_cut_go_to_the_lower_index():
    y = np.array([[1.0, 0.0], [0.0, 1.0], [0.0, 2.0], [0.0, 3.0], [0.0, 4.0]])
    items, _ = similar_by_cosine(y, 2)
    assert items[0].tolist() == [1, 2]
    assert items[4].tolist() == [1, 2]


@pytest.mark.parametrize("rank", ["dense", "sorted"])
def test_dense_and_sorted_ranking_give_the_same_lists(monkeypatch, rank):
    rng = np.random.default_rng(11)
    session, item = rng.integers(0, 60, 500), rng.integers(0, 25, 500)
    expected = (cooccurrence_neighbours(session, item, 25, 8),
                sequence_neighbours(session, item, np.arange(500), 25, 8))
    monkeypatch.setattr(nb, "DENSE_ABOVE_DENSITY", 10**9 if rank == "dense" else 0)
    monkeypatch.setattr(nb, "DENSE_BLOCK_ELEMENTS", 7 * 25)
    actual = (cooccurrence_neighbours(session, item, 25, 8),
              sequence_neighbours(session, item, np.arange(500), 25, 8))
    for (want_items, want_scores), (got_items, got_scores) in zip(expected, actual):
        np.testing.assert_array_equal(got_items, want_items)
        np.testing.assert_array_equal(got_scores, want_scores)


def test_cooccurrence_counts_a_session_once_and_normalises_like_cosine():
    # Sessions: 10 = {0, 1, 1, 2}, 11 = {1, 2}, 12 = {3, 1}, 13 = {4}.
    session = np.array([10, 10, 10, 10, 11, 11, 12, 12, 13])
    item = np.array([0, 1, 1, 2, 1, 2, 3, 1, 4])
    items, scores = cooccurrence_neighbours(session, item, 5, 3)
    assert items.tolist() == [[2, 1, -1], [2, 0, 3], [1, 0, -1], [1, -1, -1], [-1, -1, -1]]
    # item 1 is in 3 sessions, 2 in 2, 0 and 3 in 1.
    np.testing.assert_allclose(scores[0], [1 / np.sqrt(2), 1 / np.sqrt(3), 0.0], rtol=1e-6)
    np.testing.assert_allclose(scores[1], [2 / np.sqrt(6), 1 / np.sqrt(3), 1 / np.sqrt(3)],
                               rtol=1e-6)
    np.testing.assert_allclose(scores[2], [2 / np.sqrt(6), 1 / np.sqrt(2), 0.0], rtol=1e-6)


def test_cooccurrence_blocks_give_the_same_lists(monkeypatch):
    rng = np.random.default_rng(5)
    session, item = rng.integers(0, 40, 400), rng.integers(0, 30, 400)
    whole = cooccurrence_neighbours(session, item, 30, 6)
    monkeypatch.setattr(nb, "SPARSE_BLOCK_WORK", 50)
    blocked = cooccurrence_neighbours(session, item, 30, 6)
    np.testing.assert_array_equal(whole[0], blocked[0])
    np.testing.assert_array_equal(whole[1], blocked[1])


def test_sequence_rules_follow_time_order_within_the_window():
    # Session 1 in time order: 0 -> 1 -> 1 -> 2 -> 3 (repeat of 1 is one step);
    # session 2: 3 -> 0. Input rows are shuffled across sessions and times.
    session = np.array([2, 1, 1, 2, 1, 1, 1])
    item = np.array([0, 3, 1, 3, 0, 1, 2])
    ts_ms = np.array([9, 40, 10, 8, 0, 20, 30])
    items, scores = sequence_neighbours(session, item, ts_ms, 4, 3, window=2)
    assert items.tolist() == [[1, 2, -1], [2, 3, -1], [3, -1, -1], [0, -1, -1]]
    assert scores.tolist() == [[1.0, 0.5, 0.0], [1.0, 0.5, 0.0], [1.0, 0.0, 0.0],
                               [1.0, 0.0, 0.0]]


def test_sequence_rules_sum_over_sessions_and_never_cross_them():
    session = np.array([0, 0, 1, 1, 1, 2])
    item = np.array([0, 1, 0, 2, 1, 2])
    items, scores = sequence_neighbours(session, item, np.arange(6), 3, 2, window=5)
    # 0 -> 1: 1 + 1/2; 0 -> 2: 1; 2 -> 1: 1; nothing from session 1's last item to session 2.
    assert items.tolist() == [[1, 2], [-1, -1], [1, -1]]
    assert scores.tolist() == [[1.5, 1.0], [0.0, 0.0], [1.0, 0.0]]


def test_sequence_rules_equal_ties_go_to_the_lower_item():
    items, _ = sequence_neighbours(np.array([0, 0, 1, 1]), np.array([2, 1, 2, 0]),
                                   np.arange(4), 3, 2)
    assert items[2].tolist() == [0, 1]


def test_popularity_counts_and_half_life():
    assert popularity(np.array([2, 0, 2, 2]), 4).tolist() == [1.0, 0.0, 3.0, 0.0]
    recent = popularity(np.array([0, 1, 1]), 2, ts_ms=np.array([0, 0, 20_000]), half_life_s=10)
    assert recent.tolist() == [0.25, 1.25]
