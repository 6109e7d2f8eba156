"""``recsys tail``: read the recommendations, dead-letter or events topic as lines for people.

The consumer is a reader only: it has a fresh random group id, assigns itself
every partition of the topic and commits nothing, so it never moves the offsets
of the stream worker or of anyone else. It connects like every other client of
the project (:func:`shared.kafka_security.from_settings`) to the bootstrap of
:func:`shared.broker.ensure_broker`.

Without ``--follow`` the command reads up to the end offsets it saw when it
started (the last :data:`LAST_PER_PARTITION` messages of each partition, or
everything with ``--from-beginning``) and exits; with ``--follow`` it keeps
waiting for new messages until Ctrl-C. Messages of one partition come in offset
order; partitions are interleaved as the consumer receives them.

The functions that turn a message into a line (:func:`format_recommendation`,
:func:`format_dead_letter`, :func:`format_event`, :func:`format_json`) and the
``--user`` test (:func:`user_matches`) are pure: a message's key, value and
times in, a line or a bool out.

Example
-------
>>> from datetime import UTC
>>> from shared.messages import recommendation_message
>>> value = recommendation_message(
...     user_id="u17", session_id="s1", event_id="e9", query_item_id="i42",
...     items=[("i7", 0.93), ("i3", 0.88)], strategy="personalized",
...     model_version="20261201T000000Z", generated_at=1_000_000)
>>> format_recommendation(b"u17", value, timestamp_ms=None, now_ms=1_001_200, tz=UTC)
'00:16:40  user u17  after i42  [personalized] model 20261201T000000Z  i7 0.93, i3 0.88  (age 1.2 s)'
"""
from __future__ import annotations

import argparse
import re
import sys
import time
import uuid
from collections.abc import Callable
from datetime import UTC, datetime, tzinfo
from typing import Any

import orjson
from confluent_kafka import Consumer, KafkaError, KafkaException, TopicPartition

from shared import kafka_security
from shared.broker import BrokerError, ensure_broker
from shared.config import Settings
from shared.events import DEFAULT_LIMITS, EventError, EventLimits, parse_event
from shared.messages import MessageError, epoch_ms_now, parse_dead_letter, parse_recommendation

#: The topics the command reads, by the name given on the command line.
TOPICS = ("recommendations", "dlq", "events")
#: Without ``--from-beginning``: how many of the latest messages of each partition are shown.
LAST_PER_PARTITION = 10
#: Items of a recommendation shown by name; the others are counted ("+N more").
ITEMS_SHOWN = 5
#: Characters of a raw value (an event that does not parse, a dead letter's original) shown.
RAW_SHOWN = 120
#: How long the broker has to answer the first metadata request.
CONNECT_TIMEOUT_S = 10.0
#: Longest wait of one poll: Ctrl-C and the end of the topic are noticed within it.
_POLL_S = 0.25
#: Client errors after which no answer will come: the broker cannot be reached or refuses us.
_FATAL_CODES = (KafkaError._ALL_BROKERS_DOWN, KafkaError._AUTHENTICATION,
                KafkaError.SASL_AUTHENTICATION_FAILED, KafkaError._SSL)
#: C0 and C1 control characters: shown escaped, so no value can move a terminal's cursor.
_CONTROL = re.compile("[\x00-\x1f\x7f-\x9f]")

Formatter = Callable[..., str]


# --- lines for people ---------------------------------------------------------------------

def clock(ms: int | None, tz: tzinfo | None = None) -> str:
    """``HH:MM:SS`` of the epoch-ms time ``ms`` in ``tz`` (default: local time).

    >>> clock(45_296_000, UTC), clock(None), clock(10**20)
    ('12:34:56', '--:--:--', '--:--:--')
    """
    if ms is None:
        return "--:--:--"
    try:
        return datetime.fromtimestamp(ms / 1000, tz).strftime("%H:%M:%S")
    except (OverflowError, OSError, ValueError):  # a time no datetime holds
        return "--:--:--"


def iso_utc(ms: int) -> str:
    """The epoch-ms time ``ms`` as ISO 8601 in UTC, to the millisecond.

    >>> iso_utc(1396867869277)
    '2014-04-07T10:51:09.277Z'
    """
    try:
        moment = datetime.fromtimestamp(ms / 1000, UTC)
    except (OverflowError, OSError, ValueError):
        return str(ms)
    return moment.isoformat(timespec="milliseconds").replace("+00:00", "Z")


