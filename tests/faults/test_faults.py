"""Faults done to real worker processes on the real broker, each checked against an
uninterrupted run over the same events (:mod:`harness`, :mod:`scenarios`)."""
import scenarios


def _exact(result):
    verdict = result.verdict
    assert verdict.exact, verdict.problems()


def test_three_kill9_lose_nothing_and_leave_the_state_of_an_uninterrupted_run(setup):
    result = scenarios.kill9(setup)
    _exact(result)
    assert result.figures["users"] >= 1000 and result.verdict.events >= 30_000
    assert result.figures["recovery_s_max"] < 10, result.figures
    assert result.figures["exit_status"] == 0


def test_three_kill9_with_replacements_under_new_ids_lose_nothing_through_the_rebalances(setup):
    """Without static membership's shortcut: each restart is a new member, the group waits
    for the killed one's session and rebalances (stream/faust_fixes.py, change 3)."""
    result = scenarios.kill9(setup, replaced=True)
    _exact(result)
    timeout_s = float(scenarios.WORKER_ENV["RECSYS_SESSION_TIMEOUT_S"])
    assert result.figures["recovery_s_max"] < timeout_s + 10, result.figures


def test_adversarial_events_reach_the_dead_letter_topic_with_their_codes_and_copies_change_nothing(
        setup):
    result = scenarios.poison(setup)
    _exact(result)
    bad = sum(n for code, n in result.verdict.dead_letters.items())
    assert bad == result.figures["bad_events"], result.figures
    assert result.figures["duplicates_counted"] == result.figures["copies"]
    assert result.figures["health_status"] == 200
    assert result.figures["exit_status"] == 0


def test_an_exception_in_the_agent_sends_its_event_to_the_dead_letter_topic_or_stops_the_worker(
        setup):
    result = scenarios.agent_error(setup)
    _exact(result)
    assert result.verdict.dead_letters == {"processing_error": result.figures["list_errors"]}
    assert result.figures["write_error_marker"]
    assert result.figures["write_error_exit_status"] not in (0, None), result.figures
    assert result.figures["exit_status"] == 0
