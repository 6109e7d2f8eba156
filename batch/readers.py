"""Readers of event logs and public data sets: to columns for training, or to events.

=================  ==============================================  =====================
format             file (``.gz`` is read too)                      rows become
=================  ==============================================  =====================
yoochoose-clicks   ``yoochoose-clicks.dat``:                       click
                   ``session,timestamp,item,category``
yoochoose-buys     ``yoochoose-buys.dat``:                         buy
                   ``session,timestamp,item,price,quantity``
session-rec        header ``SessionId<TAB>ItemId<TAB>Time``,       click
                   Time in epoch seconds
retailrocket       ``events.csv``, header                          view, add_to_cart, buy
                   ``timestamp,visitorid,event,itemid,transactionid``
jsonl              one event message per line (the contract)      as the message says
=================  ==============================================  =====================

The data sets know no user accounts: a YOOCHOOSE or session-rec session is an
anonymous visitor (user = session), and a RetailRocket visitor is both user
and session. YOOCHOOSE's category ``0`` and its price or quantity ``0`` mean
unknown; an item's category in the columns is the last one seen. These rows
carry no event id: :func:`iter_events` gives each
``"<format>:<file name>:<line>"``, so replaying a file twice is idempotent.

Files are read in chunks of ``chunk_rows`` lines, so memory stays bounded by
the chunk plus the columns produced. A bad row is counted under its reason
code (those of :mod:`shared.events`, plus :data:`BAD_COLUMNS`) and skipped;
with ``strict=True`` the first one raises :class:`BadRowError` instead. Blank
lines are skipped, not counted. A file of an unknown format, or with the wrong
header, raises :class:`FormatError` at once.

Other sources of parsed events, such as the ``events`` topic
(:mod:`batch.event_log`), build their columns with :class:`ColumnsBuilder`.

Example
-------
>>> columns, report = read_events(REFERENCE_DATA_DIR / "yoochoose-100k" / "test.txt")
>>> len(columns), report.rows_bad
(13568, {})
"""
from __future__ import annotations

import gzip
import math
import os
from dataclasses import dataclass, field
from itertools import compress
from pathlib import Path
from typing import IO, Callable, Iterator, Sequence

import numpy as np

from batch.columns import EventColumns
from shared.events import (BAD_PRICE, BAD_QUANTITY, BAD_TIMESTAMP, EMPTY_FIELD, EVENT_TYPE_CODES,
                           EVENT_TYPES, MAX_TS_MS, NOT_UTF8, OVERSIZED, UNKNOWN_TYPE, Event,
                           EventError, EventLimits, parse_event)

#: The reference data the repository carries (``<repo>/data``), or ``$RECSYS_DATA_DIR``.
REFERENCE_DATA_DIR = Path(os.environ.get(
    "RECSYS_DATA_DIR", Path(__file__).resolve().parents[1] / "data"))

