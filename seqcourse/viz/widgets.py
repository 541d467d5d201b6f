"""ipywidgets explorers for the book.

``HiddenStateExplorer`` lets a reader type a short input and watch a recurrent network step
through it: for every step t it shows the hidden state h_t = tanh(W_x x_t + W_h h_{t-1} + b) as
one column of a heatmap (``seqcourse.viz.plots.hidden_state_heatmap``), redrawn whenever the text
changes. The heatmap is an HTML ``<img>`` of PNG bytes with alt text that says what it shows
(``seqcourse.viz.alt_text.figure_img``; an ``ipywidgets.Image`` cannot carry alt text), so the widget
state a notebook stores (and the rendered book embeds) already contains the picture for the
initial input. Each explorer keeps the PNG bytes of its last drawing as ``png``.

``GradientNormExplorer`` (the Gradients chapter) has sliders for the spectral radius of W_h, the
distance K and the input scale, and draws the Jacobian-chain norm over distance for a linear and
a tanh recurrence with that W_h (``seqcourse.measure.analysis.gradient_decay_curves``).

``NormPlacementExplorer`` (the Normalization chapter) has a depth slider and a choice of LayerNorm
placement (pre-norm, post-norm or both), and draws the gradient norm reaching each block of a
freshly initialised stack (``seqcourse.measure.normalization.stack_gradient_norms``).

ipywidgets is imported only when an explorer is built: ``import seqcourse.viz.widgets`` works without
it, and building an explorer without it raises an ``ImportError`` that says what to install.
"""
from __future__ import annotations

import html
from collections.abc import Callable

import numpy as np
import torch

from .alt_text import figure_img
from ..measure.analysis import gradient_decay_curves
from ..measure.normalization import LayerGradients, stack_gradient_norms
from .plots import gradient_norms, hidden_state_heatmap

__all__ = ["GradientNormExplorer", "HiddenStateExplorer", "NormPlacementExplorer", "char_encoder", "number_encoder",
           "step_states"]

Encoder = Callable[[str], "tuple[list[str], torch.Tensor]"]
"""Turns the reader's text into (one label per step, inputs x of shape (T, D))."""


def _ipywidgets():
    try:
        import ipywidgets
    except ImportError as error:
        raise ImportError(
            "seqcourse.viz.widgets needs ipywidgets to build an explorer: pip install ipywidgets "
            "(the static figures in seqcourse.viz.plots work without it)"
        ) from error
    return ipywidgets


_VISIBLE = {" ": "\u2423", "\n": "\\n", "\t": "\\t"}
"""How whitespace characters are labelled on the heatmap's time axis (a blank tick is unreadable)."""


def char_encoder(vocab) -> Encoder:
    """An encoder for character input, as the language models of the book read it: one step per
    character, x_t the one-hot vector of its id (D = len(vocab)), labelled by the character
    (a space shows as \u2423, a newline as \\n).

    ``vocab`` is a ``seqcourse.data.text.CharVocab`` (anything with ``stoi``, ``encode`` and ``len``).
    The encoder raises ``ValueError`` naming the characters the vocabulary does not have.
    """

    def encode(text: str) -> tuple[list[str], torch.Tensor]:
        unknown = sorted(set(text) - set(vocab.stoi))
        if unknown:
            shown = " ".join(repr(c) for c in unknown)
            raise ValueError(f"not in the model's vocabulary of {len(vocab)} characters: {shown}")
        ids = vocab.encode(text)  # (T,)
        x = torch.nn.functional.one_hot(ids, len(vocab)).float()  # (T, V)
        return [_VISIBLE.get(c, c) for c in text], x

    return encode


def number_encoder(text: str) -> tuple[list[str], torch.Tensor]:
    """An encoder for scalar input: ``"1, -1, 2"`` (commas or spaces) -> x of shape (T, 1).

    Raises ``ValueError`` naming the first entry that is not a number.
    """
    entries = text.replace(",", " ").split()
    values = []
    for entry in entries:
        try:
            values.append(float(entry))
        except ValueError:
            raise ValueError(f"{entry!r} is not a number; type numbers separated by commas, e.g. 1, -1, 2") from None
    if not values:
        raise ValueError("type at least one number, e.g. 1, -1, 2")
    if not np.all(np.isfinite(values)):
        raise ValueError("the numbers must be finite (no inf or nan)")
    return entries, torch.tensor(values, dtype=torch.float32).unsqueeze(1)


