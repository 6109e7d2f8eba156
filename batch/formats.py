"""The file formats: what each row of each format becomes, checked a chunk at a time.

A format turns a chunk of lines (a bytes array for the delimited formats, a
list for JSON lines) into the arrays of its good rows (:class:`Chunk`); a bad
row is recorded under its reason code (those of :mod:`shared.events`, plus
:data:`BAD_COLUMNS`), with the field at fault, by :class:`Rows`.
:mod:`batch.readers` reads the files and lists the formats.
"""
from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass, field
from pathlib import Path
from typing import NamedTuple

import numpy as np

from batch.columns import event_arrays
from shared.events import (BAD_PRICE, BAD_QUANTITY, BAD_TIMESTAMP, EMPTY_FIELD, EVENT_TYPE_CODES,
                           FIELD_TOO_LONG, MAX_TS_MS, MIN_TS_MS, NOT_UTF8, UNKNOWN_TYPE, Event,
                           EventError, EventLimits, parse_event)

#: Reason code of a row without the format's number of fields.
BAD_COLUMNS = "bad_columns"
#: Longest row of the delimited formats; real rows are under 100 bytes.
MAX_DELIMITED_LINE_BYTES = 512

_SESSION_REC_HEADER = b"SessionId\tItemId\tTime"
_RETAILROCKET_HEADER = b"timestamp,visitorid,event,itemid,transactionid"
_RETAILROCKET_TYPES = {b"view": "view", b"addtocart": "add_to_cart", b"transaction": "buy"}
_MAX_INT_DIGITS = 18


class FormatError(ValueError):
    """A file whose format is unknown, or whose header is not its format's."""


class BadRowError(ValueError):
    """A bad row in strict mode.

    Attributes
    ----------
    path : Path
    line_no : int
        1-based line number in the file.
    code : str
        The reason code.
    """

    def __init__(self, path: Path, line_no: int, code: str, message: str):
        super().__init__(f"{path}:{line_no}: {code}: {message}")
        self.path, self.line_no, self.code = path, line_no, code


class BadRow(NamedTuple):
    """One bad row: where it is, its reason code, the field at fault and what was wrong.

    ``field`` is the JSON field or the column's name, or None when the row as a
    whole is at fault (its size, encoding, JSON or number of columns).

    >>> print(BadRow(Path("events.jsonl"), 7, "missing_field", "ts", "'ts' is required"))
    events.jsonl:7: ts: 'ts' is required (missing_field)
    >>> print(BadRow(Path("events.jsonl"), 8, "not_json", None, "unexpected end of data"))
    events.jsonl:8: (row): unexpected end of data (not_json)
    """

    path: Path
    line_no: int
    code: str
    field: str | None
    message: str

    def __str__(self) -> str:
        return (f"{self.path}:{self.line_no}: {self.field or '(row)'}: {self.message}"
                f" ({self.code})")


@dataclass
class ReadReport:
    """What a reader saw.

    Attributes
    ----------
    paths : list of str
        The files read.
    rows_read : int
        Data rows seen (headers and blank lines excluded), good and bad.
    rows_bad : dict of str to int
        Rows skipped, by reason code.
    on_bad_row : callable, optional
        Called with each bad row's :class:`BadRow`, in file order, as the
        rows are read (a chunk's bad rows before its good ones are handed
        on); the report itself keeps only the counts, so memory stays
        bounded however many rows are bad.
    """

    paths: list[str] = field(default_factory=list)
    rows_read: int = 0
    rows_bad: dict[str, int] = field(default_factory=dict)
    on_bad_row: Callable[[BadRow], None] | None = field(default=None, repr=False,
                                                        compare=False)

    @property
    def rows_ok(self) -> int:
        """Rows that became events."""
        return self.rows_read - sum(self.rows_bad.values())


@dataclass
class Chunk:
    """Good rows of one chunk as arrays; ``None`` columns are all unknown."""

    line_no: np.ndarray
    user: np.ndarray
    session: np.ndarray
    item: np.ndarray
    type: np.ndarray
    ts_ms: np.ndarray
    dwell_ms: np.ndarray | None = None
    category: np.ndarray | None = None
    price: np.ndarray | None = None
    quantity: np.ndarray | None = None
    events: list[Event] | None = None


@dataclass(frozen=True)
class Format:
    """A format: its header line (None: none), its parser, and whether its rows are delimited."""

    header: bytes | None
    parse: Callable[..., Chunk]
    delimited: bool = True


