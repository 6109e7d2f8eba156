"""Adversarial messages for the events topic, each with the dead-letter code it must get.

:func:`adversarial_events` makes bad messages of the kinds in :data:`KINDS`, in
equal shares, from a pool of valid events: broken JSON, wrong types (and
numbers too large for their field), missing fields, empty fields, bytes that
are not UTF-8, deep nesting, ``NaN`` literals, huge fields, wrong keys, null
keys and far-future timestamps. Each comes with the exact code the worker
puts on its dead letter: the code of :func:`shared.events.parse_event` for
the value, else the code of :func:`shared.events.check_key` for the key (the
worker checks the value first). Every value fault is sent under the right
key, and every key fault with a valid value, so each message has one fault.

:func:`spaced_copies` makes second copies of valid events, for sending long
after the originals: they are no dead letters, the worker counts them as
copies and applies nothing.

The codes are stated here by construction, not computed with the parser;
``tests/shared/test_events.py`` runs the real parser over the messages and
checks each code, so this module cannot drift from the parser unnoticed.
Everything is drawn from ``random.Random`` seeded with ``seed``: the same
arguments give the same messages, byte for byte.

Example
-------
>>> pool = [{"event_id": "e1", "user_id": "u1", "session_id": "s1", "item_id": "i1",
...          "type": "view", "ts": 1396867869277}]
>>> messages = adversarial_events(22, seed=1, valid_pool=pool)
>>> len(messages), all(code is not None for key, value, code in messages)
(22, True)
>>> [m.code for m in messages if m.key is None or m.key == b""] == ["key_missing"] * 2
True
"""
from __future__ import annotations

import random
import string
from collections import Counter
from collections.abc import Callable, Mapping, Sequence
from datetime import UTC, datetime, timedelta
from typing import Any, NamedTuple

import orjson

from shared.events import (BAD_DWELL, BAD_FIELD_TYPE, BAD_PRICE, BAD_QUANTITY, BAD_TIMESTAMP,
                           EMPTY_FIELD, FIELD_TOO_LONG, FUTURE_TIMESTAMP, KEY_MISMATCH, KEY_MISSING,
                           MAX_TS_MS, MISSING_FIELD, NOT_JSON, NOT_OBJECT, NOT_UTF8, OVERSIZED,
                           Event, EventError, EventLimits, encode_event, parse_event)

#: The kinds of adversarial message, in the order their shares are dealt.
KINDS: tuple[str, ...] = (
    "broken_json", "wrong_type", "missing_field", "empty_field", "not_utf8", "deep_nesting",
    "nan_literal", "huge_field", "wrong_key", "null_key", "future_ts")

#: Length of the over-long item id of a ``huge_field`` message (shorter only
#: when ``max_bytes`` leaves no room for it).
LONG_ITEM_CHARS = 15_000
#: 2200-01-01T00:00:00Z in epoch ms: a ``future_ts`` message is at least this
#: plus the allowed skew, so it is far ahead of any clock before 2200.
FAR_FUTURE_MS = 7_258_118_400_000
#: Deepest nesting orjson reads; one level more is ``not_json``.
ORJSON_MAX_DEPTH = 1024
#: A field no contract names, for faults in an ignored field.
EXTRA_FIELD = "x_adversarial"

_EPOCH = datetime(1970, 1, 1, tzinfo=UTC)
_ID_CHARS = string.ascii_letters + string.digits


class Planned(NamedTuple):
    """One message to produce on the events topic and what the worker must do with it.

    ``code`` is the dead-letter code it must get; None for a valid event (a
    copy from :func:`spaced_copies`). Unpacks as ``key, value, code``.
    """

    key: bytes | None
    value: bytes
    code: str | None


class _Base(NamedTuple):
    """A valid event of the pool: its fields, its right key and its parsed form."""

    fields: dict
    key: bytes
    event: Event


def adversarial_kinds(n: int, *, seed: int, kinds: Sequence[str] = KINDS) -> list[str]:
    """The kind of each of the ``n`` messages :func:`adversarial_events` makes.

    ``kinds`` dealt in turn, then shuffled: each kind has ``n // len(kinds)``
    or one more messages.

    >>> sorted(Counter(adversarial_kinds(23, seed=0)).values())
    [2, 2, 2, 2, 2, 2, 2, 2, 2, 2, 3]
    """
    unknown = [kind for kind in kinds if kind not in _MAKERS]
    if unknown or not kinds:
        raise ValueError(f"kinds must be some of {list(KINDS)}, got {list(kinds)}")
    order = [kinds[i % len(kinds)] for i in range(n)]
    random.Random(f"adversarial-kinds:{seed}").shuffle(order)
    return order


