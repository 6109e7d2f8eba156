"""A minimal Faust worker for the RocksDB restart tests: the rounds seen per key, in a table.

Each event's value is a round number; the table keeps, per key, the distinct
rounds seen (``b"1,2,3"``), so an event delivered again after a crash changes
nothing while lost state shows as missing rounds. Each output message says
``key=count@worker``. Run as ``python faust_counter_app.py worker``; configured by
environment: COUNTER_BOOTSTRAP, COUNTER_TOPIC, COUNTER_OUT, COUNTER_DATADIR,
COUNTER_APP_ID, COUNTER_NAME (the worker's name in its output), and COUNTER_TABLE:
``faust`` (``app.Table`` on aiokafka), ``changelog`` (the worker's
:class:`stream.tables.ChangelogTable` on the librdkafka producer) or ``cached`` (that
table read and written through a :class:`stream.tables.RowCache`).
"""
import os

import faust

from stream import faust_fixes, kafka_producer
from stream.tables import RowCache, changelog_table

CHANGELOG = os.environ["COUNTER_TABLE"] in ("changelog", "cached")
NAME = os.environ.get("COUNTER_NAME", "worker")
faust_fixes.install()
kafka_producer.install()
app = faust.App(
    os.environ["COUNTER_APP_ID"],
    broker=f"{kafka_producer.SCHEME if CHANGELOG else 'kafka'}://{os.environ['COUNTER_BOOTSTRAP']}",
    store="rocksdb://",
    datadir=os.environ["COUNTER_DATADIR"],
    topic_partitions=2,
    key_serializer="raw",
    value_serializer="raw",
    # After a hard kill the new worker waits for the dead one's session to expire.
    broker_session_timeout=6.0,
    broker_heartbeat_interval=1.0,
)
events = app.topic(os.environ["COUNTER_TOPIC"], partitions=2)
out = app.topic(os.environ["COUNTER_OUT"], partitions=1)
options = dict(partitions=2, options={"driver": "rocksdict"}, key_type=bytes, value_type=bytes)
rounds = (changelog_table(app, "counts", **options) if CHANGELOG
          else app.Table("counts", **options))
cache = (RowCache(rounds, lambda value: frozenset(value.split(b",")),
                  lambda seen: b",".join(sorted(seen)), size=100)
         if os.environ["COUNTER_TABLE"] == "cached" else None)


@app.agent(events)
async def count(stream):
    async for key, value in stream.items():
        if cache is not None:
            seen = (cache.get(key) or frozenset()) | {value}
            cache.set(key, seen)
        else:
            seen = set(filter(None, (rounds.get(key) or b"").split(b","))) | {value}
            rounds[key] = b",".join(sorted(seen))
        await out.send(key=key, value=f"{key.decode()}={len(seen)}@{NAME}".encode())


if __name__ == "__main__":
    app.main()
