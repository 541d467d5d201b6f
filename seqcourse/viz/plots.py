"""Small matplotlib helpers for the book's figures.

Every helper builds one figure, closes it in pyplot (so nothing is shown twice and no figure
piles up in pyplot's registry) and returns the ``matplotlib.figure.Figure``. A notebook cell
displays a returned figure by ending with it; a script saves it with ``fig.savefig(...)``. None
of them calls ``plt.show()``, so they work the same under a non-interactive backend (Agg). Every
figure has an opaque white background (``seqcourse.viz.alt_text.FACECOLOR``), so its dark text and
axes stay legible when the page around it is dark, and ``seqcourse.viz.alt_text.describe(fig)``
turns its title, axis labels and legend into alt text.

Symbols follow the Recurrence chapter: ``h_t`` the hidden state after step ``t`` (``H`` units),
``T`` the sequence length.

    hidden_state_heatmap(states (T, H), labels=None)   h_t over t, one row per unit
    loss_curve(losses, baseline=None)                   training loss per step, a reference line
    accuracy_bars({name: accuracy}, chance=None)        one bar per model
    memory_vs_length(lengths, {name: bytes})            bytes saved for backward against T

The Gradients chapter adds:

    gradient_norms(x, {name: norms})                    positive curves on a log axis (over distance or ρ)
    loss_curves({name: losses}, baseline=None)          several training runs on one axes
    eigenvalue_plot({name: eigenvalues})                eigenvalues in the complex plane, unit circle
    metric_vs_length(lengths, {name: scores})           a score against sequence length, a baseline

The Attention chapter adds:

    attention_heads(weights (L, nh, T, S), ...)         one heatmap per layer and head, e.g. cross-attention
"""
from __future__ import annotations

from collections.abc import Mapping, Sequence

import matplotlib.pyplot as plt
import numpy as np
from matplotlib.figure import Figure

from .alt_text import FACECOLOR

__all__ = [
    "hidden_state_heatmap", "loss_curve", "accuracy_bars", "memory_vs_length",
    "gradient_norms", "loss_curves", "eigenvalue_plot", "metric_vs_length", "attention_heads",
]


def _as_array(values, name: str, ndim: int, shape: str | None = None) -> np.ndarray:
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


def _new_figure(figsize) -> tuple[Figure, plt.Axes]:
    fig, ax = plt.subplots(figsize=figsize, layout="constrained", facecolor=FACECOLOR)
    plt.close(fig)  # returned, not shown: the caller decides when to display or save it
    return fig, ax


def hidden_state_heatmap(states, labels: Sequence[str] | None = None, *, title: str | None = None,
                         figsize=(6.0, 2.6)) -> Figure:
    """Heatmap of the hidden states h_1 ... h_T: column t is h_t, row i is unit i.

    Args:
        states: shape (T, H), e.g. ``outputs[0]`` of ``RNN.forward`` for one sequence. Values of a
            tanh RNN lie in [-1, 1], which is the colour scale (red positive, blue negative).
        labels: optional T tick labels, one per step (the input tokens); default ``1 ... T``.
        title: optional axes title.

    Returns:
        The figure. Its axes hold one image whose array is ``states.T`` (shape (H, T)); the x axis
        is the step t, the y axis the unit, and a colour bar is labelled ``h_t``.
    """
    array = _as_array(states, "states", ndim=2)
    steps, units = array.shape
    if labels is not None:
        labels = [str(label) for label in labels]
        if len(labels) != steps:
            raise ValueError(f"labels must give one label per step: states has T={steps} steps, got {len(labels)} labels")
    width = max(figsize[0], 2.0 + 0.28 * steps)
    height = max(figsize[1], min(1.2 + 0.25 * units, 5.0))
    fig, ax = _new_figure((width, height))
    image = ax.imshow(array.T, aspect="auto", cmap="RdBu_r", vmin=-1.0, vmax=1.0, interpolation="nearest")
    ax.set_xticks(range(steps))
    ax.set_xticklabels(labels if labels is not None else [str(t) for t in range(1, steps + 1)])
    if units <= 16:
        ax.set_yticks(range(units))
    ax.set_xlabel("step t (input token)" if labels is not None else "step t")
    ax.set_ylabel("hidden unit")
    if title:
        ax.set_title(title)
    fig.colorbar(image, ax=ax, label="h_t")
    return fig


