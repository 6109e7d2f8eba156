"""The event contract: event types, the typed :class:`Event`, and its parser.

:func:`parse_event` turns the bytes of one Kafka message into an
:class:`Event` or raises :class:`EventError` whose ``code`` says what was
wrong (the codes are the constants below; they are stable, dashboards and the
dead-letter topic rely on them).

Rules, beyond what ``schemas/event.schema.json`` says of each field:

- The value is at most ``max_bytes`` bytes of UTF-8 JSON as orjson reads it:
  ``NaN``/``Infinity`` literals, numbers that overflow a double, a byte order
  mark and nesting deeper than 1024 levels are ``not_json``. An integer
  beyond 64 bits arrives as a float, so it fails as a wrong type, never as a
  truncated integer.
- ``ts`` is an integer of epoch milliseconds, or an ISO-8601 string *with* a
  zone (``Z`` or ``+hh:mm``); floats, numeric strings, booleans and naive ISO
  times are rejected. Times before 2000-01-01T00:00:00Z (:data:`MIN_TS_MS`)
  or after 9999 are ``bad_timestamp``: no shop's clickstream predates 2000,
  while epoch *seconds* of any date up to 2286, read as milliseconds, fall
  before it, so the floor catches a producer that sends seconds instead of
  keeping its events as times in January 1970 (the message names the
  mistake and the fix, ``ts * 1000``). A time more than
  ``max_clock_skew_s`` ahead of the clock is ``future_timestamp`` (a
  producer with a broken clock: such an event would stay the "newest" in
  every time-ordered state and outlive any decay).
- Ids are non-blank strings of at most ``max_id_chars`` characters without
  control characters (Unicode category Cc: U+0000-U+001F, U+007F-U+009F).
  Ids are table keys, Kafka keys and text in logs; a NUL, newline or escape
  is never part of a real id, it is a broken producer, and keeping it would
  let one event forge log lines or break key-per-line tools. JSON integers
  are accepted and become their decimal string (``42`` -> ``"42"``), other
  types are rejected.
- ``category`` is at most ``max_category_chars`` characters. The bounds keep
  a user's state row bounded: it holds up to 200 item ids (history and
  purchases) and the user's recent event ids, so with ids as long as an event
  one row could outgrow the largest message of its Kafka changelog.
- ``user_id`` missing, null or blank means an anonymous visitor: the session
  id stands in for it.
- Optional fields may be missing or null. ``dwell_ms`` is an integer in
  ``[0, max_dwell_ms]``, ``price`` a number in ``[0, max_price]``,
  ``quantity`` an integer in ``[1, max_quantity]``, ``category`` a string or
  integer (blank means unknown).
- Fields the contract does not name are ignored.

``schemas/event.schema.json`` states these rules as a JSON Schema (draft
2020-12) with the default limits; ``tests/shared/test_schemas.py`` checks
that it accepts exactly what :func:`parse_event` accepts.

The message key is checked apart, by :func:`check_key`, once the value has
parsed: the key of an event is its user id (the session id for an anonymous
visitor), so the first problem of a message with a bad value *and* a bad key
is the value's.

The contract is one module, past 500 lines, because the parser is one hot
loop over the rules above: every worker event passes through it, so its
checks are inlined rather than spread over helpers in other modules.

Example
-------
>>> event = parse_event(b'{"event_id": "e1", "session_id": "s1", "item_id": "i9",'
...                     b' "type": "view", "ts": "2014-04-07T10:51:09.277Z", "dwell_ms": 1200}')
>>> event.user_id, event.type_code, event.ts_ms, event.dwell_ms
('s1', 0, 1396867869277, 1200)
>>> parse_event(event.to_json_bytes()) == event
True
"""
from __future__ import annotations

import re
import time
from collections.abc import Mapping
from dataclasses import dataclass
from datetime import UTC, datetime, timedelta
from typing import Any

import orjson

#: Event types in code order: ``EVENT_TYPES[code]`` is the name, columns store the code.
EVENT_TYPES: tuple[str, ...] = ("view", "click", "add_to_cart", "buy")
EVENT_TYPE_CODES: dict[str, int] = {name: code for code, name in enumerate(EVENT_TYPES)}

