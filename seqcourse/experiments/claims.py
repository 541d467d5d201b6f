"""What a trained experiment claims, and the check of a live run against it.

A trained number is a random variable over seeds and CPUs (a different rounding of ``1e-7``
early in training can move a short run's final accuracy in its second digit). So the book never
compares such a number to stored digits. Instead each experiment declares

- its **metrics**: the names of the scalars a run produces;
- its **claims**: inequalities the prose draws from them, each with a margin that held on every
  recorded seed, e.g. ``Claim("RNN", ">=", 0.95)`` or ``Claim("orthogonal", ">=", "vanilla", 0.3)``
  (the orthogonal model beats the vanilla one by at least 0.3);
- a **tolerance**: how far outside the recorded seeds' range ``[min, max]`` a live value may fall
  (absolute units of the metric), standing in for the spread of CPUs that no set of recorded seeds
  covers.

``check_live`` is what a notebook's hidden assertion cell runs on the numbers it just trained.
"""
from __future__ import annotations

import math
import operator
from collections.abc import Mapping, Sequence
from dataclasses import dataclass, field

__all__ = ["Claim", "ClaimFailed", "Experiment", "check_live", "failed_claims"]

_OPERATORS = {">=": operator.ge, "<=": operator.le, ">": operator.gt, "<": operator.lt}


class ClaimFailed(AssertionError):
    """A live run broke a claim of the prose, or fell outside the recorded seeds' widened range."""


@dataclass(frozen=True)
class Claim:
    """``metric op bound (+/- margin)``: the claim holds when ``value(metric) op bound`` with the
    margin on the safe side, i.e. ``a >= b + margin`` for ``>=``/``>`` and ``a <= b - margin`` for
    ``<=``/``<``. ``bound`` is a number or the name of another metric of the same experiment."""

    metric: str
    op: str
    bound: float | str
    margin: float = 0.0

    def __post_init__(self):
        if self.op not in _OPERATORS:
            raise ValueError(f"Claim op must be one of {', '.join(_OPERATORS)}; got {self.op!r}")
        if not (isinstance(self.margin, (int, float)) and self.margin >= 0):
            raise ValueError(f"Claim margin must be a number >= 0; got {self.margin!r}")

    def metrics(self) -> tuple[str, ...]:
        """The metric names this claim reads."""
        return (self.metric,) + ((self.bound,) if isinstance(self.bound, str) else ())

    def threshold(self, values: Mapping[str, float]) -> float:
        """The number ``values[metric]`` is compared with: the bound moved by the margin."""
        bound = values[self.bound] if isinstance(self.bound, str) else float(self.bound)
        return bound + self.margin if self.op in (">=", ">") else bound - self.margin

    def holds(self, values: Mapping[str, float]) -> bool:
        value = values[self.metric]
        return math.isfinite(value) and _OPERATORS[self.op](value, self.threshold(values))

    def __str__(self) -> str:
        bound = self.bound if isinstance(self.bound, str) else f"{self.bound:g}"
        sign = "+" if self.op in (">=", ">") else "-"
        margin = f" {sign} {self.margin:g}" if self.margin else ""
        return f"{self.metric} {self.op} {bound}{margin}"


@dataclass(frozen=True)
class Experiment:
    """A trained experiment whose numbers the prose quotes.

    name: its id (``results/<name>.json``).  notebook: the chapter that trains it, relative to the
    repository root; running that notebook with ``SEQCOURSE_SEED`` set is the experiment.
    metrics: the scalars one run produces, in display order.  claims: what the prose says of them.
    tolerance: how far (absolute) a live value may fall outside the recorded seeds' [min, max];
    a number for every metric, or a mapping metric -> number.  fmt: how the summary prints a value.
    """

    name: str
    notebook: str
    description: str
    metrics: tuple[str, ...]
    claims: tuple[Claim, ...]
    tolerance: float | Mapping[str, float]
    fmt: str = ".4f"
    notes: str = ""
    sizes: tuple[str, ...] = field(default=("quick",))

    def __post_init__(self):
        unknown = sorted({m for c in self.claims for m in c.metrics()} - set(self.metrics))
        if unknown:
            raise ValueError(f"experiment {self.name!r}: claims name unknown metrics {unknown}")
        if isinstance(self.tolerance, Mapping) and set(self.tolerance) != set(self.metrics):
            raise ValueError(f"experiment {self.name!r}: tolerance must name every metric exactly once")

    def tolerance_of(self, metric: str) -> float:
        return float(self.tolerance[metric] if isinstance(self.tolerance, Mapping) else self.tolerance)


def _as_values(experiment: Experiment, live: Mapping[str, float]) -> dict[str, float]:
    if not isinstance(live, Mapping):
        raise TypeError(f"{experiment.name}: expected a mapping metric -> number, got {type(live).__name__}")
    missing, extra = set(experiment.metrics) - set(live), set(live) - set(experiment.metrics)
    if missing or extra:
        raise ValueError(
            f"{experiment.name}: expected exactly the metrics {list(experiment.metrics)}; "
            f"missing {sorted(missing)}, unexpected {sorted(extra)}"
        )
    values = {}
    for name in experiment.metrics:
        try:
            values[name] = float(live[name])
        except (TypeError, ValueError):
            raise TypeError(f"{experiment.name}: metric {name!r} must be a number, got {live[name]!r}") from None
    return values


def failed_claims(experiment: Experiment, live: Mapping[str, float]) -> list[str]:
    """The claims of ``experiment`` that the values ``live`` break, as readable lines."""
    values = _as_values(experiment, live)
    return [f"{claim}: {claim.metric} = {values[claim.metric]:{experiment.fmt}}, "
            f"needs {claim.op} {claim.threshold(values):{experiment.fmt}}"
            for claim in experiment.claims if not claim.holds(values)]


def check_live(experiment: Experiment, live: Mapping[str, float],
               recorded: Mapping[str, Sequence[float]] | None) -> None:
    """Raise ``ClaimFailed`` naming every broken claim, and every metric outside the recorded
    seeds' range ``[min - tolerance, max + tolerance]`` (skipped when ``recorded`` is None)."""
    values = _as_values(experiment, live)
    problems = failed_claims(experiment, values)
    for name in experiment.metrics if recorded is not None else ():
        seeds = recorded[name]
        tol = experiment.tolerance_of(name)
        low, high = min(seeds) - tol, max(seeds) + tol
        if not low <= values[name] <= high:
            problems.append(f"{name} = {values[name]:{experiment.fmt}} lies outside the recorded seeds' range "
                            f"[{min(seeds):{experiment.fmt}}, {max(seeds):{experiment.fmt}}] widened by {tol:g}")
    if problems:
        raise ClaimFailed(f"{experiment.name}: the live run breaks what the book says of it:\n  - "
                          + "\n  - ".join(problems))