def age(ms: float) -> str:
    """A duration in milliseconds in the unit that suits it.

    >>> age(1234), age(-300), age(150_000), age(7_200_000), age(3 * 86_400_000)
    ('1.2 s', '-0.3 s', '2.5 min', '2.0 h', '3.0 d')
    """
    for unit, size in (("d", 86_400_000), ("h", 3_600_000), ("min", 60_000)):
        if abs(ms) >= size:
            return f"{ms / size:.1f} {unit}"
    return f"{ms / 1000:.1f} s"


def clean(text: Any) -> str:
    """``text`` as a string with its control characters escaped (a line stays one line).

    >>> clean("u1\\n\\x1b[2J"), clean(None)
    ('u1\\\\n\\\\x1b[2J', 'None')
    """
    text = str(text)
    return _CONTROL.sub(lambda match: repr(match.group())[1:-1], text)


def raw(value: bytes | None, limit: int = RAW_SHOWN, *, sized: bool = True) -> str:
    """A value for a line: its text (bytes that are not UTF-8 as ``\\xNN``), control
    characters escaped, cut to ``limit`` characters and then, when ``sized``, followed
    by the value's full size.

    >>> raw(b'{"a": 1}'), raw(b"\\xff\\n"), raw(None)
    ('{"a": 1}', '\\\\xff\\\\n', '(no value)')
    >>> raw(b"x" * 200, limit=8), raw(b"x" * 200, limit=8, sized=False)
    ('xxxxxxxx... (200 bytes)', 'xxxxxxxx...')
    """
    if value is None:
        return "(no value)"
    text = clean(bytes(value[:limit * 4]).decode("utf-8", "backslashreplace"))
    if len(text) <= limit and len(value) <= limit * 4:
        return text
    return f"{text[:limit]}... ({len(value):,} bytes)" if sized else f"{text[:limit]}..."


def format_recommendation(key: bytes | None, value: bytes | None, *, timestamp_ms: int | None,
                          now_ms: int, tz: tzinfo | None = None) -> str:
    """One recommendation list: time, user, trigger item, strategy, model, items, age.

    The time and the age are those of ``generated_at``, when the worker wrote
    the list; ``timestamp_ms`` (the Kafka timestamp) is shown only for a value
    that does not parse.

    >>> from shared.messages import recommendation_message
    >>> value = recommendation_message(
    ...     user_id="u1", session_id="s1", event_id="e1", query_item_id="i0",
    ...     items=[(f"i{n}", 10 - n) for n in range(1, 9)], strategy="popular",
    ...     model_version=None, generated_at=0)
    >>> print(format_recommendation(None, value, timestamp_ms=None, now_ms=90_000, tz=UTC))
    00:00:00  user u1  after i0  [popular] model none  i1 9, i2 8, i3 7, i4 6, i5 5 +3 more  (age 1.5 min)
    >>> format_recommendation(None, b"[]", timestamp_ms=0, now_ms=0, tz=UTC)
    '00:00:00  not a recommendation (recommendation: expected a JSON object, got list): []'
    """
    try:
        fields = parse_recommendation(value)
    except MessageError as exc:
        return f"{clock(timestamp_ms, tz)}  not a recommendation ({clean(exc)}): {raw(value)}"
    items = fields["items"]
    shown = ", ".join(f"{clean(item['item_id'])} {item['score']:.3g}"
                      for item in items[:ITEMS_SHOWN]) or "no items"
    if len(items) > ITEMS_SHOWN:
        shown += f" +{len(items) - ITEMS_SHOWN} more"
    model = clean(fields["model_version"]) if fields["model_version"] is not None else "none"
    return (f"{clock(fields['generated_at'], tz)}  user {clean(fields['user_id'])}  "
            f"after {clean(fields['query_item_id'])}  [{clean(fields['strategy'])}] "
            f"model {model}  {shown}  (age {age(now_ms - fields['generated_at'])})")