# Error codes of EventError, one per kind of bad input.
OVERSIZED = "oversized"
NOT_UTF8 = "not_utf8"
NOT_JSON = "not_json"
NOT_OBJECT = "not_object"
MISSING_FIELD = "missing_field"
EMPTY_FIELD = "empty_field"
BAD_FIELD_TYPE = "bad_field_type"
UNKNOWN_TYPE = "unknown_type"
BAD_TIMESTAMP = "bad_timestamp"
BAD_DWELL = "bad_dwell"
BAD_PRICE = "bad_price"
BAD_QUANTITY = "bad_quantity"
FIELD_TOO_LONG = "field_too_long"
CONTROL_CHARACTER = "control_character"
FUTURE_TIMESTAMP = "future_timestamp"
#: Every code :func:`parse_event` can raise.
ERROR_CODES: tuple[str, ...] = (
    OVERSIZED, NOT_UTF8, NOT_JSON, NOT_OBJECT, MISSING_FIELD, EMPTY_FIELD, BAD_FIELD_TYPE,
    UNKNOWN_TYPE, BAD_TIMESTAMP, BAD_DWELL, BAD_PRICE, BAD_QUANTITY, FIELD_TOO_LONG,
    CONTROL_CHARACTER, FUTURE_TIMESTAMP)
# Error codes of check_key: a message without a key, and a key that is not the user id.
KEY_MISSING = "key_missing"
KEY_MISMATCH = "key_mismatch"
#: Every code :func:`check_key` can raise.
KEY_ERROR_CODES: tuple[str, ...] = (KEY_MISSING, KEY_MISMATCH)

#: Earliest accepted event time, 2000-01-01T00:00:00Z.
MIN_TS_MS = 946_684_800_000
#: Latest accepted event time, 9999-12-31T23:59:59.999Z.
MAX_TS_MS = 253_402_300_799_999
#: An integer ``ts`` from ``MIN_TS_MS // 1000`` to below this one (at most 10 digits)
#: is epoch seconds of 2000-01-01..2286-11-20, the mistake its refusal then names; as
#: milliseconds it would be a time in the first four months of 1970.
_SECONDS_BELOW = 10_000_000_000

_EPOCH = datetime(1970, 1, 1, tzinfo=UTC)
_ONE_MS = timedelta(milliseconds=1)
_TYPE_CODES_GET = EVENT_TYPE_CODES.get
_time_ns = time.time_ns
#: The latest reading of the clock, epoch ms (0: none yet). parse_event holds ``ts``
#: against it and reads the clock again only for a ``ts`` beyond it plus the skew.
_clock_ms = 0
#: Unicode category Cc; ``str.isprintable`` is the fast test that none is present.
_CONTROL_CHARACTER = re.compile("[\x00-\x1f\x7f-\x9f]")
_object_new = object.__new__
_object_setattr = object.__setattr__


class EventError(ValueError):
    """An event failed validation.

    Attributes
    ----------
    code : str
        One of :data:`ERROR_CODES` (from :func:`parse_event`) or
        :data:`KEY_ERROR_CODES` (from :func:`check_key`).
    message : str
        What was wrong, for people.
    field : str or None
        The field at fault (``"ts"``, ``"item_id"``, ...); None when the
        problem is the message as a whole (its size, encoding, JSON or key).
    """

    def __init__(self, code: str, message: str, field: str | None = None):
        super().__init__(code, message)
        self.code = code
        self.message = message
        self.field = field

    def __str__(self) -> str:
        return f"{self.code}: {self.message}"


@dataclass(frozen=True)
class Event:
    """One validated shopper event.

    Attributes
    ----------
    event_id, user_id, session_id, item_id : str
        ``user_id`` is the session id for an anonymous visitor.
    type : str
        One of :data:`EVENT_TYPES`; ``type_code`` is its index there.
    ts_ms : int
        Event time, epoch milliseconds (the ``ts`` field of the message).
    dwell_ms, category, price, quantity
        Optional; None when unknown.
    """

    event_id: str
    user_id: str
    session_id: str
    item_id: str
    type: str
    type_code: int
    ts_ms: int
    dwell_ms: int | None = None
    category: str | None = None
    price: float | None = None
    quantity: int | None = None

    def to_json_bytes(self) -> bytes:
        """The canonical message: compact UTF-8 JSON, ``ts`` in epoch ms, no nulls.

        Examples
        --------
        >>> event = Event("e", "u", "s", "i", "buy", 3, 1000, quantity=2)
        >>> event.to_json_bytes()  # doctest: +ELLIPSIS
        b'{"event_id":"e","user_id":"u",...,"type":"buy","ts":1000,"quantity":2}'
        """
        fields: dict[str, Any] = {
            "event_id": self.event_id, "user_id": self.user_id, "session_id": self.session_id,
            "item_id": self.item_id, "type": self.type, "ts": self.ts_ms}
        # One test per optional field, no loop: this is the producer's per-event cost.
        if self.dwell_ms is not None:
            fields["dwell_ms"] = self.dwell_ms
        if self.category is not None:
            fields["category"] = self.category
        if self.price is not None:
            fields["price"] = self.price
        if self.quantity is not None:
            fields["quantity"] = self.quantity
        return orjson.dumps(fields)


