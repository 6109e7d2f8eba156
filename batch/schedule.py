"""The periodic scheduler of the batch job: intervals, cron expressions and the run loop.

A schedule says when runs start: :class:`Every` an interval (``parse_interval("30m")``),
the first run at once; :class:`Cron` the minutes a 5-field cron expression
matches, evaluated in UTC. :func:`run_periodically` runs a job at each slot,
logs each run's start, outcome and duration, survives the failures it is told
to expect, and stops between runs when asked (:func:`stop_on_signals`).

Example
-------
>>> from datetime import datetime, timezone
>>> cron = Cron.parse("*/30 9-17 * * 1-5")
>>> cron.next_after(datetime(2026, 3, 6, 17, 45, tzinfo=timezone.utc)).isoformat()
'2026-03-09T09:00:00+00:00'
>>> parse_interval("30m")
1800.0
"""
from __future__ import annotations

import logging
import re
import signal
import threading
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from dataclasses import dataclass
from datetime import UTC, datetime, timedelta
from typing import Protocol

log = logging.getLogger(__name__)

_INTERVAL = re.compile(r"^\s*(\d+(?:\.\d*)?|\.\d+)\s*([smh])\s*$")
_UNIT_SECONDS = {"s": 1.0, "m": 60.0, "h": 3600.0}
#: (name, lowest, highest) of the five cron fields, in order.
_CRON_FIELDS = (("minute", 0, 59), ("hour", 0, 23), ("day of month", 1, 31), ("month", 1, 12),
                ("day of week", 0, 7))
#: Longest gap between two slots of a cron expression that fires at all (Feb 29 across 2100).
_CRON_HORIZON = timedelta(days=366 * 9)
#: Longest single sleep, so that a clock change is noticed.
_MAX_SLEEP_S = 60.0


class ScheduleError(ValueError):
    """An interval or cron expression that cannot be used; the message says why."""


class Schedule(Protocol):
    """When runs start."""

    def first_at(self, now: datetime) -> datetime:
        """The first slot, given the time the schedule starts."""

    def next_after(self, moment: datetime) -> datetime:
        """The next slot after a run started at ``moment``."""


def parse_interval(text: str) -> float:
    """Seconds in an interval such as ``90s``, ``30m`` or ``1.5h``.

    Raises
    ------
    ScheduleError
        Without a unit, with another unit, or for zero.

    Examples
    --------
    >>> parse_interval("2s"), parse_interval("1.5h")
    (2.0, 5400.0)
    """
    match = _INTERVAL.match(text)
    if match is None:
        raise ScheduleError(f"interval {text!r} is not a number followed by s, m or h,"
                            f" such as 30m")
    seconds = float(match.group(1)) * _UNIT_SECONDS[match.group(2)]
    if seconds <= 0:
        raise ScheduleError(f"interval {text!r} must be longer than 0")
    return seconds


@dataclass(frozen=True)
class Every:
    """A run every ``seconds``, start to start, the first one at once."""

    seconds: float

    def first_at(self, now: datetime) -> datetime:
        return now

    def next_after(self, moment: datetime) -> datetime:
        return moment + timedelta(seconds=self.seconds)

    def __str__(self) -> str:
        return f"every {self.seconds:g} s"


@dataclass(frozen=True)
class Cron:
    """The minutes a 5-field cron expression matches: minute hour day-of-month month day-of-week.

    Each field is ``*`` or a comma-separated list of numbers and ranges
    ``a-b``, each optionally with a step (``*/15``, ``8-18/2``; ``5/20`` is
    ``5-59/20``). Day of week 0 and 7 are Sunday. As in Vixie cron, when both
    day of month and day of week are restricted (neither starts with ``*``) a
    day matching either one fires. Names (``mon``, ``jan``) and ``@hourly``
    forms are not supported.

    Attributes
    ----------
    text : str
        The expression.
    minutes, hours, days, months, weekdays : frozenset of int
        The values each field allows; weekdays 0-6 from Sunday.
    any_day, any_weekday : bool
        Whether day of month, day of week start with ``*``.
    """

    text: str
    minutes: frozenset[int]
    hours: frozenset[int]
    days: frozenset[int]
    months: frozenset[int]
    weekdays: frozenset[int]
    any_day: bool
    any_weekday: bool

    @classmethod
    def parse(cls, text: str) -> Cron:
        """The schedule of a cron expression.

        Raises
        ------
        ScheduleError
            When a field is malformed or out of range, or the expression
            never fires (``0 0 30 2 *``).

        Examples
        --------
        >>> sorted(Cron.parse("0,30 */6 * * *").hours)
        [0, 6, 12, 18]
        """
        fields = text.split()
        if len(fields) != 5:
            raise ScheduleError(f"cron expression {text!r} has {len(fields)} fields, not 5:"
                                f" minute hour day-of-month month day-of-week")
        minutes, hours, days, months, weekdays = (
            _cron_field(field, *spec, text) for field, spec in zip(fields, _CRON_FIELDS))
        cron = cls(text=" ".join(fields), minutes=minutes, hours=hours, days=days,
                   months=months, weekdays=frozenset(d % 7 for d in weekdays),
                   any_day=fields[2].startswith("*"), any_weekday=fields[4].startswith("*"))
        cron.next_after(datetime(2000, 1, 1, tzinfo=UTC))  # raises if it never fires
        return cron

    def matches(self, moment: datetime) -> bool:
        """Whether ``moment``'s minute is a slot (seconds are ignored)."""
        return (moment.minute in self.minutes and moment.hour in self.hours
                and self._day_matches(moment))

    def first_at(self, now: datetime) -> datetime:
        return self.next_after(now)

    def next_after(self, moment: datetime) -> datetime:
        """The first slot strictly after ``moment``, at second 0, in ``moment``'s zone.

        Raises
        ------
        ScheduleError
            When none comes within nine years (the expression never fires).
        """
        slot = moment.replace(second=0, microsecond=0) + timedelta(minutes=1)
        horizon = slot + _CRON_HORIZON
        while slot < horizon:
            if slot.month not in self.months:
                slot = _first_of_next_month(slot)
            elif not self._day_matches(slot):
                slot = slot.replace(hour=0, minute=0) + timedelta(days=1)
            elif slot.hour not in self.hours:
                slot = slot.replace(minute=0) + timedelta(hours=1)
            elif slot.minute not in self.minutes:
                slot += timedelta(minutes=1)
            else:
                return slot
        raise ScheduleError(f"cron expression {self.text!r} never fires")

    def _day_matches(self, moment: datetime) -> bool:
        day = moment.day in self.days
        weekday = (moment.weekday() + 1) % 7 in self.weekdays  # cron counts from Sunday
        if self.any_day or self.any_weekday:
            return day and weekday
        return day or weekday

    def __str__(self) -> str:
        return f"cron {self.text!r} (UTC)"


