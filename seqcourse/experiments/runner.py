"""``python -m seqcourse experiments``: list, run and verify the trained experiments.

Usage (from the repository root)::

    python -m seqcourse experiments list
    python -m seqcourse experiments run NAME|NOTEBOOK|all [--seeds 5] [--first-seed 0]
                                        [--size quick|full] [--timeout 1200]
    python -m seqcourse experiments verify

An experiment is trained by its chapter notebook, so ``run`` executes that notebook from top to
bottom once per seed, in a fresh kernel (``seqcourse.tools``' notebook runner, the one ``make
bench`` uses), with ``SEQCOURSE_SEED`` set to the seed and ``SEQCOURSE_RECORD`` naming a file
into which the notebook's hidden ``experiments.check`` cells write their values instead of
asserting (``SEQCOURSE_FULL=1`` for ``--size full``, meant for a GPU). One run of a notebook
yields every experiment in it; naming one experiment writes only its file. It then writes
``results/<name>.json`` (schema in ``results``): per-seed values, mean, standard deviation,
min/max and 95% interval, how many seeds each claim held on, and the provenance (git commit,
torch, CPU model and capability, device, threads, wall time). It exits 1 when a claim failed on
any seed: the claim, or the experiment's size, must then change.

``verify`` checks every results file against the registry: present for every experiment, at
least 5 distinct seeds, statistics and claim counts that match the stored values, claims that
held on every seed, complete provenance. It prints each problem and exits 1 if there is one.
"""
from __future__ import annotations

import argparse
import datetime
import json
import os
import platform
import subprocess
import tempfile
from collections import defaultdict
from contextlib import contextmanager
from pathlib import Path

import torch
from tqdm.std import tqdm

from ..tools.bench import run_notebook
from .claims import Experiment
from .registry import EXPERIMENTS, get_experiment
from .results import RECORD_ENV, SIZES, results_dir, statistics

__all__ = ["MIN_SEEDS", "PROVENANCE_KEYS", "main", "provenance", "run_experiments", "verify"]

MIN_SEEDS = 5
PROVENANCE_KEYS = ("git_commit", "git_dirty", "torch", "python", "cpu_model", "cpu_capability",
                   "aten_cpu_capability", "device", "threads", "date", "wall_seconds")


def _cpu_model() -> str:
    try:
        for line in Path("/proc/cpuinfo").read_text().splitlines():
            if line.startswith("model name"):
                return line.split(":", 1)[1].strip()
    except OSError:
        pass
    return platform.processor() or platform.machine()


def _git(*args: str) -> str:
    try:
        return subprocess.run(["git", *args], capture_output=True, text=True, check=True).stdout.strip()
    except (OSError, subprocess.CalledProcessError):
        return "unknown"


def git_state() -> dict:
    """The commit the runs start from and whether tracked files differ from it. Taken once, before
    the first run: the results files a run writes would otherwise count as changes."""
    return {"git_commit": _git("rev-parse", "HEAD"),
            "git_dirty": _git("status", "--porcelain", "--untracked-files=no") not in ("", "unknown")}


def provenance(size: str, threads: list[int], wall_seconds: list[float], git: dict | None = None) -> dict:
    """Where and how a set of runs was made (``PROVENANCE_KEYS``); ``git`` from ``git_state()``."""
    return {
        **(git or git_state()),
        "torch": torch.__version__,
        "python": platform.python_version(),
        "cpu_model": _cpu_model(),
        "cpu_capability": torch.backends.cpu.get_cpu_capability(),
        "aten_cpu_capability": os.environ.get("ATEN_CPU_CAPABILITY", ""),
        "device": os.environ.get("SEQCOURSE_DEVICE") or ("cpu" if size == "quick" else "default"),
        "threads": sorted(set(threads)),
        "date": datetime.datetime.now(datetime.timezone.utc).isoformat(timespec="seconds"),
        "wall_seconds": [round(w, 2) for w in wall_seconds],
    }


@contextmanager
def _environment(**values: str | None):
    saved = {key: os.environ.get(key) for key in values}
    try:
        for key, value in values.items():
            if value is None:
                os.environ.pop(key, None)
            else:
                os.environ[key] = value
        yield
    finally:
        for key, value in saved.items():
            if value is None:
                os.environ.pop(key, None)
            else:
                os.environ[key] = value


