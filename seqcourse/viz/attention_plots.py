"""Figures of attention: which source positions each output step reads.

    attention_maps({model: weights (T, S)})             one heatmap per model, side by side
    attention_heads(weights (L, nh, T, S), ...)         one heatmap per layer and head, e.g. cross-attention

Each returns a ``matplotlib.figure.Figure``, closed in pyplot, as in ``seqcourse.viz.plots``.
"""
from __future__ import annotations

from collections.abc import Mapping, Sequence

import numpy as np
from matplotlib.figure import Figure

from .figure import as_array, new_figure

__all__ = ["attention_maps", "attention_heads"]


def _tick_labels(labels, n: int, name: str, axis: str) -> list[str]:
    if labels is None:
        return [str(i) for i in range(1, n + 1)]
    labels = [str(label) for label in labels]
    if len(labels) != n:
        raise ValueError(f"{name} must give one label per {axis}: the weights have {n}, got {len(labels)} labels")
    return labels


def _attention_panel(ax, weights: np.ndarray, x_labels: list[str], y_labels: list[str], title: str,
                     framed: bool = False, fontsize: str = "x-small"):
    """One (T, S) matrix of attention weights on ``ax``, colour scale [0, 1]; returns the image."""
    image = ax.imshow(weights, cmap="viridis", vmin=0.0, vmax=1.0, interpolation="nearest")
    ax.set_title(title, fontsize="small", color="tab:red" if framed else "black")
    ax.set_xticks(range(weights.shape[1]), x_labels, fontsize=fontsize)
    ax.set_yticks(range(weights.shape[0]), y_labels, fontsize=fontsize)
    if framed:
        for spine in ax.spines.values():
            spine.set(color="tab:red", linewidth=2.5)
    return image


def attention_maps(weights: Mapping[str, object], *, source_labels: Sequence[str] | None = None,
                   target_labels: Mapping[str, Sequence[str]] | Sequence[str] | None = None,
                   xlabel: str = "source token x_j", ylabel: str = "output token (step t)",
                   panel_size: float = 3.6) -> Figure:
    """Side by side, the attention weights of several models on the same source: panel m is model
    m's alpha_{t,j}, the weight that output step t puts on source position j.

    Args:
        weights: {model: (T, S)} in panel order, e.g. the second value of
            ``Seq2Seq.greedy(src, T, return_attention=True)`` for one sequence; values in [0, 1].
        source_labels: S tick labels (the source tokens), shared; default ``1 ... S``.
        target_labels: T tick labels per model ({model: labels}: each model writes its own output),
            or one list for all; default ``1 ... T``.

    Returns:
        The figure: one axes per model, in order, holding one image whose array is that model's
        weights, titled "<model> attention alpha_t,j", then one colour bar "attention weight".
    """
    if not isinstance(weights, Mapping) or not weights:
        raise TypeError("weights must be a non-empty mapping {model: attention weights (T, S)}")
    arrays = {str(name): as_array(w, f"weights[{name!r}]", ndim=2, shape="(T, S)") for name, w in weights.items()}
    fig, axes = new_figure((0.9 + panel_size * len(arrays), panel_size), grid=(1, len(arrays)))
    for ax, (name, array) in zip(axes[0], arrays.items()):
        T, S = array.shape
        rows = target_labels.get(name) if isinstance(target_labels, Mapping) else target_labels
        image = _attention_panel(ax, array, _tick_labels(source_labels, S, "source_labels", "source position"),
                                 _tick_labels(rows, T, "target_labels", "target position"),
                                 f"{name} attention $\\alpha_{{t,j}}$", fontsize="small")
        ax.set_xlabel(xlabel)
        ax.set_ylabel(ylabel)
    fig.colorbar(image, ax=axes, shrink=0.8, label="attention weight")
    return fig


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
    array = as_array(weights, "weights", ndim=4, shape="(L, nh, T, S)")
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
    fig, axes = new_figure((0.6 + panel_size * heads * max(1.0, S / T), 0.4 + panel_size * layers),
                           grid=(layers, heads))
    for l in range(layers):
        for i in range(heads):
            image = _attention_panel(axes[l, i], array[l, i], x_labels if l == layers - 1 else [""] * S,
                                     y_labels if i == 0 else [""] * T, f"layer {l + 1}, head {i + 1}",
                                     framed=(l, i) in framed)
        axes[l, 0].set_ylabel("target", fontsize="small")
    for ax in axes[-1]:
        ax.set_xlabel("source", fontsize="small")
    fig.colorbar(image, ax=axes, shrink=0.8, label="attention weight")
    if title:
        fig.suptitle(title)
    return fig
