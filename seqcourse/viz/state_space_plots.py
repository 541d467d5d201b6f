"""Figures of the State-space chapter.

    discretization_samples(...)                         a continuous system against its discretized samples
    memory_decay(lags, {Δ: kernel}, gates)              S4D kernels, their envelopes and an LSTM's f^l
    token_bars(tokens, {label: values})                 per-step bars along one sequence
    matrix_panels({title: matrix})                      matrices side by side, each with its colour bar

Each returns a ``matplotlib.figure.Figure``, closed in pyplot, as in ``seqcourse.viz.plots``.
"""
from __future__ import annotations

from collections.abc import Mapping, Sequence

import numpy as np
from matplotlib.figure import Figure

from .figure import as_array, new_figure

__all__ = ["discretization_samples", "memory_decay", "token_bars", "matrix_panels"]


def discretization_samples(t_fine, continuous, t_k, samples: Mapping[str, object], inputs, *,
                           ylabel: str = "first state component", figsize=(7.0, 3.0)) -> Figure:
    """A continuous system's response next to the samples of its discretizations, and the input.

    Args:
        t_fine: shape (M,), a fine time grid.   continuous: shape (M,), the state on it (e.g. from
            ``ops.discretize.integrate``).
        t_k: shape (K,), the sample times k Delta.   samples: {method: (K,)}, the discretized
            recurrence's state at those times (e.g. "zoh", "bilinear"), drawn as markers.
        inputs: shape (K,), the input x_k, held over the step that ends at t_k (zero-order hold).

    Returns:
        The figure: a grey line (the continuous system), one marker set per method, then the
        input as a faint red staircase; a legend naming them.
    """
    tf, yf = as_array(t_fine, "t_fine", ndim=1), as_array(continuous, "continuous", ndim=1)
    tk, xk = as_array(t_k, "t_k", ndim=1), as_array(inputs, "inputs", ndim=1)
    if tf.size != yf.size:
        raise ValueError(f"continuous has {yf.size} values but t_fine has {tf.size}")
    if xk.size != tk.size or tk.size < 2:
        raise ValueError(f"inputs needs one value per sample time (at least 2): t_k has {tk.size}, inputs {xk.size}")
    fig, ax = new_figure(figsize)
    ax.plot(tf, yf, color="gray", lw=1.5, label="continuous system")
    for (method, values), marker in zip(samples.items(), "ox+sd^"):
        ys = as_array(values, f"samples[{method!r}]", ndim=1)
        if ys.size != tk.size:
            raise ValueError(f"samples[{method!r}] has {ys.size} values but t_k has {tk.size}")
        ax.plot(tk, ys, marker, label=str(method))
    step = tk[1] - tk[0]
    ax.step(np.r_[tk[0] - step, tk], np.r_[xk[0], xk], where="pre", color="tab:red", alpha=0.3, label="input x(t)")
    ax.set_xlabel("time t")
    ax.set_ylabel(ylabel)
    ax.legend(loc="upper right", fontsize="small")
    return fig


def memory_decay(lags, kernels: Mapping[float, object], gates: Sequence[float], *,
                 floor: float = 1e-4, figsize=(7.5, 3.6)) -> Figure:
    """How much of an input l steps back is left: S4D kernels against their envelope
    exp(-l / tau), tau = 2 / Delta (modes with Re a = -1/2), and an LSTM's f^l, on log-log axes.

    Args:
        lags: shape (L,), the lags l = 0, 1, ... (lag 0 is not drawn: the axes are logarithmic).
        kernels: {Delta: ``|K_l|`` / bound, shape (L,)}, one S4D channel per step size, normalised by
            the largest value the kernel can take; each is drawn thin with its envelope dashed in
            the same colour.
        gates: forget-gate values f, each drawn as f^l in black.
        floor: the lower y limit (kernel values below it are drawn at a tenth of it).

    Returns:
        The figure: per Delta a thin kernel line then its dashed envelope (labelled), then one
        black line per gate value (labelled "LSTM, f = ...: f^l").
    """
    ls = as_array(lags, "lags", ndim=1)[1:]
    if ls.size == 0:
        raise ValueError("lags needs at least two lags (lag 0 is not drawn)")
    fig, ax = new_figure(figsize)
    for delta, kernel in kernels.items():
        k = as_array(kernel, f"kernels[{delta!r}]", ndim=1)
        if k.size != ls.size + 1:
            raise ValueError(f"kernels[{delta!r}] has {k.size} values but lags has {ls.size + 1}")
        line, = ax.loglog(ls, np.maximum(np.abs(k[1:]), floor / 10), lw=0.6, alpha=0.6)
        ax.loglog(ls, np.exp(-ls * float(delta) / 2), color=line.get_color(), ls="--", lw=1.5,
                  label=f"S4D, delta = {float(delta):g}: exp(-l/tau), |K_l|")
    for f_value, style in zip(gates, (":", "-.", (0, (5, 1)), "-")):
        ax.loglog(ls, float(f_value) ** ls, color="black", ls=style, lw=1.2, label=f"LSTM, f = {float(f_value):.2f}: f^l")
    ax.set_ylim(floor, 1.5)
    ax.set_xlabel("lag l (steps)")
    ax.set_ylabel("memory of an input l steps back")
    ax.legend(loc="lower left", fontsize="x-small")
    return fig


