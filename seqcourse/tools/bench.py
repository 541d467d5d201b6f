"""``python -m seqcourse bench``: run notebooks from top to bottom and measure each one, then run
the model benchmark (``seqcourse.tools.bench_models``).

Usage::

    python -m seqcourse bench [NOTEBOOK ...] [--json PATH] [--budget-seconds 25]
                              [--budget-mb 1536] [--timeout 1200]
                              [--skip-notebooks] [--skip-models] [--models-json PATH]
                              [--quick | --tiny] [--repeats N] [--device DEV] [--threads N]

Without notebook arguments it runs every ``book/*.ipynb`` below the current directory (run it
from the repository root, as ``make bench`` does). Each notebook runs in a fresh child process,
which executes the notebook with nbclient in a new kernel of the current Python environment (the
kernel's working directory is the notebook's folder, as in Jupyter). Nothing is written next to
the notebooks: the executed copy is discarded.

For each notebook it measures

- wall time: from just before the kernel starts until it has been shut down after the last cell,
  so it includes the kernel's start-up (about 3 s with ``import torch`` on the course machine)
  but not the child process's own start-up;
- peak memory: the kernel's peak resident set size. The child starts the kernel as its own child
  and waits for it at shutdown, so the kernel's peak is the child's
  ``getrusage(RUSAGE_CHILDREN).ru_maxrss``. The figure cannot fall below the child's own size
  when it started the kernel (about 50 MB), because Linux carries a process's high-water mark
  across ``exec``; for the same reason it is not measured from this process, which may hold
  torch. MB here means 2**20 bytes.

A notebook still running after ``--timeout`` seconds is stopped, kernel included, and reported
as "timeout".

It prints a table (notebook, status, wall time, peak memory, within budget), writes the same
numbers as JSON (default ``_build/bench/notebooks.json``), and returns 1 if any notebook failed,
timed out or exceeded the time or memory budget, 0 otherwise. The defaults are the quick-mode
budget of the course: 25 s and 1536 MB per notebook on a 2-core CPU.

After the notebook table it runs the model benchmark in this process (every from-scratch model
against its fastest in-library reference, as ratios; see ``seqcourse.tools.bench_models``, whose options
``--quick``, ``--tiny``, ``--repeats``, ``--device`` and ``--threads`` it passes on), prints its tables and writes
them to ``--models-json`` (default ``_build/bench/models.json``). Its missed targets are reported,
not counted in the exit status. ``--skip-notebooks`` / ``--skip-models`` run only one of the two.
"""
from __future__ import annotations

import argparse
import datetime
import json
import os
import platform
import subprocess
import sys
import tempfile
from dataclasses import asdict, dataclass
from pathlib import Path

from . import bench_models

DEFAULT_JSON = Path("_build") / "bench" / "notebooks.json"
DEFAULT_MODELS_JSON = Path("_build") / "bench" / "models.json"
# Environment settings that change what a notebook does or how fast it runs; recorded in the JSON.
RECORDED_ENV = ("SEQCOURSE_FULL", "SEQCOURSE_DEVICE", "GLIBC_TUNABLES", "OMP_NUM_THREADS")

