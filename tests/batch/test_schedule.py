"""The scheduler: interval and cron parsing, exact next slots, and the run loop on a fake clock."""
import logging
import os
import signal
import threading
from datetime import UTC, datetime, timedelta

import pytest

from batch.schedule import Cron, Every, ScheduleError, parse_interval, run_periodically, stop_on_signals


def utc(*args) -> datetime:
    return datetime(*args, tzinfo=UTC)


# 2026-03-06 is a Friday.
FRIDAY = utc(2026, 3, 6, 10, 7, 30)


@pytest.mark.parametrize("text, seconds", [
    ("2s", 2.0), ("90s", 90.0), ("30m", 1800.0), ("1.5h", 5400.0), (" 10 m ", 600.0),
    ("0.5s", 0.5)])
def test_intervals_parse_to_seconds(text, seconds):
    assert parse_interval(text) == seconds


@pytest.mark.parametrize("text", ["30", "30x", "m", "", "-5m", "0s", "1d", "5 5m"])
def test_bad_intervals_are_refused(text):
    with pytest.raises(ScheduleError, match="interval"):
        parse_interval(text)


@pytest.mark.parametrize("expression, after, expected", [
    ("*/30 * * * *", FRIDAY, utc(2026, 3, 6, 10, 30)),
    ("*/30 * * * *", utc(2026, 3, 6, 10, 30), utc(2026, 3, 6, 11, 0)),  # strictly after
    ("* * * * *", utc(2026, 3, 6, 23, 59, 59), utc(2026, 3, 7, 0, 0)),
    ("0 9 * * 1-5", utc(2026, 3, 6, 9, 0), utc(2026, 3, 9, 9, 0)),  # Friday -> Monday
    ("15 3 1 * *", utc(2026, 12, 15), utc(2027, 1, 1, 3, 15)),  # over the year's end
    ("0 0 29 2 *", utc(2026, 3, 1), utc(2028, 2, 29)),  # the next leap day
    ("0 8 * * 7", FRIDAY, utc(2026, 3, 8, 8, 0)),  # 7 is Sunday
    ("0 8 * * 0", FRIDAY, utc(2026, 3, 8, 8, 0)),  # so is 0
    ("0 12 10 * 5", utc(2026, 3, 7), utc(2026, 3, 10, 12, 0)),  # the 10th or a Friday ...
    ("0 12 10 * 5", utc(2026, 3, 10, 12, 0), utc(2026, 3, 13, 12, 0)),
    ("0 12 10 * */2", utc(2026, 3, 7), utc(2026, 3, 10, 12, 0)),  # ... unless one starts *:
    ("0 12 10 * */2", utc(2026, 3, 10, 12, 0), utc(2026, 5, 10, 12, 0)),  # a 10th on Sunday
    ("5/20 1-3 * 6,12 *", FRIDAY, utc(2026, 6, 1, 1, 5)),
    ("5/20 1-3 * 6,12 *", utc(2026, 6, 1, 3, 45), utc(2026, 6, 2, 1, 5)),
])
def test_next_slot_of_a_cron_expression(expression, after, expected):
    assert Cron.parse(expression).next_after(after) == expected


def test_cron_fields_take_lists_ranges_and_steps():
    cron = Cron.parse("5,10-20/5,50 */6 1-31/10 */4 1,3-5")
    assert sorted(cron.minutes) == [5, 10, 15, 20, 50]
    assert sorted(cron.hours) == [0, 6, 12, 18]
    assert sorted(cron.days) == [1, 11, 21, 31]
    assert sorted(cron.months) == [1, 5, 9]
    assert sorted(cron.weekdays) == [1, 3, 4, 5]


def test_a_cron_expression_matches_its_minutes_whatever_the_seconds():
    cron = Cron.parse("30 10 * * 5")
    assert cron.matches(utc(2026, 3, 6, 10, 30, 59))
    assert not cron.matches(utc(2026, 3, 6, 10, 31))
    assert not cron.matches(utc(2026, 3, 7, 10, 30))  # a Saturday


