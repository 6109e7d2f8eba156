"""A Faust table whose changelog messages go straight to the librdkafka producer.

faust-streaming turns every table write into a changelog message through
its generic channel machinery: a ``FutureMessage``, the producer buffer's
queue and task, ``Topic.publish_message`` with its sensors, a future per
message and, on delivery, one RocksDB put of the persisted offset per
message. Measured on a Faust agent doing one table write per event, that
path cost about 75 µs per write here even with librdkafka underneath,
more than twice the agent's whole per-event cost without the write.

:class:`ChangelogTable` changes only how the changelog message is sent: the
RocksDB write, the message (key, value, the partition of the event being
processed, the changelog topic), recovery and standbys stay Faust's own.
On delivery, the highest acknowledged offset per partition is written as
the store's persisted offset once per round of delivery reports rather than
once per message. Keys and values must be ``bytes`` (the worker encodes its
rows itself), and windowed tables are not supported.

RocksDB keeps its write-ahead log. Without it (as Kafka Streams runs its
stores) a put cost about 2 µs instead of 8 µs here, but a worker restarted
after a hard kill then had to replay the changelog while its stream
partitions resumed, and Faust's recovery left a partition unconsumed in
6 of 20 runs of the hard-kill test's steps
(``tests/integration/test_faust_rocksdb.py``; 0 of 13 with the log).

:class:`RowCache` keeps the decoded rows of the most recently used keys in
front of a table, so an active user's row is neither read from RocksDB nor
decoded on each of their events. It is write-through (a row is cached only
once the table holds it) and it is emptied whenever the table's partitions
move or are recovered: what it holds always equals what the store holds.
"""
from __future__ import annotations

import logging
from collections import OrderedDict
from collections.abc import Callable

import faust
import rocksdict
from faust.streams import current_event
from faust.types.tuples import TP

from stream.faust_fixes import require_tested_versions
from stream.kafka_producer import Producer

log = logging.getLogger(__name__)


class ChangelogTable(faust.Table):
    """``faust.Table`` with a direct changelog send (module docstring); bytes in, bytes out."""

    def __init__(self, *args, **kwargs) -> None:
        super().__init__(*args, **kwargs)
        self._acked: dict[int, int] = {}
        self._hooked = False
        self._caches: list[RowCache] = []

    def read(self, key: bytes) -> bytes | None:
        """The stored value of ``key``, or None: one RocksDB lookup.

        ``table.get(key)`` goes through ``Mapping.get``, which asks the store
        whether the key exists and then reads it: two lookups and their
        Python layers for every read.
        """
        return self.data._get(key)

    async def on_rebalance(self, assigned, revoked, newly_assigned, generation_id: int = 0) -> None:
        """Empty the row caches, then Faust's own handling (partitions move, recovery follows)."""
        self._clear_caches()
        await super().on_rebalance(assigned, revoked, newly_assigned, generation_id)

    async def on_recovery_completed(self, active_tps, standby_tps) -> None:
        """Empty the row caches again: recovery wrote to the store behind them."""
        self._clear_caches()
        await super().on_recovery_completed(active_tps, standby_tps)

    def _clear_caches(self) -> None:
        for cache in self._caches:
            cache.clear()

    def write(self, key: bytes, value: bytes) -> None:
        """``table[key] = value`` in the partition of the current event (:meth:`write_many`)."""
        self.write_many([(key, value, self._event_partition())])

    def write_many(self, entries) -> None:
        """Write ``(key, value, partition)`` entries without the layers Faust puts between:
        a changelog message each, and one RocksDB write batch per partition.

        Faust's path goes through its mapping wrapper, the serializer registry
        (a no-op for bytes) and ``Store._set``, which also records the key's
        partition in a locked LRU index that only reads outside an event use.
        That path took about 25 µs per write, timed inside the worker; a put of
        its own costs a write to RocksDB's log each, a batch one for all.
        """
        batches: dict[int, rocksdict.WriteBatch] = {}
        for key, value, partition in entries:
            self._send(key, value, partition)
            batch = batches.get(partition)
            if batch is None:
                batch = batches[partition] = rocksdict.WriteBatch(raw_mode=True)
            batch.put(key, value)
        for partition, batch in batches.items():
            self.data._db_for_partition(partition).write(batch)

    def on_key_set(self, key: bytes, value: bytes) -> None:
        """Send the changelog message of a ``table[key] = value`` (Faust then stores it)."""
        self._send(key, value, self._event_partition())

    def _event_partition(self) -> int:
        """The partition of the event being processed (a write outside one is refused)."""
        event = current_event()
        if event is None:
            raise RuntimeError(f"table {self.name!r} can only be written while processing an event")
        return event.message.partition

    def _send(self, key: bytes, value: bytes, partition: int) -> None:
        """Send the changelog message of a write in ``partition``."""
        if type(key) is not bytes or type(value) is not bytes:
            raise TypeError(f"table {self.name!r} takes bytes keys and values")
        producer = self.app.producer
        if not self._hooked:
            if not isinstance(producer, Producer):
                raise TypeError("ChangelogTable needs the librdkafka producer (broker librdkafka://)")
            producer.after_deliveries(self._persist_offsets)
            self._hooked = True
        producer.produce(self.changelog_topic_name, key, value, partition, self._on_delivery)

    def on_key_del(self, key: bytes) -> None:
        """Deletes are not used by the worker; refuse rather than send a half-done tombstone."""
        raise NotImplementedError(f"table {self.name!r} does not delete keys")

    def _on_delivery(self, err, msg) -> None:
        if err is not None:
            log.error("changelog message of table %r not delivered: %s", self.name, err)
            self.app._crash(RuntimeError(f"changelog of table {self.name!r}: {err}"))  # stop the worker
            return
        partition, offset = msg.partition(), msg.offset()
        if offset > self._acked.get(partition, -1):
            self._acked[partition] = offset

    def _persist_offsets(self) -> None:
        if not self._acked:
            return
        topic = self.changelog_topic_name
        for partition, offset in self._acked.items():
            self.data.set_persisted_offset(TP(topic, partition), offset)
        self._acked.clear()