class Rows:
    """The rows of one chunk while they are checked: which are still good, and the bad ones."""

    def __init__(self, path: Path, line_no: np.ndarray):
        self.path, self.line_no = path, line_no
        self.ok = np.ones(len(line_no), dtype=bool)
        #: (code, line numbers, message, field) of each group of bad rows.
        self.bad: list[tuple[str, np.ndarray, str, str | None]] = []

    def record(self, code: str, line_no: np.ndarray, message: str,
               field: str | None = None) -> None:
        """Count the rows at ``line_no`` as bad for ``code`` (in ``field``; None: the row)."""
        if len(line_no):
            self.bad.append((code, line_no, message, field))

    def reject(self, bad: np.ndarray, code: str, message: str,
               field: str | None = None) -> None:
        """Mark the still-good rows where ``bad`` holds as bad for ``code`` (in ``field``)."""
        bad = bad & self.ok
        if bad.any():
            self.bad.append((code, self.line_no[bad], message, field))
            self.ok &= ~bad

    def array(self, lines: list[bytes]) -> np.ndarray:
        """The lines as a bytes array, rejecting those that are not UTF-8."""
        try:
            b"\n".join(lines).decode("utf-8")
        except UnicodeDecodeError:
            self.reject(np.array([not _is_utf8(line) for line in lines], dtype=bool),
                        NOT_UTF8, "not UTF-8")
        return np.array(lines, dtype=bytes)

    def split(self, lines: np.ndarray, sep: bytes, n: int) -> list[np.ndarray]:
        """The ``n`` fields of each line; lines with another count are rejected."""
        self.reject(np.strings.count(lines, sep) != n - 1, BAD_COLUMNS,
                    f"expected {n} fields separated by {sep.decode()!r}")
        fields, rest = [], lines
        for _ in range(n - 1):
            head, _, rest = np.strings.partition(rest, sep)
            fields.append(head)
        return fields + [rest]

    def require(self, limits: EventLimits, **ids: np.ndarray) -> None:
        """Reject the rows where an id (by column name) is empty or longer than
        ``limits.max_id_chars`` characters, as :func:`shared.events.parse_event` does."""
        for name, values in ids.items():
            length = np.strings.str_len(values)  # bytes: at least the characters
            self.reject(length == 0, EMPTY_FIELD, f"{name} is empty", name)
            suspect = np.flatnonzero(length > limits.max_id_chars)
            if len(suspect):
                chars = np.array([len(v.decode("utf-8", "replace")) for v in values[suspect]])
                long = np.zeros(len(values), dtype=bool)
                long[suspect[chars > limits.max_id_chars]] = True
                self.reject(long, FIELD_TOO_LONG, f"{name} is longer than {limits.max_id_chars} "
                            f"characters (RECSYS_MAX_ID_CHARS)", name)

    def number(self, text: np.ndarray, dtype, code: str, message: str,
               field: str | None = None) -> np.ndarray:
        """Non-negative decimal numbers (digits, and a point for floats)."""
        digits = np.strings.replace(text, b".", b"", 1) if dtype is np.float64 else text
        good = np.strings.isdigit(digits) & (np.strings.str_len(digits) <= _MAX_INT_DIGITS)
        self.reject(~good, code, message, field)
        return np.where(good, text, b"0").astype(dtype)

    def iso_ms(self, text: np.ndarray, field: str | None = None) -> np.ndarray:
        """Epoch ms of UTC ISO-8601 times such as ``2014-04-07T10:51:09.277Z``."""
        self.reject(~np.strings.endswith(text, b"Z") | (np.strings.str_len(text) < 20),
                    BAD_TIMESTAMP, "expected an ISO-8601 UTC time ending in 'Z'", field)
        naive = np.strings.slice(np.where(self.ok, text, b"1970-01-01T00:00:00Z"), 0, -1)
        try:
            moments = naive.astype("datetime64[ms]")
        except ValueError:
            moments = np.array([_datetime64_ms(t) for t in naive], dtype="datetime64[ms]")
        ts_ms = moments.astype(np.int64)
        self.in_range(ts_ms, field)
        return ts_ms

    def in_range(self, ts_ms: np.ndarray, field: str | None = None) -> None:
        """Reject times outside 2000..9999 (``ts_ms`` may be float), the event contract's
        range (:data:`shared.events.MIN_TS_MS`)."""
        self.reject((ts_ms < MIN_TS_MS) | (ts_ms > MAX_TS_MS), BAD_TIMESTAMP,
                    "time is not a valid date between 2000-01-01 and 9999", field)

    def chunk(self, **columns) -> Chunk:
        """The good rows; a scalar ``type`` is the same for every row."""
        ok = self.ok
        if np.isscalar(columns["type"]):
            columns["type"] = np.full(len(ok), columns["type"], dtype=np.int8)
        good = {name: None if values is None else values[ok] for name, values in columns.items()}
        return Chunk(line_no=self.line_no[ok], **good)

    def settle(self, report: ReadReport, strict: bool) -> None:
        """Count the bad rows in ``report`` and hand each to its ``on_bad_row``, in line
        order; in strict mode raise on the first one instead."""
        if strict and self.bad:
            code, line_no, message, _ = min(self.bad, key=lambda bad: bad[1].min())
            raise BadRowError(self.path, int(line_no.min()), code, message)
        for code, line_no, _, _ in self.bad:
            report.rows_bad[code] = report.rows_bad.get(code, 0) + len(line_no)
        if report.on_bad_row is not None and self.bad:
            rows = sorted((n, code, field, message) for code, line_no, message, field in self.bad
                          for n in line_no.tolist())
            for n, code, field, message in rows:
                report.on_bad_row(BadRow(self.path, n, code, field, message))


