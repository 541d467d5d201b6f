"""The registry of trained experiments behind the prose: every experiment of every chapter.

Each chapter declares its experiments in its own module (``chapter01`` ... ``chapter08``) as a
tuple ``EXPERIMENTS`` of ``claims.Experiment``; this module collects them and looks them up.
"""
from __future__ import annotations

from . import chapter01, chapter02, chapter03, chapter04, chapter05, chapter06, chapter07, chapter08
from .claims import Experiment

__all__ = ["EXPERIMENTS", "get_experiment"]

EXPERIMENTS: dict[str, Experiment] = {}
for _module in (chapter01, chapter02, chapter03, chapter04, chapter05, chapter06, chapter07, chapter08):
    for _experiment in _module.EXPERIMENTS:
        if _experiment.name in EXPERIMENTS:
            raise ValueError(f"two experiments are named {_experiment.name!r}")
        EXPERIMENTS[_experiment.name] = _experiment


def get_experiment(name: str) -> Experiment:
    """The experiment called ``name``; ``KeyError`` lists the known names."""
    try:
        return EXPERIMENTS[name]
    except KeyError:
        raise KeyError(f"no experiment named {name!r}; known: {', '.join(sorted(EXPERIMENTS)) or 'none'}") from None
