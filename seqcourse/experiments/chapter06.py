"""The trained experiments of 06_state_space.ipynb (see ``claims.Experiment``)."""
from .claims import Claim, Experiment

NOTEBOOK = "book/06_state_space.ipynb"

EXPERIMENTS: tuple[Experiment, ...] = ()