def run_periodically(job: Callable[[], str], schedule: Schedule, *, max_runs: int | None = None,
                     stop: threading.Event | None = None,
                     survive: tuple[type[BaseException], ...] = (),
                     clock: Callable[[], datetime] = lambda: datetime.now(UTC)) -> int:
    """Run ``job`` at every slot of ``schedule`` until stopped.

    Each run is logged: its start, then its outcome (the line ``job``
    returns) or its error, with its duration, and when the next run is due.
    A run that ends after the next slot is followed at once by the next run.

    Parameters
    ----------
    job : callable
        One run; returns a line saying what it did.
    schedule : Every or Cron
    max_runs : int, optional
        Stop after this many runs, failed ones included.
    stop : threading.Event, optional
        Set to stop: a wait ends at once, a run in progress is finished first.
    survive : tuple of exception types
        Errors of a run that are logged, after which the loop waits for the
        next slot; any other error propagates.
    clock : callable
        The current time, timezone-aware.

    Returns
    -------
    int
        The runs made.
    """
    stop = stop or threading.Event()
    runs, due = 0, schedule.first_at(clock())
    log.info("running %s%s", schedule, "" if max_runs is None else f", {max_runs} run(s) at most")
    while (max_runs is None or runs < max_runs) and _wait_until(due, stop, clock):
        runs += 1
        started = clock()
        log.info("run %d started", runs)
        try:
            outcome = job()
        except survive as exc:
            log.error("run %d failed after %.1f s: %s: %s", runs, _since(started, clock),
                      type(exc).__name__, exc)
        else:
            log.info("run %d done in %.1f s: %s", runs, _since(started, clock), outcome)
        due = max(schedule.next_after(started), clock())
        if max_runs is None or runs < max_runs:
            log.info("next run at %s", due.isoformat(timespec="seconds"))
    log.info("stopped after %d run(s)", runs)
    return runs


@contextmanager
def stop_on_signals(signals=(signal.SIGINT, signal.SIGTERM)) -> Iterator[threading.Event]:
    """An event set by the first of ``signals``; a second one interrupts at once.

    Only for the main thread, where Python runs signal handlers. The previous
    handlers come back on exit.
    """
    stop = threading.Event()

    def handle(signum, frame):
        if stop.is_set():
            raise KeyboardInterrupt
        stop.set()
        log.info("%s: stopping after the current run (send it again to stop at once)",
                 signal.Signals(signum).name)

    previous = {sig: signal.signal(sig, handle) for sig in signals}
    try:
        yield stop
    finally:
        for sig, handler in previous.items():
            signal.signal(sig, handler)


def _cron_field(text: str, name: str, low: int, high: int, expression: str) -> frozenset[int]:
    values: set[int] = set()
    for part in text.split(","):
        values.update(_cron_part(part, name, low, high, expression))
    return frozenset(values)


def _cron_part(part: str, name: str, low: int, high: int, expression: str) -> range:
    def bad(why: str) -> ScheduleError:
        return ScheduleError(f"cron expression {expression!r}: {name} {part!r} {why}")

    span, _, step_text = part.partition("/")
    step = _cron_number(step_text, bad) if step_text else 1
    if step < 1:
        raise bad("has a step below 1")
    if span == "*":
        first, last = low, high
    elif "-" in span:
        first, last = (_cron_number(end, bad) for end in span.split("-", 1))
    else:
        first = _cron_number(span, bad)
        last = high if step_text else first
    if not low <= first <= last <= high:
        raise bad(f"is outside {low}-{high} or runs backwards")
    return range(first, last + 1, step)


def _cron_number(text: str, bad: Callable[[str], ScheduleError]) -> int:
    if not text.isdigit():
        raise bad(f"has {text!r} where a number belongs")
    return int(text)


def _first_of_next_month(moment: datetime) -> datetime:
    year, month = divmod(moment.month, 12)
    return moment.replace(year=moment.year + year, month=month + 1, day=1, hour=0, minute=0)


def _wait_until(due: datetime, stop: threading.Event, clock: Callable[[], datetime]) -> bool:
    """Sleep until ``due``; False when ``stop`` was set first."""
    while not stop.is_set():
        remaining = (due - clock()).total_seconds()
        if remaining <= 0:
            return True
        stop.wait(min(remaining, _MAX_SLEEP_S))
    return False


def _since(started: datetime, clock: Callable[[], datetime]) -> float:
    return (clock() - started).total_seconds()
