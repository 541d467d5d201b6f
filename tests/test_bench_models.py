"""The model benchmark (``python -m seqcourse.bench_models`` and ``python -m seqcourse bench``) at tiny
sizes: it runs, prints its tables and writes JSON with the expected keys. No timing is asserted
(times vary run to run); the deterministic parts (saved bytes, backward work) are checked."""
import argparse
import json

import pytest
import torch

from seqcourse import bench, bench_models

pytestmark = pytest.mark.usefixtures("one_thread")

TABLE_KEYS = {"recurrent", "attention", "s4d", "selective_scan", "growth", "targets"}


def _check_report(report: dict) -> None:
    assert TABLE_KEYS | {"created", "environment", "seconds"} <= set(report)
    env = report["environment"]
    assert env["quick"] is True and env["threads"] >= 1 and "GLIBC_TUNABLES" in env and "device" in env
    assert {(r["model"], r["pass"]) for r in report["recurrent"]} == {
        (m, p) for m in ("LSTM", "GRU", "RNN") for p in ("forward", "forward+backward")}
    for row in report["recurrent"]:
        assert row["readable_s"] > 0 and row["fast_s"] > 0 and row["torch_s"] > 0
        assert row["fast_ratio"] == pytest.approx(row["fast_s"] / row["torch_s"])
    assert [r["L"] for r in report["attention"]] == list(bench_models.QUICK.attention_lengths)
    for row in report["attention"]:
        # The readable path keeps the (B, nh, L, L) weights for its backward; the fused kernel does not.
        assert row["ours_readable_saved_mb"] > row["ours_fast_saved_mb"] > 0
    assert [r["L"] for r in report["s4d"]] == [r["L"] for r in report["selective_scan"]] \
        == list(bench_models.QUICK.scan_lengths)
    assert {r["scan"] for r in report["growth"]} == {
        "selective scan, sequential", "selective scan, parallel", "S4D, convolution", "S4D, recurrence"}
    for row in report["growth"]:
        assert row["long_L"] == 4 * row["L"]
        assert 2 < row["memory_ratio"] < 5  # saved memory is linear in L for every scan
    for row in report["growth"]:
        if "work_ratio" in row:
            assert 3.5 < row["work_ratio"] < 4.5
    names = [t["target"] for t in report["targets"]]
    assert "LSTM readable fwd+bwd / torch.nn" in names and "GRU fast fwd+bwd / torch.nn" in names
    assert any(n.startswith("S4D recurrence / convolution") for n in names)
    assert any(n.startswith("selective scan sequential / parallel") for n in names)
    assert all(isinstance(t["met"], bool) for t in report["targets"])


def test_bench_models_command_writes_json_and_prints_tables(tmp_path, capsys):
    threads = torch.get_num_threads()
    out = tmp_path / "models.json"
    assert bench_models.main(["--quick", "--json", str(out), "--threads", "1"]) == 0
    assert torch.get_num_threads() == threads  # restored
    _check_report(json.loads(out.read_text()))
    text = capsys.readouterr().out
    for heading in ("Recurrent models vs torch.nn", "Multi-head self-attention", "S4D layer",
                    "Selective scan (Mamba)", "Growth from L to 4L", "Targets"):
        assert heading in text
    assert "targets met." in text and "QUICK sizes" in text


def test_seqcourse_bench_runs_the_model_benchmark_after_the_notebooks(tmp_path, capsys):
    out = tmp_path / "m.json"
    assert bench.main(["--skip-notebooks", "--quick", "--models-json", str(out)]) == 0
    _check_report(json.loads(out.read_text()))
    assert "Recurrent models vs torch.nn" in capsys.readouterr().out


def test_interleaved_medians_runs_each_case_once_per_round_rotating_the_order():
    calls = []
    medians = bench_models.interleaved_medians({k: (lambda k=k: calls.append(k)) for k in "abc"}, repeats=3)
    assert "".join(calls) == "abc" "bca" "cab" "abc"  # one warm-up round, then three timed ones
    assert set(medians) == set("abc") and all(v >= 0 for v in medians.values())
    with pytest.raises(ValueError, match="repeats"):
        bench_models.interleaved_medians({"a": lambda: None}, repeats=0)


def test_bad_options_exit_2(capsys):
    with pytest.raises(SystemExit) as info:
        bench_models.main(["--quick", "--repeats", "0"])
    assert info.value.code == 2 and "--repeats: expected a positive integer" in capsys.readouterr().err
    with pytest.raises(SystemExit) as info:
        bench_models.main(["--threads", "-1"])
    assert info.value.code == 2 and "--threads: expected 0 (torch's default)" in capsys.readouterr().err


def test_both_commands_share_the_model_options():
    """``python -m seqcourse bench`` takes the model benchmark's options from bench_models itself,
    so the two accept the same values with the same defaults (e.g. --threads 0: torch's own)."""
    def model_options(parser):
        return {a.dest: (a.default, a.type, a.help) for a in parser._actions
                if a.dest in ("quick", "repeats", "device", "threads")}

    ours = argparse.ArgumentParser()
    bench_models.add_arguments(ours)
    assert len(model_options(ours)) == 4 and model_options(bench._parser()) == model_options(ours)
    assert bench._parser().parse_args(["--threads", "0"]).threads == 0
