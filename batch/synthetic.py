"""A synthetic shop with ground truth: catalogue, shoppers with tastes, their visits.

Items belong to categories and have a power-law popularity within and across
categories. Logged-in users (``u<n>``, several visits each) and anonymous
visitors (one visit, user id = session id ``s<n>``) each prefer a few
categories. A visit (session) is a run of views that mostly stays in one
category for a while and mostly in the shopper's preferred categories; views
lead to clicks and add-to-cart, carts to purchases at checkout.

Everything is drawn with numpy a chunk of events at a time, so tens of millions
of events take minutes and bounded memory, and the same seed gives the same
bytes. Chunks cover disjoint time windows: the events come out in global time
order.

One module, past 500 lines: the shop's parameters, its draws and its ground
truth are one generative story, and the truth must match the draws exactly.
The file writer is :mod:`batch.synthetic_file`.

Example
-------
>>> columns, truth = generate_columns(1000, seed=7, params=ShopParams(n_items=50, n_categories=5))
>>> len(columns), columns.item_ids[:2].tolist(), truth.user_categories.shape[1]
(1000, ['i0', 'i1'], 3)
"""
from __future__ import annotations

import json
import math
import shutil
from collections.abc import Iterator
from dataclasses import asdict, dataclass, field, fields
from pathlib import Path

import numpy as np

from batch.columns import EventColumns
from shared.events import EVENT_TYPE_CODES, EVENT_TYPES

VIEW, CLICK, ADD_TO_CART, BUY = (EVENT_TYPE_CODES[name] for name in EVENT_TYPES)

#: Prefixes of the external ids: ``u12`` is user code 12, ``s5`` session 5, and so on.
USER_PREFIX, SESSION_PREFIX, ITEM_PREFIX, CATEGORY_PREFIX = "u", "s", "i", "c"

#: Events drawn (and written) per chunk; the output depends on it, like on the seed.
DEFAULT_CHUNK_EVENTS = 1_000_000

_DAY_MS = 86_400_000
_DWELL_MIN_MS = 1_000
_GAP_MS = (200, 3_600_000)


def _param(default, doc: str):
    return field(default=default, metadata={"doc": doc})


@dataclass(frozen=True)
class ShopParams:
    """How the synthetic shop and its shoppers behave; every field has a ``doc``."""

    n_items: int = _param(10_000, "Items in the catalogue.")
    n_categories: int = _param(50, "Categories; each holds at least one item.")
    n_users: int = _param(0, "Logged-in users; 0 derives it from the events, visits_per_user "
                             "and anonymous_share.")
    categories_per_user: int = _param(3, "Preferred categories of every shopper.")
    anonymous_share: float = _param(0.3, "Share of sessions by anonymous visitors.")
    visits_per_user: float = _param(8.0, "Mean sessions per logged-in user (when n_users is 0).")
    user_activity_sigma: float = _param(1.0, "Log-normal spread of how often users visit.")
    views_per_session: float = _param(8.0, "Mean views per session (geometric, at least 1).")
    stay_in_category: float = _param(0.8, "Chance that the next view stays in the category.")
    preferred_share: float = _param(0.85, "Chance that a new category is a preferred one.")
    category_zipf: float = _param(1.0, "Zipf exponent of category popularity.")
    item_zipf: float = _param(1.1, "Zipf exponent of item popularity within a category.")
    click_rate: float = _param(0.30, "Clicks per view.")
    add_to_cart_rate: float = _param(0.06, "Add-to-carts per view.")
    buy_rate: float = _param(0.02, "Purchases per view; each buys an item added to the cart.")
    mean_quantity: float = _param(1.3, "Mean quantity of a cart line (geometric, at least 1).")
    dwell_median_ms: float = _param(15_000.0, "Median time spent on a view.")
    dwell_sigma: float = _param(1.0, "Log-normal spread of dwell times.")
    dwell_max_ms: int = _param(600_000, "Longest dwell time.")
    gap_median_ms: float = _param(3_000.0, "Median pause between leaving a view and the next.")
    price_median: float = _param(30.0, "Median item price.")
    price_sigma: float = _param(0.9, "Log-normal spread of prices.")
    days: float = _param(30.0, "Days the sessions spread over.")
    start_ms: int = _param(1_704_067_200_000, "Start of the first day, epoch ms (2024-01-01Z).")

    def __post_init__(self):
        problems = [
            (self.n_items >= self.n_categories >= 1, "need n_items >= n_categories >= 1"),
            (self.n_categories >= self.categories_per_user >= 1,
             "need n_categories >= categories_per_user >= 1"),
            (self.n_users >= 0, "n_users must be >= 0"),
            (0.0 <= self.anonymous_share <= 1.0, "anonymous_share must lie in [0, 1]"),
            (0.0 <= self.buy_rate <= self.add_to_cart_rate <= 1.0,
             "need 0 <= buy_rate <= add_to_cart_rate <= 1"),
            (0.0 <= self.click_rate <= 1.0, "click_rate must lie in [0, 1]"),
            (self.views_per_session >= 1 and self.mean_quantity >= 1,
             "views_per_session and mean_quantity must be >= 1"),
            (self.days > 0, "days must be > 0"),
        ]
        for ok, message in problems:
            if not ok:
                raise ValueError(message)

    def events_per_session(self) -> float:
        """Expected events of one session."""
        return self.views_per_session * (1 + self.click_rate + self.add_to_cart_rate + self.buy_rate)

    def users_for(self, n_events: int) -> int:
        """``n_users``, or when 0 the number that gives ``visits_per_user`` for ``n_events``."""
        if self.n_users:
            return self.n_users
        sessions = n_events / self.events_per_session()
        return max(1, round(sessions * (1 - self.anonymous_share) / self.visits_per_user))


