"""Replay an event file of any supported format, or a synthetic shop, into the ``events`` topic.

Each event goes to Kafka keyed by its user id (so a user's events stay on one
partition, in file order), its value the canonical message
(:meth:`shared.events.Event.to_json_bytes`). The producer is idempotent
(``enable.idempotence``, ``acks=all``): a retry never duplicates or reorders a
message. Every delivery failure is counted and the first ones kept; a replay
with failures ends non-zero. Rows the reader rejects are skipped, counted by
reason code, and the first :data:`batch.validate.MAX_BAD_ROWS_SHOWN` of them
named as ``recsys validate`` names them (``FILE:LINE: field: reason (code)``,
then ``... and N more``); the good rows are still sent. With ``--strict`` the
whole file is checked first, and a file with any bad row is not sent at all
(exit status 1): a replay that would leave holes in the event log is refused
before its first event reaches the topic, rather than stopped half way.

Pacing: as fast as possible (default), ``rate`` events per second, or the
events' own timestamps sped up by ``speedup``. The Kafka timestamp of a
message is the time it was sent, not the event's time, so replaying an old log
does not fall foul of the topic's retention.

Example
-------
::

    recsys produce data/yoochoose-100k/test.txt --rate 2000
    recsys produce --synthetic 1000000 --seed 3
"""
from __future__ import annotations

import argparse
import dataclasses
import sys
import time
from collections.abc import Callable, Iterable, Iterator
from dataclasses import dataclass, field
from itertools import islice
from pathlib import Path

from confluent_kafka import Producer

from batch.formats import BadRow
from batch.readers import FORMATS, ReadReport, iter_events
from batch.synthetic import (CATEGORY_PREFIX, DEFAULT_CHUNK_EVENTS, ITEM_PREFIX, SESSION_PREFIX,
                             USER_PREFIX, VIEW, ShopParams, SyntheticShop)
from batch.validate import FirstBadRows, bad_row_lines, summary_line, validate_file
from shared import kafka_log, kafka_security
from shared.broker import ensure_broker
from shared.config import Settings
from shared.events import EVENT_TYPES, Event
from shared.topics import TopicSpec, ensure_topics

#: Producer settings for replay: idempotent, and batched for throughput.
PRODUCER_CONFIG = {
    "enable.idempotence": True,
    "acks": "all",
    "linger.ms": 20,
    "batch.size": 1_000_000,
    "compression.type": "lz4",
    "queue.buffering.max.messages": 1_000_000,
    "queue.buffering.max.kbytes": 1 << 20,
    "message.timeout.ms": 120_000,
    "delivery.report.only.error": True,
    # Kafka's Java client places keyed messages by murmur2: so does every
    # producer here, so a user's events share one partition whichever client
    # sent them (the worker's state and its HTTP routing rely on it).
    "partitioner": "murmur2_random",
}

#: Delivery errors kept word for word in a summary; the rest are only counted.
MAX_ERRORS_KEPT = 5
#: Events sent between two polls of the producer's delivery reports when not paced.
_POLL_EVERY = 1024
#: librdkafka's "any partition": the configured partitioner picks one by key.
_ANY_PARTITION = -1

Progress = Callable[[int, float], None]


@dataclass(frozen=True)
class ProduceSummary:
    """What a replay did.

    Attributes
    ----------
    sent : int
        Events handed to the producer.
    delivered : int
        Events the broker acknowledged.
    failed : int
        Events whose delivery failed (``sent - delivered``).
    elapsed_s : float
        From the start of the replay to the last acknowledgement.
    errors : tuple of str
        The first :data:`MAX_ERRORS_KEPT` delivery errors.
    skipped : dict of str to int
        Input rows the reader rejected, by reason code.
    bad_rows : tuple of BadRow
        The first of those rows, to name one by one.
    """

    sent: int
    delivered: int
    failed: int
    elapsed_s: float
    errors: tuple[str, ...] = ()
    skipped: dict[str, int] = field(default_factory=dict)
    bad_rows: tuple[BadRow, ...] = ()

    @property
    def rate_eps(self) -> float:
        """Events sent per second."""
        return self.sent / self.elapsed_s if self.elapsed_s > 0 else 0.0

    @property
    def ok(self) -> bool:
        """True when every event sent was delivered."""
        return self.failed == 0 and self.delivered == self.sent