@dataclass(frozen=True)
class EventLimits:
    """The bounds :func:`parse_event` checks, as its keyword arguments.

    The defaults are the contract's; ``RECSYS_MAX_*`` settings change them
    (:meth:`shared.config.Settings.event_limits`), and ``parse_event(raw,
    **vars(limits))`` applies them.
    """

    max_bytes: int = 16384
    max_dwell_ms: int = 6 * 3600 * 1000
    max_price: float = 1e7
    max_quantity: int = 10000
    max_id_chars: int = 128
    max_category_chars: int = 128
    max_clock_skew_s: float = 86_400.0


#: The contract's bounds, the defaults of :func:`parse_event`.
DEFAULT_LIMITS = EventLimits()


def encode_event(fields: Mapping[str, Any]) -> bytes:
    """Compact UTF-8 JSON of ``fields`` as given, unvalidated (good and bad events alike).

    Use :meth:`Event.to_json_bytes` for the canonical form of a valid event.

    Examples
    --------
    >>> encode_event({"event_id": "e1", "type": "view", "ts": 5})
    b'{"event_id":"e1","type":"view","ts":5}'
    """
    return orjson.dumps(dict(fields))


def parse_event(raw: bytes, *, max_bytes: int = DEFAULT_LIMITS.max_bytes,
                max_dwell_ms: int = DEFAULT_LIMITS.max_dwell_ms,
                max_price: float = DEFAULT_LIMITS.max_price,
                max_quantity: int = DEFAULT_LIMITS.max_quantity,
                max_id_chars: int = DEFAULT_LIMITS.max_id_chars,
                max_category_chars: int = DEFAULT_LIMITS.max_category_chars,
                max_clock_skew_s: float = DEFAULT_LIMITS.max_clock_skew_s,
                now_ms: int | None = None) -> Event:
    """Validate the bytes of one event message and return the :class:`Event`.

    Parameters
    ----------
    raw : bytes
        The message value: a UTF-8 JSON object (None, a Kafka tombstone, is
        refused as ``not_json``).
    max_bytes, max_dwell_ms, max_price, max_quantity
        Bounds of the message's size and of the optional numbers.
    max_id_chars, max_category_chars, max_clock_skew_s
        Longest id and category, in characters, and how far ``ts`` may be
        ahead of ``now_ms``, in seconds. These seven are the fields of
        :class:`EventLimits`; defaults: :data:`DEFAULT_LIMITS`.
    now_ms : int, optional
        The time ``ts`` is held against, epoch ms; the clock by default.

    Returns
    -------
    Event

    Raises
    ------
    EventError
        With the code of the first problem found (fields in the order
        ``event_id``, ``session_id``, ``item_id``, ``user_id``, ``type``,
        ``ts``, ``dwell_ms``, ``price``, ``quantity``, ``category``); nothing
        else is raised, whatever the bytes.

    Examples
    --------
    >>> parse_event(b'{"event_id": "e1", "session_id": "s1", "item_id": 7, "type": "buy",'
    ...             b' "ts": 1396867869277, "price": 12.5, "quantity": 2}').item_id
    '7'
    >>> try:
    ...     parse_event(b'{"event_id": "e1", "item_id": "i1"}')
    ... except EventError as error:
    ...     print(error.code, "|", error.message)
    missing_field | 'session_id' is required
    """
    if not raw:
        raise EventError(NOT_JSON, "the message is empty")
    if len(raw) > max_bytes:
        raise EventError(OVERSIZED, f"{len(raw)} bytes, more than the limit of {max_bytes}")
    try:
        fields = orjson.loads(raw)
    except orjson.JSONDecodeError as exc:
        raise _decode_error(raw, exc) from None
    if type(fields) is not dict:
        raise EventError(NOT_OBJECT, f"expected a JSON object, got {_json_kind(fields)}")
    get = fields.get
    event_id, session_id, item_id, user_id = (
        get("event_id"), get("session_id"), get("item_id"), get("user_id"))
    # Each id: the common case (a short printable string) in one expression, the
    # rest, with the error to raise, in _required_id / _optional_id.
    if (type(event_id) is not str or not event_id or event_id.isspace()
            or len(event_id) > max_id_chars or not event_id.isprintable()):
        event_id = _required_id(event_id, "event_id", max_id_chars)
    if (type(session_id) is not str or not session_id or session_id.isspace()
            or len(session_id) > max_id_chars or not session_id.isprintable()):
        session_id = _required_id(session_id, "session_id", max_id_chars)
    if (type(item_id) is not str or not item_id or item_id.isspace()
            or len(item_id) > max_id_chars or not item_id.isprintable()):
        item_id = _required_id(item_id, "item_id", max_id_chars)
    if (type(user_id) is not str or not user_id or user_id.isspace()
            or len(user_id) > max_id_chars or not user_id.isprintable()):
        user_id = _optional_id(user_id, "user_id", max_id_chars) or session_id
    type_name = get("type")
    type_code = _TYPE_CODES_GET(type_name) if type(type_name) is str else None
    if type_code is None:
        _raise_bad_type(type_name)
    ts = get("ts")
    if type(ts) is not int or not MIN_TS_MS <= ts <= MAX_TS_MS:
        ts = _timestamp_ms(ts)
    if ts - (_clock_ms if now_ms is None else now_ms) > max_clock_skew_s * 1000:
        _check_future(ts, now_ms, max_clock_skew_s)
    dwell_ms = get("dwell_ms")
    if dwell_ms is not None and (type(dwell_ms) is not int or not 0 <= dwell_ms <= max_dwell_ms):
        raise EventError(BAD_DWELL, f"'dwell_ms' must be an integer in [0, {max_dwell_ms}],"
                                    f" got {_show(dwell_ms)}", "dwell_ms")
    price = get("price")
    if price is not None:
        if type(price) not in (int, float) or not 0 <= price <= max_price:
            raise EventError(BAD_PRICE, f"'price' must be a number in [0, {max_price}],"
                                        f" got {_show(price)}", "price")
        price = float(price)
    quantity = get("quantity")
    if quantity is not None and (type(quantity) is not int or not 1 <= quantity <= max_quantity):
        raise EventError(BAD_QUANTITY, f"'quantity' must be an integer in [1, {max_quantity}],"
                                       f" got {_show(quantity)}", "quantity")
    category = get("category")
    if category is not None and (type(category) is not str or not category
                                 or category.isspace() or len(category) > max_category_chars):
        category = _optional_id(category, "category", max_category_chars, ids=False)
    return _new_event(event_id, user_id, session_id, item_id, type_name, type_code, ts,
                      dwell_ms, category, price, quantity)


