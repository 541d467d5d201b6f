"""Trained experiments: the registry, the stored multi-seed results, and the checks of live runs.

In a chapter: ``experiments.check(name, values)`` after a live training run (a hidden cell),
``experiments.summary(name)`` to print the stored statistics the prose quotes, and
``experiments.stat(name, metric)`` for one of them. On the command line:
``python -m seqcourse experiments list | run NAME | verify`` (``runner``).
"""
from .claims import Claim, ClaimFailed, Experiment
from .registry import EXPERIMENTS, get_experiment
from .results import check, load_results, recorded_spread, spread_label, stat, summary

__all__ = ["EXPERIMENTS", "Claim", "ClaimFailed", "Experiment", "check", "get_experiment", "load_results",
           "recorded_spread", "spread_label", "stat", "summary"]
