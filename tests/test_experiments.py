"""The trained-experiment machinery: claims, live checks, stored results, the runner's verify,
and the rule that every trained number in the book is checked as a claim, never by its digits."""
import json
import math
import re
from pathlib import Path

import nbformat
import pytest
import torch

import seqcourse
from seqcourse import experiments
from seqcourse.experiments import EXPERIMENTS, Claim, ClaimFailed, Experiment, check, load_results
from seqcourse.experiments import runner
from seqcourse.experiments.claims import check_live, failed_claims
from seqcourse.experiments.results import Stat, statistics

ROOT = Path(__file__).resolve().parents[1]
TOY = Experiment(name="toy", notebook="book/toy.ipynb", description="a toy", metrics=("a", "b"),
                 claims=(Claim("a", ">=", 0.9), Claim("a", ">=", "b", 0.2)), tolerance=0.05)


def test_claim_margin_is_on_the_safe_side():
    assert Claim("a", ">=", 0.5, 0.1).holds({"a": 0.6})
    assert not Claim("a", ">=", 0.5, 0.1).holds({"a": 0.59})
    assert Claim("a", "<=", 0.5, 0.1).holds({"a": 0.4})
    assert not Claim("a", "<=", 0.5, 0.1).holds({"a": 0.41})
    assert not Claim("a", ">=", 0.5).holds({"a": float("nan")})
    assert str(Claim("a", ">=", "b", 0.2)) == "a >= b + 0.2"
    with pytest.raises(ValueError, match="op must be one of"):
        Claim("a", "==", 1.0)
    with pytest.raises(ValueError, match="unknown metrics"):
        Experiment("x", "n", "d", ("a",), (Claim("c", ">", 0),), 0.1)


def test_check_live_names_each_broken_claim_and_range():
    check_live(TOY, {"a": 0.95, "b": 0.5}, {"a": [0.93, 0.97], "b": [0.4, 0.6]})
    with pytest.raises(ClaimFailed) as error:
        check_live(TOY, {"a": 0.85, "b": 0.7}, {"a": [0.93, 0.97], "b": [0.4, 0.6]})
    message = str(error.value)
    assert "a >= 0.9" in message and "a >= b + 0.2" in message
    assert "a = 0.8500 lies outside" in message and "b = 0.7000 lies outside" in message
    assert failed_claims(TOY, {"a": 0.95, "b": 0.5}) == []
    with pytest.raises(ValueError, match="missing \\['b'\\]"):
        check_live(TOY, {"a": 0.95}, None)
    with pytest.raises(TypeError, match="must be a number"):
        check_live(TOY, {"a": "high", "b": 0.1}, None)


def test_statistics_use_the_t_interval():
    s = statistics([1.0, 2.0, 3.0, 4.0, 5.0])
    assert s["mean"] == 3.0 and s["min"] == 1.0 and s["max"] == 5.0
    assert s["std"] == pytest.approx(1.5811388, rel=1e-6)
    assert s["ci95"][1] - 3.0 == pytest.approx(2.776 * 1.5811388 / 5 ** 0.5, rel=1e-6)
    assert str(Stat([1.0, 2.0, 3.0, 4.0, 5.0], ".2f")) == "3.00 ± 1.96 (5 seeds, range 1.00 to 5.00)"
    with pytest.raises(ValueError, match="at least 2"):
        statistics([1.0])


def test_check_records_instead_of_asserting_under_the_runner(tmp_path, monkeypatch):
    name = next(iter(EXPERIMENTS))
    experiment = EXPERIMENTS[name]
    record = tmp_path / "record.jsonl"
    monkeypatch.setenv("SEQCOURSE_RECORD", str(record))
    check(name, {m: -1e9 for m in experiment.metrics})  # would break any claim; recorded, not asserted
    line = json.loads(record.read_text())
    assert line["experiment"] == name and set(line["values"]) == set(experiment.metrics)


def _write_toy(directory, values, **changes):
    runs = [{m: values[m][i] for m in values} for i in range(len(values["a"]))]
    section = {"seeds": list(range(len(values["a"]))), "values": values,
               "stats": {m: statistics(v) for m, v in values.items()},
               "claims": [{"claim": str(c), "held_on_seeds": sum(c.holds(r) for r in runs)} for c in TOY.claims],
               "provenance": {k: 0 for k in runner.PROVENANCE_KEYS}}
    section.update(changes)
    document = {"experiment": "toy", "notebook": TOY.notebook, "description": TOY.description,
                "sizes": {"quick": section}}
    (directory / "toy.json").write_text(json.dumps(document))


def test_verify_catches_each_defect(tmp_path, monkeypatch):
    monkeypatch.setattr(runner, "EXPERIMENTS", {"toy": TOY})
    good = {"a": [0.95, 0.96, 0.97, 0.98, 0.99], "b": [0.1, 0.2, 0.3, 0.4, 0.5]}
    _write_toy(tmp_path, good)
    assert runner.verify(tmp_path) == []
    _write_toy(tmp_path, {k: v[:4] for k, v in good.items()})
    assert any("at least 5 distinct seeds" in p for p in runner.verify(tmp_path))
    _write_toy(tmp_path, good, stats={"a": statistics([0.0, 1.0]), "b": statistics(good["b"])})
    assert any("statistics of a do not match" in p for p in runner.verify(tmp_path))
    _write_toy(tmp_path, dict(good, a=[0.95, 0.96, 0.5, 0.98, 0.99]))
    assert any("held on 4 of 5 seeds" in p for p in runner.verify(tmp_path))
    _write_toy(tmp_path, good, provenance={"torch": "2.13.0"})
    assert any("provenance lacks" in p for p in runner.verify(tmp_path))
    (tmp_path / "stray.json").write_text("{}")
    assert any("stray.json: no registered experiment" in p for p in runner.verify(tmp_path))


