"""Events -> the user_items confidence matrix: exact values, orientation, id maps."""
import numpy as np
import pytest

from batch.columns import EventColumns
from batch.matrix import build_interactions
from shared.events import EVENT_TYPE_CODES
from shared.signals import SignalWeights

WEIGHTS = SignalWeights(view=0.1, dwell=0.15, dwell_cap_ms=60000, click=0.25,
                        add_to_cart=0.5, buy=1.0, alpha=15.0)


def make_columns(events, *, n_users, n_items, n_sessions=4):
    """EventColumns from (user, session, item, type name, dwell_ms) tuples, ts = position."""
    user, session, item, kind, dwell = zip(*events)
    return EventColumns(
        user=np.array(user, dtype=np.int64), session=np.array(session, dtype=np.int64),
        item=np.array(item, dtype=np.int64),
        type=np.array([EVENT_TYPE_CODES[k] for k in kind], dtype=np.int8),
        ts_ms=np.arange(len(events), dtype=np.int64), dwell_ms=np.array(dwell, dtype=np.int32),
        user_ids=np.array([f"u{i}" for i in range(n_users)]),
        session_ids=np.array([f"s{i}" for i in range(n_sessions)]),
        item_ids=np.array([f"i{i}" for i in range(n_items)]),
        item_category=np.full(n_items, -1, dtype=np.int32), categories=np.array([], dtype=str))


def test_matrix_holds_one_plus_alpha_times_summed_preference():
    # 3 users x 4 items, asymmetric: a transposed matrix has a different shape.
    cols = make_columns([
        (0, 0, 1, "view", 30000),   # r = 0.1 + 0.15 * 0.5 = 0.175
        (0, 0, 1, "click", -1),     # + 0.25 -> 0.425
        (0, 0, 3, "buy", -1),       # r = 1.0
        (1, 1, 0, "add_to_cart", -1),
        (1, 1, 0, "view", 120000),  # dwell capped: 0.1 + 0.15 -> 0.75 in all
        (2, 2, 2, "view", -1),      # r = 0.1
    ], n_users=3, n_items=4)
    interactions = build_interactions(cols, WEIGHTS)
    m = interactions.user_items
    assert m.format == "csr" and m.dtype == np.float32 and m.shape == (3, 4)
    expected = np.zeros((3, 4))
    expected[0, 1] = 1 + 15 * 0.425
    expected[0, 3] = 1 + 15 * 1.0
    expected[1, 0] = 1 + 15 * 0.75
    expected[2, 2] = 1 + 15 * 0.1
    np.testing.assert_allclose(m.toarray(), expected, rtol=1e-6)
    assert interactions.n_events == 6


def test_rows_and_columns_map_back_to_ids_without_unused_codes():
    cols = make_columns([(2, 0, 3, "buy", -1), (0, 1, 1, "click", -1), (2, 0, 1, "click", -1)],
                        n_users=3, n_items=5)
    interactions = build_interactions(cols, WEIGHTS)
    assert interactions.users.tolist() == [0, 2]
    assert interactions.items.tolist() == [1, 3]
    assert interactions.item_index.tolist() == [-1, 0, -1, 1, -1]
    dense = interactions.user_items.toarray()
    assert dense.tolist() == [[1 + 15 * 0.25, 0.0], [1 + 15 * 0.25, 16.0]]


def test_zero_weight_and_unknown_codes_are_left_out():
    weights = SignalWeights(view=0.0, dwell=0.0, dwell_cap_ms=1, click=0.25, add_to_cart=0.5,
                            buy=1.0, alpha=15.0)
    cols = make_columns([
        (0, 0, 0, "view", -1),    # r = 0: not a positive
        (0, 0, 1, "buy", -1),
        (5, 0, 1, "click", -1),   # unknown user
        (0, 0, 9, "click", -1),   # unknown item
        (0, 7, 1, "click", -1),   # unknown session
    ], n_users=1, n_items=2)
    interactions = build_interactions(cols, weights)
    assert interactions.used.tolist() == [False, True, False, False, False]
    assert interactions.user_items.toarray().tolist() == [[16.0]]


def test_unknown_type_code_is_left_out():
    cols = make_columns([(0, 0, 0, "click", -1), (0, 0, 1, "click", -1)], n_users=1, n_items=2)
    cols.type[0] = 42
    assert build_interactions(cols, WEIGHTS).items.tolist() == [1]


@pytest.mark.parametrize("alpha", [1.0, 40.0])
def test_alpha_scales_preference_not_the_one(alpha):
    weights = SignalWeights(view=0.1, dwell=0.0, dwell_cap_ms=1, click=0.25, add_to_cart=0.5,
                            buy=1.0, alpha=alpha)
    cols = make_columns([(0, 0, 0, "click", -1), (0, 0, 1, "buy", -1)], n_users=1, n_items=2)
    np.testing.assert_allclose(build_interactions(cols, weights).user_items.toarray(),
                               [[1 + alpha * 0.25, 1 + alpha * 1.0]])
