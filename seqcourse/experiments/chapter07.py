"""The trained experiments of 07_normalization.ipynb (see ``claims.Experiment``)."""
from .claims import Claim, Experiment

NOTEBOOK = "book/07_normalization.ipynb"

EXPERIMENTS: tuple[Experiment, ...] = ()
