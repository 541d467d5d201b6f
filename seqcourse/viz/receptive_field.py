"""The receptive field of a causal model: measured by autograd, traced by hand, drawn, explored.

The receptive field R of a causal sequence model is how many inputs its output at step t can
depend on: y_t is a function of x_{t-R+1} ... x_t. For a stack of causal convolutions with kernel
size k and dilations d_1 ... d_n the formula is R = 1 + (k-1)(d_1 + ... + d_n)
(``seqcourse.models.tcn.receptive_field``). This module checks that formula two other ways::

    input_gradient_mask(model, x, t=-1)         which x_s get a non-zero gradient from y_t (autograd)
    empirical_receptive_field(model, length)    R = T - (earliest such s), from that mask
    influence_cone(kernel_size, dilations, T)   the positions of every layer that reach y_{T-1},
                                                traced backwards through the taps (no model needed)

and draws the cone::

    receptive_field_figure(kernel_size, num_levels, convs_per_block=1)   static matplotlib figure
    ReceptiveFieldExplorer(...)                  sliders for k and the depth -> the same drawing

The measurement works for any model whose forward returns outputs (B, T, H) or a tuple
(outputs, state): for a recurrent model every earlier input reaches y_t, and the mask is all True.
ipywidgets is imported only when an explorer is built.
"""
from __future__ import annotations

from collections.abc import Sequence

import numpy as np
import torch
from matplotlib.collections import LineCollection
from matplotlib.figure import Figure

from .alt_text import figure_img
from .figure import new_figure
from ..models.tcn import receptive_field
from ..validation import WEIGHTS_DTYPE, expect_int, expect_tensor, module_dtype_device

__all__ = [
    "ReceptiveFieldExplorer",
    "empirical_receptive_field",
    "influence_cone",
    "input_gradient_mask",
    "receptive_field_figure",
]


def _outputs(model: torch.nn.Module, x: torch.Tensor) -> torch.Tensor:
    out = model(x)
    out = out[0] if isinstance(out, (tuple, list)) else out
    if not isinstance(out, torch.Tensor) or out.ndim != 3 or out.shape[:2] != x.shape[:2]:
        got = tuple(out.shape) if isinstance(out, torch.Tensor) else type(out).__name__
        raise ValueError(f"model(x) must return outputs of shape (B, T, H) = ({x.shape[0]}, {x.shape[1]}, H), "
                         f"or a tuple (outputs, state); got {got}")
    return out


def input_gradient_mask(model: torch.nn.Module, x: torch.Tensor, t: int = -1,
                        generator: torch.Generator | None = None) -> torch.Tensor:
    """Which inputs the output at step t depends on: a bool tensor (T,), True at s when ∂y_t/∂x_s ≠ 0.

    Computes g = vᵀ ∂y_t/∂x by one backward pass with a random cotangent v (B, H) ~ N(0, 1) drawn
    from ``generator`` (a random v cannot cancel a non-zero Jacobian entry except on a set of
    probability zero) and marks s when g[b, s, :] is non-zero for some example b: the union over
    the batch. For one sequence, ReLUs that are off on every path from x_s cut x_s off; a batch of
    random sequences makes that rare, unless a unit is off for every input, in which case the
    function really does not depend on x_s and the mask is smaller than the architecture allows.
    x (B, T, D) on the model's device.
    """
    if not isinstance(model, torch.nn.Module):
        raise TypeError(f"model must be a torch.nn.Module; got {type(model).__name__}")
    dtype, device = module_dtype_device(model)
    expect_tensor(x, "x", dims=("B", "T", "D"), dtype=dtype, device=device,
                  dtype_reason=WEIGHTS_DTYPE)
    steps = x.shape[1]
    expect_int(t, "t", minimum=-steps, maximum=steps - 1)
    x = x.detach().clone().requires_grad_(True)
    with torch.enable_grad():
        y_t = _outputs(model, x)[:, t]  # (B, H)
        v = torch.randn(y_t.shape, generator=generator, dtype=y_t.dtype).to(y_t.device)
        (g,) = torch.autograd.grad(y_t, x, grad_outputs=v)  # (B, T, D)
    return (g != 0).any(dim=2).any(dim=0).cpu()