# The child process, one per notebook. It is a standalone script (importing seqcourse would load
# torch into it) that executes the notebook with nbclient in a new kernel running this same Python,
# shuts the kernel down (which waits for it, so the kernel's peak memory enters this process's
# RUSAGE_CHILDREN), and writes status, error, wall time and the kernel's peak memory as JSON to
# the file named by its second argument. Its own start-up (importing nbformat and nbclient takes
# seconds) is not part of the notebook's time, and its own memory is not part of the peak.
_CHILD = r"""
import json, os, resource, sys, time
# nbformat validates with jsonschema, which imports rfc3987_syntax when it is installed; that
# import builds a parser grammar and costs several seconds per process. Nothing here needs the
# IRI format checks it provides.
sys.modules.setdefault("rfc3987_syntax", None)
import ipykernel.kernelspec
import nbformat
from jupyter_client.kernelspec import KernelSpecManager
from jupyter_client.manager import KernelManager
from nbclient import NotebookClient
from nbclient.exceptions import CellExecutionError

class CurrentPython(KernelSpecManager):
    # Always this interpreter, whatever other "python3" kernels are registered on the machine.
    def get_kernel_spec(self, kernel_name):
        return self.kernel_spec_class(resource_dir=ipykernel.kernelspec.RESOURCES,
                                      **ipykernel.kernelspec.get_kernel_dict())

path, result_path = sys.argv[1], sys.argv[2]
nb = nbformat.read(path, as_version=4)
km = KernelManager(kernel_name="python3", kernel_spec_manager=CurrentPython())
client = NotebookClient(nb, km=km, resources={"metadata": {"path": os.path.dirname(os.path.abspath(path))}})
status, error = "ok", None
start = time.perf_counter()
try:
    client.execute()
except CellExecutionError as exc:
    code_cells = [c for c in nb.cells if c.cell_type == "code"]
    where = next((f"code cell {i}" for i, c in enumerate(code_cells, 1)
                  if any(o.get("output_type") == "error" for o in c.get("outputs", []))), "a code cell")
    status, error = "failed", f"{where} raised {exc.ename}: {exc.evalue}"
except Exception as exc:
    status, error = "failed", f"{type(exc).__name__}: {exc}"
finally:
    if km.has_kernel:
        km.shutdown_kernel(now=False)  # a client given a kernel manager leaves the shutdown to us
wall = time.perf_counter() - start
maxrss = resource.getrusage(resource.RUSAGE_CHILDREN).ru_maxrss  # KiB on Linux, bytes on macOS
peak_mb = maxrss * (1 if sys.platform == "darwin" else 1024) / 2**20
with open(result_path, "w") as f:
    json.dump({"status": status, "error": error, "wall_seconds": wall, "peak_mb": peak_mb}, f)
"""


@dataclass
class NotebookResult:
    """What one notebook run measured. ``status`` is "ok", "failed" or "timeout"."""

    notebook: str
    status: str
    wall_seconds: float | None  # None when the run was stopped or its runner crashed
    peak_mb: float | None
    within_budget: bool
    error: str | None


def _kill_tree(pid: int) -> None:
    """Kill a child and every process below it (the kernel runs in a session of its own, so
    killing a process group would miss it)."""
    import psutil

    try:
        parent = psutil.Process(pid)
        processes = parent.children(recursive=True) + [parent]
    except psutil.NoSuchProcess:
        return
    for process in processes:
        try:
            process.kill()
        except psutil.NoSuchProcess:
            pass


def run_notebook(path: Path, *, timeout: float, budget_seconds: float, budget_mb: float) -> NotebookResult:
    """Execute the notebook at ``path`` in a child process and measure it (see the module doc)."""
    with tempfile.TemporaryDirectory(prefix="seqcourse-bench-") as tmp:
        result_file = Path(tmp) / "result.json"
        log_file = Path(tmp) / "child.log"
        env = dict(os.environ, PYDEVD_DISABLE_FILE_VALIDATION="1")
        with open(log_file, "wb") as log:
            child = subprocess.Popen(
                [sys.executable, "-c", _CHILD, str(path), str(result_file)],
                stdin=subprocess.DEVNULL, stdout=log, stderr=subprocess.STDOUT, env=env,
            )
            try:
                child.wait(timeout=timeout)
            except subprocess.TimeoutExpired:
                _kill_tree(child.pid)
                child.wait()
                return NotebookResult(str(path), "timeout", None, None, False,
                                      f"did not finish within {timeout:g} s; stopped")
        if not result_file.exists():
            tail = " | ".join(log_file.read_text(errors="replace").strip().splitlines()[-5:])
            return NotebookResult(str(path), "failed", None, None, False,
                                  f"runner exited with code {child.returncode}: {tail}")
        outcome = json.loads(result_file.read_text())
    wall, peak = outcome["wall_seconds"], outcome["peak_mb"]
    within = wall <= budget_seconds and peak <= budget_mb
    return NotebookResult(str(path), outcome["status"], round(wall, 2), round(peak, 1), within, outcome["error"])


def _positive(text: str) -> float:
    try:
        value = float(text)
    except ValueError:
        raise argparse.ArgumentTypeError(f"expected a positive number, got {text!r}") from None
    if not value > 0:
        raise argparse.ArgumentTypeError(f"expected a positive number, got {text!r}")
    return value