def adversarial_events(n: int, *, seed: int, valid_pool: Sequence[Mapping[str, Any]],
                       limits: EventLimits = EventLimits(),
                       kinds: Sequence[str] = KINDS) -> list[Planned]:
    """``n`` adversarial messages, each with the dead-letter code it must get.

    Parameters
    ----------
    n : int
        How many messages.
    seed : int
        Seed of every draw; the same arguments give the same messages.
    valid_pool : sequence of mapping
        Fields of valid events (as :func:`shared.events.encode_event` takes
        them), at least one; each message is made from one of them. Each
        must parse under ``limits`` with a ``ts`` not ahead of the clock.
    limits : EventLimits
        The limits the worker runs with (default: the settings' defaults);
        the huge, deep and far-future messages are sized from them.
    kinds : sequence of str
        Kinds to make (default every one of :data:`KINDS`), in equal shares
        (:func:`adversarial_kinds`).

    Returns
    -------
    list of Planned
        ``(key, value, code)``: ``code`` is what ``parse_event(value,
        **vars(limits))`` raises, else what ``check_key(event, key)`` raises.
        The ``future_ts`` codes hold for any clock before 2200.

    Raises
    ------
    ValueError
        When ``valid_pool`` is empty or holds an invalid event, or when
        ``limits`` leave no room for a kind (e.g. ``max_bytes`` too small for
        nesting deeper than orjson reads).
    """
    bases = _bases(valid_pool, limits)
    if not bases:
        raise ValueError("valid_pool is empty")
    rng = random.Random(f"adversarial-messages:{seed}")
    made: Counter = Counter()
    messages = []
    for kind in adversarial_kinds(n, seed=seed, kinds=kinds):
        base = rng.choice(bases)
        message = _MAKERS[kind](rng, base, bases, limits, made[kind])
        made[kind] += 1
        if message.code != OVERSIZED and len(message.value) > limits.max_bytes:
            raise ValueError(f"a {kind} message of {len(message.value)} bytes does not fit in"
                             f" max_bytes={limits.max_bytes}; use smaller pool events")
        messages.append(message)
    return messages


def spaced_copies(valid_events: Sequence[Mapping[str, Any]], n: int, *, seed: int,
                  recent: int = 64, window_s: float = 86_400.0,
                  limits: EventLimits = EventLimits()) -> list[Planned]:
    """``n`` second copies of events of ``valid_events``, to send after all of them.

    A copy has the event id and the content of its original: its value is
    ``encode_event`` of the original's fields, its key the original's user
    id, its code None. The worker recognises a copy by the event id while the
    id is among those it remembers for the user, so copies are drawn only
    from events that stay there once all of ``valid_events`` are applied:
    fewer than ``recent`` later events of the same user, and a ``ts`` within
    ``window_s`` of the user's newest event (the worker keeps the ids within
    ``RECSYS_DEDUP_WINDOW_S`` of event time, at most ``RECSYS_DEDUP_MAX_IDS``
    of them; the defaults here are at most its defaults). Sent after all of
    ``valid_events`` (other messages may come between, but no further valid
    event of the same user), each copy is counted as a copy and changes no
    state. When ``n`` is more than the events that can be copied, some are
    copied more than once.

    Parameters
    ----------
    valid_events : sequence of mapping
        The valid events sent before, in the order sent; their event ids are
        unique.
    n : int
        How many copies.
    seed : int
        Seed of the draw.
    recent, window_s : int, float
        How many ids, and how much event time before the user's newest
        event, the worker is assumed to remember per user.
    limits : EventLimits
        The worker's limits, which every event must pass.

    Returns
    -------
    list of Planned
        In a random order; originals drawn without repetition while there
        are enough.

    Raises
    ------
    ValueError
        When an event is invalid, an event id repeats, or ``n > 0`` and no
        event can be copied.
    """
    bases = _bases(valid_events, limits)
    ids = Counter(base.event.event_id for base in bases)
    repeated = [event_id for event_id, count in ids.items() if count > 1]
    if repeated:
        raise ValueError(f"event ids repeat in valid_events: {repeated[:5]}")
    newest: dict[str, int] = {}
    for base in bases:
        user = base.event.user_id
        newest[user] = max(newest.get(user, base.event.ts_ms), base.event.ts_ms)
    later: Counter = Counter()
    eligible = []
    for index in range(len(bases) - 1, -1, -1):
        event = bases[index].event
        if (later[event.user_id] < recent
                and newest[event.user_id] - event.ts_ms <= window_s * 1000):
            eligible.append(index)
        later[event.user_id] += 1
    eligible.reverse()
    if n > 0 and not eligible:
        raise ValueError("no event of valid_events would be remembered by the worker")
    rng = random.Random(f"spaced-copies:{seed}")
    chosen = (rng.sample(eligible, n) if n <= len(eligible)
              else [rng.choice(eligible) for _ in range(n)])
    return [Planned(bases[i].key, encode_event(bases[i].fields), None) for i in chosen]


