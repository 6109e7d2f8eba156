"""The periodic scheduler of the batch job: intervals, cron expressions and the run loop.

A schedule says when runs start: :class:`Every` an interval (``parse_interval("30m")``),
the first run at once; :class:`Cron` the times a cron expression matches on the wall
clock of a time zone (UTC unless given one; ``recsys retrain`` passes
``RECSYS_RETRAIN_TIMEZONE``). :func:`run_periodically` runs a job at each slot, logs each
run's start, outcome and duration, logs when the next run is due when it starts and after
every run (in the schedule's zone and in UTC), survives the failures it is told to
expect, and stops between runs when asked (:func:`stop_on_signals`).

Cron expressions
----------------
They are croniter's (pinned in ``pyproject.toml``): five fields, minute, hour, day of
month, month and day of week, each ``*``, a number, a name (``jan``-``dec`` in the month,
``sun``-``sat`` in the day of week, any case), a range ``a-b`` or a list of these, each with
an optional step (``*/15``, ``8-18/2``); ``L`` (the last day of the month) and ``mon#2``
(the second Monday) work too. Or one of ``@hourly``, ``@daily`` (``@midnight``),
``@weekly`` (Sunday 00:00), ``@monthly`` and ``@yearly`` (``@annually``). Day of week 0
and 7 are Sunday. When both day of month and day of week are given (neither is ``*``),
a day that matches either one fires, as in Vixie cron; unlike Vixie cron, a stepped
``*/2`` counts as given. A 6th field (croniter reads it as seconds) and croniter's
random and hashed fields (``R``, ``H``) are refused: every process would place them
differently. A bad expression raises :class:`ScheduleError` (a
:class:`~shared.config.ConfigError`) with one line that names the field to fix.

Daylight saving time
--------------------
croniter works out the matching wall-clock times on the calendar alone (it is given
naive local times), and this module places each on the time line with :mod:`zoneinfo`.
croniter's own DST adjustment is not used: it works with pytz zones only, and with a
zoneinfo zone croniter 5.0.1 runs ``0 9 * * *`` in Europe/Berlin at 10:00 on the day
the clocks go back and at 08:00 on the day they go forward. What happens instead, in a
zone with DST (Europe/Berlin's dates as the example):

- Clocks go forward (last Sunday of March, 02:00 becomes 03:00): a slot in the skipped
  hour is read as zoneinfo reads it, with the offset from before the jump, so
  ``30 2 * * *`` runs at 03:30 new time that night (01:30 UTC), then at 02:30 again.
  ``0 * * * *`` runs at 01:00 and then 03:00; nothing runs twice.
- Clocks go back (last Sunday of October, 03:00 becomes 02:00): a wall-clock time that
  occurs twice runs once, at its first occurrence (summer time). Since each next slot
  is the first wall-clock time after that of the previous run's start, the repeated
  hour runs nothing the second time: ``0 * * * *`` runs at 02:00 summer time and then
  03:00 winter time, two hours apart; ``30 2 * * *`` runs at 02:30 summer time once.
  A schedule started inside the repeated hour runs the slots still ahead in it.
- Every other slot keeps its wall-clock time, on the days the clocks change too:
  ``0 9 * * *`` runs at 09:00 local time all year, 07:00 UTC in summer, 08:00 in winter.

Example
-------
>>> from datetime import datetime, timezone
>>> cron = Cron.parse("*/30 9-17 * * mon-fri")
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
from datetime import UTC, datetime, timedelta, tzinfo
from typing import Protocol

from croniter import CroniterBadDateError, croniter

from shared.config import ConfigError

log = logging.getLogger(__name__)

_INTERVAL = re.compile(r"^\s*(\d+(?:\.\d*)?|\.\d+)\s*([smh])\s*$")
_UNIT_SECONDS = {"s": 1.0, "m": 60.0, "h": 3600.0}
#: The @ forms croniter knows, other than @reboot (which names no time).
KEYWORDS = ("@hourly", "@daily", "@midnight", "@weekly", "@monthly", "@yearly", "@annually")
#: (name, what the field takes) of the five fields, in order.
_FIELDS = (("minute", "0-59"), ("hour", "0-23"), ("day of month", "1-31 or L"),
           ("month", "1-12 or jan-dec"), ("day of week", "0-7 or sun-sat (0 and 7 are Sunday)"))
_FORM = ("write 5 fields, minute hour day-of-month month day-of-week (such as '*/30 * * * *'"
         " or '0 3 * * mon-fri'), or one of " + ", ".join(KEYWORDS))
#: Letters of a field: names, ``l`` (last), and croniter's random ``r`` and hashed ``h``.
_WORD = re.compile(r"[a-z]+")
#: Longest single sleep, so that a clock change is noticed.
_MAX_SLEEP_S = 60.0


class ScheduleError(ConfigError):
    """An interval or cron expression that cannot be used; the one-line message says what
    to write instead."""


class Schedule(Protocol):
    """When runs start, and the zone their times are shown in besides UTC."""

    @property
    def zone(self) -> tzinfo:
        """The zone of the schedule (UTC when it has none)."""

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
    """A run every ``seconds``, start to start, the first one at once.

    ``zone`` changes no slot; the log shows the times in it besides UTC.
    """

    seconds: float
    zone: tzinfo = UTC

    def first_at(self, now: datetime) -> datetime:
        return now

    def next_after(self, moment: datetime) -> datetime:
        return moment + timedelta(seconds=self.seconds)

    def __str__(self) -> str:
        return f"every {self.seconds:g} s"


@dataclass(frozen=True)
class Cron:
    """The times a cron expression matches on the wall clock of ``zone``.

    See the module docstring for the expressions taken and for what happens when
    the clocks change.

    Attributes
    ----------
    text : str
        The expression, its fields separated by one space.
    zone : tzinfo
        Whose wall clock the expression reads, a :class:`zoneinfo.ZoneInfo` or UTC.
    """

    text: str
    zone: tzinfo = UTC

    @classmethod
    def parse(cls, text: str, zone: tzinfo = UTC) -> Cron:
        """The schedule of a cron expression in ``zone``.

        Raises
        ------
        ScheduleError
            When the expression does not have 5 fields (or is no known @ form), a
            field is malformed or out of range, or the expression never fires
            (``0 0 30 2 *``).

        Examples
        --------
        >>> Cron.parse(" @Daily ").text, Cron.parse("0  3 * *   MON-fri").text
        ('@daily', '0 3 * * mon-fri')
        """
        fields = text.split()
        if len(fields) == 1 and fields[0].startswith("@"):
            expression = fields[0].lower()
            if expression not in KEYWORDS:
                raise ScheduleError(f"cron expression {text!r}: {fields[0]} is not an @ form"
                                    f" croniter knows; {_FORM}")
        elif len(fields) != 5:
            raise ScheduleError(f"cron expression {text!r} has {len(fields)} field(s), not 5;"
                                f" {_FORM}")
        else:
            for index, field in enumerate(fields):
                _check_field(text, index, field)
            expression = " ".join(fields).lower()
        try:
            croniter(expression, datetime(2000, 1, 1)).get_next(datetime)
        except CroniterBadDateError:
            raise ScheduleError(f"cron expression {text!r} never fires: no date has that day"
                                f" of month in those months; {_FORM}") from None
        except ValueError as exc:  # croniter's errors are ValueErrors
            raise ScheduleError(f"cron expression {text!r} is not valid ({exc}); {_FORM}") from None
        return cls(text=expression, zone=zone)

    def first_at(self, now: datetime) -> datetime:
        return self.next_after(now)

    def next_after(self, moment: datetime) -> datetime:
        """The first slot strictly after ``moment`` (timezone-aware), at second 0, in UTC.

        The slot is the first wall-clock time in :attr:`zone` after ``moment``'s
        that the expression matches, placed on the time line as the module
        docstring says.
        """
        wall = moment.astimezone(self.zone).replace(tzinfo=None)
        local = croniter(self.text, wall).get_next(datetime)
        return _instant(local, self.zone, after=moment.astimezone(UTC))

    def matches(self, moment: datetime) -> bool:
        """Whether ``moment``'s minute, on the wall clock of :attr:`zone`, is a slot."""
        wall = moment.astimezone(self.zone).replace(tzinfo=None, second=0, microsecond=0)
        return bool(croniter.match(self.text, wall))

    def __str__(self) -> str:
        return f"cron {self.text!r} in {zone_name(self.zone)}"