#: Reason code of a row without the format's number of fields.
BAD_COLUMNS = "bad_columns"
#: Longest row of the delimited formats; real rows are under 100 bytes.
MAX_DELIMITED_LINE_BYTES = 512
DEFAULT_CHUNK_ROWS = 1 << 18

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
    """

    paths: list[str] = field(default_factory=list)
    rows_read: int = 0
    rows_bad: dict[str, int] = field(default_factory=dict)

    @property
    def rows_ok(self) -> int:
        """Rows that became events."""
        return self.rows_read - sum(self.rows_bad.values())


@dataclass
class _Chunk:
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
class _Format:
    header: bytes | None
    parse: Callable[..., _Chunk]
    delimited: bool = True


# --- public entry points ----------------------------------------------------------------------

def detect_format(path: str | Path) -> str:
    """The format name of ``path``, from its file name or else its first line.

    Raises
    ------
    FormatError
        When neither tells.
    """
    path = _existing(path)
    name = path.name.lower().removesuffix(".gz")
    if name.startswith("yoochoose-clicks"):
        return "yoochoose-clicks"
    if name.startswith("yoochoose-buys"):
        return "yoochoose-buys"
    if name.endswith((".jsonl", ".ndjson")):
        return "jsonl"
    with _open(path) as fh:
        first = fh.readline(MAX_DELIMITED_LINE_BYTES).removeprefix(b"\xef\xbb\xbf").rstrip()
    for fmt, spec in FORMATS.items():
        if spec.header is not None and first == spec.header:
            return fmt
    if first.startswith(b"{"):
        return "jsonl"
    raise FormatError(f"{path}: cannot tell its format from its name or first line;"
                      f" pass fmt= one of {sorted(FORMATS)}")


def read_events(path: str | Path, fmt: str | None = None, *, strict: bool = False,
                chunk_rows: int = DEFAULT_CHUNK_ROWS,
                limits: EventLimits = EventLimits()) -> tuple[EventColumns, ReadReport]:
    """Read one file into columns.

    Parameters
    ----------
    path : str or Path
    fmt : str, optional
        One of :data:`FORMATS`; detected by :func:`detect_format` when None.
    strict : bool
        Raise :class:`BadRowError` on the first bad row instead of counting it.
    chunk_rows : int
        Lines read and converted at a time.
    limits : EventLimits
        Bounds on events' size, dwell, price and quantity.

    Returns
    -------
    columns : EventColumns
        The good rows in file order.
    report : ReadReport

    Raises
    ------
    FileNotFoundError, FormatError, BadRowError
    """
    return _read_columns([_source(path, fmt)], strict=strict, chunk_rows=chunk_rows,
                         limits=limits)


def read_yoochoose(clicks: str | Path | None = None, buys: str | Path | None = None, *,
                   strict: bool = False, chunk_rows: int = DEFAULT_CHUNK_ROWS,
                   limits: EventLimits = EventLimits()) -> tuple[EventColumns, ReadReport]:
    """Read YOOCHOOSE clicks, buys or both into one set of columns (clicks first).

    Parameters are those of :func:`read_events`; at least one file is needed.
    """
    sources = [_source(path, fmt) for path, fmt in
               ((clicks, "yoochoose-clicks"), (buys, "yoochoose-buys")) if path is not None]
    if not sources:
        raise ValueError("read_yoochoose needs a clicks file, a buys file or both")
    return _read_columns(sources, strict=strict, chunk_rows=chunk_rows, limits=limits)


def iter_events(path: str | Path, fmt: str | None = None, *, strict: bool = False,
                chunk_rows: int = DEFAULT_CHUNK_ROWS, limits: EventLimits = EventLimits(),
                report: ReadReport | None = None) -> Iterator[Event]:
    """The good rows of one file as :class:`Event`, in file order (for replay).

    Parameters are those of :func:`read_events`; ``report``, when given, is
    filled in as the rows are read. The file and its format are checked before
    the first event is asked for.
    """
    path, fmt = _source(path, fmt)
    report = ReadReport() if report is None else report
    return _events(path, fmt, strict=strict, chunk_rows=chunk_rows, limits=limits,
                   report=report)


# --- from chunks to columns or events ---------------------------------------------------------

class _Vocabulary:
    """Interns ids to codes 0, 1, ... in order of first appearance."""

    def __init__(self):
        self._codes: dict[str, int] = {}

    def __len__(self) -> int:
        return len(self._codes)

    def encode(self, ids: np.ndarray) -> np.ndarray:
        """Codes of ``ids`` (str or UTF-8 bytes), adding the new ones."""
        uniques, first, inverse = np.unique(ids, return_index=True, return_inverse=True)
        order = np.argsort(first, kind="stable")
        codes = self._codes
        lookup = np.empty(len(uniques), dtype=np.int64)
        lookup[order] = np.fromiter(
            (codes.setdefault(key, len(codes)) for key in _texts(uniques[order])),
            dtype=np.int64, count=len(uniques))
        return lookup[inverse.reshape(-1)]

    def ids(self) -> np.ndarray:
        return np.array(list(self._codes), dtype=str)


class ColumnsBuilder:
    """Builds :class:`EventColumns` a chunk at a time, interning ids in order of first appearance.

    Memory holds the codes of the events added so far and the vocabularies,
    not the chunks.

    Examples
    --------
    >>> from shared.events import Event
    >>> builder = ColumnsBuilder()
    >>> builder.add_events([Event("e1", "u1", "s1", "i7", "view", 0, 1000),
    ...                     Event("e2", "u2", "s2", "i7", "buy", 3, 2000)])
    >>> columns = builder.build()
    >>> columns.user.tolist(), columns.item_ids.tolist()
    ([0, 1], ['i7'])
    """

    def __init__(self):
        self.users, self.sessions, self.items, self.categories = (
            _Vocabulary(), _Vocabulary(), _Vocabulary(), _Vocabulary())
        self.item_category = np.empty(0, dtype=np.int32)
        self.parts: dict[str, list[np.ndarray]] = {
            name: [] for name in ("user", "session", "item", "type", "ts_ms", "dwell_ms")}

    def add_events(self, events: Sequence[Event]) -> None:
        """Append parsed events, in order."""
        self._append(**_event_arrays(events))

    def _add_chunk(self, chunk: _Chunk) -> None:
        """Append the good rows of one chunk of a file."""
        self._append(user=chunk.user, session=chunk.session, item=chunk.item, type=chunk.type,
                     ts_ms=chunk.ts_ms, dwell_ms=chunk.dwell_ms, category=chunk.category)

    def _append(self, *, user: np.ndarray, session: np.ndarray, item: np.ndarray,
                type: np.ndarray, ts_ms: np.ndarray, dwell_ms: np.ndarray | None,
                category: np.ndarray | None) -> None:
        item = self.items.encode(item)
        dwell_ms = (np.full(len(item), -1, np.int32) if dwell_ms is None
                    else dwell_ms.astype(np.int32))
        for name, values in (("user", self.users.encode(user)),
                             ("session", self.sessions.encode(session)),
                             ("item", item), ("type", type.astype(np.int8)),
                             ("ts_ms", ts_ms.astype(np.int64)), ("dwell_ms", dwell_ms)):
            self.parts[name].append(values)
        self._note_categories(item, category)

    def _note_categories(self, item: np.ndarray, category: np.ndarray | None) -> None:
        """An item's category is the last one seen for it."""
        grown = np.full(len(self.items) - len(self.item_category), -1, dtype=np.int32)
        self.item_category = np.concatenate([self.item_category, grown])
        if category is None:
            return
        known = np.strings.str_len(category) > 0
        if not known.any():
            return
        codes = self.categories.encode(category[known])[::-1]
        last_items, first_in_reversed = np.unique(item[known][::-1], return_index=True)
        self.item_category[last_items] = codes[first_in_reversed]

    def build(self) -> EventColumns:
        """The columns of every event added so far."""
        dtypes = {"user": np.int64, "session": np.int64, "item": np.int64, "type": np.int8,
                  "ts_ms": np.int64, "dwell_ms": np.int32}
        arrays = {name: np.concatenate(parts) if parts else np.empty(0, dtypes[name])
                  for name, parts in self.parts.items()}
        return EventColumns(**arrays, user_ids=self.users.ids(),
                            session_ids=self.sessions.ids(), item_ids=self.items.ids(),
                            item_category=self.item_category, categories=self.categories.ids())


