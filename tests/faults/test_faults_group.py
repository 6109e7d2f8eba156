"""A second worker joining and leaving, and the broker going away under a running worker,
each checked against an uninterrupted run over the same events (:mod:`scenarios_group`)."""
import scenarios_group


def _exact(result):
    verdict = result.verdict
    assert verdict.exact and not verdict.dead_letters, verdict.problems()


def test_a_worker_joining_and_leaving_loses_nothing_and_leaves_the_state_of_an_uninterrupted_run(
        setup):
    result = scenarios_group.rebalance(setup)
    figures = result.figures
    _exact(result)
    assert result.verdict.events >= 30_000 and figures["users"] >= 1000
    # Both workers wrote lists: w2 held partitions and handled events before its SIGTERM,
    # and w1 ended up reading every partition.
    assert figures["events_w2"] > 0 and figures["w2_partitions"], figures
    assert figures["events_w1"] > 0 and figures["events_w1_partitions"] == list(range(8)), figures
    # w1 took over the partitions w2 held once the group had given up on w2 (static
    # membership: a SIGTERM does not leave the group, so it waits the session timeout).
    assert figures["handover_s"] is not None, figures
    assert figures["handover_s"] < figures["session_timeout_s"] + 30, figures
    assert figures["exit_status_w1"] == 0 and figures["exit_status_w2"] == 0, figures


def test_a_broker_outage_of_20_s_loses_nothing_and_leaves_the_state_of_an_uninterrupted_run(
        setup):
    result = scenarios_group.outage(setup)
    figures = result.figures
    _exact(result)
    assert result.verdict.events >= 30_000 and figures["users"] >= 1000
    assert figures["outage_s"] >= 20, figures
    # The worker kept running through the outage (the scenario fails when it exits) and
    # made new lists once the broker was back; none of its messages was given up on.
    assert figures["lists_made_after_restart"] > 0, figures
    assert figures["recovery_s"] < 30, figures
    assert figures["send_failed"] == 0, figures
    assert figures["exit_status"] == 0, figures