def token_bars(tokens: Sequence[str], rows: Mapping[str, object], *, highlight: Sequence[bool] | None = None,
               title: str | None = None, figsize=(8.0, 3.8)) -> Figure:
    """Per-step quantities along one sequence: one bar chart per quantity, stacked, sharing the
    token axis.

    Args:
        tokens: the T input tokens, the x tick labels of the bottom panel.
        rows: {y label: values (T,)}, one panel each, top to bottom.
        highlight: T booleans: bars of highlighted steps are blue, the others light grey.

    Returns:
        The figure: one axes per row, each holding T bars whose heights are its values; the top
        one carries the title.
    """
    tokens = [str(t) for t in tokens]
    if not isinstance(rows, Mapping) or not rows:
        raise TypeError("rows must be a non-empty mapping {y label: values (T,)}")
    mask = [True] * len(tokens) if highlight is None else [bool(h) for h in highlight]
    if len(mask) != len(tokens):
        raise ValueError(f"highlight needs one flag per token: {len(tokens)} tokens, {len(mask)} flags")
    colors = ["tab:blue" if m else "lightgray" for m in mask]
    fig, axes = new_figure(figsize, grid=(len(rows), 1), sharex=True)
    for ax, (label, values) in zip(axes[:, 0], rows.items()):
        ys = as_array(values, f"rows[{label!r}]", ndim=1)
        if ys.size != len(tokens):
            raise ValueError(f"rows[{label!r}] has {ys.size} values but there are {len(tokens)} tokens")
        ax.bar(range(len(tokens)), ys, color=colors)
        ax.set_ylabel(str(label))
    axes[-1, 0].set_xticks(range(len(tokens)), tokens)
    if title:
        axes[0, 0].set_title(title)
    return fig


def matrix_panels(matrices: Mapping[str, object], *, signed: Sequence[str] = (), xlabel: str = "input step j",
                  ylabel: str = "output step i", panel_size=(3.75, 3.2)) -> Figure:
    """Matrices side by side as heat maps, each with its own colour bar.

    Args:
        matrices: {title: (T, S)}, in panel order, e.g. the decay mask L and the SSD matrix M.
        signed: titles of matrices with both signs: a diverging scale symmetric about 0; the others
            run from 0 to their largest absolute value.

    Returns:
        The figure: one axes per matrix, holding one image whose array is the matrix, then one colour
        bar per matrix.
    """
    if not isinstance(matrices, Mapping) or not matrices:
        raise TypeError("matrices must be a non-empty mapping {title: matrix (T, S)}")
    unknown = set(signed) - set(matrices)
    if unknown:
        raise ValueError(f"signed names matrices that are not given: {sorted(unknown)}")
    fig, axes = new_figure((panel_size[0] * len(matrices), panel_size[1]), grid=(1, len(matrices)))
    for ax, (title, matrix) in zip(axes[0], matrices.items()):
        array = as_array(matrix, f"matrices[{title!r}]", ndim=2, shape="(T, S)")
        limit = float(np.abs(array).max()) or 1.0
        if title in signed:
            image = ax.imshow(array, cmap="RdBu_r", vmin=-limit, vmax=limit, interpolation="nearest")
        else:
            image = ax.imshow(array, cmap="viridis", vmin=0.0, vmax=limit, interpolation="nearest")
        ax.set_title(str(title), fontsize="medium")
        ax.set_xlabel(xlabel)
        fig.colorbar(image, ax=ax, shrink=0.8)
    axes[0, 0].set_ylabel(ylabel)
    return fig
