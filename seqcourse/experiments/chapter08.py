"""The trained experiments of 08_comparison.ipynb (see ``claims.Experiment``)."""
from .claims import Claim, Experiment

NOTEBOOK = "book/08_comparison.ipynb"

EXPERIMENTS: tuple[Experiment, ...] = ()
