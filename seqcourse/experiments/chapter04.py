"""The trained experiments of 04_convolutions.ipynb (see ``claims.Experiment``)."""
from .claims import Claim, Experiment

NOTEBOOK = "book/04_convolutions.ipynb"

EXPERIMENTS: tuple[Experiment, ...] = ()