def check_key(event: Event, key: bytes | None) -> None:
    """Check that ``key``, the Kafka key of the message ``event`` came in, is its user id.

    Events are keyed by user id (the session id for an anonymous visitor,
    which :func:`parse_event` puts in ``user_id``): the key chooses the
    partition, and the worker owning a partition holds the rows of its
    users. An event under another key would be applied by a worker that
    does not own the user's rows, so it is refused instead. The key is
    compared byte for byte with the UTF-8 of ``event.user_id``, as the
    partitioner sees it.

    Parameters
    ----------
    event : Event
        The message value, parsed.
    key : bytes or None
        The message key as read (bytes-like; None when the message has none).

    Raises
    ------
    EventError
        ``key_missing`` when ``key`` is None or empty; ``key_mismatch`` when
        it is not UTF-8 or not the user id.
    TypeError
        When ``key`` is neither None nor bytes-like: a caller's mistake, not
        a bad message.

    Examples
    --------
    >>> event = parse_event(b'{"event_id": "e1", "session_id": "s1", "item_id": "i1",'
    ...                     b' "type": "view", "ts": 1396867869277}')
    >>> check_key(event, b"s1")
    >>> try:
    ...     check_key(event, b"u7")
    ... except EventError as error:
    ...     print(error.code, "|", error.message)
    key_mismatch | the key 'u7' is not the event's user id 's1'
    """
    if key == event.user_id.encode():
        return
    if key is None:
        raise EventError(KEY_MISSING, f"the message has no key; its key must be the user id"
                                      f" {_show(event.user_id)}")
    if not isinstance(key, (bytes, bytearray, memoryview)):
        raise TypeError(f"a message key is bytes or None, got {type(key).__name__}")
    if not key:
        raise EventError(KEY_MISSING, f"the message key is empty; it must be the user id"
                                      f" {_show(event.user_id)}")
    try:
        text = bytes(key).decode("utf-8")
    except UnicodeDecodeError as bad:
        raise EventError(KEY_MISMATCH, f"the key is not UTF-8 (invalid byte at {bad.start});"
                                       f" it must be the user id {_show(event.user_id)}") from None
    raise EventError(KEY_MISMATCH, f"the key {_show(text)} is not the event's user id"
                                   f" {_show(event.user_id)}")


