"""The query views' rules: parameters in, the request scored and the answer's JSON out.

``GET /recommend`` answers with the list the worker would score for an event
on ``item`` in the user's state as it holds it now, without applying an event
or writing anything: the request is the one the agent builds
(:class:`shared.scoring.Request` of the row's history, the session, the item
and its category), scored by :func:`shared.scoring.score_events` with the
worker's own :class:`shared.scoring.ScoringParams`. After an event on ``item``
the row already holds that event, so with ``filter_shown`` off (the default)
``/recommend`` for the event's user, session and item gives exactly the list
the worker sent for it. With ``filter_shown`` on, the session holds the items
already shown, and they are left out as they would be from the next event's
list.

``GET /similar/{item}`` answers with the item's neighbour list in the model
served: the ``similar_items`` and ``similar_scores`` row of
:class:`shared.model.Model` (factor cosine, best first), which is the list
the scoring's ``similar`` source reads. It is read from the model, not from
a list scored with parameters made up for the purpose: on the worker's
parameters a request holding only the item is not that list (other sources
count, the item itself ranks first), and a list scored from the ``similar``
source alone carries normalised scores and popular fall-backs that would have
to be cut off again.

Everything here is pure and imports without the Faust app (``stream.views``
wires it to the app). A bad parameter raises :class:`QueryError`, whose text
is one line naming the parameter and the rule, without echoing control
characters.
"""
from __future__ import annotations

import re
from collections.abc import Iterable
from dataclasses import dataclass

from shared.messages import epoch_ms_now
from shared.model import Model
from shared.scoring import Recommendation, Request, Session
from shared.state import UserState

#: Longest list a query may ask for (``n``).
MAX_N = 100
#: Parameters ``/recommend`` takes; ``user`` and ``item`` are required.
RECOMMEND_PARAMS = ("user", "item", "session", "category", "n")
#: Parameters ``/similar/{item}`` takes.
SIMILAR_PARAMS = ("n",)

_CONTROL_CHARACTER = re.compile("[\x00-\x1f\x7f-\x9f]")
_DIGITS = re.compile("[0-9]{1,6}")


class QueryError(ValueError):
    """A query parameter is missing, repeated, unknown or out of its bounds (one line)."""


@dataclass(frozen=True, slots=True)
class RecommendQuery:
    """The parameters of one ``/recommend`` request, checked.

    Attributes
    ----------
    user, item : str
        The ``users`` row's key (an anonymous visitor's is the session id) and
        the item being looked at.
    session : str or None
        The session inside the row whose items are the anchors; None: an empty
        session (a visit that has just begun).
    category : str or None
        The item's category, used when the model does not know the item.
    n : int or None
        The list's length; None: the worker's ``RECSYS_N``.
    """

    user: str
    item: str
    session: str | None = None
    category: str | None = None
    n: int | None = None


def parse_recommend(pairs: Iterable[tuple[str, str]], *, max_id_chars: int = 128,
                    max_category_chars: int = 128) -> RecommendQuery:
    """The checked parameters of ``/recommend`` from the query's (name, value) pairs.

    Ids follow the event contract (:mod:`shared.events`): non-blank, at most
    ``max_id_chars`` characters, no control characters; a blank ``category``
    is unknown. Each parameter may come once.

    >>> parse_recommend([("user", "u1"), ("item", "i7"), ("n", "5")])
    RecommendQuery(user='u1', item='i7', session=None, category=None, n=5)
    >>> parse_recommend([("user", "u1")])
    Traceback (most recent call last):
    ...
    stream.query.QueryError: 'item' is required
    """
    values = _single_values(pairs, RECOMMEND_PARAMS)
    category = values.get("category")
    if category is not None:
        category = None if not category.strip() else category
        if category is not None and len(category) > max_category_chars:
            raise QueryError(f"'category' is {len(category)} characters, more than the limit "
                             f"of {max_category_chars} (RECSYS_MAX_CATEGORY_CHARS)")
    session = values.get("session")
    return RecommendQuery(
        user=_id(values, "user", max_id_chars), item=_id(values, "item", max_id_chars),
        session=None if session is None else _id(values, "session", max_id_chars),
        category=category, n=parse_n(values.get("n")))