def empirical_receptive_field(model: torch.nn.Module, length: int, *, input_size: int | None = None,
                              batch: int = 32, generator: torch.Generator | None = None) -> int:
    """R measured by autograd: T - s_min, where s_min is the earliest step whose input gets a non-zero
    gradient from the last output y_{T-1} (``input_gradient_mask`` on ``batch`` random sequences
    x ~ N(0, 1) of length T = ``length``).

    ``input_size`` defaults to ``model.input_size``. Raises ``ValueError`` when even x_0 reaches
    y_{T-1}: the receptive field is then at least T, and only a longer sequence can measure it.
    """
    expect_int(length, "length", minimum=1)
    expect_int(batch, "batch", minimum=1)
    if input_size is None:
        input_size = getattr(model, "input_size", None)
        if input_size is None:
            raise ValueError(f"{type(model).__name__} has no input_size attribute; pass input_size=D")
    expect_int(input_size, "input_size", minimum=1)
    dtype, device = module_dtype_device(model)
    x = torch.randn(batch, length, input_size, generator=generator, dtype=dtype).to(device)
    mask = input_gradient_mask(model, x, generator=generator)
    if mask[0]:
        raise ValueError(f"the first input x_0 reaches y_{length - 1}: the receptive field is at least "
                         f"length={length}; measure with a longer sequence")
    return length - int(mask.nonzero()[0])


def influence_cone(kernel_size: int, dilations: Sequence[int], length: int) -> list[np.ndarray]:
    """The positions of every layer that reach the last output, traced backwards through the taps.

    A stack of causal convolutions with the given dilations (one per convolution, bottom first)
    runs on T = ``length`` steps. Position t of layer n reads positions t - i d_n (i = 0 ... k-1) of
    layer n-1. Starting from {T-1} at the top, the function walks down and returns one sorted int
    array per row: ``cone[0]`` the inputs (the receptive field, cut at step 0), ``cone[n]`` the
    positions of the output of convolution n that y_{T-1} depends on.
    """
    expect_int(kernel_size, "kernel_size", minimum=1)
    expect_int(length, "length", minimum=1)
    receptive_field(kernel_size, dilations)  # validates the dilations
    rows = [np.array([length - 1])]
    for d in reversed(list(dilations)):
        reached = (rows[0][:, None] - d * np.arange(kernel_size)[None, :]).ravel()
        rows.insert(0, np.unique(reached[reached >= 0]))
    return rows


def receptive_field_figure(kernel_size: int, num_levels: int, convs_per_block: int = 1, *,
                           length: int | None = None, figsize=None) -> Figure:
    """Draw the cone of a TCN-style stack: levels l = 0 ... L-1 with dilation 2^l, c convolutions each.

    Rows are the input (bottom) and the output of every convolution; columns are steps 0 ... T-1
    (T = ``length``, default R + 4 so a few inputs lie outside the field). Dots are positions; the
    coloured ones reach the last output y_{T-1}, and lines join each of them to the k taps it reads.
    Residual shortcuts only join a position to the same step one block down, so they add nothing to
    the field and are not drawn. The title gives R by the formula; the bracket under the inputs
    spans the coloured inputs, whose count is the same number.
    """
    expect_int(kernel_size, "kernel_size", minimum=1)
    expect_int(num_levels, "num_levels", minimum=1)
    expect_int(convs_per_block, "convs_per_block", minimum=1)
    dilations = [2**level for level in range(num_levels) for _ in range(convs_per_block)]
    r = receptive_field(kernel_size, dilations)
    steps = r + 4 if length is None else expect_int(length, "length", minimum=1)
    cone = influence_cone(kernel_size, dilations, steps)
    rows = len(dilations) + 1
    if figsize is None:
        figsize = (min(12.0, max(6.5, 3.0 + 0.09 * steps)), 1.2 + 0.42 * rows)
    fig, ax = new_figure(figsize)
    size = 14 if steps <= 40 else (6 if steps <= 120 else 2)
    for row in range(rows):
        ax.scatter(np.arange(steps), np.full(steps, row), s=size, color="0.85", zorder=1)
    segments = []
    for row, d in enumerate(dilations, start=1):
        for t in cone[row]:
            for i in range(kernel_size):
                if t - i * d >= 0:
                    segments.append([(t, row), (t - i * d, row - 1)])
    ax.add_collection(LineCollection(segments, colors="tab:blue", linewidths=0.6, alpha=0.5, zorder=2))
    for row, positions in enumerate(cone):
        ax.scatter(positions, np.full(len(positions), row), s=size * 1.6, zorder=3,
                   color="tab:red" if row in (0, rows - 1) else "tab:blue")
    first = int(cone[0][0])
    ax.annotate("", xy=(first - 0.4, -0.55), xytext=(steps - 0.6, -0.55),
                arrowprops={"arrowstyle": "|-|", "color": "tab:red", "lw": 1.2})
    ax.text((first + steps - 1) / 2, -0.95, f"{len(cone[0])} inputs reach $y_{{{steps - 1}}}$",
            ha="center", va="top", color="tab:red", fontsize=9)
    labels = ["input $x$"] + [f"level {level}, $d={2**level}$" + (f" (conv {i + 1})" if convs_per_block > 1 else "")
                              for level in range(num_levels) for i in range(convs_per_block)]
    ax.set_yticks(range(rows))
    ax.set_yticklabels(labels, fontsize=8)
    ax.set_ylim(-1.4, rows - 0.5)
    ax.set_xlim(-1, steps)
    ax.set_xlabel("step t")
    for side in ("top", "right", "left"):
        ax.spines[side].set_visible(False)
    if convs_per_block > 1:
        title = (f"k = {kernel_size}, {num_levels} levels × {convs_per_block} convolutions: "
                 f"R = {convs_per_block}·({kernel_size}−1)·(2^{num_levels}−1)+1 = {r}")
    else:
        title = f"k = {kernel_size}, {num_levels} levels: R = ({kernel_size}−1)·(2^{num_levels}−1)+1 = {r}"
    ax.set_title(title, fontsize=10)
    fig.set_label(f"Diagram of {len(dilations)} causal convolutions with kernel size {kernel_size} and dilations "
                  f"{', '.join(map(str, dilations))} over {steps} steps: lines trace the {len(cone[0])} inputs "
                  f"that reach the last output")  # the figure's alt text starts with it (seqcourse.viz.alt_text)
    return fig