def _new_event(event_id, user_id, session_id, item_id, type, type_code, ts_ms, dwell_ms,
               category, price, quantity) -> Event:
    """``Event(...)`` for validated values, without the frozen ``__init__``.

    A frozen dataclass sets each field through ``object.__setattr__``; filling
    ``__dict__`` at once is half the cost of the whole parse.
    """
    event = _object_new(Event)
    _object_setattr(event, "__dict__", {
        "event_id": event_id, "user_id": user_id, "session_id": session_id,
        "item_id": item_id, "type": type, "type_code": type_code, "ts_ms": ts_ms,
        "dwell_ms": dwell_ms, "category": category, "price": price, "quantity": quantity})
    return event


def _required_id(value: Any, name: str, max_chars: int) -> str:
    if value is None:
        raise EventError(MISSING_FIELD, f"{name!r} is required", name)
    checked = _optional_id(value, name, max_chars)
    if checked is None:
        raise EventError(EMPTY_FIELD, f"{name!r} is empty", name)
    return checked


def _optional_id(value: Any, name: str, max_chars: int, *, ids: bool = True) -> str | None:
    """An id (or, ``ids`` false, a category) from JSON; None when null or blank.

    Checked in this order: type, blank, length, control characters (ids only).
    """
    if value is None:
        return None
    if type(value) is str:
        if not value or value.isspace():
            return None
    elif type(value) is int:
        value = str(value)
    else:
        raise EventError(BAD_FIELD_TYPE, f"{name!r} must be a string or an integer,"
                                         f" got {_json_kind(value)}", name)
    if len(value) > max_chars:
        setting = "RECSYS_MAX_ID_CHARS" if ids else "RECSYS_MAX_CATEGORY_CHARS"
        raise EventError(FIELD_TOO_LONG, f"{name!r} is {len(value)} characters, more than the"
                                         f" limit of {max_chars} ({setting})", name)
    if ids:
        control = _CONTROL_CHARACTER.search(value)
        if control is not None:
            raise EventError(CONTROL_CHARACTER,
                             f"{name!r} contains the control character"
                             f" U+{ord(control.group()):04X} at index {control.start()}", name)
    return value


def _raise_bad_type(value: Any) -> None:
    if value is None:
        raise EventError(MISSING_FIELD, "'type' is required", "type")
    if type(value) is not str:
        raise EventError(BAD_FIELD_TYPE, f"'type' must be a string, got {_json_kind(value)}",
                         "type")
    raise EventError(UNKNOWN_TYPE, f"'type' is {_show(value)}, not one of {list(EVENT_TYPES)}",
                     "type")


