"""Stored multi-seed results (``results/<name>.json``) and what notebooks read from them.

A results file is written by ``python -m seqcourse experiments run`` only, never by hand. Its
schema (one section per size, ``quick`` or ``full``)::

    {"experiment": name, "notebook": "book/NN_x.ipynb", "description": ...,
     "sizes": {"quick": {
         "seeds": [0, 1, 2, 3, 4],
         "values": {metric: [one value per seed]},
         "stats": {metric: {"mean", "std", "min", "max", "ci95": [low, high]}},
         "claims": [{"claim": "RNN >= 0.95", "held_on_seeds": 5}],
         "provenance": {"git_commit", "git_dirty", "torch", "python", "cpu_model",
                        "cpu_capability", "aten_cpu_capability", "device", "threads",
                        "date", "wall_seconds": [one per seed]}}}}

``ci95`` is the 95% confidence interval of the mean, ``mean ± t(0.975, n-1) · std / sqrt(n)`` with
the sample standard deviation ``std`` (Student's t, because n is small).

In a notebook, ``check(name, values)`` is the hidden assertion cell after a live training run: it
checks the claims and the recorded range (``claims.check_live``). When the environment variable
``SEQCOURSE_RECORD`` names a file, the notebook is being run by the experiment runner instead:
``check`` then appends the values to that file and asserts nothing.
"""
from __future__ import annotations

import json
import math
import os
from collections.abc import Callable, Mapping, Sequence
from pathlib import Path

from .claims import Experiment, check_live
from .registry import get_experiment

__all__ = ["RECORD_ENV", "SIZES", "Stat", "check", "load_results", "recorded_spread", "results_dir",
           "spread_label", "stat", "statistics", "summary"]

RECORD_ENV = "SEQCOURSE_RECORD"
SIZES = ("quick", "full")
# Student's t quantile t(0.975, df) for df = 1..30; beyond 30 the normal 1.96 is within 2%.
_T975 = (12.706, 4.303, 3.182, 2.776, 2.571, 2.447, 2.365, 2.306, 2.262, 2.228, 2.201, 2.179, 2.160,
         2.145, 2.131, 2.120, 2.110, 2.101, 2.093, 2.086, 2.080, 2.074, 2.069, 2.064, 2.060, 2.056,
         2.052, 2.048, 2.045, 2.042)


def results_dir() -> Path:
    """The ``results/`` folder: ``$SEQCOURSE_RESULTS`` if set, else the first ``results/`` found in
    the working folder or above it (notebooks run in ``book/``), else the one next to the package
    in a source checkout. Raises ``FileNotFoundError`` naming where it looked."""
    if os.environ.get("SEQCOURSE_RESULTS"):
        return Path(os.environ["SEQCOURSE_RESULTS"])
    here = Path.cwd().resolve()
    candidates = [p / "results" for p in (here, *here.parents)] + [Path(__file__).resolve().parents[2] / "results"]
    for candidate in candidates:
        if candidate.is_dir():
            return candidate
    raise FileNotFoundError("no results/ folder found in the working folder, above it, or next to seqcourse; "
                            "set SEQCOURSE_RESULTS or run from a clone of the repository")


def statistics(values: Sequence[float]) -> dict:
    """mean, sample std, min, max and the 95% t-interval of the mean of ``values`` (n >= 2)."""
    n = len(values)
    if n < 2:
        raise ValueError(f"statistics need at least 2 values, got {n}")
    mean = sum(values) / n
    std = math.sqrt(sum((v - mean) ** 2 for v in values) / (n - 1))
    half = (_T975[n - 2] if n - 1 <= len(_T975) else 1.96) * std / math.sqrt(n)
    return {"mean": mean, "std": std, "min": min(values), "max": max(values), "ci95": [mean - half, mean + half]}


def load_results(name: str) -> dict:
    """The stored results file of experiment ``name`` (see the module doc for its schema)."""
    get_experiment(name)
    path = results_dir() / f"{name}.json"
    if not path.exists():
        raise FileNotFoundError(f"{path} does not exist; produce it with "
                                f"`python -m seqcourse experiments run {name}`")
    return json.loads(path.read_text())


def _size() -> str:
    return "full" if os.environ.get("SEQCOURSE_FULL") == "1" else "quick"


def _section(name: str, size: str) -> dict:
    sizes = load_results(name)["sizes"]
    if size not in sizes:
        raise KeyError(f"results/{name}.json has no {size!r} runs (it has {sorted(sizes)}); produce them with "
                       f"`python -m seqcourse experiments run {name} --size {size}`")
    return sizes[size]