def _yoochoose_clicks(lines: np.ndarray, rows: Rows, limits: EventLimits) -> Chunk:
    session, ts, item, category = rows.split(lines, b",", 4)
    rows.require(limits, session=session, item=item)
    ts_ms = rows.iso_ms(ts, "timestamp")
    category = np.where(category == b"0", b"", category)
    return rows.chunk(user=session, session=session, item=item, type=EVENT_TYPE_CODES["click"],
                      ts_ms=ts_ms, category=category)


def _yoochoose_buys(lines: np.ndarray, rows: Rows, limits: EventLimits) -> Chunk:
    session, ts, item, price_text, quantity_text = rows.split(lines, b",", 5)
    rows.require(limits, session=session, item=item)
    ts_ms = rows.iso_ms(ts, "timestamp")
    price = rows.number(price_text, np.float64, BAD_PRICE, "price is not a number >= 0",
                        "price")
    rows.reject(price > limits.max_price, BAD_PRICE, f"price above {limits.max_price}", "price")
    quantity = rows.number(quantity_text, np.int64, BAD_QUANTITY,
                           "quantity is not an integer >= 0", "quantity")
    rows.reject(quantity > limits.max_quantity, BAD_QUANTITY,
                f"quantity above {limits.max_quantity}", "quantity")
    return rows.chunk(user=session, session=session, item=item, type=EVENT_TYPE_CODES["buy"],
                      ts_ms=ts_ms, price=np.where(price > 0, price, np.nan), quantity=quantity)


def _session_rec(lines: np.ndarray, rows: Rows, limits: EventLimits) -> Chunk:
    session, item, time_text = rows.split(lines, b"\t", 3)
    rows.require(limits, SessionId=session, ItemId=item)
    ms = rows.number(time_text, np.float64, BAD_TIMESTAMP, "Time is not epoch seconds",
                     "Time") * 1000
    rows.in_range(ms, "Time")
    ts_ms = np.rint(np.where(rows.ok, ms, 0)).astype(np.int64)
    return rows.chunk(user=session, session=session, item=item, type=EVENT_TYPE_CODES["click"],
                      ts_ms=ts_ms)


def _retailrocket(lines: np.ndarray, rows: Rows, limits: EventLimits) -> Chunk:
    ts_text, visitor, event, item, _ = rows.split(lines, b",", 5)
    rows.require(limits, visitorid=visitor, itemid=item)
    ts_ms = rows.number(ts_text, np.int64, BAD_TIMESTAMP, "timestamp is not epoch milliseconds",
                        "timestamp")
    rows.in_range(ts_ms, "timestamp")
    type_code = np.full(len(lines), -1, dtype=np.int8)
    for name, type_name in _RETAILROCKET_TYPES.items():
        type_code[event == name] = EVENT_TYPE_CODES[type_name]
    rows.reject(type_code < 0, UNKNOWN_TYPE,
                f"event is not one of {[name.decode() for name in _RETAILROCKET_TYPES]}", "event")
    return rows.chunk(user=visitor, session=visitor, item=item, type=type_code, ts_ms=ts_ms)


def _jsonl(lines: list[bytes], rows: Rows, limits: EventLimits) -> Chunk:
    events, kwargs = [], vars(limits)
    for i, line in enumerate(lines):
        try:
            events.append(parse_event(line, **kwargs))
        except EventError as error:
            rows.ok[i] = False
            rows.record(error.code, rows.line_no[i:i + 1], error.message, error.field)
    return Chunk(line_no=rows.line_no[rows.ok], events=events, **event_arrays(events))


#: Every format by name.
FORMATS: dict[str, Format] = {
    "yoochoose-clicks": Format(None, _yoochoose_clicks),
    "yoochoose-buys": Format(None, _yoochoose_buys),
    "session-rec": Format(_SESSION_REC_HEADER, _session_rec),
    "retailrocket": Format(_RETAILROCKET_HEADER, _retailrocket),
    "jsonl": Format(None, _jsonl, delimited=False),
}


def _is_utf8(line: bytes) -> bool:
    try:
        line.decode("utf-8")
    except UnicodeDecodeError:
        return False
    return True


def _datetime64_ms(text: bytes) -> np.datetime64:
    try:
        return np.datetime64(text.decode(), "ms")
    except ValueError:
        return np.datetime64("NaT", "ms")
