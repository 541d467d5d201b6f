"""Tests of ``python -m seqcourse bench`` on small notebooks written into a temporary folder
(``--skip-models``: the model benchmark it runs afterwards is tested in tests/test_bench_models.py).

Each notebook run starts a real kernel (about 2 s here), so the file takes about 15 s.
"""
import json
import time
from pathlib import Path

import nbformat
import psutil
import pytest
from nbformat.v4 import new_code_cell, new_notebook

from seqcourse.tools import bench

MiB = 2**20


def write_notebook(path: Path, *sources: str) -> Path:
    nb = new_notebook(cells=[new_code_cell(source) for source in sources])
    nb.metadata["kernelspec"] = {"name": "python3", "display_name": "Python 3", "language": "python"}
    path.parent.mkdir(parents=True, exist_ok=True)
    nbformat.write(nb, path)
    return path


def test_default_run_measures_each_kernel_and_writes_json(tmp_path, monkeypatch, capsys):
    """Without arguments bench runs book/*.ipynb and writes _build/bench/notebooks.json; the
    kernel that allocates 320 MiB shows it in its peak, the trivial one does not."""
    monkeypatch.chdir(tmp_path)
    trivial = write_notebook(tmp_path / "book" / "a_trivial.ipynb", "x = 1 + 1", "print(x)")
    alloc = write_notebook(tmp_path / "book" / "b_alloc.ipynb",
                           f"block = b'\\x01' * (320 * {MiB})", "len(block)")
    before = {p.name: p.read_bytes() for p in (tmp_path / "book").iterdir()}

    assert bench.main(["--skip-models"]) == 0

    report = json.loads((tmp_path / "_build" / "bench" / "notebooks.json").read_text())
    assert report["ok"] is True
    assert report["budget"] == {"seconds": 25.0, "mb": 1536.0}
    assert "SEQCOURSE_FULL" in report["environment"]
    rows = {Path(row["notebook"]).name: row for row in report["notebooks"]}
    assert list(rows) == [trivial.name, alloc.name]  # sorted, as found in book/
    for row in rows.values():
        assert row["status"] == "ok" and row["error"] is None and row["within_budget"] is True
        assert row["wall_seconds"] > 0  # measured and recorded (its size depends on the machine)
    assert rows[alloc.name]["peak_mb"] >= 320
    assert rows[trivial.name]["peak_mb"] < 200
    assert rows[alloc.name]["peak_mb"] - rows[trivial.name]["peak_mb"] > 250

    out = capsys.readouterr().out
    assert "within budget" in out and "All 2 notebook(s) ran and stayed within the budget." in out
    # Nothing was written next to the notebooks, and the notebooks themselves are unchanged.
    assert {p.name: p.read_bytes() for p in (tmp_path / "book").iterdir()} == before


def test_failing_notebook_is_reported_and_exits_1(tmp_path, capsys):
    notebook = write_notebook(tmp_path / "raises.ipynb", "print('before')", "raise ValueError('boom')",
                              "print('never reached')")
    out_json = tmp_path / "out" / "bench.json"

    assert bench.main([str(notebook), "--json", str(out_json), "--skip-models"]) == 1

    report = json.loads(out_json.read_text())
    assert report["ok"] is False
    (row,) = report["notebooks"]
    assert row["status"] == "failed"
    assert row["error"] == "code cell 2 raised ValueError: boom"
    out = capsys.readouterr().out
    assert "failed" in out and "1 of 1 notebook(s) failed or exceeded the budget" in out


def test_notebook_over_the_memory_budget_exits_1(tmp_path):
    notebook = write_notebook(tmp_path / "trivial.ipynb", "1 + 1")
    out_json = tmp_path / "bench.json"

    assert bench.main([str(notebook), "--budget-mb", "10", "--json", str(out_json), "--skip-models"]) == 1

    (row,) = json.loads(out_json.read_text())["notebooks"]
    assert row["status"] == "ok"
    assert row["peak_mb"] > 10 and row["within_budget"] is False


def test_timeout_stops_the_notebook_and_its_kernel(tmp_path, monkeypatch):
    # The kernel inherits the environment, so this marker finds it among all processes. bench kills
    # it together with its runner; left alone, an orphaned ipykernel notices only within a second.
    marker = f"seqcourse-bench-test-{tmp_path.name}"
    monkeypatch.setenv("SEQCOURSE_BENCH_TEST_MARKER", marker)
    notebook = write_notebook(tmp_path / "sleeps.ipynb", "import time", "time.sleep(120)")
    out_json = tmp_path / "bench.json"

    assert bench.main([str(notebook), "--timeout", "6", "--json", str(out_json), "--skip-models"]) == 1

    (row,) = json.loads(out_json.read_text())["notebooks"]
    assert row["status"] == "timeout" and row["within_budget"] is False
    assert row["wall_seconds"] is None and "6 s" in row["error"]
    assert processes_with_marker(marker) == []


def processes_with_marker(marker: str, wait: float = 0.5) -> list[int]:
    """Live (not zombie) processes whose environment holds the marker, after up to ``wait`` s."""
    deadline = time.monotonic() + wait
    while True:
        alive = []
        for process in psutil.process_iter():
            try:
                if (process.environ().get("SEQCOURSE_BENCH_TEST_MARKER") == marker
                        and process.status() != psutil.STATUS_ZOMBIE):
                    alive.append(process.pid)
            except (psutil.NoSuchProcess, psutil.AccessDenied, psutil.ZombieProcess):
                pass
        if not alive or time.monotonic() > deadline:
            return alive
        time.sleep(0.2)


@pytest.mark.parametrize(
    "make_args",
    [
        lambda tmp: [str(tmp / "missing.ipynb")],
        lambda tmp: [str(tmp / "notes.txt")],
        lambda tmp: [str(tmp / "ok.ipynb"), "--budget-seconds", "0"],
        lambda tmp: [str(tmp / "ok.ipynb"), "--budget-mb", "lots"],
        lambda tmp: [],  # no book/ folder here: nothing to run
        lambda tmp: [str(tmp / "ok.ipynb"), "--skip-notebooks", "--skip-models"],
        lambda tmp: [str(tmp / "ok.ipynb"), "--repeats", "0"],
    ],
    ids=["missing", "not-a-notebook", "zero-budget", "non-numeric-budget", "nothing-found", "skip-both",
         "zero-repeats"],
)
def test_bad_arguments_exit_2_before_running_anything(tmp_path, monkeypatch, capsys, make_args):
    monkeypatch.chdir(tmp_path)
    (tmp_path / "notes.txt").write_text("not a notebook")
    write_notebook(tmp_path / "ok.ipynb", "1 + 1")
    with pytest.raises(SystemExit) as info:
        bench.main(make_args(tmp_path))
    assert info.value.code == 2
    assert "expected" in capsys.readouterr().err
    assert not (tmp_path / "_build").exists()
