"""The model benchmark (``python -m seqcourse.tools.bench_models`` and ``python -m seqcourse bench``) at tiny
sizes: it runs, prints its tables and writes JSON with the expected keys. No timing is asserted
(times vary run to run); the deterministic parts (saved bytes, backward work) are checked."""
import argparse
import json

import pytest
import torch

from seqcourse.tools import bench, bench_models

pytestmark = pytest.mark.usefixtures("one_thread")

TABLE_KEYS = {"recurrent", "recurrent_grid", "attention", "s4d", "linear_scan", "growth", "targets"}


def _check_report(report: dict) -> None:
    assert TABLE_KEYS | {"created", "environment", "seconds"} <= set(report)
    env = report["environment"]
    assert env["size_set"] == "tiny" and env["threads"] >= 1 and "GLIBC_TUNABLES" in env and "device" in env
    assert env["cpu_capability"] == torch.backends.cpu.get_cpu_capability()
    assert {(r["model"], r["pass"]) for r in report["recurrent"]} == {
        (m, p) for m in ("LSTM", "GRU", "RNN") for p in ("forward", "forward+backward")}
    for row in report["recurrent"]:
        assert row["readable_s"] > 0 and row["fast_s"] > 0 and row["torch_s"] > 0
        assert row["fast_ratio"] == pytest.approx(row["fast_s"] / row["torch_s"])
    assert [r["L"] for r in report["attention"]] == list(bench_models.TINY.attention_lengths)
    for row in report["attention"]:
        # The readable path keeps the (B, nh, L, L) weights for its backward; the fused kernel does not.
        assert row["ours_readable_saved_mb"] > row["ours_fast_saved_mb"] > 0
    grid = bench_models.TINY.grid  # every cell of the grid, for both models
    assert sorted((r["model"], r["batch"], r["T"], r["input"], r["hidden"], r["threads"])
                  for r in report["recurrent_grid"]) == sorted(
        (m, B, T, D, H, n) for m in ("LSTM", "GRU") for B in grid[0] for T in grid[1] for D in grid[2]
        for H in grid[3] for n in grid[4])
    for row in report["recurrent_grid"]:
        assert row["ratio"] == pytest.approx(row["readable_s"] / row["torch_s"])
        assert row["matmuls_s"] > 0
        assert row["rest_per_step_us"] == pytest.approx((row["readable_s"] - row["matmuls_s"]) / row["T"] * 1e6)
    # the readable loops' operations per step do not depend on the sizes: a count, not a time
    for model in ("LSTM", "GRU"):
        counts = {r["ops_per_step"] * r["T"] for r in report["recurrent_grid"] if r["model"] == model and r["T"] == 12}
        assert len(counts) == 1 and 20 < counts.pop() / 12 < 80
    assert [r["L"] for r in report["s4d"]] == [r["L"] for r in report["linear_scan"]] \
        == list(bench_models.TINY.scan_lengths)
    b, d, n = bench_models.TINY.scan
    for row in report["linear_scan"]:
        assert row["blelloch_over_blelloch"] == 1 and row["fast_over_blelloch"] > 0
        assert row["tensor_mb"] == b * row["L"] * d * n * 4 / 2 ** 20
        assert row["traffic_mb"] == pytest.approx(8 * row["tensor_mb"])
        # floor = 8 tensors / copy bandwidth (read + written bytes per second) = 4 copies of one tensor
        assert row["floor_s"] == pytest.approx(4 * row["copy_s"])
        assert row["fast_over_floor"] == pytest.approx(row["fast_s"] / row["floor_s"])
        assert row["fresh_floor_s"] == pytest.approx(3 * row["clone_s"] + row["copy_s"])
        assert row["blelloch_over_fresh_floor"] == pytest.approx(row["blelloch_s"] / row["fresh_floor_s"])
        # the fast loop saves a and h: two tensors of the scan's size, as the readable loop does
        assert row["fast_saved_mb"] == pytest.approx(2 * row["tensor_mb"])
        assert row["fast_backward_elements"] < row["blelloch_backward_elements"]
    assert {r["scan"] for r in report["growth"]} == {
        "linear scan, fast", "linear scan, blelloch", "linear scan, sequential", "linear scan, parallel",
        "S4D, convolution", "S4D, recurrence"}
    for row in report["growth"]:
        assert row["long_L"] == 4 * row["L"]
        assert 2 < row["memory_ratio"] < 5  # saved memory is linear in L for every scan
    for row in report["growth"]:
        if "work_ratio" in row:
            assert 3.5 < row["work_ratio"] < 4.5
    names = [t["target"] for t in report["targets"]]
    assert "LSTM readable fwd+bwd / torch.nn" in names and "GRU fast fwd+bwd / torch.nn" in names
    assert any(n.startswith("S4D recurrence / convolution") for n in names)
    assert any(n.startswith("linear scan: Blelloch / fast") for n in names)
    assert any(n.startswith("linear scan: fast / traffic floor") for n in names)
    assert any(n.startswith("LSTM readable fwd+bwd / torch.nn, worst of the grid") for n in names)
    assert all(isinstance(t["met"], bool) for t in report["targets"])