def test_stored_results_are_complete_and_consistent():
    assert EXPERIMENTS, "the registry is empty"
    assert runner.verify(ROOT / "results") == []


def _cells(path):
    return [c for c in nbformat.read(path, as_version=4).cells if c.cell_type == "code"]


@pytest.mark.parametrize("name", sorted(EXPERIMENTS))
def test_each_experiment_is_checked_and_summarised_in_its_chapter(name):
    cells = _cells(ROOT / EXPERIMENTS[name].notebook)
    checks = [c for c in cells if f'experiments.check("{name}"' in c.source]
    assert len(checks) == 1, f"{name}: expected one experiments.check cell, found {len(checks)}"
    tags = checks[0].metadata.get("tags", [])
    assert "remove-cell" in tags and "nbval-ignore-output" not in tags and "nbval-skip" not in tags
    summaries = [c for c in cells if f'experiments.summary("{name}"' in c.source or f'experiments.stat("{name}"' in c.source]
    assert summaries and all("nbval-check-output" in c.metadata.get("tags", []) for c in summaries), \
        f"{name}: the prose's statistics must come from a cell that reads results/ and is compared to the digit"


@pytest.mark.parametrize("path", sorted((ROOT / "book").glob("*.ipynb")), ids=lambda p: p.name)
def test_no_trained_cell_is_compared_digit_for_digit(path):
    """A cell that trains is never tagged nbval-check-output: its digits depend on the CPU."""
    for cell in _cells(path):
        if "nbval-check-output" in cell.metadata.get("tags", []):
            assert not re.search(r"\btrain\(", cell.source), f"{path.name}: a compared cell calls train()"


def test_every_ignored_output_has_a_reason():
    for path in sorted((ROOT / "book").glob("*.ipynb")):
        for cell in _cells(path):
            if "nbval-ignore-output" in cell.metadata.get("tags", []):
                assert cell.metadata.get("nbval_ignore_reason"), \
                    f"{path.name}: an nbval-ignore-output cell without metadata nbval_ignore_reason:\n{cell.source[:200]}"


def test_setup_honours_the_environment(monkeypatch):
    monkeypatch.setattr(torch, "set_num_threads", lambda n: None)  # leave this process's threads alone
    monkeypatch.setenv("SEQCOURSE_DEVICE", "cpu")
    monkeypatch.setenv("SEQCOURSE_SEED", "7")
    monkeypatch.delenv("SEQCOURSE_FULL", raising=False)
    full, device, seed = seqcourse.setup()
    assert (full, device.type, seed) == (False, "cpu", 7)
    monkeypatch.setenv("SEQCOURSE_SEED", "-1")
    with pytest.raises(ValueError, match="SEQCOURSE_SEED must be a non-negative integer"):
        seqcourse.setup()


def test_recorded_spread_gives_scalars_per_metric_and_lists_per_line_with_nan_where_unrecorded(monkeypatch):
    monkeypatch.delenv("SEQCOURSE_FULL", raising=False)
    values = load_results("order_task")["sizes"]["quick"]["values"]
    spread = experiments.recorded_spread("order_task", {"RNN": "rnn", "3-gram": "ngram_counts"})
    assert spread == {"RNN": (min(values["rnn"]), max(values["rnn"])),
                      "3-gram": (min(values["ngram_counts"]), max(values["ngram_counts"]))}
    values = load_results("reversal_attention")["sizes"]["quick"]["values"]
    (lows, highs), = experiments.recorded_spread(
        "reversal_attention", {"additive": [None, "additive_three_quarters", "additive_longest"]}).values()
    assert math.isnan(lows[0]) and math.isnan(highs[0])
    assert lows[1:] == [min(values["additive_three_quarters"]), min(values["additive_longest"])]
    assert highs[1:] == [max(values["additive_three_quarters"]), max(values["additive_longest"])]
    (low, high), = experiments.recorded_spread("reversal_attention", {"a": "additive_longest"},
                                               transform=lambda v: 10 ** v).values()
    assert (low, high) == (10 ** min(values["additive_longest"]), 10 ** max(values["additive_longest"]))
    with pytest.raises(KeyError, match="no metric 'nope'"):
        experiments.recorded_spread("order_task", {"RNN": "nope"})
    n = len(load_results("order_task")["sizes"]["quick"]["seeds"])
    assert experiments.spread_label("order_task") == f"{n} recorded seeds, min to max"


def test_recorded_spread_is_empty_while_recording_and_where_nothing_is_stored(monkeypatch, tmp_path):
    monkeypatch.delenv("SEQCOURSE_FULL", raising=False)
    monkeypatch.setenv("SEQCOURSE_RECORD", str(tmp_path / "values.jsonl"))
    assert experiments.recorded_spread("order_task", {"RNN": "rnn"}) == {}
    monkeypatch.delenv("SEQCOURSE_RECORD")
    monkeypatch.setenv("SEQCOURSE_RESULTS", str(tmp_path))  # a folder without results/order_task.json
    assert experiments.recorded_spread("order_task", {"RNN": "rnn"}) == {}
    assert experiments.spread_label("order_task") == "recorded seeds, min to max"
