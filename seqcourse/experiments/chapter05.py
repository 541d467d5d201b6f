"""The trained experiments of 05_attention.ipynb (see ``claims.Experiment``)."""
from .claims import Claim, Experiment

NOTEBOOK = "book/05_attention.ipynb"

EXPERIMENTS: tuple[Experiment, ...] = ()
