"""The one timing helper: interleaved rounds, a warm-up, medians, and clear errors."""
import time

import pytest

from seqcourse.measure.timing import interleaved_medians, median_seconds


def test_interleaved_medians_runs_each_case_once_per_round_rotating_the_order():
    calls = []
    medians = interleaved_medians({k: (lambda k=k: calls.append(k)) for k in "abc"}, repeats=3)
    assert "".join(calls) == "abc" "bca" "cab" "abc"  # one warm-up round, then three timed ones
    assert set(medians) == set("abc") and all(v >= 0 for v in medians.values())


def test_the_median_ignores_one_slow_round():
    delays = iter([0.0, 0.05, 0.0, 0.0])  # warm-up, then one slow timed call among three

    def case():
        time.sleep(next(delays))

    assert median_seconds(case, repeats=3) < 0.02


def test_bad_arguments_are_named():
    with pytest.raises(ValueError, match="repeats"):
        interleaved_medians({"a": lambda: None}, repeats=0)
    with pytest.raises(TypeError, match="non-empty mapping"):
        interleaved_medians({}, repeats=1)
    with pytest.raises(TypeError, match="callables"):
        interleaved_medians({"a": 3}, repeats=1)
