"""The one codec for the messages on the topics other than ``events``.

Each ``*_message`` function builds the compact UTF-8 JSON value of one
message; the matching ``parse_*`` function checks one and returns its fields
as a dict, raising :class:`MessageError` that names the field at fault. Fields
a reader does not know are dropped, so a newer writer does not break an older
reader. Every time (``generated_at``, ``failed_at``, ``created_at``) is epoch
milliseconds, like an event's ``ts``.

Example
-------
>>> value = model_update_message("20240101T000000Z", "var/models/20240101T000000Z",
...                               created_at=1704067200000)
>>> parse_model_update(value)["version"]
'20240101T000000Z'
"""
from __future__ import annotations

import base64
import math
import time
from collections.abc import Iterable, Mapping
from typing import Any

import orjson

from shared.events import EventError

#: Largest original event kept whole in a dead letter; longer ones are cut.
MAX_ORIGINAL_BYTES = 65536

_NONE = type(None)
_DEAD_LETTER = {
    "original": (str,), "original_encoding": (str,), "original_size": (int,),
    "truncated": (bool,), "error_code": (str,), "error_message": (str,),
    "source_topic": (str,), "source_partition": (int, _NONE), "source_offset": (int, _NONE),
    "failed_at": (int,)}
_RECOMMENDATION = {
    "user_id": (str,), "session_id": (str,), "event_id": (str,), "query_item_id": (str,),
    "items": (list,), "strategy": (str,), "model_version": (str, _NONE),
    "generated_at": (int,)}
_RECOMMENDED_ITEM = {"item_id": (str,), "score": (float, int)}
_MODEL_UPDATE = {"version": (str,), "path": (str,), "created_at": (int,)}


class MessageError(ValueError):
    """A message does not follow its contract; the text names the field."""


def epoch_ms_now() -> int:
    """The current time in epoch milliseconds."""
    return time.time_ns() // 1_000_000


def dead_letter(raw: bytes | None, error: EventError, *, topic: str, partition: int | None,
                offset: int | None, now_ms: int | None = None,
                max_original_bytes: int = MAX_ORIGINAL_BYTES) -> bytes:
    """The dead-letter message for an event that failed validation.

    Parameters
    ----------
    raw : bytes or None
        The event's original value (None, a tombstone, is kept as empty).
    error : EventError
        Why it failed: its ``code`` and ``message`` are kept.
    topic, partition, offset
        Where the event was read (partition and offset may be None when the
        event did not come from Kafka).
    now_ms : int, optional
        Time of failure, epoch ms; the current time by default.
    max_original_bytes : int
        Longer originals are cut to this many bytes (``truncated`` is true and
        ``original_size`` keeps the full length), so a dead letter always fits
        on the topic.

    Returns
    -------
    bytes
        JSON with ``original`` (the bytes as text when they are UTF-8, else
        base64; ``original_encoding`` says which), ``original_size``,
        ``truncated``, ``error_code``, ``error_message``, ``source_topic``,
        ``source_partition``, ``source_offset`` and ``failed_at``.

    Examples
    --------
    >>> from shared.events import EventError
    >>> value = dead_letter(b"\\xff{", EventError("not_utf8", "invalid UTF-8 at byte 0"),
    ...                     topic="events", partition=3, offset=42, now_ms=1000)
    >>> letter = parse_dead_letter(value)
    >>> letter["original"], letter["original_encoding"], letter["error_code"]
    (b'\\xff{', 'base64', 'not_utf8')
    """
    raw = bytes(raw or b"")
    kept = raw[:max_original_bytes]
    try:
        raw.decode("utf-8")
        original, encoding = kept.decode("utf-8", errors="ignore"), "utf-8"
    except UnicodeDecodeError:
        original, encoding = base64.b64encode(kept).decode("ascii"), "base64"
    return orjson.dumps({
        "original": original, "original_encoding": encoding, "original_size": len(raw),
        "truncated": len(kept) < len(raw), "error_code": error.code,
        "error_message": error.message, "source_topic": topic, "source_partition": partition,
        "source_offset": offset, "failed_at": _now_or(now_ms)})


def parse_dead_letter(value: bytes) -> dict[str, Any]:
    """The fields of a dead letter, with ``original`` decoded back to bytes.

    Raises
    ------
    MessageError
        When a field is missing or of the wrong type, or ``original`` does not
        decode as its ``original_encoding`` says.
    """
    fields = _load(value, _DEAD_LETTER, "dead letter")
    encoding = fields["original_encoding"]
    if encoding == "utf-8":
        fields["original"] = fields["original"].encode("utf-8")
    elif encoding == "base64":
        try:
            fields["original"] = base64.b64decode(fields["original"], validate=True)
        except ValueError:
            raise MessageError("dead letter: 'original' is not valid base64") from None
    else:
        raise MessageError(f"dead letter: unknown original_encoding {encoding!r}")
    return fields


