"""The scheduler: intervals and cron expressions (croniter's), their slots in a time zone
and across its DST changes, the errors that say what to write, the zone setting, and the
run loop on a fake clock."""
import logging
import os
import signal
import threading
from datetime import UTC, datetime, timedelta
from zoneinfo import ZoneInfo

import pytest

from batch.schedule import (Cron, Every, ScheduleError, describe_moment, parse_interval,
                            run_periodically, stop_on_signals)
from shared.config import ConfigError, load_settings

BERLIN = ZoneInfo("Europe/Berlin")
NEW_YORK = ZoneInfo("America/New_York")


def utc(*args) -> datetime:
    return datetime(*args, tzinfo=UTC)


def local(zone, *args, fold=0) -> datetime:
    return datetime(*args, tzinfo=zone, fold=fold)


def slots(cron: Cron, after: datetime, n: int) -> list[datetime]:
    """The next ``n`` slots, each found from the one before, as the run loop finds them."""
    found = []
    for _ in range(n):
        after = cron.next_after(after)
        found.append(after)
    return found


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
    ("0 12 10 * 5", utc(2026, 3, 7), utc(2026, 3, 10, 12, 0)),  # the 10th or a Friday
    ("0 12 10 * 5", utc(2026, 3, 10, 12, 0), utc(2026, 3, 13, 12, 0)),
    ("0 12 10 * *", utc(2026, 3, 10, 12, 0), utc(2026, 4, 10, 12, 0)),  # * is no restriction
    ("0 12 10 * */2", utc(2026, 3, 10, 12, 0), utc(2026, 3, 12, 12, 0)),  # */2 is (Thursday)
    ("5/20 1-3 * 6,12 *", FRIDAY, utc(2026, 6, 1, 1, 5)),
    ("5/20 1-3 * 6,12 *", utc(2026, 6, 1, 3, 45), utc(2026, 6, 2, 1, 5)),
    ("0 0 L * *", FRIDAY, utc(2026, 3, 31)),  # the last day of the month
    ("0 0 * * mon#2", FRIDAY, utc(2026, 3, 9)),  # the second Monday
])
def test_next_slot_of_a_cron_expression(expression, after, expected):
    assert Cron.parse(expression).next_after(after) == expected


@pytest.mark.parametrize("keyword, expected", [
    ("@hourly", utc(2026, 3, 6, 11)), ("@daily", utc(2026, 3, 7)), ("@midnight", utc(2026, 3, 7)),
    ("@weekly", utc(2026, 3, 8)),  # Sunday 00:00
    ("@monthly", utc(2026, 4, 1)), ("@yearly", utc(2027, 1, 1)), ("@annually", utc(2027, 1, 1)),
    ("@DAILY", utc(2026, 3, 7)),
])
def test_the_at_forms_are_their_five_fields(keyword, expected):
    assert Cron.parse(keyword).next_after(FRIDAY) == expected


def test_month_and_day_names_are_their_numbers_in_any_case():
    named = Cron.parse("0 9 * JAN-mar,Dec Mon-FRI")
    numbered = Cron.parse("0 9 * 1-3,12 1-5")
    after = FRIDAY
    for _ in range(60):
        after = named.next_after(after)
        assert after == numbered.next_after(after - timedelta(minutes=1))
    assert named.text == "0 9 * jan-mar,dec mon-fri"


def test_a_cron_expression_matches_its_minutes_whatever_the_seconds():
    cron = Cron.parse("30 10 * * fri")
    assert cron.matches(utc(2026, 3, 6, 10, 30, 59))
    assert not cron.matches(utc(2026, 3, 6, 10, 31))
    assert not cron.matches(utc(2026, 3, 7, 10, 30))  # a Saturday
    assert Cron.parse("30 11 * * fri", BERLIN).matches(utc(2026, 3, 6, 10, 30))


@pytest.mark.parametrize("expression, complaint", [
    ("* * * *", "has 4 field\\(s\\), not 5; write 5 fields"),
    ("* * * * * *", "has 6 field"),  # croniter would read the 6th as seconds
    ("", "has 0 field"),
    ("60 * * * *", "minute '60' is not valid; write 0-59"),
    ("* 24 * * *", "hour '24' is not valid; write 0-23"),
    ("* * 0 * *", "day of month '0' is not valid; write 1-31 or L"),
    ("* * * 13 *", "month '13' is not valid; write 1-12 or jan-dec"),
    ("* * * * 8", "day of week '8' is not valid; write 0-7 or sun-sat"),
    ("0 0 * mon *", "month 'mon' is not valid"),  # a day's name in the month
    ("0 0 * * jan", "day of week 'jan' is not valid"),
    ("*/0 * * * *", "minute '\\*/0' is not valid"),
    ("a * * * *", "minute 'a' is not valid"),
    ("1- * * * *", "minute '1-' is not valid"),
    ("1,,2 * * * *", "minute '1,,2' is not valid"),
    ("H * * * *", "croniter's random or hashed values"),
    ("0 R(0-5) * * *", "hour 'R\\(0-5\\)' uses croniter's random"),
    ("@often", "@often is not an @ form croniter knows"),
    ("@reboot", "@reboot is not an @ form"),
    ("0 0 30 2 *", "never fires"),
    ("0 0 31 2,4,6 *", "never fires"),
])
def test_a_bad_cron_expression_is_one_line_saying_what_to_write(expression, complaint):
    with pytest.raises(ScheduleError, match=complaint) as caught:
        Cron.parse(expression)
    message = str(caught.value)
    assert isinstance(caught.value, ConfigError)
    assert "\n" not in message and message.startswith(f"cron expression {expression!r}")
    assert "write" in message


