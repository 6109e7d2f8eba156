"""The query views' rules (stream.query): parameters, the request scored, the answers."""
from __future__ import annotations

import numpy as np
import pytest

from shared.events import Event
from shared.scoring import (History, Request, ScoringParams, Session, SourceWeights,
                            add_to_session, score_events)
from shared.scoring.example import _example_model
from shared.state import StateRule, apply_event
from stream.query import (MAX_N, QueryError, RecommendQuery, parse_n, parse_recommend,
                          parse_similar, recommend_body, recommend_request, similar_body)


def test_recommend_parameters_with_their_defaults():
    assert parse_recommend([("item", "i1"), ("user", "u1")]) == RecommendQuery("u1", "i1")
    assert parse_recommend([("user", "u1"), ("item", "i1"), ("session", "s1"),
                            ("category", "shoes"), ("n", "100")]) == \
        RecommendQuery("u1", "i1", "s1", "shoes", 100)
    assert parse_recommend([("user", "u1"), ("item", "i1"), ("category", "  ")]).category is None


@pytest.mark.parametrize(("pairs", "reason"), [
    ([("item", "i1")], "'user' is required"),
    ([("user", "u1")], "'item' is required"),
    ([("user", " "), ("item", "i1")], "'user' is empty"),
    ([("user", "u1"), ("item", "i1"), ("session", "")], "'session' is empty"),
    ([("user", "u" * 129), ("item", "i1")],
     "'user' is 129 characters, more than the limit of 128 (RECSYS_MAX_ID_CHARS)"),
    ([("user", "u1"), ("item", "i\n1")], "'item' contains the control character U+000A at index 1"),
    ([("user", "u1"), ("item", "i1"), ("category", "c" * 129)],
     "'category' is 129 characters, more than the limit of 128 (RECSYS_MAX_CATEGORY_CHARS)"),
    ([("user", "u1"), ("user", "u2"), ("item", "i1")], "'user' is given more than once"),
    ([("user", "u1"), ("item", "i1"), ("nn", "5")],
     "unknown parameter 'nn' (known: user, item, session, category, n)"),
    ([("user", "u1"), ("item", "i1"), ("n", "0")], "'n' must be an integer from 1 to 100, got '0'"),
])
def test_bad_recommend_parameters_say_why_in_one_line(pairs, reason):
    with pytest.raises(QueryError) as raised:
        parse_recommend(pairs)
    assert str(raised.value) == reason and "\n" not in str(raised.value)


def test_the_id_limits_are_the_configured_ones():
    assert parse_recommend([("user", "u" * 200), ("item", "i")], max_id_chars=200).user == "u" * 200
    with pytest.raises(QueryError, match="limit of 4"):
        parse_recommend([("user", "u1"), ("item", "i1"), ("category", "shoes")],
                        max_category_chars=4)


@pytest.mark.parametrize("value", ["0", "101", "-1", "1.5", "five", "", " 5", "²", "1" * 40])
def test_n_is_an_integer_from_1_to_the_maximum(value):
    with pytest.raises(QueryError) as raised:
        parse_n(value)
    assert "\n" not in str(raised.value) and len(str(raised.value)) < 120


def test_n_bounds_and_the_similar_default():
    assert [parse_n("1"), parse_n(str(MAX_N)), parse_n("007"), parse_n(None)] == [1, MAX_N, 7, None]
    assert parse_similar([], default_n=20) == 20 and parse_similar([("n", "4")], default_n=20) == 4
    with pytest.raises(QueryError, match="unknown parameter 'user'"):
        parse_similar([("user", "u1")], default_n=20)


def _row():
    rule = StateRule()
    events = [Event("e1", "u1", "s1", "i0", "click", 1, 1_000),
              Event("e2", "u1", "s2", "i2", "view", 0, 2_000),
              Event("e3", "u1", "s1", "i1", "view", 0, 3_000)]
    user = None
    for offset, event in enumerate(events):
        user = apply_event(event, user, rule, partition=0, offset=offset)
    return user


def test_the_request_is_the_rows_history_and_the_named_session():
    user = _row()
    assert recommend_request(user, RecommendQuery("u1", "i3", "s1", "b")) == \
        Request(user.history, user.session("s1"), "i3", "b")
    assert recommend_request(user, RecommendQuery("u1", "i3")).session == Session()
    assert recommend_request(user, RecommendQuery("u1", "i3", "unknown")).session == Session()


def test_an_unknown_user_is_a_new_shopper():
    request = recommend_request(None, RecommendQuery("nobody", "i0", "s9", "a"))
    assert request == Request(History(), Session(), "i0", "a")


def test_the_answer_has_the_message_fields_and_the_scored_list():
    model, user = _example_model(), _row()
    query = RecommendQuery("u1", "i1", "s1")
    rec = score_events(model, [recommend_request(user, query)], ScoringParams(n=3))[0]
    body = recommend_body(model, rec, query, now_ms=5)
    assert body == {"user_id": "u1", "session_id": "s1", "query_item_id": "i1",
                    "items": [{"item_id": i, "score": s}
                              for i, s in zip(rec.item_ids(model), rec.scores.tolist())],
                    "strategy": rec.strategy, "model_version": "example", "generated_at": 5}
    # The last event's list, as the agent scores it, is the answer for its item and session.
    sent = score_events(model, [(user.history, user.session("s1"), "i1", None)], ScoringParams(n=3))[0]
    assert body["items"] == [{"item_id": i, "score": s}
                             for i, s in zip(sent.item_ids(model), sent.scores.tolist())]


def test_similar_is_the_models_neighbour_list_cut_to_n():
    model = _example_model()
    assert similar_body(model, "i1", 1) == {"query_item_id": "i1",
                                            "items": [{"item_id": "i0", "score": 0.99}],
                                            "model_version": "example"}
    assert [i["item_id"] for i in similar_body(model, "i3", 10)["items"]] == ["i2", "i1"]
    assert similar_body(model, "i9", 10) is None


def test_similar_drops_the_padding_of_a_short_list():
    model = _example_model()
    model.similar_items[0, 1] = -1
    assert [i["item_id"] for i in similar_body(model, "i0", 10)["items"]] == ["i1"]


def test_similar_ranks_as_the_scorings_similar_source_does():
    """The neighbour list, best first, is the order in which the scoring's ``similar`` source
    alone ranks an item's candidates (no fall-backs, the item itself left out)."""
    model = _example_model()
    params = ScoringParams(n=10, blend=0.0, sources=SourceWeights(similar=1.0),
                           exclude_query=True, filter_bought=False)
    for item in model.item_ids.tolist():
        rec = score_events(model, [(History(), add_to_session(Session(), item, max_len=10), item,
                                    None)], params)[0]
        candidates = np.asarray(rec.item_ids(model))[rec.scores >= 0].tolist()
        assert [i["item_id"] for i in similar_body(model, item, 10)["items"]] == candidates