class RowCache:
    """Decoded rows of a :class:`ChangelogTable`, the ``size`` most recently used keys.

    Rows must be immutable values: the cache hands out the object it holds.

    Parameters
    ----------
    table : ChangelogTable
    decode : callable
        bytes -> row.
    encode : callable
        row -> bytes, what the table stores.
    size : int
        Most rows kept.
    """

    def __init__(self, table: ChangelogTable, decode: Callable[[bytes], object],
                 encode: Callable[[object], bytes], size: int):
        self.table, self.decode, self.encode, self.size = table, decode, encode, size
        self._rows: OrderedDict[bytes, object] = OrderedDict()
        table._caches.append(self)

    def get(self, key: bytes):
        """The row of ``key`` (decoded), or None when the table has none."""
        rows = self._rows
        row = rows.get(key)
        if row is not None:
            rows.move_to_end(key)
            return row
        value = self.table.read(key)
        if value is None:
            return None
        row = self.decode(value)
        self._keep(key, row)
        return row

    def peek(self, key: bytes):
        """The row of ``key`` as :meth:`get` returns it (None when the table has none),
        leaving the cache as it is.

        For readers beside the agent (the worker's query views): a row read
        here is not kept, so which rows the agent finds cached does not depend
        on what is asked, and a read during a recovery leaves nothing behind.
        Outside an event the store looks the key up in each partition it has
        open (active or standby): a key lives in one partition only, and
        Faust's table routing sends a query to that partition's active owner.
        """
        row = self._rows.get(key)
        if row is not None:
            return row
        value = self.table.read(key)
        return None if value is None else self.decode(value)

    def set(self, key: bytes, row) -> None:
        """Write ``row`` to the table (store and changelog) in the current event's partition,
        then cache it."""
        self.table.write(key, self.encode(row))
        self._keep(key, row)

    def set_many(self, entries) -> None:
        """Write ``(key, row, partition)`` entries to the table in one go
        (:meth:`ChangelogTable.write_many`), then cache them."""
        self.table.write_many([(key, self.encode(row), partition) for key, row, partition in entries])
        for key, row, _ in entries:
            self._keep(key, row)

    def _keep(self, key: bytes, row) -> None:
        rows = self._rows
        rows[key] = row
        rows.move_to_end(key)
        if len(rows) > self.size:
            rows.popitem(last=False)

    def clear(self) -> None:
        """Forget every row (the table is unchanged)."""
        self._rows.clear()


def changelog_table(app: faust.App, name: str, **kwargs) -> ChangelogTable:
    """Declare a :class:`ChangelogTable` on ``app`` (what ``app.Table`` does for its own class);
    refuses untested Faust and aiokafka versions, whose table internals it relies on."""
    require_tested_versions("stream/tables.py")
    return app.tables.add(ChangelogTable(app, name=name, beacon=app.tables.beacon, **kwargs))