@dataclass(frozen=True)
class Pace:
    """When each event of a paced replay is due, in seconds after the first.

    Exactly one of ``rate`` (event ``i`` is due at ``i / rate``) and
    ``speedup`` (an event is due ``(ts - first ts) / speedup`` after the first;
    an event older than one already sent is due at once).

    Examples
    --------
    >>> Pace(rate=400).due_s(200, ts_ms=0, first_ts_ms=0)
    0.5
    >>> Pace(speedup=60).due_s(1, ts_ms=120_000, first_ts_ms=0)
    2.0
    """

    rate: float | None = None
    speedup: float | None = None

    def __post_init__(self):
        if (self.rate is None) == (self.speedup is None):
            raise ValueError("give exactly one of rate and speedup")
        if not (self.speedup if self.rate is None else self.rate) > 0:
            raise ValueError("rate and speedup must be > 0")

    def due_s(self, index: int, ts_ms: int, first_ts_ms: int) -> float:
        """Seconds after the first event at which event ``index`` (time ``ts_ms``) is due."""
        if self.rate is not None:
            return index / self.rate
        return (ts_ms - first_ts_ms) / (1000.0 * self.speedup)


class _DeliveryFailures:
    """Delivery callback: counts failed deliveries and keeps the first errors."""

    def __init__(self):
        self.count = 0
        self.errors: list[str] = []

    def __call__(self, err, msg) -> None:
        if err is None:
            return
        self.count += 1
        if len(self.errors) < MAX_ERRORS_KEPT:
            self.errors.append(f"{msg.topic()} key={msg.key()!r}: {err.str()}")


class _Ticker:
    """Calls ``progress(sent, elapsed_s)`` at most once per ``interval_s``."""

    def __init__(self, progress: Progress | None, started: float, interval_s: float = 0.5):
        self.progress, self.started, self.interval_s = progress, started, interval_s
        self.next_at = started + interval_s

    def __call__(self, sent: int) -> None:
        now = time.monotonic()
        if self.progress is not None and now >= self.next_at:
            self.next_at = now + self.interval_s
            self.progress(sent, now - self.started)


def producer_config(bootstrap: str, *, security: kafka_security.KafkaSecurity | None = None,
                    **overrides) -> dict:
    """:data:`PRODUCER_CONFIG` for the cluster at ``bootstrap``, with ``overrides``.

    TLS and SASL as ``security`` says (default: the environment's Kafka security
    settings, :func:`shared.kafka_security.resolve`).
    """
    return {**PRODUCER_CONFIG, "bootstrap.servers": bootstrap,
            **kafka_security.resolve(security).confluent(), **overrides}


def produce_events(producer_or_bootstrap: Producer | str, topic: str, events: Iterable[Event], *,
                   rate: float | None = None, speedup: float | None = None,
                   progress: Progress | None = None) -> ProduceSummary:
    """Send ``events`` to ``topic`` keyed by user id, wait for every acknowledgement, and report.

    Parameters
    ----------
    producer_or_bootstrap : confluent_kafka.Producer or str
        A producer (made with :func:`producer_config` for the fast path that
        reports failures only), or bootstrap servers to make one.
    topic : str
    events : iterable of Event
        Sent in this order; the value of each is its canonical JSON.
    rate : float, optional
        Events per second.
    speedup : float, optional
        Replay at the events' own pace (by ``ts``), this many times faster.
        With neither ``rate`` nor ``speedup``, as fast as possible.
    progress : callable, optional
        Called with (events sent, seconds elapsed) about twice a second.

    Returns
    -------
    ProduceSummary
        ``skipped`` is empty: the caller knows its reader.

    Raises
    ------
    ValueError
        When both ``rate`` and ``speedup`` are given, or one is not > 0.
    """
    pace = None if rate is None and speedup is None else Pace(rate=rate, speedup=speedup)
    producer = (Producer({**producer_config(producer_or_bootstrap), **kafka_log.client_config()})
                if isinstance(producer_or_bootstrap, str) else producer_or_bootstrap)
    failures = _DeliveryFailures()
    started = time.monotonic()
    tick = _Ticker(progress, started)
    if pace is None:
        sent = _send(producer, topic, events, failures, tick)
    else:
        sent = _send_paced(producer, topic, events, failures, tick, pace)
    producer.flush()  # bounded by message.timeout.ms: every message gets its report
    return ProduceSummary(sent=sent, delivered=sent - failures.count, failed=failures.count,
                          elapsed_s=time.monotonic() - started, errors=tuple(failures.errors))