def test_bench_models_command_writes_json_and_prints_tables(tmp_path, capsys):
    threads = torch.get_num_threads()
    out = tmp_path / "models.json"
    assert bench_models.main(["--tiny", "--json", str(out), "--threads", "1"]) == 0
    assert torch.get_num_threads() == threads  # restored
    _check_report(json.loads(out.read_text()))
    text = capsys.readouterr().out
    for heading in ("Recurrent models vs torch.nn", "Multi-head self-attention", "S4D layer",
                    "Linear scan h_t", "Memory-traffic floor", "every cell of the grid", "Growth from L to 4L",
                    "Targets"):
        assert heading in text
    assert "targets met." in text and "TINY sizes" in text and "CPU capability" in text


def test_seqcourse_bench_runs_the_model_benchmark_after_the_notebooks(tmp_path, capsys):
    out = tmp_path / "m.json"
    assert bench.main(["--skip-notebooks", "--tiny", "--models-json", str(out)]) == 0
    _check_report(json.loads(out.read_text()))
    assert "Recurrent models vs torch.nn" in capsys.readouterr().out


def test_only_runs_the_tables_named(tmp_path, capsys):
    """--only scan,grid runs those two tables (and the growth and targets of what ran), nothing else."""
    out = tmp_path / "some.json"
    assert bench_models.main(["--tiny", "--only", "scan,grid", "--json", str(out)]) == 0
    report = json.loads(out.read_text())
    assert {"linear_scan", "recurrent_grid", "growth", "targets"} <= set(report)
    assert not {"recurrent", "attention", "s4d"} & set(report)
    assert {r["scan"] for r in report["growth"]} == {f"linear scan, {name}" for name in
                                                     ("fast", "blelloch", "sequential", "parallel")}
    names = [t["target"] for t in report["targets"]]
    assert any(n.startswith("linear scan: Blelloch / fast") for n in names)
    assert any(n.startswith("GRU readable fwd+bwd / torch.nn, worst of the grid") for n in names)
    assert not any(n.startswith(("S4D", "MHA", "LSTM readable fwd+bwd / torch.nn,")) and "grid" not in n
                   for n in names)
    for row in report["recurrent_grid"]:
        assert row["matmuls_ratio"] == pytest.approx(row["matmuls_s"] / row["torch_s"])
    text = capsys.readouterr().out
    assert "Linear scan h_t" in text and "every cell of the grid" in text and "matmuls x" in text
    for model in ("LSTM", "GRU"):  # under the grid, per model and thread count: what bounds the misses
        for threads in bench_models.TINY.grid[4]:
            line = next(l for l in text.splitlines() if l.startswith(f"{model}, {threads} thread(s): "))
            assert "every cell within 2.5x" in line or ("cells miss 2.5x" in line and "operations per step" in line)
    assert "S4D layer" not in text and "Multi-head" not in text and "Recurrent models vs" not in text
    report = bench_models.run(size_set="tiny", only=("s4d",))
    assert set(report) & {"s4d", "linear_scan"} == {"s4d"}
    assert {r["scan"] for r in report["growth"]} == {"S4D, convolution", "S4D, recurrence"}