def step_states(rnn, x: torch.Tensor) -> np.ndarray:
    """Step ``rnn`` through one sequence x (T, D) from a zero state; return h_1 ... h_T as (T, H).

    Uses ``rnn.step(x_t (1, D), state) -> (y_t (1, H), state)``, one call per step, as a reader
    would feed tokens one at a time; y_t is the top layer's hidden state.
    """
    if not isinstance(x, torch.Tensor) or x.dim() != 2:
        got = f"shape {tuple(x.shape)}" if isinstance(x, torch.Tensor) else type(x).__name__
        raise ValueError(f"x must be a tensor of shape (T, D) for one sequence; got {got}")
    if not hasattr(rnn, "step"):
        raise TypeError(f"rnn must have a step(x_t, state) method (every seqcourse recurrent model does); "
                        f"got {type(rnn).__name__}")
    parameter = next(rnn.parameters())
    x = x.to(device=parameter.device, dtype=parameter.dtype)
    state, rows = None, []
    with torch.no_grad():
        for x_t in x.unbind(0):
            y_t, state = rnn.step(x_t.unsqueeze(0), state)  # (1, H)
            rows.append(y_t[0])
    return torch.stack(rows).cpu().numpy()


class HiddenStateExplorer:
    """A text box, a message line and a heatmap of h_t over t for the typed input.

    Args:
        rnn: a recurrent model with ``step`` (e.g. ``seqcourse.models.rnn.RNN``).
        encode: text -> (labels, x (T, D)); ``char_encoder(vocab)`` or ``number_encoder``. It
            raises ``ValueError``/``TypeError`` for input it cannot take.
        value: the initial input, drawn before the widget is displayed.
        max_len: longest input accepted (in characters of the text box).
        title: title of the heatmap.

    Attributes after each update: ``states`` (T, H) ndarray and ``labels`` of the last valid
    input, ``error`` (``None`` or the message shown for bad input), ``figure`` (the last heatmap)
    and ``png`` (its bytes), and the widgets ``text``, ``message``, ``image`` inside the ``widget`` box. Bad input never
    raises: it shows a message and leaves the last valid heatmap in place.
    """

    def __init__(self, rnn, encode: Encoder, *, value: str, max_len: int = 40, title: str | None = None):
        widgets = _ipywidgets()
        if not callable(encode):
            raise TypeError(f"encode must be a callable text -> (labels, x (T, D)); got {type(encode).__name__}")
        if isinstance(max_len, bool) or not isinstance(max_len, int) or max_len < 1:
            raise ValueError(f"max_len must be a positive int; got {max_len!r}")
        self.rnn, self.encode, self.max_len, self.title = rnn, encode, max_len, title
        self.states: np.ndarray | None = None
        self.labels: list[str] = []
        self.error: str | None = None
        self.figure = None
        self.text = widgets.Text(value=value, description="input:", continuous_update=False)
        self.message = widgets.HTML()
        self.png = b""
        self.image = widgets.HTML()
        self.widget = widgets.VBox([self.text, self.message, self.image])
        self.update(value)
        self.text.observe(lambda change: self.update(change["new"]), names="value")

    def _fail(self, message: str) -> bool:
        self.error = message
        self.message.value = f'<span style="color:#b00020">{html.escape(message)}</span>'
        return False

    def update(self, value: str) -> bool:
        """Recompute and redraw for ``value``; return False (and show why) for bad input."""
        if not isinstance(value, str) or not value.strip():
            return self._fail("Type some input: the box is empty.")
        if len(value) > self.max_len:
            return self._fail(f"The input has {len(value)} characters; this explorer takes at most {self.max_len}.")
        try:
            labels, x = self.encode(value)
        except (ValueError, TypeError) as error:
            return self._fail(f"Cannot read this input: {error}")
        states = step_states(self.rnn, x)
        self.states, self.labels, self.error = states, list(labels), None
        self.figure = hidden_state_heatmap(states, self.labels, title=self.title)
        self.png, self.image.value = figure_img(self.figure)
        steps, units = states.shape
        self.message.value = f"{steps} steps, {units} hidden units: column t is h_t after reading input t."
        return True

    def _repr_mimebundle_(self, **kwargs):
        return self.widget._repr_mimebundle_(**kwargs)