def parse_similar(pairs: Iterable[tuple[str, str]], *, default_n: int) -> int:
    """The list length ``n`` of ``/similar/{item}`` (``default_n`` when not given).

    >>> parse_similar([], default_n=20), parse_similar([("n", "3")], default_n=20)
    (20, 3)
    """
    n = parse_n(_single_values(pairs, SIMILAR_PARAMS).get("n"))
    return default_n if n is None else n


def parse_n(value: str | None) -> int | None:
    """``n`` as an integer from 1 to :data:`MAX_N`; None when not given.

    >>> parse_n("12"), parse_n(None)
    (12, None)
    >>> parse_n("0")
    Traceback (most recent call last):
    ...
    stream.query.QueryError: 'n' must be an integer from 1 to 100, got '0'
    """
    if value is None:
        return None
    n = int(value) if _DIGITS.fullmatch(value) else 0
    if not 1 <= n <= MAX_N:
        raise QueryError(f"'n' must be an integer from 1 to {MAX_N}, got {_shown(value)}")
    return n


def recommend_request(row: UserState | None, query: RecommendQuery) -> Request:
    """What the agent would score for an event on ``query.item`` in ``row``, no event applied.

    A user the worker holds no row for is a new shopper: an empty history and
    session (the cold-start list).

    >>> from shared.scoring import History
    >>> recommend_request(None, RecommendQuery("u", "i1")) == Request(History(), Session(), "i1")
    True
    """
    row = row if row is not None else UserState()
    session = row.session(query.session) if query.session is not None else Session()
    return Request(row.history, session, query.item, query.category)


def recommend_body(model: Model, rec: Recommendation, query: RecommendQuery,
                   now_ms: int | None = None) -> dict:
    """The answer of ``/recommend``: the fields of a ``recommendations`` message but
    ``event_id`` (there is no event)."""
    return {"user_id": query.user, "session_id": query.session, "query_item_id": query.item,
            "items": [{"item_id": item, "score": score}
                      for item, score in zip(rec.item_ids(model), rec.scores.tolist())],
            "strategy": rec.strategy, "model_version": model.version,
            "generated_at": epoch_ms_now() if now_ms is None else now_ms}


def similar_body(model: Model, item: str, n: int) -> dict | None:
    """The answer of ``/similar/{item}``: its first ``n`` neighbours with their cosine; None
    when the model does not know ``item``.

    >>> from shared.scoring.example import _example_model
    >>> similar_body(_example_model(), "i0", 5)["items"]
    [{'item_id': 'i1', 'score': 0.99}, {'item_id': 'i2', 'score': 0.2}]
    >>> similar_body(_example_model(), "nope", 5) is None
    True
    """
    row = model.item_index.get(item)
    if row is None:
        return None
    neighbours, scores = model.similar_items[row], model.similar_scores[row]
    keep = (neighbours >= 0) & (neighbours < model.n_items)  # -1 pads a short list
    neighbours, scores = neighbours[keep][:n], scores[keep][:n]
    return {"query_item_id": item,
            "items": [{"item_id": neighbour, "score": round(score, 6)} for neighbour, score
                      in zip(model.item_ids[neighbours].tolist(), scores.tolist())],
            "model_version": model.version}


def _single_values(pairs: Iterable[tuple[str, str]], allowed: tuple[str, ...]) -> dict[str, str]:
    values: dict[str, str] = {}
    for name, value in pairs:
        if name not in allowed:
            raise QueryError(f"unknown parameter {_shown(name)} (known: {', '.join(allowed)})")
        if name in values:
            raise QueryError(f"{name!r} is given more than once")
        values[name] = value
    return values


def _id(values: dict[str, str], name: str, max_chars: int) -> str:
    value = values.get(name)
    if value is None:
        raise QueryError(f"{name!r} is required")
    if not value.strip():
        raise QueryError(f"{name!r} is empty")
    if len(value) > max_chars:
        raise QueryError(f"{name!r} is {len(value)} characters, more than the limit of "
                         f"{max_chars} (RECSYS_MAX_ID_CHARS)")
    control = _CONTROL_CHARACTER.search(value)
    if control is not None:
        raise QueryError(f"{name!r} contains the control character U+{ord(control.group()):04X} "
                         f"at index {control.start()}")
    return value


def _shown(value: str, limit: int = 40) -> str:
    """``value`` quoted for an error line: escaped (repr) and cut to ``limit`` characters."""
    return repr(value if len(value) <= limit else value[:limit] + "...")