def _timestamp_ms(value: Any) -> int:
    """Epoch ms of ``ts`` when it is not already a valid integer."""
    if value is None:
        raise EventError(MISSING_FIELD, "'ts' is required", "ts")
    if type(value) is str:
        ts_ms = _iso_ms(value)
    elif type(value) is int:
        ts_ms = value
    else:
        raise EventError(BAD_TIMESTAMP, "'ts' must be integer epoch milliseconds or an"
                                        f" ISO-8601 string with a zone, got {_show(value)}", "ts")
    if 0 <= ts_ms < MIN_TS_MS:
        if type(value) is str:
            raise EventError(BAD_TIMESTAMP, f"'ts' {_show(value)} is before"
                                            " 2000-01-01T00:00:00Z, the earliest time accepted",
                             "ts")
        as_ms = _iso_utc(ts_ms)
        if ts_ms * 1000 >= MIN_TS_MS and ts_ms < _SECONDS_BELOW:
            raise EventError(BAD_TIMESTAMP, f"'ts' {ts_ms} looks like seconds since the epoch"
                                            f" ({_iso_utc(ts_ms * 1000)[:-5]}Z in seconds,"
                                            f" {as_ms} in milliseconds); send milliseconds"
                                            " (ts * 1000)", "ts")
        raise EventError(BAD_TIMESTAMP, f"'ts' {ts_ms} is {as_ms} in epoch milliseconds,"
                                        " before 2000-01-01T00:00:00Z, the earliest time"
                                        " accepted", "ts")
    if not MIN_TS_MS <= ts_ms <= MAX_TS_MS:
        raise EventError(BAD_TIMESTAMP, f"'ts' {_show(value)} is outside 2000-01-01..9999-12-31",
                         "ts")
    return ts_ms


def _check_future(ts_ms: int, now_ms: int | None, max_clock_skew_s: float) -> None:
    """Raise ``future_timestamp`` when ``ts_ms`` is more than the skew ahead of ``now_ms``.

    ``now_ms`` None: the clock. :func:`parse_event` compared ``ts_ms`` with
    the latest reading, :data:`_clock_ms`, which is at most the present time
    as long as the wall clock does not step back; only an event beyond that
    reading plus the skew costs a fresh reading here, so the clock is read
    about once per skew of event time instead of once per event, and the
    verdict is the one a reading per event would give. (A clock stepped back
    by d lets events up to d further ahead through until it catches up.)
    """
    global _clock_ms
    if now_ms is None:
        now_ms = _time_ns() // 1_000_000
        _clock_ms = max(_clock_ms, now_ms)
        if ts_ms - now_ms <= max_clock_skew_s * 1000:
            return
    ahead_s = (ts_ms - now_ms) / 1000
    raise EventError(FUTURE_TIMESTAMP, f"'ts' {_iso_utc(ts_ms)} is {ahead_s:.0f} s ahead of the"
                                       f" clock, more than the allowed skew of"
                                       f" {max_clock_skew_s:g} s (RECSYS_MAX_CLOCK_SKEW_S)", "ts")


def _iso_utc(ts_ms: int) -> str:
    """``ts_ms`` (in 1970..9999) as ISO-8601 UTC with milliseconds and ``Z``."""
    return (_EPOCH + ts_ms * _ONE_MS).isoformat(timespec="milliseconds")[:-6] + "Z"


def _iso_ms(text: str) -> int:
    try:
        moment = datetime.fromisoformat(text)
    except ValueError:
        raise EventError(BAD_TIMESTAMP, f"'ts' {_show(text)} is not an ISO-8601 time",
                         "ts") from None
    if moment.utcoffset() is None:
        raise EventError(BAD_TIMESTAMP, f"'ts' {_show(text)} has no zone; add 'Z' or an offset",
                         "ts")
    return (moment - _EPOCH) // _ONE_MS


def _decode_error(raw: bytes, exc: Exception) -> EventError:
    if not isinstance(raw, str):
        try:
            bytes(raw).decode("utf-8")
        except UnicodeDecodeError as bad:
            return EventError(NOT_UTF8, f"invalid UTF-8 at byte {bad.start}")
    return EventError(NOT_JSON, str(exc))


_JSON_KINDS = {dict: "an object", list: "an array", str: "a string", bool: "a boolean",
               int: "an integer", float: "a number", type(None): "null"}


def _json_kind(value: Any) -> str:
    return _JSON_KINDS.get(type(value), type(value).__name__)


def _show(value: Any, limit: int = 60) -> str:
    """A value for a message: its repr, cut; an array or object by its kind only.

    A container is not shown because its repr recurses once per level of
    nesting, and orjson accepts 1024 levels, more than Python's recursion
    limit: the repr would raise RecursionError instead of the EventError.
    """
    if type(value) is list or type(value) is dict:
        return _json_kind(value)
    if type(value) is str and len(value) > limit:  # cut first: a long string is not copied whole
        return repr(value[:limit])[:limit] + "..."
    text = repr(value)
    return text if len(text) <= limit else text[:limit] + "..."