def loss_curve(losses, *, baseline: float | None = None, baseline_label: str = "baseline",
               smooth: int | None = None, ylabel: str = "loss", title: str | None = None,
               figsize=(6.0, 3.2)) -> Figure:
    """Training loss against step, with an optional horizontal reference line.

    Args:
        losses: one loss per step (``History.losses``), shape (N,).
        baseline: draw a dashed line at this value (e.g. log V, the loss of a uniform guess).
        baseline_label: legend text for the baseline.
        smooth: if given, also draw the running mean over this many steps (an int >= 2).

    Returns:
        The figure: its axes' first line is the raw loss (x = 1 ... N), then the running mean if
        ``smooth``, then the baseline if given.
    """
    values = _as_array(losses, "losses", ndim=1)
    steps = np.arange(1, values.size + 1)
    fig, ax = _new_figure(figsize)
    ax.plot(steps, values, color="tab:blue", alpha=0.45 if smooth else 1.0, lw=1, label="loss per step")
    if smooth is not None:
        if isinstance(smooth, bool) or not isinstance(smooth, int) or smooth < 2:
            raise ValueError(f"smooth must be an int >= 2 (a window of steps) or None; got {smooth!r}")
        window = min(smooth, values.size)
        running = np.convolve(values, np.ones(window) / window, mode="valid")
        ax.plot(steps[window - 1:], running, color="tab:blue", lw=2, label=f"mean of last {window} steps")
    if baseline is not None:
        ax.axhline(float(baseline), color="tab:red", ls="--", lw=1.5, label=baseline_label)
    ax.set_xlabel("training step")
    ax.set_ylabel(ylabel)
    if title:
        ax.set_title(title)
    ax.legend(loc="best")
    return fig


def accuracy_bars(accuracies: Mapping[str, float], *, chance: float | None = None,
                  highlight: str | None = None, title: str | None = None, figsize=(6.0, 3.0)) -> Figure:
    """One bar per model, its height the accuracy (a fraction in [0, 1]), its value written on it.

    Args:
        accuracies: model name -> accuracy, in the order the bars should appear.
        chance: draw a dashed line at the accuracy of guessing (e.g. 0.5 for two balanced classes).
        highlight: the name of one model whose bar gets a different colour.

    Returns:
        The figure; the bar heights are the accuracies and the tick labels the names.
    """
    if not isinstance(accuracies, Mapping) or not accuracies:
        raise TypeError("accuracies must be a non-empty mapping {model name: accuracy in [0, 1]}")
    names = [str(name) for name in accuracies]
    values = _as_array(list(accuracies.values()), "accuracies", ndim=1)
    if np.any(values < 0) or np.any(values > 1):
        raise ValueError(f"accuracies must be fractions in [0, 1]; got {dict(zip(names, values.tolist()))}")
    if highlight is not None and highlight not in names:
        raise ValueError(f"highlight={highlight!r} is not one of the models: {', '.join(names)}")
    fig, ax = _new_figure(figsize)
    bars = ax.bar(names, values, color=["tab:green" if n == highlight else "tab:gray" for n in names])
    ax.bar_label(bars, labels=[f"{v:.3f}" for v in values], padding=2)
    if chance is not None:
        ax.axhline(float(chance), color="tab:red", ls="--", lw=1.5, label="chance")
        ax.legend(loc="lower right")
    ax.set_ylim(0, 1.1)
    ax.set_ylabel("held-out accuracy")
    if title:
        ax.set_title(title)
    return fig


