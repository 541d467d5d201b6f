"""The trained experiments of 02_gradients.ipynb (see ``claims.Experiment``)."""
from .claims import Claim, Experiment

NOTEBOOK = "book/02_gradients.ipynb"

EXPERIMENTS: tuple[Experiment, ...] = ()
