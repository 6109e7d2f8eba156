"""A minimal Faust worker for the RocksDB restart test: counts events per key in a table.

Run as ``python faust_counter_app.py worker``; configured by environment:
COUNTER_BOOTSTRAP, COUNTER_TOPIC, COUNTER_OUT, COUNTER_DATADIR, COUNTER_APP_ID.
"""
import os

import faust

app = faust.App(
    os.environ["COUNTER_APP_ID"],
    broker=f"kafka://{os.environ['COUNTER_BOOTSTRAP']}",
    store="rocksdb://",
    datadir=os.environ["COUNTER_DATADIR"],
    topic_partitions=2,
    key_serializer="raw",
    value_serializer="raw",
)
events = app.topic(os.environ["COUNTER_TOPIC"], partitions=2)
out = app.topic(os.environ["COUNTER_OUT"], partitions=1)
counts = app.Table("counts", default=int, partitions=2, options={"driver": "rocksdict"})


@app.agent(events)
async def count(stream):
    async for key, _value in stream.items():
        name = key.decode()
        counts[name] += 1
        await out.send(key=key, value=f"{name}={counts[name]}".encode())


if __name__ == "__main__":
    app.main()
