"""The trained experiments of 03_gating.ipynb (see ``claims.Experiment``)."""
from .claims import Claim, Experiment

NOTEBOOK = "book/03_gating.ipynb"

EXPERIMENTS: tuple[Experiment, ...] = ()
