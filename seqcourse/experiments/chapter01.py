"""The trained experiments of 01_recurrence.ipynb (see ``claims.Experiment``)."""
from .claims import Claim, Experiment

NOTEBOOK = "book/01_recurrence.ipynb"

EXPERIMENTS: tuple[Experiment, ...] = ()