def test_a_zone_moves_the_slots_to_its_wall_clock():
    cron = Cron.parse("0 9 * * mon-fri", BERLIN)
    assert cron.next_after(FRIDAY) == utc(2026, 3, 9, 8, 0)  # 09:00 CET
    assert Cron.parse("0 9 * * mon-fri", NEW_YORK).next_after(FRIDAY) == utc(2026, 3, 6, 14, 0)
    assert str(cron) == "cron '0 9 * * mon-fri' in Europe/Berlin"
    assert cron.next_after(FRIDAY).tzinfo is UTC


def test_a_daily_slot_keeps_its_wall_clock_time_over_both_dst_changes():
    cron = Cron.parse("0 9 * * *", BERLIN)
    spring = slots(cron, utc(2026, 3, 27, 12), 3)
    autumn = slots(cron, utc(2026, 10, 23, 12), 3)
    assert [s.astimezone(BERLIN).hour for s in spring + autumn] == [9] * 6
    assert [s.hour for s in spring] == [8, 7, 7]  # UTC: CET, then CEST from 29 March
    assert [s.hour for s in autumn] == [7, 8, 8]  # CEST, then CET from 25 October


def test_clocks_going_forward_run_a_skipped_slot_an_hour_later_by_the_new_clock():
    """2026-03-29 in Europe/Berlin: 02:00 CET becomes 03:00 CEST (01:00 UTC)."""
    daily = slots(Cron.parse("30 2 * * *", BERLIN), utc(2026, 3, 27, 12), 3)
    assert daily == [local(BERLIN, 2026, 3, 28, 2, 30), local(BERLIN, 2026, 3, 29, 3, 30),
                     local(BERLIN, 2026, 3, 30, 2, 30)]
    assert daily[1] == utc(2026, 3, 29, 1, 30)
    hourly = slots(Cron.parse("0 * * * *", BERLIN), utc(2026, 3, 28, 23, 30), 3)
    assert [h.astimezone(BERLIN).hour for h in hourly] == [1, 3, 4]  # one hour apart each
    assert [h - utc(2026, 3, 29) for h in hourly] == [timedelta(hours=h) for h in (0, 1, 2)]
    half_hourly = slots(Cron.parse("*/30 * * * *", BERLIN), utc(2026, 3, 29, 0, 10), 3)
    assert half_hourly == [utc(2026, 3, 29, 0, 30), utc(2026, 3, 29, 1), utc(2026, 3, 29, 1, 30)]


def test_clocks_going_back_run_a_repeated_slot_once_at_its_first_occurrence():
    """2026-10-25 in Europe/Berlin: 03:00 CEST becomes 02:00 CET (01:00 UTC)."""
    daily = slots(Cron.parse("30 2 * * *", BERLIN), utc(2026, 10, 23, 12), 3)
    assert daily == [utc(2026, 10, 24, 0, 30), utc(2026, 10, 25, 0, 30),  # 02:30 CEST
                     utc(2026, 10, 26, 1, 30)]  # 02:30 CET
    hourly = slots(Cron.parse("0 * * * *", BERLIN), utc(2026, 10, 24, 22, 30), 4)
    # 01:00 and 02:00 CEST, then 03:00 and 04:00 CET: the repeated 02:00 CET runs nothing.
    assert hourly == [utc(2026, 10, 24, 23), utc(2026, 10, 25, 0), utc(2026, 10, 25, 2),
                      utc(2026, 10, 25, 3)]


def test_a_schedule_started_in_the_repeated_hour_runs_the_slots_ahead_in_it():
    inside = local(BERLIN, 2026, 10, 25, 2, 10, fold=1)  # 02:10 CET, 01:10 UTC
    found = slots(Cron.parse("*/30 * * * *", BERLIN), inside, 2)
    assert found == [local(BERLIN, 2026, 10, 25, 2, 30, fold=1).astimezone(UTC),
                     utc(2026, 10, 25, 2, 0)]
    assert found[0] == utc(2026, 10, 25, 1, 30)


def test_new_york_changes_on_its_own_dates():
    """US clocks change at 02:00 local time: forward on 2026-03-08 (02:00-02:59 skipped),
    back on 2026-11-01 (01:00-01:59 twice)."""
    skipped = Cron.parse("30 2 * * *", NEW_YORK)
    assert slots(skipped, utc(2026, 3, 7, 12), 2) == [utc(2026, 3, 8, 7, 30),  # 03:30 EDT
                                                      utc(2026, 3, 9, 6, 30)]  # 02:30 EDT
    repeated = Cron.parse("30 1 * * *", NEW_YORK)
    assert slots(repeated, utc(2026, 10, 31, 12), 2) == [utc(2026, 11, 1, 5, 30),  # 01:30 EDT
                                                         utc(2026, 11, 2, 6, 30)]  # 01:30 EST