def zone_name(zone: tzinfo) -> str:
    """The IANA name of a zoneinfo zone, else the zone's own name (``UTC``).

    >>> from zoneinfo import ZoneInfo
    >>> zone_name(ZoneInfo("Europe/Berlin")), zone_name(UTC)
    ('Europe/Berlin', 'UTC')
    """
    return getattr(zone, "key", None) or zone.tzname(None) or str(zone)


def describe_moment(moment: datetime, zone: tzinfo) -> str:
    """``moment`` in ``zone`` and in UTC, for the log; once when ``zone`` is UTC.

    >>> from zoneinfo import ZoneInfo
    >>> at = datetime(2026, 3, 9, 8, 0, tzinfo=UTC)
    >>> describe_moment(at, ZoneInfo("Europe/Berlin"))
    '2026-03-09 09:00:00+01:00 Europe/Berlin (2026-03-09 08:00:00 UTC)'
    >>> describe_moment(at, UTC)
    '2026-03-09 08:00:00 UTC'
    """
    utc = moment.astimezone(UTC).strftime("%Y-%m-%d %H:%M:%S UTC")
    if zone_name(zone) in ("UTC", "Etc/UTC"):
        return utc
    local = moment.astimezone(zone).isoformat(sep=" ", timespec="seconds")
    return f"{local} {zone_name(zone)} ({utc})"