# --- the kinds ------------------------------------------------------------------------------

def _broken_json(rng: random.Random, base: _Base, bases, limits, made: int) -> Planned:
    """Not JSON: cut short, trailing text, single quotes, no commas, bare keys, or empty."""
    fields = base.fields
    text = encode_event(fields).decode()
    variant = rng.randrange(6)
    if variant == 0:  # any proper prefix of an object lacks its closing brace
        value = text[:rng.randrange(1, len(text))].encode()
    elif variant == 1:
        value = text.encode() + rng.choice([b"}", b",", b"x", b" {}", b"\n{"])
    elif variant == 2:
        value = text.replace('"', "'").encode()
    elif variant == 3:
        value = b"{" + b" ".join(_pair(k, v) for k, v in fields.items()) + b"}"
    elif variant == 4:
        value = b"{" + b",".join(k.encode() + b":" + orjson.dumps(v)
                                 for k, v in fields.items()) + b"}"
    else:
        value = b""
    return Planned(base.key, value, NOT_JSON)


#: (field, JSON text of its value, code): a value of the wrong type, or a number
#: beyond 64 bits (read as a float) or beyond a double's range of its field.
_WRONG_TYPES: tuple[tuple[str, bytes, str], ...] = (
    ("event_id", b"true", BAD_FIELD_TYPE),
    ("session_id", b"1.5", BAD_FIELD_TYPE),
    ("item_id", b'["i1"]', BAD_FIELD_TYPE),
    ("item_id", b'{"id":"i1"}', BAD_FIELD_TYPE),
    ("item_id", b"1e30", BAD_FIELD_TYPE),
    ("item_id", b"123456789012345678901234567890", BAD_FIELD_TYPE),
    ("user_id", b"false", BAD_FIELD_TYPE),
    ("user_id", b"-98765432109876543210", BAD_FIELD_TYPE),
    ("type", b"1", BAD_FIELD_TYPE),
    ("type", b'["view"]', BAD_FIELD_TYPE),
    ("ts", b"true", BAD_TIMESTAMP),
    ("ts", b"1396867869277.5", BAD_TIMESTAMP),
    ("ts", b'"1396867869277"', BAD_TIMESTAMP),
    ("ts", b"100000000000000000000000000000", BAD_TIMESTAMP),
    ("ts", b"18446744073709551615", BAD_TIMESTAMP),
    ("ts", b"-1", BAD_TIMESTAMP),
    ("dwell_ms", b'"1200"', BAD_DWELL),
    ("dwell_ms", b"true", BAD_DWELL),
    ("dwell_ms", b"1200.5", BAD_DWELL),
    ("dwell_ms", b"18446744073709551615", BAD_DWELL),
    ("price", b'"9.99"', BAD_PRICE),
    ("price", b"false", BAD_PRICE),
    ("price", b"1e308", BAD_PRICE),
    ("quantity", b"2.0", BAD_QUANTITY),
    ("quantity", b"true", BAD_QUANTITY),
    ("quantity", b"99999999999999999999", BAD_QUANTITY),
    ("category", b'["shoes"]', BAD_FIELD_TYPE),
    ("category", b"1.5", BAD_FIELD_TYPE),
)


def _wrong_type(rng: random.Random, base: _Base, bases, limits, made: int) -> Planned:
    """A field of the wrong type or out of reach, or a value that is no JSON object."""
    if rng.randrange(len(_WRONG_TYPES) + 4) >= len(_WRONG_TYPES):
        value = rng.choice([b"[" + encode_event(base.fields) + b"]", b'"view"', b"42",
                            b"null", b"true", b"[]"])
        return Planned(base.key, value, NOT_OBJECT)
    name, literal, code = rng.choice(_WRONG_TYPES)
    return Planned(base.key, _splice(base.fields, name, literal), code)


def _missing_field(rng: random.Random, base: _Base, bases, limits, made: int) -> Planned:
    """A required field left out, or null."""
    name = rng.choice(("event_id", "session_id", "item_id", "type", "ts"))
    fields = dict(base.fields)
    if rng.random() < 0.5:
        fields.pop(name, None)
    else:
        fields[name] = None
    return Planned(base.key, encode_event(fields), MISSING_FIELD)