def format_dead_letter(key: bytes | None, value: bytes | None, *, timestamp_ms: int | None,
                       now_ms: int, tz: tzinfo | None = None) -> str:
    """One dead letter: time of failure, reason, where the event was read, its key and
    the start of the original value.

    >>> from shared.events import EventError
    >>> from shared.messages import dead_letter
    >>> value = dead_letter(b'{"event_id": "e1"', EventError("not_json", "unexpected end"),
    ...                     topic="events", partition=3, offset=42, now_ms=5000)
    >>> format_dead_letter(b"u1", value, timestamp_ms=None, now_ms=6000, tz=UTC)
    '00:00:05  not_json: unexpected end  from events[3]@42  key u1  original {"event_id": "e1" (17 bytes)'
    """
    try:
        fields = parse_dead_letter(value)
    except MessageError as exc:
        return f"{clock(timestamp_ms, tz)}  not a dead letter ({clean(exc)}): {raw(value)}"
    partition, offset = fields["source_partition"], fields["source_offset"]
    where = clean(fields["source_topic"])
    if partition is not None:
        where += f"[{partition}]"
    if offset is not None:
        where += f"@{offset}"
    size, kept = fields["original_size"], len(fields["original"])
    cut = f", {kept:,} kept" if fields["truncated"] else ""
    key_text = "(none)" if key is None else clean(bytes(key).decode("utf-8", "backslashreplace"))
    return (f"{clock(fields['failed_at'], tz)}  {clean(fields['error_code'])}: "
            f"{clean(fields['error_message'])}  from {where}  key {key_text}  "
            f"original {raw(fields['original'], sized=False)} ({size:,} bytes{cut})")


def format_event(key: bytes | None, value: bytes | None, *, timestamp_ms: int | None,
                 now_ms: int, tz: tzinfo | None = None,
                 limits: EventLimits = DEFAULT_LIMITS) -> str:
    """One event: the Kafka timestamp, then the event's fields, or its raw value and
    why the worker would refuse it when it does not parse under ``limits``.

    >>> value = (b'{"event_id":"e1","user_id":"u1","session_id":"s1","item_id":"i9",'
    ...          b'"type":"view","ts":1396867869277,"dwell_ms":1200}')
    >>> print(format_event(b"u1", value, timestamp_ms=0, now_ms=1396867869277, tz=UTC))
    00:00:00  event e1  user u1  session s1  item i9  view  ts 2014-04-07T10:51:09.277Z  dwell 1200 ms
    >>> format_event(None, b"oops", timestamp_ms=0, now_ms=0, tz=UTC)  # doctest: +ELLIPSIS
    '00:00:00  not a valid event (not_json: ...): oops'
    """
    try:
        event = parse_event(value, **vars(limits), now_ms=now_ms)
    except EventError as exc:
        return f"{clock(timestamp_ms, tz)}  not a valid event ({clean(exc)}): {raw(value)}"
    line = (f"{clock(timestamp_ms, tz)}  event {clean(event.event_id)}  user {clean(event.user_id)}"
            f"  session {clean(event.session_id)}  item {clean(event.item_id)}  {event.type}"
            f"  ts {iso_utc(event.ts_ms)}")
    if event.dwell_ms is not None:
        line += f"  dwell {event.dwell_ms} ms"
    if event.category is not None:
        line += f"  category {clean(event.category)}"
    if event.price is not None:
        line += f"  price {event.price:g}"
    if event.quantity is not None:
        line += f"  quantity {event.quantity}"
    return line


def format_json(key: bytes | None, value: bytes | None, **_times: Any) -> str:
    """The value as it is (``null`` for a tombstone); one whose JSON spans several
    lines is written compactly, so each message stays one line.

    >>> format_json(None, b'{"user_id":"u1","items":[]}')
    '{"user_id":"u1","items":[]}'
    >>> format_json(None, b'{\\n  "a": 1\\n}'), format_json(None, None)
    ('{"a":1}', 'null')
    """
    if value is None:
        return "null"
    value = bytes(value)
    if b"\n" in value or b"\r" in value:
        try:
            value = orjson.dumps(orjson.loads(value))
        except orjson.JSONDecodeError:
            pass  # not JSON: shown as it is, line breaks and all
    return value.decode("utf-8", "backslashreplace")


#: The readable line of each topic.
FORMATTERS: dict[str, Formatter] = {
    "recommendations": format_recommendation, "dlq": format_dead_letter, "events": format_event}


def user_matches(topic: str, key: bytes | None, value: bytes | None, user: str) -> bool:
    """Whether a message of ``topic`` is about ``user``: its key (every topic is keyed by
    user id) or the user id in its value (a dead letter's: in its original event).

    >>> user_matches("events", b"u1", b"", "u1")
    True
    >>> user_matches("events", b"other", b'{"user_id": 7}', "7")
    True
    >>> from shared.events import EventError
    >>> from shared.messages import dead_letter
    >>> letter = dead_letter(b'{"user_id": "u2", "ts": "x"}', EventError("bad_timestamp", "x"),
    ...                      topic="events", partition=0, offset=1)
    >>> user_matches("dlq", None, letter, "u2"), user_matches("dlq", None, letter, "u1")
    (True, False)
    """
    if key is not None and bytes(key) == user.encode("utf-8", "surrogatepass"):
        return True
    fields = _json_object(value)
    if topic == "dlq":
        original = fields.get("original")
        fields = (_json_object(original.encode("utf-8"))
                  if isinstance(original, str) and fields.get("original_encoding") == "utf-8"
                  else {})
    user_id = fields.get("user_id")
    if type(user_id) is int:  # an integer id is its decimal string (shared.events)
        user_id = str(user_id)
    return user_id == user