def _parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(
        prog="python -m seqcourse bench",
        description="Execute notebooks one at a time in fresh kernels; report wall time and peak "
                    "memory per notebook and whether each stays within the budget.",
    )
    parser.add_argument("notebooks", nargs="*", type=Path,
                        help="notebooks to run (default: every ./book/*.ipynb)")
    parser.add_argument("--json", type=Path, default=DEFAULT_JSON, metavar="PATH",
                        help=f"where to write the results as JSON (default: {DEFAULT_JSON})")
    parser.add_argument("--budget-seconds", type=_positive, default=25.0, metavar="S",
                        help="wall-time budget per notebook, in seconds (default: %(default)g)")
    parser.add_argument("--budget-mb", type=_positive, default=1536.0, metavar="MB",
                        help="peak-memory budget per notebook, in MB of 2**20 bytes (default: %(default)g)")
    parser.add_argument("--timeout", type=_positive, default=1200.0, metavar="S",
                        help="stop a notebook that runs longer than this many seconds (default: 1200)")
    parser.add_argument("--skip-notebooks", action="store_true", help="run only the model benchmark")
    parser.add_argument("--skip-models", action="store_true", help="run only the notebooks")
    parser.add_argument("--models-json", type=Path, default=DEFAULT_MODELS_JSON, metavar="PATH",
                        help=f"where to write the model benchmark as JSON (default: {DEFAULT_MODELS_JSON})")
    bench_models.add_arguments(parser.add_argument_group("model benchmark (seqcourse.tools.bench_models)"))
    return parser


def _table(results: list[NotebookResult]) -> str:
    width = max([len("notebook")] + [len(r.notebook) for r in results])
    lines = [f"{'notebook':<{width}}  {'status':<7}  {'wall s':>7}  {'peak MB':>8}  within budget"]
    for r in results:
        wall = "-" if r.wall_seconds is None else f"{r.wall_seconds:.1f}"
        peak = "-" if r.peak_mb is None else f"{r.peak_mb:.0f}"
        lines.append(f"{r.notebook:<{width}}  {r.status:<7}  {wall:>7}  {peak:>8}  "
                     f"{'yes' if r.within_budget else 'no'}")
    return "\n".join(lines)


def main(argv: list[str] | None = None) -> int:
    """Command-line entry point; returns the exit status (0: all notebooks ran and stayed within
    budget, and the model benchmark ran)."""
    parser = _parser()
    args = parser.parse_args(argv)
    if args.skip_notebooks and args.skip_models:
        parser.error("--skip-notebooks and --skip-models together leave nothing to run (expected at most one)")
    status = 0
    if not args.skip_notebooks:
        status = _run_notebooks(parser, args)
    if not args.skip_models:
        print()
        bench_models.run_and_report(args, args.models_json)
    return status


def _run_notebooks(parser: argparse.ArgumentParser, args: argparse.Namespace) -> int:
    """The notebook table: run, print, write the JSON; 1 if one failed or exceeded the budget."""
    notebooks = args.notebooks or sorted(Path("book").glob("*.ipynb"))
    if not notebooks:
        parser.error(f"no notebooks given, and none found in {Path('book').resolve()} (expected "
                     "book/*.ipynb below the current directory): run from the repository root or "
                     "name the notebooks")
    for path in notebooks:
        if path.suffix != ".ipynb" or not path.is_file():
            parser.error(f"{path} is not a notebook file (expected an existing .ipynb file)")

    print(f"Running {len(notebooks)} notebook(s); budget {args.budget_seconds:g} s and "
          f"{args.budget_mb:g} MB each.", flush=True)
    results = []
    for path in notebooks:
        result = run_notebook(path, timeout=args.timeout, budget_seconds=args.budget_seconds,
                              budget_mb=args.budget_mb)
        results.append(result)
        print(f"  {result.notebook}: {result.status}" + (f" ({result.error})" if result.error else ""),
              flush=True)

    bad = [r for r in results if r.status != "ok" or not r.within_budget]
    print()
    print(_table(results))
    print()
    if bad:
        print(f"{len(bad)} of {len(results)} notebook(s) failed or exceeded the budget: "
              + ", ".join(r.notebook for r in bad))
    else:
        print(f"All {len(results)} notebook(s) ran and stayed within the budget.")

    report = {
        "created": datetime.datetime.now(datetime.timezone.utc).isoformat(timespec="seconds"),
        "budget": {"seconds": args.budget_seconds, "mb": args.budget_mb},
        "environment": {
            "python": platform.python_version(),
            "platform": platform.platform(),
            "cpu_count": os.cpu_count(),
            **{name: os.environ.get(name) for name in RECORDED_ENV},
        },
        "ok": not bad,
        "notebooks": [asdict(r) for r in results],
    }
    args.json.parent.mkdir(parents=True, exist_ok=True)
    args.json.write_text(json.dumps(report, indent=2) + "\n")
    print(f"Results written to {args.json}")
    return 1 if bad else 0


if __name__ == "__main__":
    sys.exit(main())