@pytest.mark.parametrize("expression, complaint", [
    ("* * * *", "has 4 fields"),
    ("60 * * * *", "minute '60' is outside 0-59"),
    ("* 24 * * *", "hour '24'"),
    ("* * 0 * *", "day of month '0'"),
    ("* * * 13 *", "month '13'"),
    ("* * * * 8", "day of week '8'"),
    ("5-1 * * * *", "runs backwards"),
    ("*/0 * * * *", "step below 1"),
    ("a * * * *", "'a' where a number belongs"),
    ("1- * * * *", "'' where a number belongs"),
    ("1,,2 * * * *", "where a number belongs"),
    ("0 0 30 2 *", "never fires"),
])
def test_bad_cron_expressions_are_refused(expression, complaint):
    with pytest.raises(ScheduleError, match=complaint):
        Cron.parse(expression)


class FakeTime:
    """A clock that moves only when told."""

    def __init__(self, start: datetime):
        self.now = start

    def clock(self) -> datetime:
        return self.now

    def advance(self, seconds: float) -> None:
        self.now += timedelta(seconds=seconds)


class SleeplessStop(threading.Event):
    """A stop event whose waits move the fake clock instead of sleeping."""

    def __init__(self, time: FakeTime):
        super().__init__()
        self.time = time

    def wait(self, timeout=None) -> bool:
        self.time.advance(timeout)
        return self.is_set()


class Flaky(Exception):
    pass


def loop(schedule, jobs, *, max_runs=None, start=FRIDAY, survive=(Flaky,)):
    """Run ``jobs`` (callables taking the fake time) in turn; (runs, start times of the jobs)."""
    time = FakeTime(start)
    stop = SleeplessStop(time)
    started = []

    def job():
        started.append(time.now)
        return jobs[len(started) - 1](time, stop)

    runs = run_periodically(job, schedule, max_runs=max_runs, stop=stop, survive=survive,
                            clock=time.clock)
    return runs, started


def ok(time, stop):
    return "published"


def test_an_interval_runs_at_once_then_start_to_start(caplog):
    caplog.set_level(logging.INFO, logger="batch.schedule")
    runs, started = loop(Every(10), [ok] * 3, max_runs=3)
    assert runs == 3
    assert started == [FRIDAY + timedelta(seconds=s) for s in (0, 10, 20)]
    assert "run 3 done in 0.0 s: published" in caplog.text
    assert "stopped after 3 run(s)" in caplog.text


def test_a_cron_schedule_waits_for_its_first_slot():
    runs, started = loop(Cron.parse("*/30 * * * *"), [ok] * 2, max_runs=2)
    assert started == [utc(2026, 3, 6, 10, 30), utc(2026, 3, 6, 11, 0)]


def test_a_failed_run_is_logged_and_the_next_slot_tried(caplog):
    caplog.set_level(logging.INFO, logger="batch.schedule")
    def fails(time, stop):
        time.advance(2)
        raise Flaky("broker away")

    runs, started = loop(Every(10), [ok, fails, ok], max_runs=3)
    assert runs == 3 and started[2] == FRIDAY + timedelta(seconds=20)
    assert "run 2 failed after 2.0 s: Flaky: broker away" in caplog.text
    assert "run 3 done" in caplog.text


def test_an_unexpected_error_propagates():
    def breaks(time, stop):
        raise KeyError("bug")

    with pytest.raises(KeyError):
        loop(Every(10), [breaks], max_runs=2)


def test_a_run_that_overruns_its_slot_is_followed_at_once():
    def slow(time, stop):
        time.advance(25)
        return "slow"

    runs, started = loop(Every(10), [slow, ok], max_runs=2)
    assert started[1] == FRIDAY + timedelta(seconds=25)


def test_a_stop_during_a_run_lets_it_finish_and_ends_the_loop():
    def stops(time, stop):
        stop.set()
        return "last"

    runs, started = loop(Every(10), [ok, stops, ok])
    assert runs == 2


def test_the_first_signal_asks_for_a_stop_and_the_second_interrupts():
    before = signal.getsignal(signal.SIGTERM)
    with stop_on_signals() as stop:
        os.kill(os.getpid(), signal.SIGTERM)
        assert stop.wait(5)
        with pytest.raises(KeyboardInterrupt):
            os.kill(os.getpid(), signal.SIGINT)
            stop.wait(5)  # the handler raises here at the latest
    assert signal.getsignal(signal.SIGTERM) is before