class Stat:
    """One metric's statistics over the recorded seeds, for prose cells: ``str()`` gives
    ``"0.9960 ± 0.0030 (5 seeds, range 0.9910-0.9990)"``, the ± being the 95% interval's half-width."""

    def __init__(self, values: Sequence[float], fmt: str):
        self.values, self.fmt = list(values), fmt
        for key, value in statistics(self.values).items():
            setattr(self, key, value)
        self.n = len(self.values)

    @property
    def half_width(self) -> float:
        return (self.ci95[1] - self.ci95[0]) / 2

    def __str__(self) -> str:
        f = self.fmt
        return (f"{self.mean:{f}} ± {self.half_width:{f}} ({self.n} seeds, "
                f"range {self.min:{f}} to {self.max:{f}})")


def stat(name: str, metric: str, size: str | None = None) -> Stat:
    """The recorded statistics of ``metric`` in experiment ``name`` (default size: this mode's)."""
    experiment = get_experiment(name)
    if metric not in experiment.metrics:
        raise KeyError(f"experiment {name!r} has no metric {metric!r}; it has {list(experiment.metrics)}")
    return Stat(_section(name, size or _size())["values"][metric], experiment.fmt)


def recorded_spread(name: str, metrics: Mapping[str, str | Sequence[str | None]], size: str | None = None,
                    transform: Callable[[float], float] | None = None) -> dict[str, tuple]:
    """{label: (low, high)}: the range over the recorded seeds of experiment ``name``, per label, to
    draw behind a live run (``plots.accuracy_bars(spread=...)``, ``plots.metric_vs_length(spread=...)``).

    ``metrics`` maps each label (a bar's or a line's name) to one metric, giving scalars
    ``(min, max)``, or to a sequence of metrics, one per point of the line, giving lists
    ``([min, ...], [max, ...])``; ``None`` in the sequence marks a point with no recorded metric (NaN).
    ``transform``, an increasing function, maps the recorded values to the figure's (e.g.
    ``lambda v: 10 ** v`` for a metric recorded as a base-10 logarithm).

    Empty (the figure then shows the live run alone) under the experiment runner
    (``$SEQCOURSE_RECORD`` set: the seeds are being recorded) and where no results of this size
    are stored (a notebook opened outside the repository), as ``check`` does.
    """
    if os.environ.get(RECORD_ENV):
        return {}
    try:
        _section(name, size or _size())
    except (FileNotFoundError, KeyError):
        return {}
    f = transform or (lambda v: v)
    spread = {}
    for label, wanted in metrics.items():
        if isinstance(wanted, str):
            s = stat(name, wanted, size)
            spread[label] = (f(s.min), f(s.max))
        else:
            stats = [None if metric is None else stat(name, metric, size) for metric in wanted]
            spread[label] = ([math.nan if s is None else f(s.min) for s in stats],
                             [math.nan if s is None else f(s.max) for s in stats])
    return spread


def spread_label(name: str, size: str | None = None) -> str:
    """The legend entry for a recorded spread: ``"5 recorded seeds, min to max"`` (without the count
    where no results of this size are stored)."""
    try:
        return f"{len(_section(name, size or _size())['seeds'])} recorded seeds, min to max"
    except (FileNotFoundError, KeyError):
        return "recorded seeds, min to max"


def summary(name: str, size: str | None = None) -> None:
    """Print the recorded statistics of every metric of experiment ``name``, and how often each
    claim held: the table the prose quotes (deterministic, so its cell is compared digit for digit)."""
    experiment = get_experiment(name)
    size = size or _size()
    if os.environ.get(RECORD_ENV):
        print(f"{name}: being recorded; no summary")
        return
    section = _section(name, size)
    seeds = section["seeds"]
    print(f"{name}: {experiment.description}")
    print(f"{size} size, {len(seeds)} seeds; mean ± half-width of the 95% interval, then the range over seeds")
    width = max(len(m) for m in experiment.metrics)
    for metric in experiment.metrics:
        s = Stat(section["values"][metric], experiment.fmt)
        print(f"  {metric:{width}s}  {s.mean:{experiment.fmt}} ± {s.half_width:{experiment.fmt}}   "
              f"[{s.min:{experiment.fmt}}, {s.max:{experiment.fmt}}]")
    for claim in section["claims"]:
        print(f"  claim {claim['claim']}: held on {claim['held_on_seeds']} of {len(seeds)} seeds")


def check(name: str, values: Mapping[str, float]) -> None:
    """The hidden assertion after a live run: the claims of experiment ``name`` hold for
    ``values`` and each value lies in the recorded seeds' range widened by the tolerance
    (``claims.check_live``). Under the experiment runner (``$SEQCOURSE_RECORD`` set) it records
    the values instead. Where no results are stored (a notebook opened outside the repository)
    only the claims are checked."""
    experiment: Experiment = get_experiment(name)
    record = os.environ.get(RECORD_ENV)
    if record:
        import torch  # only the recording run reads the thread count

        line = {"experiment": name, "values": {k: float(v) for k, v in values.items()},
                "threads": torch.get_num_threads()}
        with open(record, "a") as f:
            f.write(json.dumps(line) + "\n")
        return
    try:
        recorded = _section(name, _size())["values"]
    except (FileNotFoundError, KeyError):
        recorded = None
    check_live(experiment, values, recorded)