def _send(producer: Producer, topic: str, events: Iterable[Event], on_delivery,
          tick: _Ticker) -> int:
    """Send as fast as the producer takes them; serve delivery reports every few events."""
    produce, poll = producer.produce, producer.poll
    events, sent = iter(events), 0
    while batch := list(islice(events, _POLL_EVERY)):
        for event in batch:
            value = event.to_json_bytes()
            try:  # positional arguments: a keyword costs as much as the call itself
                produce(topic, value, event.user_id, _ANY_PARTITION, on_delivery)
            except BufferError:
                _produce_when_room(producer, topic, value, event.user_id, on_delivery)
        sent += len(batch)
        poll(0)
        tick(sent)
    return sent


def _send_paced(producer: Producer, topic: str, events: Iterable[Event], on_delivery,
                tick: _Ticker, pace: Pace) -> int:
    """Send each event when ``pace`` says it is due (never earlier), counting from the first."""
    sent, first_ts_ms, origin = 0, None, None
    for event in events:
        if first_ts_ms is None:
            first_ts_ms, origin = event.ts_ms, time.monotonic()
        wait_s = origin + pace.due_s(sent, event.ts_ms, first_ts_ms) - time.monotonic()
        if wait_s > 0:
            time.sleep(wait_s)
        value = event.to_json_bytes()
        try:
            producer.produce(topic, value, event.user_id, _ANY_PARTITION, on_delivery)
        except BufferError:
            _produce_when_room(producer, topic, value, event.user_id, on_delivery)
        sent += 1
        producer.poll(0)
        tick(sent)
    return sent


def _produce_when_room(producer: Producer, topic: str, value: bytes, key: str,
                       on_delivery) -> None:
    """Produce once the local queue has room, serving delivery reports meanwhile."""
    while True:
        producer.poll(0.05)
        try:
            producer.produce(topic, value, key, _ANY_PARTITION, on_delivery)
            return
        except BufferError:
            continue


def synthetic_events(n_events: int, *, seed: int, params: ShopParams = ShopParams(),
                     chunk_events: int = DEFAULT_CHUNK_EVENTS) -> Iterator[Event]:
    """The events :func:`batch.synthetic_file.write_jsonl` writes for the same arguments, without a file.

    The arguments are checked at once; events are drawn a chunk at a time as
    they are asked for.

    Examples
    --------
    >>> first = next(synthetic_events(10, seed=1, params=ShopParams(n_items=20, n_categories=4)))
    >>> first.event_id, first.type
    ('e1-0', 'view')
    """
    return _shop_events(SyntheticShop(n_events, seed=seed, params=params,
                                      chunk_events=chunk_events))


def _shop_events(shop: SyntheticShop) -> Iterator[Event]:
    items = [f"{ITEM_PREFIX}{i}" for i in range(shop.params.n_items)]
    categories = [f"{CATEGORY_PREFIX}{c}" for c in shop.item_category.tolist()]
    prices = (shop.item_price_cents / 100).tolist()
    first = 0
    for chunk in shop.event_chunks():
        sessions = [f"{SESSION_PREFIX}{s}" for s in chunk.session.tolist()]
        users = [f"{USER_PREFIX}{u}" if u < shop.n_users else s
                 for u, s in zip(chunk.user.tolist(), sessions)]
        rows = zip(users, sessions, chunk.item.tolist(), chunk.type.tolist(),
                   chunk.ts_ms.tolist(), chunk.dwell_ms.tolist(), chunk.quantity.tolist())
        for i, (user, session, item, type_code, ts_ms, dwell_ms, quantity) in enumerate(rows,
                                                                                        first):
            yield Event(f"e{shop.seed}-{i}", user, session, items[item],
                        EVENT_TYPES[type_code], type_code, ts_ms,
                        dwell_ms if type_code == VIEW else None, categories[item], prices[item],
                        quantity or None)
        first += len(chunk)