def _json_object(value: bytes | None) -> dict:
    try:
        fields = orjson.loads(value) if value is not None else None
    except orjson.JSONDecodeError:
        return {}
    return fields if type(fields) is dict else {}


# --- the command --------------------------------------------------------------------------

def add_arguments(parser: argparse.ArgumentParser) -> None:
    """Options of ``recsys tail`` (the parser keeps the epilog's line breaks)."""
    parser.epilog = (
        f"Without --from-beginning: the last {LAST_PER_PARTITION} messages of each partition.\n"
        "Without --follow: exits once every partition is read up to the end it had at the\n"
        "start. Messages of a partition come in offset order; partitions are interleaved.\n"
        "The topic names come from the settings (RECSYS_RECOMMENDATIONS_TOPIC,\n"
        "RECSYS_DLQ_TOPIC, RECSYS_EVENTS_TOPIC). Nothing is committed: the reader has a\n"
        "group id of its own and moves no one's offsets. Ctrl-C stops it (exit status 0).")
    parser.add_argument("topic", choices=TOPICS,
                        help="which topic: the worker's recommendation lists, its dead "
                             "letters, or the shop's events")
    parser.add_argument("--user", metavar="ID",
                        help="only messages about this user (the key, or the user id in the "
                             "value)")
    parser.add_argument("--from-beginning", action="store_true",
                        help="start at the oldest message of each partition")
    parser.add_argument("--follow", "-f", action="store_true",
                        help="keep waiting for new messages until Ctrl-C")
    parser.add_argument("--json", action="store_true",
                        help="print each message's value as it is, one JSON document a line")
    parser.add_argument("--max", type=_positive_int, metavar="N",
                        help="stop after N messages printed")


def _positive_int(text: str) -> int:
    try:
        value = int(text)
    except ValueError:
        raise argparse.ArgumentTypeError(f"not an integer: {text!r}") from None
    if value < 1:
        raise argparse.ArgumentTypeError(f"must be 1 or more, got {value}")
    return value


def topic_name(topic: str, settings: Settings) -> str:
    """The name in the settings of the topic called ``topic`` on the command line."""
    return {"recommendations": settings.recommendations_topic, "dlq": settings.dlq_topic,
            "events": settings.events_topic}[topic]


def run(args: argparse.Namespace, settings: Settings) -> int:
    """Print the topic's messages as ``args`` ask; 0 at the end or on Ctrl-C, 1 when the
    topic does not exist.

    Raises
    ------
    shared.broker.BrokerError
        When no broker answers at the bootstrap, or it refuses the client.
    shared.config.ConfigError
        When the Kafka security settings cannot work.
    """
    try:
        return _tail(args, settings)
    except KeyboardInterrupt:  # Ctrl-C is how --follow ends
        return 0


def _tail(args: argparse.Namespace, settings: Settings) -> int:
    name = topic_name(args.topic, settings)
    security = kafka_security.from_settings(settings).confluent()
    bootstrap = ensure_broker(settings)
    errors: list[KafkaError] = []
    consumer = Consumer({
        "bootstrap.servers": bootstrap, "group.id": f"recsys-tail-{uuid.uuid4().hex}",
        "enable.auto.commit": False, "enable.auto.offset.store": False,
        "enable.partition.eof": True, "auto.offset.reset": "earliest",
        # librdkafka's own log lines would repeat each failed connection on stderr; the
        # errors reach error_cb instead, and a fatal one becomes one BrokerError line.
        "log_level": 0, "error_cb": errors.append, **security})
    try:
        partitions = _partitions(consumer, name, bootstrap, errors)
        if partitions is None:
            print(f"recsys tail: topic {name!r} does not exist on {bootstrap} "
                  f"(`recsys topics` creates the project's topics)", file=sys.stderr)
            return 1
        ends, starts = {}, {}
        for partition in partitions:
            low, high = consumer.get_watermark_offsets(TopicPartition(name, partition),
                                                       timeout=CONNECT_TIMEOUT_S)
            ends[partition] = high
            starts[partition] = low if args.from_beginning else max(low, high - LAST_PER_PARTITION)
        consumer.assign([TopicPartition(name, p, starts[p]) for p in partitions])
        _print_messages(consumer, args, name, bootstrap, ends, starts, errors,
                        settings.event_limits())
        return 0
    except KafkaException as exc:  # a request that got no answer in time
        raise BrokerError(f"reading {name!r} on {bootstrap}: {exc.args[0].str()}") from None
    finally:
        consumer.close()