def test_bad_options_exit_2(capsys):
    with pytest.raises(SystemExit) as info:
        bench_models.main(["--tiny", "--repeats", "0"])
    assert info.value.code == 2 and "--repeats: expected a positive integer" in capsys.readouterr().err
    with pytest.raises(SystemExit) as info:
        bench_models.main(["--threads", "-1"])
    assert info.value.code == 2 and "--threads: expected 0 (torch's default)" in capsys.readouterr().err
    with pytest.raises(SystemExit) as info:
        bench_models.main(["--quick", "--tiny"])
    assert info.value.code == 2 and "not allowed with argument" in capsys.readouterr().err
    with pytest.raises(ValueError, match=r"size_set must be one of \['full', 'quick', 'tiny'\]"):
        bench_models.run(size_set="huge")
    with pytest.raises(SystemExit) as info:
        bench_models.main(["--tiny", "--only", "scan,lstm"])
    assert info.value.code == 2 and "--only: expected comma-separated names of recurrent, grid" in capsys.readouterr().err
    with pytest.raises(ValueError, match=r"only must name one or more of \('recurrent', 'grid'"):
        bench_models.run(size_set="tiny", only=())


def test_both_commands_share_the_model_options():
    """``python -m seqcourse bench`` takes the model benchmark's options from bench_models itself,
    so the two accept the same values with the same defaults (e.g. --threads 0: torch's own)."""
    def model_options(parser):
        return {a.dest: (a.default, a.type, a.help) for a in parser._actions
                if a.dest in ("size_set", "repeats", "device", "threads", "only")}

    ours = argparse.ArgumentParser()
    bench_models.add_arguments(ours)
    assert len(model_options(ours)) == 5 and model_options(bench._parser()) == model_options(ours)
    assert bench._parser().parse_args(["--threads", "0"]).threads == 0
    assert [bench._parser().parse_args(flags).size_set for flags in ([], ["--quick"], ["--tiny"])] == [
        "full", "quick", "tiny"]


def test_the_report_says_what_bounds_the_grid_cells_that_miss():
    """Deterministic rows: a cell whose matmuls alone exceed 2.5x is named as bounded by them; the
    spans of the operations per step, their cost and share are read off the rows."""
    def row(model, threads, ratio, matmuls_ratio, readable_s=1.0, T=100, ops=40.0):
        torch_s = readable_s / ratio
        matmuls_s = matmuls_ratio * torch_s
        return {"model": model, "batch": 8, "T": T, "input": 4, "hidden": 8, "threads": threads,
                "readable_s": readable_s, "torch_s": torch_s, "ratio": ratio, "matmuls_s": matmuls_s,
                "matmuls_ratio": matmuls_ratio, "rest_per_step_us": (readable_s - matmuls_s) / T * 1e6,
                "ops_per_step": ops}

    results = {"environment": {"device": "cpu", "threads": 1, "cpu_capability": "x", "GLIBC_TUNABLES": None,
                               "repeats": 1, "size_set": "tiny", "sizes": {"recurrent": (1, 2, 3)}},
               "recurrent_grid": [row("LSTM", 1, 4.0, 1.0), row("LSTM", 1, 3.0, 3.0), row("LSTM", 1, 2.0, 1.0),
                                  row("GRU", 1, 1.2, 0.5)],
               "growth": [], "targets": []}
    lines = bench_models.format_report(results).splitlines()
    lstm = next(l for l in lines if l.startswith("LSTM, 1 thread(s): "))
    assert "2 of 3 cells miss 2.5x" in lstm and "1.00 to 3.00x torch.nn" in lstm
    assert "(over 2.5x in 1: there they alone bound it)" in lstm
    # rest per step: 0.75 s and 0 s of 100 steps over 40 operations; shares 75% and 0%
    assert "40 tensor operations per step at 0.0 to 187.5 us each" in lstm and "0% to 75% of its time" in lstm
    assert "GRU, 1 thread(s): every cell within 2.5x of torch.nn." in lines
