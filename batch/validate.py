"""``recsys validate``: check an event file against the event contract, row by row, sending nothing.

The file is read by the reader ``recsys produce`` replays it with
(:func:`batch.readers.iter_events`, in the format given or detected, under
the settings' event limits), so a row called bad here is a row ``recsys
produce`` skips, for the same reason. Each bad row is one line, in file
order, as it is found::

    events.jsonl:3: ts: 'ts' 1396867869 looks like seconds since the epoch (...) (bad_timestamp)
    events.jsonl:8: (row): unexpected character: line 1 column 2 (char 1) (not_json)

``field`` is the JSON field or the column at fault, ``(row)`` when the row
as a whole is (its size, encoding, JSON or number of columns); the reason
ends with its stable code (those of :mod:`shared.events`, plus
``bad_columns``). A summary line follows: ``N rows, M valid, K bad``.

Exit status: 0 when every row is valid, 1 when any is bad, 2 when the file
cannot be read as events at all (missing, unknown format, wrong header):
then one line on standard error says why.

Memory stays bounded by the reader's chunk, whatever the file's size or
number of bad rows: rows are reported as they are read, not kept.

Example
-------
::

    recsys validate events.jsonl
    recsys validate yoochoose-clicks.dat.gz --format yoochoose-clicks
"""
from __future__ import annotations

import argparse
import sys
import zlib
from collections import deque
from collections.abc import Callable, Sequence
from pathlib import Path

from batch.formats import BadRow
from batch.readers import FORMATS, FormatError, ReadReport, iter_events
from shared.config import Settings
from shared.events import DEFAULT_LIMITS, EventLimits

#: Bad rows a report names one by one before it only counts the rest.
MAX_BAD_ROWS_SHOWN = 20

DESCRIPTION = (
    "Check an event file against the event contract without sending anything. Every row is "
    "read as `recsys produce` reads it (the format from --format, else from the file's name "
    "or first line) under the event limits of the settings (RECSYS_MAX_*); each bad row is "
    "printed as FILE:LINE: field: reason (code), in file order, then a summary line "
    "(N rows, M valid, K bad). Exit status 0 when every row is valid, 1 when any is bad, "
    "2 when the file cannot be read as events.")


def validate_file(path: str | Path, fmt: str | None = None, *,
                  limits: EventLimits = DEFAULT_LIMITS,
                  on_bad_row: Callable[[BadRow], None] | None = None) -> ReadReport:
    """Read every row of ``path`` as ``recsys produce`` would, and report.

    Parameters
    ----------
    path : str or Path
    fmt : str, optional
        One of :data:`batch.readers.FORMATS`; detected when None.
    limits : EventLimits
        The bounds rows are held to (the worker's: ``Settings.event_limits()``).
    on_bad_row : callable, optional
        Called with each bad row, in file order, as it is read.

    Returns
    -------
    ReadReport
        ``rows_read``, ``rows_ok`` and ``rows_bad`` (counts by code).

    Raises
    ------
    FileNotFoundError, FormatError
        When the file is missing, its format unknown or its header wrong.

    Examples
    --------
    >>> from batch.readers import REFERENCE_DATA_DIR
    >>> report = validate_file(REFERENCE_DATA_DIR / "yoochoose-100k" / "test.txt")
    >>> summary_line(report)
    '13,568 rows, 13,568 valid, 0 bad'
    """
    report = ReadReport(on_bad_row=on_bad_row)
    deque(iter_events(path, fmt, limits=limits, report=report), maxlen=0)
    return report


def summary_line(report: ReadReport) -> str:
    """``N rows, M valid, K bad`` for a report."""
    bad = sum(report.rows_bad.values())
    return f"{report.rows_read:,} rows, {report.rows_ok:,} valid, {bad:,} bad"


def bad_row_lines(rows: Sequence[BadRow], n_bad: int) -> list[str]:
    """The lines of the first bad ``rows`` of ``n_bad`` in all, then ``... and N more``.

    >>> rows = [BadRow(Path("e.jsonl"), 2, "not_json", None, "unexpected end of data")]
    >>> bad_row_lines(rows, 3)
    ['e.jsonl:2: (row): unexpected end of data (not_json)', '... and 2 more']
    """
    lines = [str(row) for row in rows]
    if n_bad > len(rows):
        lines.append(f"... and {n_bad - len(rows):,} more")
    return lines


class FirstBadRows(list):
    """An ``on_bad_row`` that keeps the first ``limit`` bad rows (a list of :class:`BadRow`)."""

    def __init__(self, limit: int = MAX_BAD_ROWS_SHOWN):
        super().__init__()
        self.limit = limit

    def __call__(self, row: BadRow) -> None:
        if len(self) < self.limit:
            self.append(row)


def add_arguments(parser: argparse.ArgumentParser) -> None:
    """Options of ``recsys validate``: the file and its format."""
    parser.description = DESCRIPTION
    parser.add_argument("path", type=Path, metavar="FILE",
                        help="Event file to check (.gz is read too).")
    parser.add_argument("--format", metavar="FORMAT",
                        help=f"Format of the file, one of {', '.join(sorted(FORMATS))}"
                             " (default: told by the file's name or first line).")


def run(args: argparse.Namespace, settings: Settings) -> int:
    """Print the bad rows of ``args.path`` and the summary; 0 all valid, 1 some bad, 2 unreadable."""
    try:
        report = validate_file(args.path, args.format, limits=settings.event_limits(),
                               on_bad_row=print)
    except (FileNotFoundError, FormatError) as exc:
        print(f"recsys validate: {exc}", file=sys.stderr)
        return 2
    except (OSError, EOFError, zlib.error) as exc:  # unreadable, or a damaged .gz
        print(f"recsys validate: {args.path}: {exc}", file=sys.stderr)
        return 2
    print(summary_line(report))
    return 0 if report.rows_ok == report.rows_read else 1