class ProgressLine:
    """Rewrites one line on ``stream`` (default: standard error): events sent and the rate."""

    def __init__(self, stream=None):
        self.stream = sys.stderr if stream is None else stream
        self.shown = False

    def __call__(self, sent: int, elapsed_s: float) -> None:
        line = f"{sent:,} events sent  {sent / elapsed_s:,.0f} events/s"
        print(f"\r{line:<48}", end="", file=self.stream, flush=True)
        self.shown = True

    def finish(self) -> None:
        """End the line, if one was written."""
        if self.shown:
            print(file=self.stream)


def describe(summary: ProduceSummary, topic: str) -> list[str]:
    """The summary as lines for people."""
    lines = [f"{topic}: sent {summary.sent:,}, delivered {summary.delivered:,}, "
             f"failed {summary.failed:,} in {summary.elapsed_s:.1f} s "
             f"({summary.rate_eps:,.0f} events/s)"]
    if summary.skipped:
        lines.append("skipped rows: " + ", ".join(
            f"{code} {count:,}" for code, count in sorted(summary.skipped.items())))
    if summary.bad_rows:
        lines += bad_row_lines(summary.bad_rows, sum(summary.skipped.values()))
    lines += [f"delivery failed: {error}" for error in summary.errors]
    return lines


def add_arguments(parser: argparse.ArgumentParser) -> None:
    """Options of ``recsys produce``: the source, the pacing and the topic."""
    source = parser.add_mutually_exclusive_group(required=True)
    source.add_argument("path", nargs="?", type=Path,
                        help="Event file to replay (format detected, or --format).")
    source.add_argument("--synthetic", type=int, metavar="N",
                        help="Replay N events of a freshly generated synthetic shop instead.")
    parser.add_argument("--format", choices=sorted(FORMATS), help="Format of the event file.")
    parser.add_argument("--seed", type=int, default=0, help="Seed of the synthetic shop.")
    pace = parser.add_mutually_exclusive_group()
    pace.add_argument("--rate", type=_positive, metavar="EPS", help="Events per second.")
    pace.add_argument("--speedup", type=_positive, metavar="X",
                      help="Follow the events' timestamps, X times faster.")
    parser.add_argument("--topic", help="Topic to send to (default: the events topic).")
    parser.add_argument("--strict", action="store_true",
                        help="Check the whole file first and send nothing if any row is bad "
                             "(exit status 1); without it bad rows are skipped and reported.")


def _positive(text: str) -> float:
    value = float(text)
    if not value > 0:
        raise argparse.ArgumentTypeError(f"must be > 0, got {text}")
    return value


def run(args: argparse.Namespace, settings: Settings) -> int:
    """Replay what ``args`` ask for; 0 when every event was delivered, 1 when some were not
    or, with ``--strict``, when a row of the file is bad (then nothing is sent)."""
    topic = args.topic or settings.events_topic
    shown = FirstBadRows()
    report = ReadReport(on_bad_row=shown)
    limits = settings.event_limits()
    try:
        if args.path is not None and args.strict:
            checked = validate_file(args.path, args.format, limits=limits, on_bad_row=shown)
            if checked.rows_bad:
                n_bad = sum(checked.rows_bad.values())
                print("\n".join([*bad_row_lines(shown, n_bad), summary_line(checked)]))
                print(f"recsys produce: {n_bad:,} bad rows in {args.path}; nothing sent"
                      " (--strict)", file=sys.stderr)
                return 1
        events = (synthetic_events(args.synthetic, seed=args.seed) if args.path is None else
                  iter_events(args.path, args.format, report=report, limits=limits))
    except (FileNotFoundError, ValueError) as exc:  # FormatError is a ValueError
        print(f"recsys produce: {exc}", file=sys.stderr)
        return 2
    bootstrap = ensure_broker(settings)
    ensure_topics(bootstrap, [TopicSpec(topic, settings.events_partitions, {})],
                  replication_factor=settings.replication_factor)
    progress = ProgressLine()
    summary = produce_events(bootstrap, topic, events, rate=args.rate, speedup=args.speedup,
                             progress=progress)
    progress.finish()
    summary = dataclasses.replace(summary, skipped=dict(report.rows_bad), bad_rows=tuple(shown))
    print("\n".join(describe(summary, topic)))
    return 0 if summary.ok else 1