def _targets(target: str) -> dict[str, list[Experiment]]:
    """notebook -> the experiments to write, for NAME, a notebook path, or ``all``."""
    if target == "all":
        chosen = list(EXPERIMENTS.values())
    elif target in EXPERIMENTS:
        chosen = [get_experiment(target)]
    else:
        chosen = [e for e in EXPERIMENTS.values() if Path(e.notebook) == Path(target) or Path(e.notebook).name == target]
        if not chosen:
            raise SystemExit(f"{target!r} is neither an experiment, a notebook with experiments, nor 'all'; "
                             f"experiments: {', '.join(sorted(EXPERIMENTS))}")
    by_notebook: dict[str, list[Experiment]] = defaultdict(list)
    for experiment in chosen:
        by_notebook[experiment.notebook].append(experiment)
    return by_notebook


def _section(experiment: Experiment, seeds: list[int], runs: list[dict], size: str,
             threads: list[int], walls: list[float], git: dict) -> dict:
    values = {m: [run[m] for run in runs] for m in experiment.metrics}
    return {
        "seeds": seeds,
        "values": values,
        "stats": {m: statistics(v) for m, v in values.items()},
        "claims": [{"claim": str(c), "held_on_seeds": sum(c.holds(run) for run in runs)} for c in experiment.claims],
        "provenance": provenance(size, threads, walls, git),
    }


def run_experiments(target: str, *, seeds: int = MIN_SEEDS, first_seed: int = 0, size: str = "quick",
                    timeout: float = 1200.0) -> int:
    """Run ``target``'s notebooks over ``seeds`` seeds and write their results files (module doc).
    Returns 1 when a notebook failed or a claim failed on some seed, else 0."""
    if size not in SIZES:
        raise SystemExit(f"--size must be one of {', '.join(SIZES)}; got {size!r}")
    # $SEQCOURSE_RESULTS when set (as results_dir() reads it), else results/ in the working folder
    out = results_dir() if os.environ.get("SEQCOURSE_RESULTS") else Path.cwd() / "results"
    out.mkdir(exist_ok=True)
    status = 0
    git = git_state()  # before any results file of this run is written
    seed_list = list(range(first_seed, first_seed + seeds))
    for notebook, experiments in _targets(target).items():
        runs: dict[str, list[dict]] = defaultdict(list)
        threads: list[int] = []
        walls: list[float] = []
        for seed in tqdm(seed_list, desc=Path(notebook).stem, unit="seed"):
            with tempfile.TemporaryDirectory(prefix="seqcourse-record-") as tmp:
                record = Path(tmp) / "record.jsonl"
                record.touch()
                with _environment(SEQCOURSE_SEED=str(seed), SEQCOURSE_FULL="1" if size == "full" else None,
                                  **{RECORD_ENV: str(record)}):
                    result = run_notebook(Path(notebook), timeout=timeout, budget_seconds=float("inf"),
                                          budget_mb=float("inf"))
                if result.status != "ok":
                    print(f"{notebook}, seed {seed}: {result.status}: {result.error}")
                    return 1
                walls.append(result.wall_seconds)
                lines = [json.loads(line) for line in record.read_text().splitlines() if line.strip()]
            for experiment in experiments:
                mine = [line for line in lines if line["experiment"] == experiment.name]
                if len(mine) != 1:
                    print(f"{notebook}, seed {seed}: expected one experiments.check({experiment.name!r}) call, "
                          f"recorded {len(mine)}")
                    return 1
                runs[experiment.name].append(mine[0]["values"])
                threads.append(mine[0]["threads"])
        for experiment in experiments:
            path = out / f"{experiment.name}.json"
            stored = json.loads(path.read_text()) if path.exists() else {}
            sizes = stored.get("sizes", {})
            sizes[size] = _section(experiment, seed_list, runs[experiment.name], size, threads, walls, git)
            document = {"experiment": experiment.name, "notebook": experiment.notebook,
                        "description": experiment.description, "sizes": sizes}
            path.write_text(json.dumps(document, indent=1) + "\n")
            print(f"wrote {path}")
            for claim in sizes[size]["claims"]:
                mark = "held" if claim["held_on_seeds"] == len(seed_list) else "FAILED on some seeds"
                print(f"  {claim['claim']}: held on {claim['held_on_seeds']} of {len(seed_list)} seeds ({mark})")
                if claim["held_on_seeds"] != len(seed_list):
                    status = 1
            for metric in experiment.metrics:
                s = sizes[size]["stats"][metric]
                print(f"  {metric}: mean {s['mean']:{experiment.fmt}}, range [{s['min']:{experiment.fmt}}, "
                      f"{s['max']:{experiment.fmt}}]")
    return status