@pytest.mark.parametrize("zone, two_hour_gaps", [(BERLIN, 1), (NEW_YORK, 1), (UTC, 0)])
def test_over_a_year_hourly_slots_only_move_forward_and_skip_one_repeated_hour(zone,
                                                                              two_hour_gaps):
    cron = Cron.parse("0 * * * *", zone)
    gaps, at = [], utc(2026, 1, 1)
    for _ in range(8_760):
        following = cron.next_after(at)
        gaps.append(following - at)
        at = following
    assert set(gaps) <= {timedelta(hours=1), timedelta(hours=2)}
    assert gaps.count(timedelta(hours=2)) == two_hour_gaps  # the night the clocks go back


def test_times_are_described_in_the_zone_and_in_utc():
    assert describe_moment(utc(2026, 7, 1, 7), BERLIN) == (
        "2026-07-01 09:00:00+02:00 Europe/Berlin (2026-07-01 07:00:00 UTC)")
    assert describe_moment(utc(2026, 7, 1, 7), UTC) == "2026-07-01 07:00:00 UTC"
    assert describe_moment(utc(2026, 7, 1, 7), ZoneInfo("UTC")) == "2026-07-01 07:00:00 UTC"


def test_the_zone_setting_defaults_to_utc_and_takes_iana_names(tmp_path):
    assert load_settings({}).retrain_timezone == "UTC"
    assert load_settings({"RECSYS_RETRAIN_TIMEZONE": "Europe/Berlin"}).retrain_timezone == (
        "Europe/Berlin")
    path = tmp_path / "shop.toml"
    path.write_text('retrain_timezone = "America/New_York"\n')
    assert load_settings({}, config_file=path).retrain_timezone == "America/New_York"


@pytest.mark.parametrize("name", ["Europe/Berln", "europe/berlin", "Europe", "Mars/Olympus",
                                  "/etc/localtime", "../UTC", "+01:00"])
def test_an_unknown_zone_is_one_line_naming_the_setting(name, tmp_path):
    with pytest.raises(ConfigError, match="RECSYS_RETRAIN_TIMEZONE=.* it must be an IANA time"
                                          " zone name") as caught:
        load_settings({"RECSYS_RETRAIN_TIMEZONE": name})
    assert "\n" not in str(caught.value)
    path = tmp_path / "shop.toml"
    path.write_text(f'retrain_timezone = "{name}"\n')
    with pytest.raises(ConfigError, match="retrain_timezone="):
        load_settings({}, config_file=path)


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


def test_the_log_says_when_the_first_and_each_next_run_are_due_in_the_zone_and_utc(caplog):
    caplog.set_level(logging.INFO, logger="batch.schedule")
    runs, started = loop(Cron.parse("0 9 * * mon-fri", BERLIN), [ok] * 3, max_runs=3)
    assert started == [utc(2026, 3, 9, 8), utc(2026, 3, 10, 8), utc(2026, 3, 11, 8)]
    lines = [r.getMessage() for r in caplog.records]
    assert lines[0] == ("running cron '0 9 * * mon-fri' in Europe/Berlin, 3 run(s) at most;"
                        " first run at 2026-03-09 09:00:00+01:00 Europe/Berlin"
                        " (2026-03-09 08:00:00 UTC)")
    assert "next run at 2026-03-10 09:00:00+01:00 Europe/Berlin (2026-03-10 08:00:00 UTC)" in lines
    assert "next run at 2026-03-11 09:00:00+01:00 Europe/Berlin (2026-03-11 08:00:00 UTC)" in lines
    assert lines[-1] == "stopped after 3 run(s)" and lines[-2] == "run 3 done in 0.0 s: published"


def test_an_interval_logs_its_due_times_in_its_zone_too(caplog):
    caplog.set_level(logging.INFO, logger="batch.schedule")
    loop(Every(60, BERLIN), [ok] * 2, max_runs=2)
    assert ("first run at 2026-03-06 11:07:30+01:00 Europe/Berlin (2026-03-06 10:07:30 UTC)"
            in caplog.text)
    assert "next run at 2026-03-06 11:08:30+01:00 Europe/Berlin" in caplog.text


def test_a_failed_run_is_logged_and_the_next_slot_tried(caplog):
    caplog.set_level(logging.INFO, logger="batch.schedule")
    def fails(time, stop):
        time.advance(2)
        raise Flaky("broker away")

    runs, started = loop(Every(10), [ok, fails, ok], max_runs=3)
    assert runs == 3 and started[2] == FRIDAY + timedelta(seconds=20)
    assert "run 2 failed after 2.0 s: Flaky: broker away" in caplog.text
    assert "run 3 done" in caplog.text
    assert "next run at 2026-03-06 10:07:50 UTC" in caplog.text  # after the failed run too


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