class GradientNormExplorer:
    """Sliders for the spectral radius ρ of W_h, the distance K and the input scale, and the
    Jacobian-chain norm over k = 1 ... K for a linear and a tanh recurrence with that W_h.

    The curves are ``seqcourse.measure.analysis.gradient_decay_curves(radius, distance, ...)``, drawn by
    ``seqcourse.viz.plots.gradient_norms``: the same computation as the chapter's static figure.
    The plot is an HTML ``<img>`` of PNG bytes with alt text, so the stored widget state shows the
    initial picture.

    Args:
        radius: initial ρ (0.1 ... 4).   distance: initial K (5 ... 300).
        input_scale: initial standard deviation of the tanh RNN's input weights (0 ... 3).
        hidden_size: H.   seed: the random W_h (the same matrix, rescaled, for every ρ).

    Attributes after each update: ``curves`` ({"linear": ..., "tanh": ...} tensors of shape (K,)),
    ``figure`` and ``png`` (its bytes), and the widgets ``radius``, ``distance``, ``input_scale``,
    ``message``, ``image`` inside ``widget``.
    """

    def __init__(self, radius: float = 1.0, distance: int = 60, *, input_scale: float = 1.0,
                 hidden_size: int = 32, seed: int = 0):
        widgets = _ipywidgets()
        self.hidden_size, self.seed = hidden_size, seed
        self.curves: dict[str, torch.Tensor] = {}
        self.figure = None
        style = {"description_width": "initial"}
        self.radius = widgets.FloatSlider(value=radius, min=0.1, max=4.0, step=0.05, continuous_update=False,
                                          description="spectral radius ρ", style=style)
        self.distance = widgets.IntSlider(value=distance, min=5, max=300, step=5, continuous_update=False,
                                          description="distance K", style=style)
        self.input_scale = widgets.FloatSlider(value=input_scale, min=0.0, max=3.0, step=0.1,
                                               continuous_update=False, description="input scale", style=style)
        self.message = widgets.HTML()
        self.png = b""
        self.image = widgets.HTML()
        self.widget = widgets.VBox([self.radius, self.distance, self.input_scale, self.message, self.image])
        self.update()
        for slider in (self.radius, self.distance, self.input_scale):
            slider.observe(lambda change: self.update(), names="value")

    def update(self) -> None:
        """Recompute both curves for the sliders' values and redraw."""
        radius, K = float(self.radius.value), int(self.distance.value)
        self.curves = gradient_decay_curves(radius, K, hidden_size=self.hidden_size,
                                            input_scale=float(self.input_scale.value), seed=self.seed)
        k = np.arange(1, K + 1)
        self.figure = gradient_norms(k, {"linear: ‖W_h^k‖₂": self.curves["linear"],
                                         "tanh RNN: ‖∂h_K/∂h_(K−k)‖₂": self.curves["tanh"]},
                                     title=f"H = {self.hidden_size}, ρ(W_h) = {radius:.2f}")
        self.png, self.image.value = figure_img(self.figure)
        linear, tanh = self.curves["linear"][-1].item(), self.curves["tanh"][-1].item()
        self.message.value = (f"after K = {K} steps: linear {linear:.3g}, tanh {tanh:.3g} "
                              f"(1 means neither shrinking nor growing)")

    def _repr_mimebundle_(self, **kwargs):
        return self.widget._repr_mimebundle_(**kwargs)