def run_periodically(job: Callable[[], str], schedule: Schedule, *, max_runs: int | None = None,
                     stop: threading.Event | None = None,
                     survive: tuple[type[BaseException], ...] = (),
                     clock: Callable[[], datetime] = lambda: datetime.now(UTC)) -> int:
    """Run ``job`` at every slot of ``schedule`` until stopped.

    It logs when the first run is due, then for each run its start, its
    outcome (the line ``job`` returns) or its error, with its duration, and
    when the next run is due; due times are shown in the schedule's zone and
    in UTC (:func:`describe_moment`). A run that ends after the next slot is
    followed at once by the next run.

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
    log.info("running %s%s; first run at %s", schedule,
             "" if max_runs is None else f", {max_runs} run(s) at most",
             describe_moment(due, schedule.zone))
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
            log.info("next run at %s", describe_moment(due, schedule.zone))
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


def _check_field(text: str, index: int, field: str) -> None:
    """Raise :class:`ScheduleError` naming field ``index`` of ``text`` when croniter refuses it."""
    name, takes = _FIELDS[index]
    if {"r", "h"} & set(_WORD.findall(field.lower())):
        raise ScheduleError(f"cron expression {text!r}: {name} {field!r} uses croniter's random"
                            f" or hashed values (R, H), which every process places differently;"
                            f" write {takes}")
    probe = ["*"] * 5
    probe[index] = field.lower()
    try:
        croniter(" ".join(probe))
    except ValueError:  # croniter's errors are ValueErrors
        raise ScheduleError(f"cron expression {text!r}: {name} {field!r} is not valid; write"
                            f" {takes}, or a list, range a-b or step */n of those") from None


def _instant(local: datetime, zone: tzinfo, *, after: datetime) -> datetime:
    """The instant, in UTC, of the naive wall-clock time ``local`` in ``zone`` that is later
    than ``after``.

    A time the zone skips gets the offset from before the jump (``fold=0``), a
    time it repeats its first occurrence, unless that is not later than
    ``after`` (a schedule inside the repeated hour): then its second.
    """
    first = local.replace(tzinfo=zone, fold=0).astimezone(UTC)
    if first > after:
        return first
    return local.replace(tzinfo=zone, fold=1).astimezone(UTC)


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