def _empty_field(rng: random.Random, base: _Base, bases, limits, made: int) -> Planned:
    """A required id that is empty or only white space."""
    name = rng.choice(("event_id", "session_id", "item_id"))
    blank = rng.choice(("", " ", "   ", "\t", " \n ", "\u3000", "\u00a0"))
    return Planned(base.key, encode_event({**base.fields, name: blank}), EMPTY_FIELD)


_NOT_UTF8 = (b"\xff", b"\xfe\xff", b"\x80", b"\xc3", b"\xc0\xaf", b"\xed\xa0\x80",
             b"\xf8\x88\x80\x80\x80", b"caf\xe9")


def _not_utf8(rng: random.Random, base: _Base, bases, limits, made: int) -> Planned:
    """Bytes that are not UTF-8: in an id, or before or after the object."""
    bad = rng.choice(_NOT_UTF8)
    where = rng.randrange(3)
    if where == 0:
        name = rng.choice(("event_id", "session_id", "item_id", "user_id", "category"))
        value = _splice(base.fields, name, b'"' + _random_id(rng, 4).encode() + bad + b'"')
    elif where == 1:
        value = bad + encode_event(base.fields)
    else:
        value = encode_event(base.fields) + bad
    return Planned(base.key, value, NOT_UTF8)


#: Fields whose check refuses a nested array, with the code it gives.
_NESTED_CODES = (("item_id", BAD_FIELD_TYPE), ("type", BAD_FIELD_TYPE),
                 ("ts", BAD_TIMESTAMP), ("dwell_ms", BAD_DWELL), ("price", BAD_PRICE),
                 ("quantity", BAD_QUANTITY), ("category", BAD_FIELD_TYPE))