def _partitions(consumer: Consumer, topic: str, bootstrap: str,
                errors: list[KafkaError]) -> list[int] | None:
    """The topic's partitions (None: no such topic), once the broker has answered.

    Asks in short slices and serves the error callback between them, so a broker
    that refuses the connection or the credentials fails at once rather than after
    :data:`CONNECT_TIMEOUT_S`.
    """
    deadline = time.monotonic() + CONNECT_TIMEOUT_S
    while True:
        try:
            metadata = consumer.list_topics(topic, timeout=min(1.0, CONNECT_TIMEOUT_S))
            break
        except KafkaException as exc:
            consumer.poll(0)  # serves error_cb
            fatal = _fatal(errors)
            if fatal is not None or time.monotonic() >= deadline:
                # The first error of the connection says why (refused, name unknown, TLS or
                # SASL failure); "all brokers are down" only follows from it.
                first = next((error for error in errors
                              if error.code() != KafkaError._ALL_BROKERS_DOWN), fatal)
                reason = (first or exc.args[0]).str()
                raise BrokerError(f"no Kafka broker answers at {bootstrap}: {reason}") from None
    errors.clear()  # what went wrong before the answer is over
    found = metadata.topics.get(topic)
    if found is None or found.error is not None:
        if found is not None and found.error.code() != KafkaError.UNKNOWN_TOPIC_OR_PART:
            raise BrokerError(f"topic {topic!r} on {bootstrap}: {found.error.str()}")
        return None
    return sorted(found.partitions)


def _fatal(errors: list[KafkaError]) -> KafkaError | None:
    """The first error among ``errors`` after which the client gets no answer."""
    return next((error for error in errors if error.code() in _FATAL_CODES), None)


def _print_messages(consumer: Consumer, args: argparse.Namespace, topic: str, bootstrap: str,
                    ends: dict[int, int], starts: dict[int, int], errors: list[KafkaError],
                    limits: EventLimits) -> None:
    """Print what ``args`` ask, up to ``ends`` or, with ``--follow``, until Ctrl-C."""
    form = format_json if args.json else FORMATTERS[args.topic]
    extra = {"limits": limits} if form is format_event else {}
    done = {p for p, end in ends.items() if starts[p] >= end}
    printed, warned = 0, False
    while args.follow or len(done) < len(ends):
        messages = consumer.consume(500, timeout=_POLL_S)
        if errors:
            fatal = _fatal(errors)
            if fatal is not None and not args.follow:
                raise BrokerError(f"lost the Kafka broker at {bootstrap}: {fatal.str()}")
            if fatal is not None and not warned:  # librdkafka reconnects on its own
                print(f"recsys tail: {fatal.str()}; waiting for the broker at {bootstrap}",
                      file=sys.stderr, flush=True)
                warned = True
            errors.clear()
        now_ms = epoch_ms_now()
        for message in messages:
            error = message.error()
            if error is not None:
                if error.code() == KafkaError._PARTITION_EOF:
                    done.add(message.partition())
                    continue
                if error.fatal() or error.code() in (KafkaError.TOPIC_AUTHORIZATION_FAILED,
                                                     KafkaError.UNKNOWN_TOPIC_OR_PART):
                    raise BrokerError(f"reading {topic!r} on {bootstrap}: {error.str()}")
                print(f"recsys tail: {error.str()}", file=sys.stderr, flush=True)
                continue
            warned = False
            partition, offset = message.partition(), message.offset()
            if not args.follow:
                if offset >= ends[partition]:  # written after the start: not asked for
                    done.add(partition)
                    continue
                if offset >= ends[partition] - 1:
                    done.add(partition)
            key, value = message.key(), message.value()
            if args.user is not None and not user_matches(args.topic, key, value, args.user):
                continue
            kind, ms = message.timestamp()
            print(form(key, value, timestamp_ms=ms if kind else None, now_ms=now_ms, **extra),
                  flush=args.follow)
            printed += 1
            if args.max is not None and printed >= args.max:
                return
