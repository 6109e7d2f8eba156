"""librdkafka's own log through Python logging, each repeated line at most once per interval.

Without a ``logger`` in its configuration, a confluent-kafka client has
librdkafka write its log straight to stderr, and a client that cannot connect
repeats the same line on every reconnection attempt, about 20 a second::

    %3|...|FAIL|rdkafka#producer-1| [thrd:...]: ...: Connect to ipv4#127.0.0.1:9092 failed:
    Connection refused (after 0ms in state CONNECT)

(580 of them in the 30 s a topic creation waits). With ``logger`` set,
confluent-kafka hands each line to that object as ``log(level, "%s [%s] %s",
facility, client name, text)``, from the thread that polls the client
(``poll()``, ``flush()``, ``consume()``), with the syslog level mapped to
logging's. :func:`client_config` gives that option: the lines go to the
:data:`LOGGER_NAME` logger, whose :class:`OncePer` filter lets a line through
once per interval and counts the copies it held back.

>>> config = client_config()
>>> config["logger"].name
'recsys.kafka'
>>> client_config(level=logging.DEBUG)["logger"].logger is config["logger"]
True
"""
from __future__ import annotations

import logging
import re
import threading
import time
from collections.abc import Callable
from typing import Any

#: The logger librdkafka's lines go to.
LOGGER_NAME = "recsys.kafka"
#: How long a line is held back after it was let through, by default.
DEFAULT_INTERVAL_S = 30.0

#: Parts of a librdkafka line that change between two copies of one message: the time
#: spent in a state, and the count librdkafka adds when it folds copies itself.
_VARYING = re.compile(r"\d+ms\b|,? *\d+ identical error\(s\) suppressed")


class OncePer(logging.Filter):
    """Let each distinct message through once per ``interval_s``; drop its copies meanwhile.

    Two records are copies when their logger, level and message agree once the
    parts that vary between librdkafka's copies of a line are left out (times in
    milliseconds, librdkafka's own "N identical error(s) suppressed"). The next
    copy let through says how many were held back. At most ``max_messages``
    distinct messages are remembered (the oldest is forgotten first), so a
    long-running process does not grow without bound.

    >>> clock = iter([0.0, 1.0, 2.0, 40.0]).__next__
    >>> once = OncePer(30.0, clock=clock)
    >>> def record(text):
    ...     return logging.LogRecord("k", logging.ERROR, "", 0, text, None, None)
    >>> [once.filter(record(f"connect failed (after {ms}ms)")) for ms in (0, 5, 9)]
    [True, False, False]
    >>> let_through = record("connect failed (after 3ms)")
    >>> once.filter(let_through), let_through.getMessage()
    (True, 'connect failed (after 3ms) (2 more like it in 40 s)')
    """

    def __init__(self, interval_s: float = DEFAULT_INTERVAL_S, *, max_messages: int = 1024,
                 clock: Callable[[], float] = time.monotonic) -> None:
        super().__init__()
        self.interval_s = interval_s
        self.max_messages = max_messages
        self._clock = clock
        self._lock = threading.Lock()
        #: message key -> (when it was last let through, copies held back since)
        self._seen: dict[tuple[str, int, str], tuple[float, int]] = {}

    def filter(self, record: logging.LogRecord) -> bool:
        key = (record.name, record.levelno, _VARYING.sub("", record.getMessage()))
        now = self._clock()
        with self._lock:
            seen = self._seen.get(key)
            if seen is not None and now - seen[0] < self.interval_s:
                self._seen[key] = (seen[0], seen[1] + 1)
                return False
            self._seen.pop(key, None)
            self._seen[key] = (now, 0)
            while len(self._seen) > self.max_messages:
                del self._seen[next(iter(self._seen))]
        if seen is not None and seen[1]:
            record.msg = f"{record.getMessage()} ({seen[1]} more like it in {now - seen[0]:.0f} s)"
            record.args = None
        return True


class _AtLevel(logging.LoggerAdapter):
    """A logger whose every record has one level, whatever the caller asked for: for a
    client whose failure is reported otherwise, so that its lines are kept for debugging
    without repeating what the report says."""

    def __init__(self, logger: logging.Logger, level: int) -> None:
        super().__init__(logger, {})
        self.level = level

    def log(self, level: int, msg: object, *args: Any, **kwargs: Any) -> None:
        super().log(self.level, msg, *args, **kwargs)


_lock = threading.Lock()


def logger() -> logging.Logger:
    """The :data:`LOGGER_NAME` logger, with one :class:`OncePer` filter."""
    log = logging.getLogger(LOGGER_NAME)
    with _lock:
        if not any(isinstance(f, OncePer) for f in log.filters):
            log.addFilter(OncePer())
    return log


def client_config(level: int | None = None) -> dict[str, Any]:
    """The options of a confluent-kafka client's configuration that send librdkafka's log
    to :func:`logger`: at librdkafka's own levels, or all at ``level``."""
    log = logger()
    return {"logger": log if level is None else _AtLevel(log, level)}