def _deep_nesting(rng: random.Random, base: _Base, bases, limits, made: int) -> Planned:
    """Nesting deeper than orjson reads (``not_json``), or just within it in a checked field.

    The second kind reaches the field's own check with a value nested about
    a thousand levels deep, about as deep as Python's recursion limit.
    """
    encoded = encode_event(base.fields)
    room = limits.max_bytes - len(encoded) - len(EXTRA_FIELD) - 8
    if rng.random() < 0.3:
        depth = rng.randrange(900, 1001)  # with the object at most 1001 levels: orjson reads it
        if 2 * depth > room:
            raise ValueError(f"max_bytes={limits.max_bytes} leaves no room for deep nesting")
        name, code = rng.choice(_NESTED_CODES)
        return Planned(base.key, _splice(base.fields, name, _nested(depth, "[]")), code)
    # The whole value nested, or a field's value; arrays or objects: of those that fit.
    fitting = [(whole, brackets) for whole, brackets in ((True, "[]"), (False, "[]"),
                                                          (False, "{}"))
               if room // _LEVEL_BYTES[brackets] > ORJSON_MAX_DEPTH + 1]
    if not fitting:
        raise ValueError(f"max_bytes={limits.max_bytes} leaves no room for nesting deeper"
                         f" than {ORJSON_MAX_DEPTH}")
    whole, brackets = rng.choice(fitting)
    most = min(room // _LEVEL_BYTES[brackets], 3 * ORJSON_MAX_DEPTH)
    depth = rng.randrange(ORJSON_MAX_DEPTH + 1, most)
    if whole:
        value = _nested(depth, brackets)
    else:
        name = rng.choice((EXTRA_FIELD, "item_id", "ts"))
        value = _splice(base.fields, name, _nested(depth, brackets))
    return Planned(base.key, value, NOT_JSON)


def _nan_literal(rng: random.Random, base: _Base, bases, limits, made: int) -> Planned:
    """A ``NaN`` or infinity literal (Python's ``json`` writes them; JSON has none)."""
    literal = rng.choice((b"NaN", b"-NaN", b"Infinity", b"-Infinity", b"nan", b"inf", b"1e400"))
    name = rng.choice(("ts", "dwell_ms", "price", "quantity", EXTRA_FIELD))
    return Planned(base.key, _splice(base.fields, name, literal), NOT_JSON)


def _huge_field(rng: random.Random, base: _Base, bases, limits, made: int) -> Planned:
    """In turn: an item id of :data:`LONG_ITEM_CHARS` characters within ``max_bytes``, and an
    event over ``max_bytes``."""
    if made % 2 == 0:
        room = limits.max_bytes - len(encode_event({**base.fields, "item_id": ""}))
        chars = min(LONG_ITEM_CHARS, room)
        if chars <= limits.max_id_chars:
            raise ValueError(f"max_bytes={limits.max_bytes} leaves no room for an item id"
                             f" longer than max_id_chars={limits.max_id_chars}")
        value = encode_event({**base.fields, "item_id": _random_id(rng, chars)})
        return Planned(base.key, value, FIELD_TOO_LONG)
    over = limits.max_bytes - len(encode_event({**base.fields, EXTRA_FIELD: ""})) + 1
    padding = "x" * (max(over, 0) + rng.randrange(limits.max_bytes))
    return Planned(base.key, encode_event({**base.fields, EXTRA_FIELD: padding}), OVERSIZED)


def _wrong_key(rng: random.Random, base: _Base, bases, limits, made: int) -> Planned:
    """A valid event under a key that is not its user id."""
    event, key = base.event, base.key
    candidates = [other.key for other in bases if other.key != key]
    candidates += [key + b" ", b" " + key, key + b"X", key.upper(), b"\xff" + key,
                   event.session_id.encode(), event.event_id.encode(), event.item_id.encode()]
    wrong = rng.choice([c for c in candidates if c and c != key])
    return Planned(wrong, encode_event(base.fields), KEY_MISMATCH)


def _null_key(rng: random.Random, base: _Base, bases, limits, made: int) -> Planned:
    """A valid event without a key, or with an empty one."""
    return Planned(rng.choice((None, b"")), encode_event(base.fields), KEY_MISSING)


def _future_ts(rng: random.Random, base: _Base, bases, limits, made: int) -> Planned:
    """A valid event whose ``ts`` is after 2200 plus the allowed skew, as ms or ISO-8601."""
    earliest = FAR_FUTURE_MS + int(limits.max_clock_skew_s * 1000) + 1
    if earliest > MAX_TS_MS:
        raise ValueError(f"max_clock_skew_s={limits.max_clock_skew_s} leaves no far future")
    ts_ms = rng.randrange(earliest, MAX_TS_MS + 1)
    ts: int | str = ts_ms
    if rng.random() < 0.5:
        ts = (_EPOCH + timedelta(milliseconds=ts_ms)).isoformat(timespec="milliseconds")
    return Planned(base.key, encode_event({**base.fields, "ts": ts}), FUTURE_TIMESTAMP)


_MAKERS: dict[str, Callable[..., Planned]] = {
    "broken_json": _broken_json, "wrong_type": _wrong_type, "missing_field": _missing_field,
    "empty_field": _empty_field, "not_utf8": _not_utf8, "deep_nesting": _deep_nesting,
    "nan_literal": _nan_literal, "huge_field": _huge_field, "wrong_key": _wrong_key,
    "null_key": _null_key, "future_ts": _future_ts}
assert tuple(_MAKERS) == KINDS


# --- helpers --------------------------------------------------------------------------------

def _bases(pool: Sequence[Mapping[str, Any]], limits: EventLimits) -> list[_Base]:
    """The pool's events, each checked valid, with its right key (its user id)."""
    bases = []
    for index, fields in enumerate(pool):
        try:
            event = parse_event(encode_event(fields), **vars(limits))
        except EventError as error:
            raise ValueError(f"event {index} of the pool is not valid: {error}") from None
        bases.append(_Base(dict(fields), event.user_id.encode(), event))
    return bases


def _pair(name: str, value: Any) -> bytes:
    return orjson.dumps(name) + b":" + orjson.dumps(value)


def _splice(fields: Mapping[str, Any], name: str, literal: bytes) -> bytes:
    """The JSON object of ``fields`` with the value of ``name`` written as ``literal``."""
    parts = [orjson.dumps(k) + b":" + literal if k == name else _pair(k, v)
             for k, v in fields.items()]
    if name not in fields:
        parts.append(orjson.dumps(name) + b":" + literal)
    return b"{" + b",".join(parts) + b"}"


#: Bytes per level of :func:`_nested`: ``[`` and ``]``, or ``{"a":`` and ``}``.
_LEVEL_BYTES = {"[]": 2, "{}": 6}


def _nested(depth: int, brackets: str) -> bytes:
    """``depth`` levels of arrays (``"[]"``) or objects (``"{}"``) around 0."""
    if brackets == "[]":
        return b"[" * depth + b"0" + b"]" * depth
    return b'{"a":' * depth + b"0" + b"}" * depth


def _random_id(rng: random.Random, chars: int) -> str:
    return "".join(rng.choices(_ID_CHARS, k=chars))