def _read_columns(sources: list[tuple[Path, str]], *, strict: bool, chunk_rows: int,
                  limits: EventLimits) -> tuple[EventColumns, ReadReport]:
    builder, report = ColumnsBuilder(), ReadReport()
    for path, fmt in sources:
        for chunk in _chunks(path, fmt, strict=strict, chunk_rows=chunk_rows, limits=limits,
                             report=report):
            builder._add_chunk(chunk)
    return builder.build(), report


def _events(path: Path, fmt: str, **options) -> Iterator[Event]:
    source = f"{fmt}:{path.name}"
    for chunk in _chunks(path, fmt, **options):
        if chunk.events is not None:
            yield from chunk.events
            continue
        n = len(chunk.line_no)
        user, session, item = (_texts(chunk.user), _texts(chunk.session), _texts(chunk.item))
        category = [None] * n if chunk.category is None else [c or None for c in
                                                             _texts(chunk.category)]
        price = ([None] * n if chunk.price is None else
                 [None if math.isnan(p) else p for p in chunk.price.tolist()])
        quantity = ([None] * n if chunk.quantity is None else
                    [q or None for q in chunk.quantity.tolist()])
        for i, (line_no, type_code, ts_ms) in enumerate(zip(
                chunk.line_no.tolist(), chunk.type.tolist(), chunk.ts_ms.tolist())):
            yield Event(f"{source}:{line_no}", user[i], session[i], item[i],
                        EVENT_TYPES[type_code], type_code, ts_ms, None, category[i], price[i],
                        quantity[i])