def recommendation_message(*, user_id: str, session_id: str, event_id: str,
                           query_item_id: str, items: Iterable, strategy: str,
                           model_version: str | None,
                           generated_at: int | None = None) -> bytes:
    """The recommendation message for the event ``event_id``.

    Parameters
    ----------
    user_id, session_id, event_id, query_item_id : str
        The user, the session and the event the list answers, and the item
        the user is looking at.
    items : iterable
        Best first: ``(item_id, score)`` pairs or ``{"item_id", "score"}``
        mappings. Scores are turned into float and must be finite.
    strategy : str
        Which path of the scoring produced the list.
    model_version : str or None
        The model used; None when no model was loaded.
    generated_at : int, optional
        Epoch ms; the current time by default.

    Returns
    -------
    bytes

    Examples
    --------
    >>> value = recommendation_message(
    ...     user_id="u1", session_id="s1", event_id="e7", query_item_id="i1",
    ...     items=[("i2", 0.9), ("i3", 0.5)], strategy="personalized",
    ...     model_version="v1", generated_at=1000)
    >>> parse_recommendation(value)["items"]
    [{'item_id': 'i2', 'score': 0.9}, {'item_id': 'i3', 'score': 0.5}]
    """
    return orjson.dumps({
        "user_id": user_id, "session_id": session_id, "event_id": event_id,
        "query_item_id": query_item_id, "items": [_recommended_item(it) for it in items],
        "strategy": strategy, "model_version": model_version,
        "generated_at": _now_or(generated_at)})


def parse_recommendation(value: bytes) -> dict[str, Any]:
    """The fields of a recommendation message; ``items`` as ``{item_id, score}`` dicts.

    Raises
    ------
    MessageError
        When a field, or a field of an item, is missing or of the wrong type.
    """
    fields = _load(value, _RECOMMENDATION, "recommendation")
    fields["items"] = [_check(item, _RECOMMENDED_ITEM, "recommendation item")
                       for item in fields["items"]]
    return fields


def model_update_message(version: str, path: str, created_at: int) -> bytes:
    """The announcement of a new model version on the model-updates topic.

    Parameters
    ----------
    version : str
        The version's name in the model store.
    path : str
        The version's directory.
    created_at : int
        When the version was created, epoch ms.

    Examples
    --------
    >>> model_update_message("v2", "/models/v2", 1000)
    b'{"version":"v2","path":"/models/v2","created_at":1000}'
    """
    return orjson.dumps({"version": version, "path": path, "created_at": created_at})


def parse_model_update(value: bytes) -> dict[str, Any]:
    """The fields of a model update: ``version``, ``path``, ``created_at``.

    Raises
    ------
    MessageError
        When a field is missing or of the wrong type.
    """
    return _load(value, _MODEL_UPDATE, "model update")


def _recommended_item(item: Any) -> dict[str, Any]:
    if type(item) is tuple:  # the worker's case, checked first: isinstance(Mapping) is slow
        item_id, score = item
    else:
        item_id, score = (item["item_id"], item["score"]) if isinstance(item, Mapping) else item
    if not isinstance(item_id, str):
        raise MessageError(f"recommendation: item_id {item_id!r} is not a string")
    score = float(score)
    if not math.isfinite(score):
        raise MessageError(f"recommendation: score of item {item_id!r} is {score}")
    return {"item_id": str(item_id), "score": score}


def _load(value: bytes, spec: Mapping[str, tuple[type, ...]], what: str) -> dict[str, Any]:
    try:
        fields = orjson.loads(value)
    except orjson.JSONDecodeError as exc:
        raise MessageError(f"{what}: not JSON ({exc})") from None
    return _check(fields, spec, what)


def _check(fields: Any, spec: Mapping[str, tuple[type, ...]], what: str) -> dict[str, Any]:
    """The fields of ``spec`` from the JSON object ``fields``, type-checked."""
    if type(fields) is not dict:
        raise MessageError(f"{what}: expected a JSON object, got {type(fields).__name__}")
    for name, kinds in spec.items():
        if name not in fields:
            raise MessageError(f"{what}: {name!r} is missing")
        if type(fields[name]) not in kinds:
            expected = " or ".join("null" if kind is _NONE else kind.__name__ for kind in kinds)
            raise MessageError(f"{what}: {name!r} must be {expected},"
                               f" got {type(fields[name]).__name__}")
    return {name: fields[name] for name in spec}


def _now_or(ms: int | None) -> int:
    return epoch_ms_now() if ms is None else ms