def memory_vs_length(lengths, curves, *, unit: str = "KiB", title: str | None = None,
                     figsize=(6.0, 3.2)) -> Figure:
    """Bytes saved for backward against sequence length T, one marked line per curve.

    Args:
        lengths: the sequence lengths T, shape (N,).
        curves: a mapping {label: bytes for each T}, or one sequence of bytes (labelled
            "saved for backward").
        unit: "B", "KiB" or "MiB": the y axis shows bytes divided accordingly.

    Returns:
        The figure: one line per curve, x = lengths, y = bytes / (1024 ** k) for the unit.
    """
    scale = {"B": 1, "KiB": 1024, "MiB": 1024**2}
    if unit not in scale:
        raise ValueError(f"unit must be one of {', '.join(scale)}; got {unit!r}")
    xs = _as_array(lengths, "lengths", ndim=1)
    if not isinstance(curves, Mapping):
        curves = {"saved for backward": curves}
    fig, ax = _new_figure(figsize)
    for label, nbytes in curves.items():
        ys = _as_array(nbytes, f"curves[{label!r}]", ndim=1)
        if ys.size != xs.size:
            raise ValueError(f"curves[{label!r}] has {ys.size} values but lengths has {xs.size}: need one per T")
        ax.plot(xs, ys / scale[unit], marker="o", label=str(label))
    ax.set_xlabel("sequence length T")
    ax.set_ylabel(f"saved for backward ({unit})")
    ax.set_ylim(bottom=0)
    if title:
        ax.set_title(title)
    ax.legend(loc="upper left")
    return fig


# ---- the Gradients chapter -------------------------------------------------------------------


def _curves(curves, name: str) -> dict[str, np.ndarray]:
    """A mapping {label: values} (or one sequence of values) as {label: 1-d float array}."""
    if not isinstance(curves, Mapping):
        curves = {"": curves}
    if not curves:
        raise ValueError(f"{name} is empty; nothing to plot")
    return {str(label): _as_array(values, f"{name}[{label!r}]", ndim=1) for label, values in curves.items()}


def gradient_norms(x, curves, *, xlabel: str = "distance k (steps back from the loss)",
                   ylabel: str = "gradient norm", reference: float | None = 1.0,
                   title: str | None = None, figsize=(6.0, 3.4)) -> Figure:
    """Gradient norms (or any positive quantities) on a logarithmic y axis, one line per curve.

    Args:
        x: the x values, shape (N,): distances k, or spectral radii for a sweep.
        curves: {label: values (N,)}, or one sequence. Zeros and non-finite values are left out
            of the lines (a log axis cannot show them).
        reference: draw a dotted horizontal line at this value (1: neither growing nor shrinking).

    Returns:
        The figure: one line per curve, in the order given, then the reference line if any.
    """
    xs = _as_array(x, "x", ndim=1)
    ys = _curves(curves, "curves")
    fig, ax = _new_figure(figsize)
    for label, values in ys.items():
        if values.size != xs.size:
            raise ValueError(f"curves[{label!r}] has {values.size} values but x has {xs.size}: need one per x")
        shown = np.where(np.isfinite(values) & (values > 0), values, np.nan)
        ax.plot(xs, shown, lw=1.8, label=label or None)
    if reference is not None:
        ax.axhline(float(reference), color="gray", ls=":", lw=1.2)
    ax.set_yscale("log")
    ax.set_xlabel(xlabel)
    ax.set_ylabel(ylabel)
    if title:
        ax.set_title(title)
    if any(ys):
        ax.legend(loc="best", fontsize="small")
    return fig


