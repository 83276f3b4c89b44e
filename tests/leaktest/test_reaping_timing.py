"""cleanup_race's timing of releases: late only when a look after the bound still listed the
connection; a release the listing could not time closely is reported, never passed off as timed."""

from wsguard.leaktest.profiles import get_profile
from wsguard.leaktest.scenarios.base import RoundResult
from wsguard.leaktest.scenarios.cleanup_race import check_reaping

PROFILE = get_profile("prod")
BOUND = PROFILE.cleanup_bound_s


def _checked(listed: float, gone: float | None) -> RoundResult:
    result = RoundResult()
    noticed = {"c1": 100.0}
    gone_by = {} if gone is None else {"c1": 100.0 + gone}
    check_reaping(result, PROFILE, 0.004, noticed, {"c1": 100.0 + listed}, gone_by)
    return result


def test_a_release_seen_within_the_bound_passes_with_its_delay_noted() -> None:
    result = _checked(listed=0.01, gone=0.05)
    assert result.failures == []
    assert any("+0.050 s" in note and "4 ms" in note for note in result.notes), result.notes


def test_a_connection_still_listed_after_the_bound_is_late() -> None:
    result = _checked(listed=BOUND + 0.3, gone=BOUND + 0.32)
    assert [failure.split(" (s)")[0] for failure in result.failures] == [
        "abandoned connections still listed this long"
    ], result.failures


def test_a_connection_never_released_fails() -> None:
    result = _checked(listed=BOUND + 0.05, gone=None)
    assert any("still held" in failure for failure in result.failures), result.failures


def test_a_release_between_two_far_apart_looks_is_reported_as_untimed_not_late() -> None:
    result = _checked(listed=0.01, gone=51.8)
    assert result.failures == []
    untimed = [note for note in result.notes if "could not be timed" in note]
    assert len(untimed) == 1, result.notes
    assert "(0.01, 51.8)" in untimed[0]