# --- reading a file in chunks -----------------------------------------------------------------

def _chunks(path: Path, fmt: str, *, strict: bool, chunk_rows: int, limits: EventLimits,
            report: ReadReport) -> Iterator[_Chunk]:
    spec = FORMATS[fmt]
    max_line = MAX_DELIMITED_LINE_BYTES if spec.delimited else limits.max_bytes
    report.paths.append(str(path))
    with _open(path) as fh:
        first_line_no = 1
        if spec.header is not None:
            _expect_header(fh, path, spec.header)
            first_line_no = 2
        for line_no, lines in _line_chunks(fh, first_line_no, chunk_rows, max_line):
            lengths = np.fromiter(map(len, lines), dtype=np.int64, count=len(lines))
            blank, oversized = lengths == 0, lengths > max_line
            keep = ~(blank | oversized)
            report.rows_read += int(np.count_nonzero(~blank))
            rows = _Rows(path, line_no[keep])
            rows.record(OVERSIZED, line_no[oversized], f"longer than {max_line} bytes")
            if not keep.all():
                lines = list(compress(lines, keep))
            chunk = spec.parse(rows.array(lines) if spec.delimited else lines, rows, limits)
            rows.settle(report, strict)
            yield chunk


def _line_chunks(fh: IO[bytes], first_line_no: int, chunk_rows: int,
                 max_line: int) -> Iterator[tuple[np.ndarray, list[bytes]]]:
    """(line numbers, lines) for ``chunk_rows`` lines at a time."""
    line_no, pending = first_line_no, []
    for lines in _line_blocks(fh, max_line):
        pending += lines
        while len(pending) >= chunk_rows:
            yield np.arange(line_no, line_no + chunk_rows), pending[:chunk_rows]
            pending, line_no = pending[chunk_rows:], line_no + chunk_rows
    if pending:
        yield np.arange(line_no, line_no + len(pending)), pending


def _line_blocks(fh: IO[bytes], max_line: int,
                 block_bytes: int = 1 << 20) -> Iterator[list[bytes]]:
    """The lines of ``fh`` without their ends, a block at a time.

    A line longer than ``max_line`` may come cut, but still longer than
    ``max_line``: memory stays bounded whatever the file holds.
    """
    tail = b""
    while block := fh.read(block_bytes):
        lines = block.split(b"\n")
        lines[0] = tail + lines[0]
        tail = lines.pop()[:max_line + 2]
        if b"\r" in block:
            lines = [line[:-1] if line.endswith(b"\r") else line for line in lines]
        yield lines
    if tail:
        yield [tail.removesuffix(b"\r")]


def _expect_header(fh: IO[bytes], path: Path, header: bytes) -> None:
    first = fh.readline(MAX_DELIMITED_LINE_BYTES).removeprefix(b"\xef\xbb\xbf").rstrip(b"\r\n")
    if first != header:
        raise FormatError(f"{path}: expected the header {header.decode()!r},"
                          f" found {first[:80].decode(errors='replace')!r}")