@dataclass
class GroundTruth:
    """What the synthetic shop was built from; codes match the ids' numbers.

    Attributes
    ----------
    item_category : ndarray of int32, shape (n_items,)
        Category code of item ``i<code>``.
    item_price : ndarray of float64, shape (n_items,)
    item_popularity : ndarray of float64, shape (n_items,)
        Prior probability of the item among all views (category share times
        share within the category); sums to 1.
    item_rank : ndarray of int32, shape (n_items,)
        Rank of ``item_popularity``, 0 = most popular.
    category_popularity : ndarray of float64, shape (n_categories,)
    user_categories : ndarray of int32, shape (n_users, categories_per_user)
        Preferred categories of logged-in user ``u<code>``.
    session_user : ndarray of int32, shape (n_sessions,)
        User code of session ``s<code>``; -1 for an anonymous visitor.
    session_categories : ndarray of int32, shape (n_sessions, categories_per_user)
        Preferred categories of the shopper of each session.
    meta : dict
        ``seed``, ``n_events``, ``chunk_events`` and ``params``.
    """

    item_category: np.ndarray
    item_price: np.ndarray
    item_popularity: np.ndarray
    item_rank: np.ndarray
    category_popularity: np.ndarray
    user_categories: np.ndarray
    session_user: np.ndarray
    session_categories: np.ndarray
    meta: dict

    def preferred_categories(self, user_ids) -> np.ndarray:
        """Preferred category codes of shoppers given by user id (``u<n>``, or ``s<n>`` if anonymous).

        Returns
        -------
        ndarray of int32, shape (len(user_ids), categories_per_user)
        """
        user_ids = np.asarray(user_ids, dtype=str)
        numbers = np.strings.slice(user_ids, 1, None).astype(np.int64)
        anonymous = np.strings.startswith(user_ids, SESSION_PREFIX)
        return np.where(anonymous[:, None],
                        self.session_categories[np.where(anonymous, numbers, 0)],
                        self.user_categories[np.where(anonymous, 0, numbers)])

    def save(self, directory: str | Path) -> None:
        """Write one ``.npy`` per array and ``meta.json``, via a temporary directory renamed into place."""
        directory = Path(directory)
        partial = directory.with_name(directory.name + ".partial")
        shutil.rmtree(partial, ignore_errors=True)
        partial.mkdir(parents=True)
        for name, value in asdict(self).items():
            if name != "meta":
                np.save(partial / f"{name}.npy", value, allow_pickle=False)
        (partial / "meta.json").write_text(json.dumps(self.meta, indent=1, sort_keys=True))
        shutil.rmtree(directory, ignore_errors=True)
        partial.rename(directory)

    @classmethod
    def load(cls, directory: str | Path) -> GroundTruth:
        """Read what :meth:`save` wrote."""
        directory = Path(directory)
        arrays = {f.name: np.load(directory / f"{f.name}.npy", allow_pickle=False)
                  for f in fields(cls) if f.name != "meta"}
        return cls(**arrays, meta=json.loads((directory / "meta.json").read_text()))