def _ipywidgets():
    try:
        import ipywidgets
    except ImportError as error:  # pragma: no cover - ipywidgets is in requirements.txt
        raise ImportError("ReceptiveFieldExplorer needs ipywidgets: pip install ipywidgets "
                          "(receptive_field_figure works without it)") from error
    return ipywidgets


class ReceptiveFieldExplorer:
    """Sliders for the kernel size k and the number of levels L (and a choice of 1 or 2
    convolutions per level) above ``receptive_field_figure`` for those settings and a line with R.

    Attributes after each update: ``receptive_field`` (R by the formula), ``cone`` (the
    ``influence_cone`` drawn), ``figure``; the widgets ``kernel_size``, ``num_levels``,
    ``convs_per_block``, ``message``, ``image`` inside ``widget``. The picture is an HTML ``<img>``
    of PNG bytes with alt text (``seqcourse.viz.alt_text.figure_img``; its bytes are ``png``), so a
    stored notebook keeps the initial drawing.
    """

    def __init__(self, kernel_size: int = 2, num_levels: int = 3, *, convs_per_block: int = 1,
                 max_kernel_size: int = 5, max_levels: int = 6):
        widgets = _ipywidgets()
        expect_int(max_kernel_size, "max_kernel_size", minimum=2)
        expect_int(max_levels, "max_levels", minimum=1)
        expect_int(kernel_size, "kernel_size", minimum=2, maximum=max_kernel_size)
        expect_int(num_levels, "num_levels", minimum=1, maximum=max_levels)
        expect_int(convs_per_block, "convs_per_block", minimum=1, maximum=2)
        self.kernel_size = widgets.IntSlider(value=kernel_size, min=2, max=max_kernel_size, description="kernel k")
        self.num_levels = widgets.IntSlider(value=num_levels, min=1, max=max_levels, description="levels L")
        self.convs_per_block = widgets.ToggleButtons(options=[("1 conv per level", 1), ("2 (Bai et al.)", 2)],
                                                     value=convs_per_block)
        self.message = widgets.HTML()
        self.png = b""
        self.image = widgets.HTML()
        self.widget = widgets.VBox([widgets.HBox([self.kernel_size, self.num_levels]), self.convs_per_block,
                                    self.message, self.image])
        self.receptive_field: int | None = None
        self.cone: list[np.ndarray] = []
        self.figure: Figure | None = None
        self.update()
        for control in (self.kernel_size, self.num_levels, self.convs_per_block):
            control.observe(lambda change: self.update(), names="value")

    def update(self) -> None:
        """Recompute R and the cone for the current slider values and redraw."""
        k, levels, c = self.kernel_size.value, self.num_levels.value, self.convs_per_block.value
        dilations = [2**level for level in range(levels) for _ in range(c)]
        self.receptive_field = receptive_field(k, dilations)
        self.cone = influence_cone(k, dilations, self.receptive_field + 4)
        self.figure = receptive_field_figure(k, levels, c)
        self.png, self.image.value = figure_img(self.figure)
        self.message.value = (f"R = {c}·(k−1)·(2<sup>L</sup>−1) + 1 = {self.receptive_field} inputs reach the last "
                              f"output, through {levels * c} convolutions of {k} taps; the traced cone has "
                              f"{len(self.cone[0])} inputs.")

    def _repr_mimebundle_(self, **kwargs):
        return self.widget._repr_mimebundle_(**kwargs)