class _Rows:
    """The rows of one chunk while they are checked: which are still good, and the bad ones."""

    def __init__(self, path: Path, line_no: np.ndarray):
        self.path, self.line_no = path, line_no
        self.ok = np.ones(len(line_no), dtype=bool)
        self.bad: list[tuple[str, np.ndarray, str]] = []

    def record(self, code: str, line_no: np.ndarray, message: str) -> None:
        """Count the rows at ``line_no`` as bad for ``code``."""
        if len(line_no):
            self.bad.append((code, line_no, message))

    def reject(self, bad: np.ndarray, code: str, message: str) -> None:
        """Mark the still-good rows where ``bad`` holds as bad for ``code``."""
        bad = bad & self.ok
        if bad.any():
            self.bad.append((code, self.line_no[bad], message))
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

    def require(self, *ids: np.ndarray) -> None:
        for values in ids:
            self.reject(np.strings.str_len(values) == 0, EMPTY_FIELD, "an id is empty")

    def number(self, text: np.ndarray, dtype, code: str, message: str) -> np.ndarray:
        """Non-negative decimal numbers (digits, and a point for floats)."""
        digits = np.strings.replace(text, b".", b"", 1) if dtype is np.float64 else text
        good = np.strings.isdigit(digits) & (np.strings.str_len(digits) <= _MAX_INT_DIGITS)
        self.reject(~good, code, message)
        return np.where(good, text, b"0").astype(dtype)

    def iso_ms(self, text: np.ndarray) -> np.ndarray:
        """Epoch ms of UTC ISO-8601 times such as ``2014-04-07T10:51:09.277Z``."""
        self.reject(~np.strings.endswith(text, b"Z") | (np.strings.str_len(text) < 20),
                    BAD_TIMESTAMP, "expected an ISO-8601 UTC time ending in 'Z'")
        naive = np.strings.slice(np.where(self.ok, text, b"1970-01-01T00:00:00Z"), 0, -1)
        try:
            moments = naive.astype("datetime64[ms]")
        except ValueError:
            moments = np.array([_datetime64_ms(t) for t in naive], dtype="datetime64[ms]")
        ts_ms = moments.astype(np.int64)
        self.in_range(ts_ms)
        return ts_ms

    def in_range(self, ts_ms: np.ndarray) -> None:
        """Reject times outside 1970..9999 (``ts_ms`` may be float)."""
        self.reject((ts_ms < 0) | (ts_ms > MAX_TS_MS), BAD_TIMESTAMP,
                    "time is not a valid date between 1970 and 9999")

    def chunk(self, **columns) -> _Chunk:
        """The good rows; a scalar ``type`` is the same for every row."""
        ok = self.ok
        if np.isscalar(columns["type"]):
            columns["type"] = np.full(len(ok), columns["type"], dtype=np.int8)
        good = {name: None if values is None else values[ok] for name, values in columns.items()}
        return _Chunk(line_no=self.line_no[ok], **good)

    def settle(self, report: ReadReport, strict: bool) -> None:
        """Count the bad rows in ``report``; in strict mode raise on the first one."""
        if strict and self.bad:
            code, line_no, message = min(self.bad, key=lambda bad: bad[1].min())
            raise BadRowError(self.path, int(line_no.min()), code, message)
        for code, line_no, _ in self.bad:
            report.rows_bad[code] = report.rows_bad.get(code, 0) + len(line_no)


# --- the formats ------------------------------------------------------------------------------

def _yoochoose_clicks(lines: np.ndarray, rows: _Rows, limits: EventLimits) -> _Chunk:
    session, ts, item, category = rows.split(lines, b",", 4)
    rows.require(session, item)
    ts_ms = rows.iso_ms(ts)
    category = np.where(category == b"0", b"", category)
    return rows.chunk(user=session, session=session, item=item, type=EVENT_TYPE_CODES["click"],
                      ts_ms=ts_ms, category=category)


def _yoochoose_buys(lines: np.ndarray, rows: _Rows, limits: EventLimits) -> _Chunk:
    session, ts, item, price_text, quantity_text = rows.split(lines, b",", 5)
    rows.require(session, item)
    ts_ms = rows.iso_ms(ts)
    price = rows.number(price_text, np.float64, BAD_PRICE, "price is not a number >= 0")
    rows.reject(price > limits.max_price, BAD_PRICE, f"price above {limits.max_price}")
    quantity = rows.number(quantity_text, np.int64, BAD_QUANTITY,
                           "quantity is not an integer >= 0")
    rows.reject(quantity > limits.max_quantity, BAD_QUANTITY,
                f"quantity above {limits.max_quantity}")
    return rows.chunk(user=session, session=session, item=item, type=EVENT_TYPE_CODES["buy"],
                      ts_ms=ts_ms, price=np.where(price > 0, price, np.nan), quantity=quantity)