def truth_dir(events_path: str | Path) -> Path:
    """Where :func:`batch.synthetic_file.write_jsonl` puts the ground truth of ``events_path``:
    ``<events_path>.truth/``."""
    events_path = Path(events_path)
    return events_path.with_name(events_path.name + ".truth")


def load_truth(events_path: str | Path) -> GroundTruth:
    """The ground truth written beside the events file ``events_path``."""
    return GroundTruth.load(truth_dir(events_path))


@dataclass
class EventChunk:
    """Events in time order as columns; users are codes, anonymous ones after the logged-in.

    Attributes
    ----------
    user : ndarray of int64
        ``< n_users``: logged-in user ``u<code>``; otherwise anonymous, the
        visitor of session ``session``.
    session, item : ndarray of int64
    type : ndarray of int8
    ts_ms : ndarray of int64
    dwell_ms : ndarray of int32
        -1 except for views.
    quantity : ndarray of int32
        0 except for add-to-cart and buy.
    """

    user: np.ndarray
    session: np.ndarray
    item: np.ndarray
    type: np.ndarray
    ts_ms: np.ndarray
    dwell_ms: np.ndarray
    quantity: np.ndarray

    def __len__(self) -> int:
        return len(self.item)

    def take(self, rows) -> EventChunk:
        """The chunk with only ``rows`` (indices or a mask), in that order."""
        return EventChunk(**{name: value[rows] for name, value in vars(self).items()})

    @staticmethod
    def concat(first: EventChunk, second: EventChunk) -> EventChunk:
        """``first``'s rows followed by ``second``'s."""
        return EventChunk(**{name: np.concatenate([value, getattr(second, name)])
                             for name, value in vars(first).items()})


@dataclass
class _Sessions:
    """Sessions drawn for one chunk, numbered locally from 0."""

    user: np.ndarray        # int64, -1 anonymous
    categories: np.ndarray  # int32 (n, categories_per_user)
    start_ms: np.ndarray    # int64
    n_views: np.ndarray     # int64

    def take(self, rows) -> _Sessions:
        return _Sessions(**{name: value[rows] for name, value in vars(self).items()})


def _assemble(parts) -> EventChunk:
    """Events from parts of (session, item, type, ts_ms, dwell_ms, quantity); scalars broadcast."""
    dtypes = (np.int64, np.int64, np.int8, np.int64, np.int32, np.int32)
    session, item, type_, ts_ms, dwell_ms, quantity = (
        np.concatenate([np.broadcast_to(np.asarray(part[column], dtype), len(part[0]))
                        for part in parts])
        for column, dtype in enumerate(dtypes))
    return EventChunk(user=np.full(len(session), -1, dtype=np.int64), session=session, item=item,
                      type=type_, ts_ms=ts_ms, dwell_ms=dwell_ms, quantity=quantity)


def _zipf_weights(n: int, exponent: float) -> np.ndarray:
    return np.arange(1, n + 1, dtype=np.float64) ** -exponent


def _cdf(weights: np.ndarray) -> np.ndarray:
    cdf = np.cumsum(weights)
    return cdf / cdf[-1]


def _draw_from_cdf(rng: np.random.Generator, cdf: np.ndarray, n: int) -> np.ndarray:
    return np.minimum(np.searchsorted(cdf, rng.random(n), side="right"), len(cdf) - 1)