class NormPlacementExplorer:
    """A depth slider, a placement choice and a measure, and the gradient norm per block of a
    freshly initialised stack of Transformer blocks with LayerNorm before (pre-norm,
    x + F(LN(x))) or after (post-norm, LN(x + F(x))) each residual connection.

    The curves are ``seqcourse.measure.normalization.stack_gradient_norms(norm, depth, ...)``: the same
    computation as the chapter's static figure. Results are cached per (placement, depth), so
    moving back to a setting redraws without recomputing. The plot is an HTML ``<img>`` of PNG
    bytes with alt text, so the stored widget state shows the initial picture.

    Args:
        depth: initial number of blocks L (``min_depth`` ... ``max_depth``, even numbers).
        placement: ``"pre"``, ``"post"`` or ``"both"``.
        measure: ``"parameters"`` (||dloss/dtheta_l||) or ``"inputs"`` (||dloss/dx_l||).
        min_depth, max_depth: the slider's range.
        **stack_options: passed to ``stack_gradient_norms`` (``d_model``, ``n_heads``, ``seq_len``,
            ``batch_size``, ``seed``, ``repeats``, ``make_block``).

    Attributes after each update: ``curves`` ({"pre": LayerGradients, "post": ...} for the shown
    placements), ``figure`` and ``png`` (its bytes), and the widgets ``depth``, ``placement``, ``measure``, ``message``,
    ``image`` inside ``widget``.
    """

    MEASURES = {"parameters": "‖∂loss/∂θ_l‖ (block parameters)", "inputs": "‖∂loss/∂x_l‖ (block input)"}

    def __init__(self, depth: int = 24, placement: str = "both", *, measure: str = "parameters",
                 min_depth: int = 2, max_depth: int = 48, **stack_options):
        widgets = _ipywidgets()
        for value, name in ((min_depth, "min_depth"), (max_depth, "max_depth"), (depth, "depth")):
            if isinstance(value, bool) or not isinstance(value, int) or value < 1:
                raise ValueError(f"{name} must be a positive int; got {value!r}")
        if not min_depth <= depth <= max_depth:
            raise ValueError(f"depth must lie in [min_depth, max_depth] = [{min_depth}, {max_depth}]; got {depth}")
        if placement not in ("pre", "post", "both"):
            raise ValueError(f"placement must be 'pre', 'post' or 'both'; got {placement!r}")
        if measure not in self.MEASURES:
            raise ValueError(f"measure must be 'parameters' or 'inputs'; got {measure!r}")
        self.stack_options = stack_options
        self._cache: dict[tuple[str, int], LayerGradients] = {}
        self.curves: dict[str, LayerGradients] = {}
        self.figure = None
        style = {"description_width": "initial"}
        self.depth = widgets.IntSlider(value=depth, min=min_depth, max=max_depth, step=2 if min_depth % 2 == 0 else 1,
                                       continuous_update=False, description="depth L (blocks)", style=style)
        self.placement = widgets.ToggleButtons(options=[("pre-norm", "pre"), ("post-norm", "post"), ("both", "both")],
                                               value=placement, description="LayerNorm", style=style)
        self.measure = widgets.ToggleButtons(options=[("parameters", "parameters"), ("block inputs", "inputs")],
                                             value=measure, description="gradient of", style=style)
        self.message = widgets.HTML()
        self.png = b""
        self.image = widgets.HTML()
        self.widget = widgets.VBox([self.depth, self.placement, self.measure, self.message, self.image])
        self.update()
        for control in (self.depth, self.placement, self.measure):
            control.observe(lambda change: self.update(), names="value")

    def gradients(self, norm: str, depth: int) -> LayerGradients:
        """``stack_gradient_norms(norm, depth, **stack_options)``, computed once per (norm, depth)."""
        key = (norm, depth)
        if key not in self._cache:
            self._cache[key] = stack_gradient_norms(norm, depth, **self.stack_options)
        return self._cache[key]

    def update(self) -> None:
        """Recompute (or fetch) the curves for the controls' values and redraw."""
        depth, placement, measure = int(self.depth.value), self.placement.value, self.measure.value
        norms = ("pre", "post") if placement == "both" else (placement,)
        self.curves = {norm: self.gradients(norm, depth) for norm in norms}
        values = {norm: getattr(result, measure) for norm, result in self.curves.items()}
        layers = np.arange(1, depth + 1)
        self.figure = gradient_norms(layers, {f"{norm}-norm": v for norm, v in values.items()},
                                     xlabel="block l (1 = input end)", ylabel=self.MEASURES[measure],
                                     reference=None, title=f"L = {depth} blocks at initialisation")
        self.png, self.image.value = figure_img(self.figure)
        parts = [f"{norm}-norm: first block {v[0].item():.3g}, last block {v[-1].item():.3g}, "
                 f"median {v.median().item():.3g}" for norm, v in values.items()]
        self.message.value = "; ".join(parts)

    def _repr_mimebundle_(self, **kwargs):
        return self.widget._repr_mimebundle_(**kwargs)