def _session_rec(lines: np.ndarray, rows: _Rows, limits: EventLimits) -> _Chunk:
    session, item, time_text = rows.split(lines, b"\t", 3)
    rows.require(session, item)
    ms = rows.number(time_text, np.float64, BAD_TIMESTAMP, "Time is not epoch seconds") * 1000
    rows.in_range(ms)
    ts_ms = np.rint(np.where(rows.ok, ms, 0)).astype(np.int64)
    return rows.chunk(user=session, session=session, item=item, type=EVENT_TYPE_CODES["click"],
                      ts_ms=ts_ms)


def _retailrocket(lines: np.ndarray, rows: _Rows, limits: EventLimits) -> _Chunk:
    ts_text, visitor, event, item, _ = rows.split(lines, b",", 5)
    rows.require(visitor, item)
    ts_ms = rows.number(ts_text, np.int64, BAD_TIMESTAMP, "timestamp is not epoch milliseconds")
    rows.in_range(ts_ms)
    type_code = np.full(len(lines), -1, dtype=np.int8)
    for name, type_name in _RETAILROCKET_TYPES.items():
        type_code[event == name] = EVENT_TYPE_CODES[type_name]
    rows.reject(type_code < 0, UNKNOWN_TYPE,
                f"event is not one of {[name.decode() for name in _RETAILROCKET_TYPES]}")
    return rows.chunk(user=visitor, session=visitor, item=item, type=type_code, ts_ms=ts_ms)


def _jsonl(lines: list[bytes], rows: _Rows, limits: EventLimits) -> _Chunk:
    events, kwargs = [], vars(limits)
    for i, line in enumerate(lines):
        try:
            events.append(parse_event(line, **kwargs))
        except EventError as error:
            rows.ok[i] = False
            rows.record(error.code, rows.line_no[i:i + 1], error.message)
    return _Chunk(line_no=rows.line_no[rows.ok], events=events, **_event_arrays(events))


def _event_arrays(events: Sequence[Event]) -> dict[str, np.ndarray]:
    """The columns of parsed events, named as :class:`_Chunk` names them."""
    return {
        "user": np.array([e.user_id for e in events], dtype=str),
        "session": np.array([e.session_id for e in events], dtype=str),
        "item": np.array([e.item_id for e in events], dtype=str),
        "type": np.array([e.type_code for e in events], dtype=np.int8),
        "ts_ms": np.array([e.ts_ms for e in events], dtype=np.int64),
        "dwell_ms": np.array([-1 if e.dwell_ms is None else e.dwell_ms for e in events],
                             dtype=np.int32),
        "category": np.array([e.category or "" for e in events], dtype=str)}


#: Every format by name.
FORMATS: dict[str, _Format] = {
    "yoochoose-clicks": _Format(None, _yoochoose_clicks),
    "yoochoose-buys": _Format(None, _yoochoose_buys),
    "session-rec": _Format(_SESSION_REC_HEADER, _session_rec),
    "retailrocket": _Format(_RETAILROCKET_HEADER, _retailrocket),
    "jsonl": _Format(None, _jsonl, delimited=False),
}


# --- helpers ----------------------------------------------------------------------------------

def _source(path: str | Path, fmt: str | None) -> tuple[Path, str]:
    path = _existing(path)
    if fmt is None:
        return path, detect_format(path)
    if fmt not in FORMATS:
        raise FormatError(f"unknown format {fmt!r}; use one of {sorted(FORMATS)}")
    return path, fmt


def _existing(path: str | Path) -> Path:
    path = Path(path)
    if not path.is_file():
        raise FileNotFoundError(f"no such event file: {path}")
    return path


def _open(path: Path) -> IO[bytes]:
    if path.suffix == ".gz":
        return gzip.open(path, "rb")
    return open(path, "rb", buffering=1 << 20)


def _texts(values: np.ndarray) -> list[str]:
    if values.dtype.kind == "S":
        values = np.strings.decode(values, "utf-8")
    return values.tolist()


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