def verify(directory: Path | None = None) -> list[str]:
    """Every problem with the stored results (module doc); an empty list when there is none."""
    directory = directory or results_dir()
    problems = []
    known = {f"{name}.json" for name in EXPERIMENTS}
    for path in sorted(directory.glob("*.json")):
        if path.name not in known:
            problems.append(f"{path.name}: no registered experiment has this name")
    for name, experiment in EXPERIMENTS.items():
        path = directory / f"{name}.json"
        if not path.exists():
            problems.append(f"{name}: results/{name}.json is missing")
            continue
        document = json.loads(path.read_text())
        if document.get("experiment") != name or document.get("notebook") != experiment.notebook:
            problems.append(f"{name}: the file names another experiment or notebook")
        sizes = document.get("sizes", {})
        if "quick" not in sizes:
            problems.append(f"{name}: no quick-size runs")
        for size, section in sizes.items():
            where = f"{name} ({size})"
            seeds = section.get("seeds", [])
            if len(set(seeds)) < MIN_SEEDS or len(set(seeds)) != len(seeds):
                problems.append(f"{where}: needs at least {MIN_SEEDS} distinct seeds, has {seeds}")
            values = section.get("values", {})
            if set(values) != set(experiment.metrics):
                problems.append(f"{where}: metrics {sorted(values)} differ from the registry's {sorted(experiment.metrics)}")
                continue
            if any(len(v) != len(seeds) for v in values.values()):
                problems.append(f"{where}: a metric has not one value per seed")
                continue
            for metric, v in values.items():
                if section.get("stats", {}).get(metric) != statistics(v):
                    problems.append(f"{where}: the stored statistics of {metric} do not match its values")
            runs = [{m: values[m][i] for m in values} for i in range(len(seeds))]
            expected = [{"claim": str(c), "held_on_seeds": sum(c.holds(r) for r in runs)} for c in experiment.claims]
            if section.get("claims") != expected:
                problems.append(f"{where}: the stored claims differ from the registry's claims on these values")
            for claim in expected:
                if claim["held_on_seeds"] != len(seeds):
                    problems.append(f"{where}: claim {claim['claim']} held on {claim['held_on_seeds']} of {len(seeds)} seeds")
            missing = [k for k in PROVENANCE_KEYS if k not in section.get("provenance", {})]
            if missing:
                problems.append(f"{where}: provenance lacks {missing}")
    return problems


def _parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(prog="python -m seqcourse experiments", description=__doc__.split("\n\n")[0])
    commands = parser.add_subparsers(dest="command", required=True)
    commands.add_parser("list", help="every registered experiment and what is stored for it")
    run = commands.add_parser("run", help="train over seeds and write results/NAME.json")
    run.add_argument("target", help="an experiment name, a notebook (path or file name), or 'all'")
    run.add_argument("--seeds", type=int, default=MIN_SEEDS, help=f"number of seeds (default {MIN_SEEDS})")
    run.add_argument("--first-seed", type=int, default=0)
    run.add_argument("--size", choices=SIZES, default="quick")
    run.add_argument("--timeout", type=float, default=1200.0, help="seconds per notebook run")
    commands.add_parser("verify", help="check every results file against the registry")
    return parser


def main(argv: list[str] | None = None) -> int:
    args = _parser().parse_args(argv)
    if args.command == "list":
        for name, experiment in sorted(EXPERIMENTS.items(), key=lambda item: (item[1].notebook, item[0])):
            path = results_dir() / f"{name}.json" if (Path.cwd() / "results").is_dir() else None
            stored = json.loads(path.read_text())["sizes"] if path and path.exists() else {}
            have = ", ".join(f"{s}: {len(v['seeds'])} seeds" for s, v in stored.items()) or "nothing stored"
            print(f"{name:28s} {experiment.notebook:32s} {have}")
        return 0
    if args.command == "run":
        if args.seeds < 1:
            raise SystemExit("--seeds must be at least 1")
        return run_experiments(args.target, seeds=args.seeds, first_seed=args.first_seed, size=args.size,
                               timeout=args.timeout)
    problems = verify()
    for problem in problems:
        print(problem)
    print(f"{len(EXPERIMENTS)} experiments, {len(problems)} problems")
    return 1 if problems else 0
