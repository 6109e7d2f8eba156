"""Faults on the model path, done to real worker and retrain processes on the real broker
(:mod:`scenarios_models`): bad versions are refused without a crash or a step away from the
good model, and a retrain killed in its save leaves nothing a worker could load."""
import scenarios_models


def _exact(result):
    verdict = result.verdict
    assert verdict.exact, verdict.problems()


def test_bad_versions_are_refused_the_good_one_serves_on_and_a_newer_one_still_swaps_in(setup):
    result = scenarios_models.models(setup)
    details, figures = result.details, result.figures
    _exact(result)
    bad, good = details["bad"], details["good"]
    # Announced during the replay, refused while it still ran.
    assert figures["lists_when_refused"] < details["replay_events"], figures
    # Each of the three refused, for its own reason, the worker still on the good model.
    assert figures["refused"] == 3, details["refused"]
    reasons = details["refused"]
    assert "NaN or infinite" in reasons[bad["nan"]], reasons
    assert reasons[bad["nan"]].startswith(f"{bad['nan']}/item_factors.npy"), reasons
    assert reasons[bad["truncated"]].startswith(f"{bad['truncated']}/item_factors.npy"), reasons
    assert "outside the model store" in reasons[bad["outside"]], reasons
    assert figures["refusal_reasons_relative"], reasons
    assert details["served_after_refusals"] == good
    # No crash loop: a clean stop, and a restart that passes over the newer bad versions.
    assert details["stop_status"] == 0
    assert figures["restart_serves_good"], details
    assert set(bad.values()) <= details["refused_after_restart"].keys()
    # Every list before the newer version carries the good one; every list after, the newer.
    assert figures["served_version_constant"], details["versions_before_swap"]
    assert figures["swapped_after_refusals"], details["versions_after_swap"]
    assert details["newer"] not in details["refused_at_end"], details["refused_at_end"]
    assert details["exit_status"] == 0


def test_a_retrain_killed_in_its_save_leaves_no_version_and_the_next_one_swaps_in(setup):
    result = scenarios_models.retrain_kill(setup)
    details, figures = result.details, result.figures
    _exact(result)
    good = details["good"]
    # Right after the kill: the versions of before, and the dead save's folder, half written.
    assert details["killed_status"] == -9, details
    assert figures["lists_at_kill"] < details["replay_events"], figures  # during the replay
    assert details["versions_after_kill"] == [good], details
    assert details["entries_after_kill"] == [good], details
    assert details["temps_after_kill"] == [details["tmp_name"]], details
    assert "meta.json" not in details["tmp_files_after_kill"], details
    assert figures["killed_in_save"], details
    assert details["served_after_kill"] == good
    # The next retrain saves, removes the folder, and announces a version the worker swaps in.
    assert details["retrain_status"] == 0, details["retrain_stderr"]
    assert figures["tmp_removed"], details["temps_after_retrain"]
    assert details["versions_after_retrain"] == [good, details["newer"]], details
    assert details["same_weights"], "the retrain's signal weights differ from the verifier's rule"
    assert figures["served_version_constant"], details["versions_before_swap"]
    assert figures["swapped_after_kill"], details["versions_after_swap"]
    assert details["refused"] == {}, details["refused"]
    assert details["exit_status"] == 0
