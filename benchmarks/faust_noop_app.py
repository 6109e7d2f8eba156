"""A Faust agent that does no work, for benchmarks/stream.py: the framework's own ceiling.

Configured by environment: NOOP_BOOTSTRAP, NOOP_TOPIC, NOOP_APP_ID, NOOP_EVENTS,
NOOP_RESULT (a JSON file written when NOOP_EVENTS events were seen), NOOP_DATADIR.
"""
import json
import os
import time

import faust

from stream import faust_fixes

if os.environ.get("NOOP_FASTPATH", "1") == "1":
    faust_fixes.install()

app = faust.App(os.environ["NOOP_APP_ID"], broker=f"kafka://{os.environ['NOOP_BOOTSTRAP']}",
                datadir=os.environ["NOOP_DATADIR"], key_serializer="raw", value_serializer="raw",
                consumer_auto_offset_reset="earliest")
topic = app.topic(os.environ["NOOP_TOPIC"])
expected = int(os.environ["NOOP_EVENTS"])


@app.agent(topic)
async def noop(stream):
    seen, started = 0, None
    async for _ in stream:
        started = started or time.perf_counter()
        seen += 1
        if seen == expected:
            elapsed = time.perf_counter() - started
            with open(os.environ["NOOP_RESULT"], "w") as out:
                json.dump({"events": seen, "seconds": elapsed, "eps": (seen - 1) / elapsed}, out)


if __name__ == "__main__":
    app.main()