def _draw_tastes(rng: np.random.Generator, n: int, category_p: np.ndarray, k: int) -> np.ndarray:
    """``k`` distinct categories per shopper, drawn by popularity (Gumbel top-k), in blocks."""
    tastes = np.empty((n, k), dtype=np.int32)
    log_p = np.log(category_p)
    block = max(1, (1 << 22) // len(category_p))
    for lo in range(0, n, block):
        hi = min(n, lo + block)
        keys = log_p - np.log(-np.log(rng.random((hi - lo, len(category_p)))))
        tastes[lo:hi] = np.argsort(-keys, axis=1)[:, :k]
    return tastes


class SyntheticShop:
    """The catalogue and users of one seed; draws sessions and their events chunk by chunk.

    Parameters
    ----------
    n_events : int
        Events :meth:`event_chunks` yields in all.
    seed : int
        Non-negative; the same seed and parameters give the same events.
    params : ShopParams
    chunk_events : int
        Events drawn per chunk (each chunk covers its own time window).
    """

    def __init__(self, n_events: int, *, seed: int, params: ShopParams = ShopParams(),
                 chunk_events: int = DEFAULT_CHUNK_EVENTS):
        if n_events < 0 or seed < 0 or chunk_events < 1:
            raise ValueError("need n_events >= 0, seed >= 0 and chunk_events >= 1")
        self.n_events, self.seed, self.params, self.chunk_events = n_events, seed, params, chunk_events
        self.n_users = params.users_for(n_events)
        rng = np.random.default_rng([seed, 0])
        self._build_categories(rng)
        self._build_items(rng)
        self._build_users(rng)
        self._session_user: list[np.ndarray] = []
        self._session_categories: list[np.ndarray] = []
        self._n_anonymous = 0
        self._started = self._done = False

    # --- the shop ---------------------------------------------------------
    def _build_categories(self, rng):
        p = self.params
        self.category_popularity = _zipf_weights(p.n_categories, p.category_zipf)[
            rng.permutation(p.n_categories)]
        self.category_popularity /= self.category_popularity.sum()
        self._category_cdf = _cdf(self.category_popularity)

    def _build_items(self, rng):
        """Categories, prices and popularity of items; a sampler of items within a category."""
        p = self.params
        size_p = np.sqrt(self.category_popularity)
        rest = _draw_from_cdf(rng, _cdf(size_p), p.n_items - p.n_categories)
        self.item_category = rng.permutation(
            np.concatenate([np.arange(p.n_categories), rest])).astype(np.int32)
        # Items grouped by category, in a random order within it: that order is the Zipf rank.
        by_category = np.lexsort((rng.random(p.n_items), self.item_category))
        grouped_category = self.item_category[by_category]
        group_start = np.searchsorted(grouped_category, np.arange(p.n_categories))
        rank = np.arange(p.n_items) - group_start[grouped_category] + 1
        within = rank.astype(np.float64) ** -p.item_zipf
        within /= np.bincount(grouped_category, weights=within)[grouped_category]
        self.item_popularity = np.empty(p.n_items)
        self.item_popularity[by_category] = within * self.category_popularity[grouped_category]
        self.item_rank = np.empty(p.n_items, dtype=np.int32)
        self.item_rank[np.argsort(-self.item_popularity, kind="stable")] = np.arange(p.n_items)
        # Category plus cumulative share within it: one searchsorted draws items of any categories.
        cumulative = np.cumsum(within)
        key = grouped_category + cumulative - (cumulative - within)[group_start][grouped_category]
        key[np.append(group_start[1:], p.n_items) - 1] = np.arange(1, p.n_categories + 1)
        self._item_key, self._items_grouped = key, by_category
        category_price = p.price_median * rng.lognormal(0.0, p.price_sigma, p.n_categories)
        price = category_price[self.item_category] * rng.lognormal(0.0, p.price_sigma / 2, p.n_items)
        self.item_price_cents = np.maximum(99, np.round(price * 100)).astype(np.int64)

    def _build_users(self, rng):
        p = self.params
        self.user_categories = _draw_tastes(rng, self.n_users, self.category_popularity,
                                            p.categories_per_user)
        self._user_cdf = _cdf(rng.lognormal(0.0, p.user_activity_sigma, self.n_users))

    def _draw_categories(self, rng, n: int) -> np.ndarray:
        return _draw_from_cdf(rng, self._category_cdf, n).astype(np.int32)

    def _draw_items(self, rng, category: np.ndarray) -> np.ndarray:
        slot = np.searchsorted(self._item_key, category + rng.random(len(category)), side="left")
        return self._items_grouped[slot]

    # --- sessions and events ---------------------------------------------
    def _draw_sessions(self, rng, n: int, start_ms: int, end_ms: int) -> _Sessions:
        p = self.params
        anonymous = rng.random(n) < p.anonymous_share
        user = np.full(n, -1, dtype=np.int64)
        user[~anonymous] = _draw_from_cdf(rng, self._user_cdf, int((~anonymous).sum()))
        categories = self.user_categories[np.maximum(user, 0)]
        categories[anonymous] = _draw_tastes(rng, int(anonymous.sum()), self.category_popularity,
                                             p.categories_per_user)
        start = start_ms + (rng.random(n) * (end_ms - start_ms)).astype(np.int64)
        n_views = rng.geometric(1.0 / p.views_per_session, n).astype(np.int64)
        return _Sessions(user=user, categories=categories, start_ms=start, n_views=n_views)

    def _draw_views(self, rng, sessions: _Sessions):
        """Session, category, item, time and dwell of every view, sessions one after another."""
        p = self.params
        session = np.repeat(np.arange(len(sessions.n_views)), sessions.n_views)
        first = np.zeros(len(session), dtype=bool)
        first[np.cumsum(sessions.n_views) - sessions.n_views] = True
        switch = first | (rng.random(len(session)) >= p.stay_in_category)
        switched = session[switch]
        preferred = sessions.categories[
            switched, rng.integers(p.categories_per_user, size=len(switched))]
        chosen = np.where(rng.random(len(switched)) < p.preferred_share, preferred,
                          self._draw_categories(rng, len(switched)))
        category = chosen[np.cumsum(switch) - 1]
        item = self._draw_items(rng, category)
        dwell = np.clip(rng.lognormal(math.log(p.dwell_median_ms), p.dwell_sigma, len(session)),
                        _DWELL_MIN_MS, p.dwell_max_ms).astype(np.int64)
        gap = np.clip(rng.lognormal(math.log(p.gap_median_ms), 1.0, len(session)),
                      *_GAP_MS).astype(np.int64)
        step = dwell + gap
        before = np.cumsum(step) - step
        ts = sessions.start_ms[session] + before - before[first][np.cumsum(first) - 1]
        return session, item, ts, dwell, step

    def _draw_events(self, rng, sessions: _Sessions) -> EventChunk:
        """Every event of ``sessions``, ordered by session then time; ``session`` is local."""
        p = self.params
        session, item, ts, dwell, step = self._draw_views(rng, sessions)
        clicked = np.flatnonzero(rng.random(len(item)) < p.click_rate)
        click_ts = ts[clicked] + 1 + (rng.random(len(clicked)) * (dwell[clicked] - 1)).astype(np.int64)
        carted = np.flatnonzero(rng.random(len(item)) < p.add_to_cart_rate)
        quantity = rng.geometric(1.0 / p.mean_quantity, len(carted)).astype(np.int32)
        bought = rng.random(len(carted)) < (p.buy_rate / p.add_to_cart_rate if p.add_to_cart_rate else 0)
        checkout_ts = (ts + step)[np.cumsum(sessions.n_views) - 1]
        parts = [
            (session, item, VIEW, ts, dwell, 0),
            (session[clicked], item[clicked], CLICK, click_ts, -1, 0),
            (session[carted], item[carted], ADD_TO_CART, ts[carted] + dwell[carted], -1, quantity),
            (session[carted][bought], item[carted][bought], BUY,
             checkout_ts[session[carted][bought]], -1, quantity[bought]),
        ]
        events = _assemble(parts)
        return events.take(np.lexsort((events.ts_ms, events.session)))

    def _chunk(self, rng, n: int, start_ms: int, end_ms: int, first_session: int) -> EventChunk:
        """Exactly ``n`` events of sessions starting in [start_ms, end_ms), by session then time.

        Sessions are drawn with a margin and the surplus cut off (the last kept
        session may lose its tail); the kept ones are numbered from
        ``first_session`` in order of start.
        """
        n_sessions = math.ceil(n / self.params.events_per_session() * 1.2) + 50
        while True:
            sessions = self._draw_sessions(rng, n_sessions, start_ms, end_ms)
            events = self._draw_events(rng, sessions)
            if len(events) >= n:
                break
            n_sessions *= 2
        events = events.take(slice(0, n))
        n_kept = int(events.session[-1]) + 1 if n else 0
        by_start = np.argsort(sessions.start_ms[:n_kept], kind="stable")
        kept = sessions.take(by_start)
        rank = np.empty(n_kept, dtype=np.int64)
        rank[by_start] = np.arange(n_kept)
        anonymous = kept.user < 0
        user = np.where(anonymous, self.n_users + self._n_anonymous + np.cumsum(anonymous) - 1,
                        kept.user)
        events.user = user[rank[events.session]]
        events.session = first_session + rank[events.session]
        self._n_anonymous += int(anonymous.sum())
        self._session_user.append(kept.user.astype(np.int32))
        self._session_categories.append(kept.categories)
        return events

    def event_chunks(self) -> Iterator[EventChunk]:
        """Yield all ``n_events`` events in global time order, a chunk at a time.

        Each chunk draws sessions starting in its own time window, as long as
        its share of the events; events past the window's end wait for the
        next chunk.
        """
        if self._started:
            raise RuntimeError("event_chunks() runs once per SyntheticShop")
        self._started = True
        n_chunks = math.ceil(self.n_events / self.chunk_events)
        span_ms = self.params.days * _DAY_MS
        carried = None
        for k in range(n_chunks):
            rng = np.random.default_rng([self.seed, 1, k])
            first, last = k * self.chunk_events, min((k + 1) * self.chunk_events, self.n_events)
            start_ms, end_ms = (self.params.start_ms + round(span_ms * j / self.n_events)
                                for j in (first, last))
            events = self._chunk(rng, last - first, start_ms, end_ms, self.n_sessions)
            if carried is not None:
                events = EventChunk.concat(carried, events)
            events = events.take(np.argsort(events.ts_ms, kind="stable"))
            cut = len(events) if k == n_chunks - 1 else int(np.searchsorted(events.ts_ms, end_ms))
            carried = events.take(slice(cut, None))
            yield events.take(slice(0, cut))
        self._done = True

    @property
    def n_sessions(self) -> int:
        """Sessions drawn so far."""
        return sum(len(u) for u in self._session_user)

    def truth(self) -> GroundTruth:
        """The ground truth; available once :meth:`event_chunks` has run to its end."""
        if not self._done:
            raise RuntimeError("truth() needs event_chunks() to have run to its end")
        k = self.params.categories_per_user
        return GroundTruth(
            item_category=self.item_category,
            item_price=self.item_price_cents / 100.0,
            item_popularity=self.item_popularity,
            item_rank=self.item_rank,
            category_popularity=self.category_popularity,
            user_categories=self.user_categories,
            session_user=np.concatenate([np.zeros(0, np.int32), *self._session_user]),
            session_categories=np.concatenate([np.zeros((0, k), np.int32), *self._session_categories]),
            meta={"seed": self.seed, "n_events": self.n_events, "chunk_events": self.chunk_events,
                  "params": asdict(self.params), "n_users": self.n_users,
                  "n_sessions": self.n_sessions},
        )


def _ids(prefix: str, numbers: np.ndarray) -> np.ndarray:
    return np.strings.add(prefix, np.asarray(numbers).astype(np.str_))


def generate_columns(n_events: int, *, seed: int, params: ShopParams = ShopParams(),
                     chunk_events: int = DEFAULT_CHUNK_EVENTS) -> tuple[EventColumns, GroundTruth]:
    """Draw ``n_events`` events of the synthetic shop as columns, in time order.

    The events are those :func:`batch.synthetic_file.write_jsonl` writes with the same arguments.
    Anonymous visitors' user ids are their session ids. Every logged-in user
    is in ``user_ids``, with events or not.

    Returns
    -------
    columns : EventColumns
    truth : GroundTruth
    """
    shop = SyntheticShop(n_events, seed=seed, params=params, chunk_events=chunk_events)
    names = ("user", "session", "item", "type", "ts_ms", "dwell_ms")
    dtypes = (np.int64, np.int64, np.int64, np.int8, np.int64, np.int32)
    out = {name: np.empty(n_events, dtype) for name, dtype in zip(names, dtypes)}
    at = 0
    for chunk in shop.event_chunks():
        for name in names:
            out[name][at:at + len(chunk)] = getattr(chunk, name)
        at += len(chunk)
    truth = shop.truth()
    user_ids = np.concatenate([_ids(USER_PREFIX, np.arange(shop.n_users)),
                               _ids(SESSION_PREFIX, np.flatnonzero(truth.session_user < 0))])
    columns = EventColumns(
        **out, user_ids=user_ids,
        session_ids=_ids(SESSION_PREFIX, np.arange(len(truth.session_user))),
        item_ids=_ids(ITEM_PREFIX, np.arange(params.n_items)),
        item_category=truth.item_category,
        categories=_ids(CATEGORY_PREFIX, np.arange(params.n_categories)))
    return columns, truth
