"""What every figure of the book shares: its input checks and its canvas.

``as_array(values, name, ndim)`` turns a tensor, array or list into a float array of the expected
rank, or raises an error naming the argument and the shape it wanted; ``new_figure(figsize,
grid=None)`` returns a figure with one axes (or a grid of them) on the opaque white background
(``alt_text.FACECOLOR``), already closed in pyplot, so that nothing is shown twice and the caller
decides when to display it. Every figure of the package is made by ``new_figure``.
"""
from __future__ import annotations

import matplotlib.pyplot as plt
import numpy as np
from matplotlib.figure import Figure

from .alt_text import FACECOLOR

__all__ = ["as_array", "new_figure"]


def as_array(values, name: str, ndim: int, shape: str | None = None) -> np.ndarray:
    """Turn a tensor, array or nested list into a float ndarray of rank ``ndim``, or raise
    (``shape`` names the expected axes in the message; default "(T, H)" for rank 2, "(N,)" otherwise)."""
    if hasattr(values, "detach"):  # a torch tensor, possibly on a GPU or requiring grad
        values = values.detach().cpu().numpy()
    try:
        array = np.asarray(values, dtype=float)
    except (TypeError, ValueError) as error:
        raise TypeError(f"{name} must be numbers (a tensor, array or list); got {type(values).__name__}") from error
    if array.ndim != ndim:
        shape = shape or ("(T, H)" if ndim == 2 else "(N,)")
        raise ValueError(f"{name} must have shape {shape} (rank {ndim}); got shape {array.shape} (rank {array.ndim})")
    if array.size == 0:
        raise ValueError(f"{name} is empty; nothing to plot")
    return array


def new_figure(figsize, grid: tuple[int, int] | None = None, **options) -> tuple[Figure, object]:
    """A figure laid out and on the opaque background, closed in pyplot.

    Without ``grid``: (figure, its one axes). With ``grid=(rows, columns)``: (figure, a (rows,
    columns) array of axes, also for one row or column). ``options`` go to ``plt.subplots``
    (``sharex``, ``sharey``)."""
    if grid is None:
        fig, axes = plt.subplots(figsize=figsize, layout="constrained", facecolor=FACECOLOR, **options)
    else:
        fig, axes = plt.subplots(*grid, squeeze=False, figsize=figsize, layout="constrained", facecolor=FACECOLOR,
                                 **options)
    plt.close(fig)  # returned, not shown: the caller decides when to display or save it
    return fig, axes