def loss_curves(curves, *, baseline: float | None = None, baseline_label: str = "baseline",
                logy: bool = False, ylabel: str = "loss", title: str | None = None,
                figsize=(6.0, 3.2)) -> Figure:
    """Several training-loss curves on one axes (runs may have different lengths, e.g. one that diverged).

    Args:
        curves: {label: losses per step}.
        baseline: a dashed reference line (e.g. the loss of the best constant prediction).
        logy: logarithmic y axis (for a run whose loss explodes).

    Returns:
        The figure: one line per run (x = 1 ... its length), then the baseline if given.
    """
    ys = _curves(curves, "curves")
    fig, ax = _new_figure(figsize)
    for label, values in ys.items():
        ax.plot(np.arange(1, values.size + 1), values, lw=1.2, label=label)
    if baseline is not None:
        ax.axhline(float(baseline), color="tab:red", ls="--", lw=1.2, label=baseline_label)
    if logy:
        ax.set_yscale("log")
    ax.set_xlabel("training step")
    ax.set_ylabel(ylabel)
    if title:
        ax.set_title(title)
    ax.legend(loc="best", fontsize="small")
    return fig


def eigenvalue_plot(eigenvalues, *, title: str | None = None, figsize=(6.0, 4.0)) -> Figure:
    """Eigenvalues in the complex plane, one marker set per matrix, with the unit circle.

    Args:
        eigenvalues: {label: eigenvalues} (complex tensors or arrays, e.g.
            ``seqcourse.measure.analysis.eigenvalues(W)``), or one collection.

    Returns:
        The figure: the unit circle first, then one scatter per matrix; equal axis scales.
    """
    if not isinstance(eigenvalues, Mapping):
        eigenvalues = {"": eigenvalues}
    fig, ax = _new_figure(figsize)
    angle = np.linspace(0, 2 * np.pi, 256)
    ax.plot(np.cos(angle), np.sin(angle), color="gray", lw=1, ls=":", label="|λ| = 1")
    for (label, values), marker in zip(eigenvalues.items(), "oxs^v+"):
        if hasattr(values, "detach"):
            values = values.detach().cpu().numpy()
        values = np.asarray(values, dtype=complex).ravel()
        if values.size == 0:
            raise ValueError(f"eigenvalues[{label!r}] is empty; nothing to plot")
        ax.scatter(values.real, values.imag, s=18, marker=marker, label=str(label) or None)
    ax.set_aspect("equal")
    ax.set_xlabel("Re λ")
    ax.set_ylabel("Im λ")
    if title:
        ax.set_title(title)
    ax.legend(loc="upper left", bbox_to_anchor=(1.02, 1.0), fontsize="small")  # beside the circle
    return fig


def metric_vs_length(lengths, curves, *, baseline=None, baseline_label: str = "baseline",
                     xlabel: str = "sequence length", ylabel: str = "score", title: str | None = None,
                     spread: Mapping[str, tuple] | None = None, logx: bool = False,
                     figsize=(6.0, 3.2)) -> Figure:
    """A score (accuracy, MSE, ...) against sequence length, one marked line per model.

    Args:
        lengths: shape (N,).   curves: {model: scores (N,)}.
        baseline: a number (a dashed line) or N numbers (a dashed line through them), e.g. what
            a model that remembers nothing scores.
        spread: {model: (lows (N,), highs (N,))}, e.g. the range over recorded seeds, drawn as a
            band in the model's colour behind its line; models not in it get no band.
        logx: a logarithmic length axis, ticks at the given lengths.

    Returns:
        The figure: one line per model (with its band), then the baseline.
    """
    xs = _as_array(lengths, "lengths", ndim=1)
    ys = _curves(curves, "curves")
    spread = dict(spread or {})
    unknown = set(spread) - set(ys)
    if unknown:
        raise ValueError(f"spread names models that have no curve: {sorted(unknown)}")
    fig, ax = _new_figure(figsize)
    for label, values in ys.items():
        if values.size != xs.size:
            raise ValueError(f"curves[{label!r}] has {values.size} values but lengths has {xs.size}")
        line, = ax.plot(xs, values, marker="o", label=label)
        if label in spread:
            low, high = (_as_array(v, f"spread[{label!r}]", ndim=1) for v in spread[label])
            if low.size != xs.size or high.size != xs.size:
                raise ValueError(f"spread[{label!r}] needs {xs.size} lows and {xs.size} highs")
            ax.fill_between(xs, low, high, color=line.get_color(), alpha=0.2, lw=0)
    if logx:
        ax.set_xscale("log")
        ax.set_xticks(xs, [f"{x:g}" for x in xs])
        ax.minorticks_off()
    if baseline is not None:
        base = np.broadcast_to(_as_array(np.atleast_1d(baseline), "baseline", ndim=1), xs.shape)
        ax.plot(xs, base, color="tab:red", ls="--", lw=1.2, label=baseline_label)
    ax.set_xlabel(xlabel)
    ax.set_ylabel(ylabel)
    if title:
        ax.set_title(title)
    ax.legend(loc="best", fontsize="small")
    return fig


