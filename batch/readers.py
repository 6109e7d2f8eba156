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
(:mod:`batch.event_log`), build their columns with
:class:`batch.columns.ColumnsBuilder`. The formats themselves are in
:mod:`batch.formats`.

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
from collections.abc import Iterator
from itertools import compress
from pathlib import Path
from typing import IO

import numpy as np

from batch.columns import ColumnsBuilder, EventColumns, as_texts
from batch.formats import (BAD_COLUMNS, FORMATS, MAX_DELIMITED_LINE_BYTES, BadRowError, Chunk,
                           FormatError, ReadReport, Rows)
from shared.events import EVENT_TYPES, OVERSIZED, Event, EventLimits

__all__ = ["BAD_COLUMNS", "DEFAULT_CHUNK_ROWS", "FORMATS", "REFERENCE_DATA_DIR", "BadRowError",
           "FormatError", "ReadReport", "detect_format", "iter_events", "read_events",
           "read_yoochoose"]

#: The reference data the repository carries (``<repo>/data``), or ``$RECSYS_DATA_DIR``.
REFERENCE_DATA_DIR = Path(os.environ.get(
    "RECSYS_DATA_DIR", Path(__file__).resolve().parents[1] / "data"))

DEFAULT_CHUNK_ROWS = 1 << 18


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

def _read_columns(sources: list[tuple[Path, str]], *, strict: bool, chunk_rows: int,
                  limits: EventLimits) -> tuple[EventColumns, ReadReport]:
    builder, report = ColumnsBuilder(), ReadReport()
    for path, fmt in sources:
        for chunk in _chunks(path, fmt, strict=strict, chunk_rows=chunk_rows, limits=limits,
                             report=report):
            builder.add_arrays(user=chunk.user, session=chunk.session, item=chunk.item,
                               type=chunk.type, ts_ms=chunk.ts_ms, dwell_ms=chunk.dwell_ms,
                               category=chunk.category)
    return builder.build(), report


def _events(path: Path, fmt: str, **options) -> Iterator[Event]:
    source = f"{fmt}:{path.name}"
    for chunk in _chunks(path, fmt, **options):
        if chunk.events is not None:
            yield from chunk.events
            continue
        n = len(chunk.line_no)
        user, session, item = (as_texts(chunk.user), as_texts(chunk.session), as_texts(chunk.item))
        category = [None] * n if chunk.category is None else [c or None for c in
                                                             as_texts(chunk.category)]
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
            report: ReadReport) -> Iterator[Chunk]:
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
            rows = Rows(path, line_no[keep])
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