# ---- the Attention chapter -------------------------------------------------------------------


def _tick_labels(labels, n: int, name: str, axis: str) -> list[str]:
    if labels is None:
        return [str(i) for i in range(1, n + 1)]
    labels = [str(label) for label in labels]
    if len(labels) != n:
        raise ValueError(f"{name} must give one label per {axis}: the weights have {n}, got {len(labels)} labels")
    return labels


def attention_heads(weights, *, source_labels: Sequence[str] | None = None,
                    target_labels: Sequence[str] | None = None, highlight: Sequence[tuple[int, int]] = (),
                    title: str | None = None, panel_size: float = 1.9) -> Figure:
    """Every head's attention weights at once: a grid of heatmaps, row l = layer l, column i = head i.

    Args:
        weights: shape (L, nh, T, S): for layer l and head i, the weight of query (target) position t
            on key (source) position j, e.g. ``TransformerSeq2Seq.greedy(..., return_attention=True)[1][b]``
            for one sequence b. Values lie in [0, 1] (rows sum to 1), the colour scale.
        source_labels: S tick labels for the keys (the source tokens); default ``1 ... S``.
        target_labels: T tick labels for the queries (the tokens written); default ``1 ... T``.
        highlight: (layer, head) pairs, counted from 0, whose panels get a red frame (e.g. the heads
            a measurement picked out).
        title: optional figure title.   panel_size: inches per panel.

    Returns:
        The figure: L * nh axes in row-major order (layer, then head), each holding one image whose
        array is ``weights[l, i]`` and titled "layer l+1, head i+1", then one colour bar.
    """
    array = _as_array(weights, "weights", ndim=4, shape="(L, nh, T, S)")
    layers, heads, T, S = array.shape
    x_labels = _tick_labels(source_labels, S, "source_labels", "source position")
    y_labels = _tick_labels(target_labels, T, "target_labels", "target position")
    framed = set()
    for pair in highlight:
        l, i = pair
        if not (0 <= l < layers and 0 <= i < heads):
            raise ValueError(f"highlight names (layer {l}, head {i}), but the weights have {layers} layers "
                             f"and {heads} heads (counted from 0)")
        framed.add((l, i))
    fig, axes = plt.subplots(layers, heads, squeeze=False, layout="constrained",
                             figsize=(0.6 + panel_size * heads * max(1.0, S / T), 0.4 + panel_size * layers))
    plt.close(fig)  # returned, not shown (module docstring)
    for l in range(layers):
        for i in range(heads):
            ax = axes[l, i]
            image = ax.imshow(array[l, i], cmap="viridis", vmin=0.0, vmax=1.0, interpolation="nearest")
            ax.set_title(f"layer {l + 1}, head {i + 1}", fontsize="small",
                         color="tab:red" if (l, i) in framed else "black")
            ax.set_xticks(range(S), x_labels if l == layers - 1 else [""] * S, fontsize="x-small")
            ax.set_yticks(range(T), y_labels if i == 0 else [""] * T, fontsize="x-small")
            if (l, i) in framed:
                for spine in ax.spines.values():
                    spine.set(color="tab:red", linewidth=2.5)
        axes[l, 0].set_ylabel("target", fontsize="small")
    for ax in axes[-1]:
        ax.set_xlabel("source", fontsize="small")
    fig.colorbar(image, ax=axes, shrink=0.8, label="attention weight")
    if title:
        fig.suptitle(title)
    return fig
