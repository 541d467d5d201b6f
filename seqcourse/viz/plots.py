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

    hidden_state_heatmap(states (T, H), labels=None)   h_t over t, one row per unit (or P_t per feature)
    loss_curve(losses, baseline=None)                   training loss per step, a reference line
    accuracy_bars({name: accuracy}, spread=None)        one bar per model, the recorded seeds' range on it
    memory_vs_length(lengths, {name: bytes})            bytes saved for backward against T

The Gradients chapter adds:

    gradient_norms(x, {name: norms})                    positive curves on a log axis (over distance or ρ)
    loss_curves({name: losses}, smooth=None)            several training runs on one axes
    eigenvalue_plot({name: eigenvalues})                eigenvalues in the complex plane, unit circle
    metric_vs_length(lengths, {name: scores}, spread)   a score against length, the seeds' range
    scores_by_task({task: panel}, spread)               the same, one panel per task (Comparison chapter)

Costs and panels (the Attention, State-space and Comparison chapters):

    cost_vs_length(T, {name: s}, {name: bytes})         time and memory against T (or position), log axes
    curve_panels(x, {title: {name: values}})            panels of curves over a common x, shared y

The attention maps are drawn by ``seqcourse.viz.attention_plots``, the State-space chapter's own
figures by ``seqcourse.viz.state_space_plots``; the input checks and the canvas all of them share
are ``seqcourse.viz.figure``.

"This run" against "recorded seeds": a figure of a trained result draws the live run as its lines or
bars and, given ``spread`` (``seqcourse.experiments.recorded_spread``), the range of the recorded
seeds as bands or error bars, with one legend entry (``spread_label``) saying which is which.
"""
from __future__ import annotations

from collections.abc import Mapping, Sequence

import numpy as np
from matplotlib.figure import Figure
from matplotlib.patches import Patch

from .figure import as_array, new_figure

__all__ = [
    "hidden_state_heatmap", "loss_curve", "accuracy_bars", "memory_vs_length",
    "gradient_norms", "loss_curves", "eigenvalue_plot", "metric_vs_length", "scores_by_task",
    "cost_vs_length", "curve_panels",
]


def hidden_state_heatmap(states, labels: Sequence[str] | None = None, *, title: str | None = None,
                         xlabel: str | None = None, ylabel: str = "hidden unit", value_label: str = "h_t",
                         figsize=(6.0, 2.6)) -> Figure:
    """Heatmap of the hidden states h_1 ... h_T (or any T vectors with entries in [-1, 1], such as
    positional encodings P_t): column t is h_t, row i is unit (feature) i.

    Args:
        states: shape (T, H), e.g. ``outputs[0]`` of ``RNN.forward`` for one sequence. Values of a
            tanh RNN lie in [-1, 1], which is the colour scale (red positive, blue negative).
        labels: optional T tick labels, one per step (the input tokens); default ``1 ... T``, every
            step ticked when T <= 32, a few ticks otherwise (the figure then keeps its width).
        title: optional axes title.   xlabel, ylabel, value_label: the axes' and the colour bar's
            labels (default x label "step t", or "step t (input token)" with ``labels``).

    Returns:
        The figure. Its axes hold one image whose array is ``states.T`` (shape (H, T)); the x axis
        is the step t (from 1), the y axis the unit, and a colour bar is labelled ``value_label``.
    """
    array = as_array(states, "states", ndim=2)
    steps, units = array.shape
    if labels is not None:
        labels = [str(label) for label in labels]
        if len(labels) != steps:
            raise ValueError(f"labels must give one label per step: states has T={steps} steps, got {len(labels)} labels")
    every_step = labels is not None or steps <= 32
    width = max(figsize[0], 2.0 + 0.28 * steps) if every_step else figsize[0]
    height = max(figsize[1], min(1.2 + 0.25 * units, 5.0))
    fig, ax = new_figure((width, height))
    image = ax.imshow(array.T, aspect="auto", cmap="RdBu_r", vmin=-1.0, vmax=1.0, interpolation="nearest",
                      extent=(0.5, steps + 0.5, units - 0.5, -0.5))  # column t centred on x = t
    if every_step:
        ax.set_xticks(range(1, steps + 1))
        ax.set_xticklabels(labels if labels is not None else [str(t) for t in range(1, steps + 1)])
    if units <= 16:
        ax.set_yticks(range(units))
    ax.set_xlabel(xlabel or ("step t (input token)" if labels is not None else "step t"))
    ax.set_ylabel(ylabel)
    if title:
        ax.set_title(title)
    fig.colorbar(image, ax=ax, label=value_label)
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
    values = as_array(losses, "losses", ndim=1)
    steps = np.arange(1, values.size + 1)
    fig, ax = new_figure(figsize)
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
                  highlight: str | None = None, spread: Mapping[str, tuple[float, float]] | None = None,
                  spread_label: str = "recorded seeds, min to max", title: str | None = None,
                  figsize=(6.0, 3.0)) -> Figure:
    """One bar per model, its height the accuracy (a fraction in [0, 1]), its value written on it.

    Args:
        accuracies: model name -> accuracy, in the order the bars should appear (this run).
        chance: draw a dashed line at the accuracy of guessing (e.g. 0.5 for two balanced classes).
        highlight: the name of one model whose bar gets a different colour.
        spread: {model: (low, high)}, e.g. the range over recorded seeds
            (``experiments.recorded_spread``), drawn as a black error bar on the model's bar and
            named ``spread_label`` in the legend; models not in it get none.

    Returns:
        The figure; the bar heights are the accuracies and the tick labels the names; with
        ``spread``, one error-bar container whose vertical segments run from low to high.
    """
    if not isinstance(accuracies, Mapping) or not accuracies:
        raise TypeError("accuracies must be a non-empty mapping {model name: accuracy in [0, 1]}")
    names = [str(name) for name in accuracies]
    values = as_array(list(accuracies.values()), "accuracies", ndim=1)
    if np.any(values < 0) or np.any(values > 1):
        raise ValueError(f"accuracies must be fractions in [0, 1]; got {dict(zip(names, values.tolist()))}")
    if highlight is not None and highlight not in names:
        raise ValueError(f"highlight={highlight!r} is not one of the models: {', '.join(names)}")
    spread = dict(spread or {})
    unknown = set(spread) - set(names)
    if unknown:
        raise ValueError(f"spread names models that have no bar: {sorted(unknown)}")
    fig, ax = new_figure(figsize)
    bars = ax.bar(names, values, color=["tab:green" if n == highlight else "tab:gray" for n in names],
                  label="this run" if spread else None)
    ax.bar_label(bars, labels=[f"{v:.3f}" for v in values], padding=2)
    handles = [bars] if spread else []
    if spread:
        where = [names.index(name) for name in spread]
        low, high = (as_array([spread[name][k] for name in spread], "spread", ndim=1) for k in (0, 1))
        middle = (low + high) / 2
        handles.append(ax.errorbar(where, middle, yerr=(middle - low, high - middle), fmt="none", ecolor="black",
                                   elinewidth=1.5, capsize=5, label=spread_label))
    if chance is not None:
        handles.append(ax.axhline(float(chance), color="tab:red", ls="--", lw=1.5, label="chance"))
    if spread:  # three entries: below the bars' names, not on the bars
        ax.legend(handles=handles, loc="upper center", bbox_to_anchor=(0.5, -0.12), ncol=len(handles), fontsize="small")
    elif handles:
        ax.legend(handles=handles, loc="lower right", fontsize="small")
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
    xs = as_array(lengths, "lengths", ndim=1)
    if not isinstance(curves, Mapping):
        curves = {"saved for backward": curves}
    fig, ax = new_figure(figsize)
    for label, nbytes in curves.items():
        ys = as_array(nbytes, f"curves[{label!r}]", ndim=1)
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
    return {str(label): as_array(values, f"{name}[{label!r}]", ndim=1) for label, values in curves.items()}


def gradient_norms(x, curves, *, xlabel: str = "distance k (steps back from the loss)",
                   ylabel: str = "gradient norm", reference: float | None = 1.0,
                   styles: Mapping[str, str] | None = None, vertical: float | None = None,
                   spread: Mapping[str, tuple] | None = None, spread_label: str = "recorded seeds, min to max",
                   title: str | None = None, figsize=(6.0, 3.4)) -> Figure:
    """Gradient norms (or any positive quantities: singular values, frequencies) on a logarithmic
    y axis, one line per curve.

    Args:
        x: the x values, shape (N,): distances k, or spectral radii for a sweep.
        curves: {label: values (N,)}, or one sequence. Zeros and non-finite values are left out
            of the lines (a log axis cannot show them).
        reference: draw a dotted horizontal line at this value (1: neither growing nor shrinking).
        styles: {label: matplotlib format string}, e.g. ``"o"`` for markers only or ``"--"``;
            curves not in it are solid lines.
        vertical: draw a dotted vertical line at this x (e.g. the edge of a receptive field).
        spread: {label: (lows (N,), highs (N,))}, e.g. the range over recorded seeds, drawn as in
            ``metric_vs_length`` (a band, or error bars where some x have NaN), named ``spread_label``
            in the legend.

    Returns:
        The figure: one line per curve, in the order given, then the reference line, then the
        vertical line, if any.
    """
    xs = as_array(x, "x", ndim=1)
    ys = _curves(curves, "curves")
    styles = dict(styles or {})
    spread = dict(spread or {})
    unknown = (set(styles) | set(spread)) - set(ys)
    if unknown:
        raise ValueError(f"styles or spread name curves that do not exist: {sorted(unknown)}")
    fig, ax = new_figure(figsize)
    for label, values in ys.items():
        if values.size != xs.size:
            raise ValueError(f"curves[{label!r}] has {values.size} values but x has {xs.size}: need one per x")
        shown = np.where(np.isfinite(values) & (values > 0), values, np.nan)
        line, = ax.plot(xs, shown, styles.get(label, "-"), lw=1.8, ms=4, label=label or None)
        if label in spread:
            _draw_spread(ax, xs, spread[label], label, line.get_color())
    if reference is not None:
        ax.axhline(float(reference), color="gray", ls=":", lw=1.2)
    if vertical is not None:
        ax.axvline(float(vertical), color="gray", ls=":", lw=1.0)
    ax.set_yscale("log")
    ax.set_xlabel(xlabel)
    ax.set_ylabel(ylabel)
    if title:
        ax.set_title(title)
    if any(ys):
        _legend(ax, ax, _spread_handles(ax, spread, spread_label), loc="best", fontsize="small")
    return fig


def loss_curves(curves, *, baseline: float | None = None, baseline_label: str = "baseline",
                logy: bool = False, smooth: int | None = None, ylabel: str = "loss",
                title: str | None = None, figsize=(6.0, 3.2)) -> Figure:
    """Several training-loss curves on one axes (runs may have different lengths, e.g. one that diverged).

    Args:
        curves: {label: losses per step}.
        baseline: a dashed reference line (e.g. the loss of the best constant prediction).
        logy: logarithmic y axis (for a run whose loss explodes).
        smooth: if given (an int >= 2), each run is drawn faint and, in the same colour and under
            its label, the running mean over this many steps (from step ``smooth`` on).

    Returns:
        The figure: one line per run (x = 1 ... its length), or with ``smooth`` two (the raw loss,
        unlabelled, then its running mean), then the baseline if given.
    """
    ys = _curves(curves, "curves")
    if smooth is not None and (isinstance(smooth, bool) or not isinstance(smooth, int) or smooth < 2):
        raise ValueError(f"smooth must be an int >= 2 (a window of steps) or None; got {smooth!r}")
    fig, ax = new_figure(figsize)
    for label, values in ys.items():
        steps = np.arange(1, values.size + 1)
        if smooth is None:
            ax.plot(steps, values, lw=1.2, label=label)
            continue
        raw, = ax.plot(steps, values, lw=0.8, alpha=0.3)
        window = min(smooth, values.size)
        running = np.convolve(values, np.ones(window) / window, mode="valid")
        ax.plot(steps[window - 1:], running, color=raw.get_color(), lw=2, label=label)
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
    fig, ax = new_figure(figsize)
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


def _draw_scores(ax, xs: np.ndarray, curves, spread, dashed: Sequence[str], spread_label: str) -> list:
    """One marked line per model on ``ax`` (dashed for the names in ``dashed``), each with its spread:
    a band where every x has a (low, high), error bars at the x that have one otherwise (NaN: none).
    Returns the legend entry for the spreads (``_spread_handles``), or [] when there is none."""
    ys = _curves(curves, "curves")
    spread = dict(spread or {})
    unknown = set(spread) - set(ys)
    if unknown:
        raise ValueError(f"spread names models that have no curve: {sorted(unknown)}")
    for label, values in ys.items():
        if values.size != xs.size:
            raise ValueError(f"curves[{label!r}] has {values.size} values but lengths has {xs.size}")
        line, = ax.plot(xs, values, "--" if label in dashed else "-", marker="o", label=label)
        if label in spread:
            _draw_spread(ax, xs, spread[label], label, line.get_color())
    return _spread_handles(ax, spread, spread_label)


def _spread_handles(ax, spread, spread_label: str) -> list:
    """The legend entry saying what the spreads are: a grey band, or a grey error bar when some are bars."""
    if not spread:
        return []
    if ax.containers:  # some spread is drawn as error bars: an empty grey one carries the label
        return [ax.errorbar([np.nan], [np.nan], yerr=[[np.nan], [np.nan]], fmt="none", ecolor="gray",
                            elinewidth=2.5, capsize=4, alpha=0.6, label=spread_label)]
    return [Patch(color="gray", alpha=0.3, label=spread_label)]


def _draw_spread(ax, xs: np.ndarray, low_high, label: str, color) -> None:
    """The range (lows (N,), highs (N,)) behind the line ``label``: a band when every x has one, else
    error bars at the x that have one (NaN marks an x without)."""
    low, high = (as_array(v, f"spread[{label!r}]", ndim=1) for v in low_high)
    if low.size != xs.size or high.size != xs.size:
        raise ValueError(f"spread[{label!r}] needs {xs.size} lows and {xs.size} highs (NaN where none is recorded)")
    if np.all(np.isfinite(low) & np.isfinite(high)):
        ax.fill_between(xs, low, high, color=color, alpha=0.2, lw=0)
    else:
        middle = (low + high) / 2
        ax.errorbar(xs, middle, yerr=(middle - low, high - middle), fmt="none", ecolor=color,
                    elinewidth=2.5, capsize=4, alpha=0.6)


def _legend(ax_or_fig, axes, extra: list, **kwargs) -> None:
    """A legend of ``axes``' labelled lines followed by the ``extra`` handles (e.g. a spread's patch)."""
    pairs = [(h, label) for h, label in zip(*axes.get_legend_handles_labels()) if h not in extra]
    ax_or_fig.legend([h for h, _ in pairs] + extra, [label for _, label in pairs] + [h.get_label() for h in extra],
                     **kwargs)


def metric_vs_length(lengths, curves, *, baseline=None, baseline_label: str = "baseline",
                     xlabel: str = "sequence length", ylabel: str = "score", title: str | None = None,
                     spread: Mapping[str, tuple] | None = None,
                     spread_label: str = "recorded seeds, min to max", dashed: Sequence[str] = (),
                     logx: bool = False, figsize=(6.0, 3.2)) -> Figure:
    """A score (accuracy, MSE, ...) against sequence length, one marked line per model.

    Args:
        lengths: shape (N,).   curves: {model: scores (N,)} (this run).
        baseline: a number (a dashed line) or N numbers (a dashed line through them), e.g. what
            a model that remembers nothing scores.
        spread: {model: (lows (N,), highs (N,))}, e.g. the range over recorded seeds
            (``experiments.recorded_spread``), drawn in the model's colour behind its line: a band
            when every length has a range, error bars at the lengths that have one otherwise (NaN
            marks a length without); models not in it get none. One grey legend entry,
            ``spread_label``, says what they are.
        dashed: models drawn with dashed lines (e.g. the recurrent ones).
        logx: a logarithmic length axis, ticks at the given lengths.

    Returns:
        The figure: one line per model (with its band or bars), then the baseline.
    """
    xs = as_array(lengths, "lengths", ndim=1)
    fig, ax = new_figure(figsize)
    extra = _draw_scores(ax, xs, curves, spread, dashed, spread_label)
    if logx:
        ax.set_xscale("log")
        ax.set_xticks(xs, [f"{x:g}" for x in xs])
        ax.minorticks_off()
    if baseline is not None:
        base = np.broadcast_to(as_array(np.atleast_1d(baseline), "baseline", ndim=1), xs.shape)
        ax.plot(xs, base, color="tab:red", ls="--", lw=1.2, label=baseline_label)
    ax.set_xlabel(xlabel)
    ax.set_ylabel(ylabel)
    if title:
        ax.set_title(title)
    _legend(ax, ax, extra, loc="best", fontsize="small")
    return fig


def scores_by_task(tasks: Mapping[str, Mapping], *, spread: Mapping[str, Mapping[str, tuple]] | None = None,
                   spread_label: str = "recorded seeds, min to max", dashed: Sequence[str] = (),
                   ylabel: str = "score", panel_width: float = 4.0) -> Figure:
    """One panel per task: each model's score against the task's lengths, with the task's chance
    level and bar, and the recorded spread (as in ``metric_vs_length``).

    Args:
        tasks: {task: {"lengths": (N,), "scores": {model: (N,)}, "chance": float,
            "bar": float or None, "xlabel": str}}; panels in this order. A task whose scores all
            lie in [0, 1] gets the y range 0 to 1.02.
        spread: {task: {model: (lows (N,), highs (N,))}}.   dashed: models drawn dashed.

    Returns:
        The figure: one axes per task, titled with the task's name, holding one line per model,
        then a solid grey chance line and a dotted black bar line; one legend for all, below.
    """
    if not isinstance(tasks, Mapping) or not tasks:
        raise TypeError("tasks must be a non-empty mapping {task: {'lengths', 'scores', 'chance', 'bar', 'xlabel'}}")
    spread = dict(spread or {})
    unknown = set(spread) - set(tasks)
    if unknown:
        raise ValueError(f"spread names tasks that have no panel: {sorted(unknown)}")
    fig, axes = new_figure((panel_width * len(tasks), 4.4), grid=(1, len(tasks)))
    extra = []
    for ax, (task, panel) in zip(axes[0], tasks.items()):
        missing = {"lengths", "scores", "chance"} - set(panel)
        if missing:
            raise ValueError(f"tasks[{task!r}] lacks {sorted(missing)}")
        xs = as_array(panel["lengths"], f"tasks[{task!r}]['lengths']", ndim=1)
        extra = _draw_scores(ax, xs, panel["scores"], spread.get(task), dashed, spread_label) or extra
        ax.axhline(float(panel["chance"]), color="gray", lw=0.8, label="chance / baseline")
        if panel.get("bar") is not None:
            ax.axhline(float(panel["bar"]), color="black", lw=0.8, ls=":", label="bar")
        ax.set(title=str(task), xlabel=panel.get("xlabel", "length"), ylabel=ylabel)
        ax.set_xticks(xs, [f"{x:g}" for x in xs])
        if all(0 <= v <= 1 for values in panel["scores"].values() for v in np.ravel(values)):
            ax.set_ylim(0, 1.02)
    _legend(fig, axes[0, -1], extra, loc="outside lower center", ncol=4, fontsize="small")
    return fig


# ---- costs and panels (the Attention, State-space and Comparison chapters) ----------------
def cost_vs_length(x, seconds: Mapping[str, object], saved_bytes: Mapping[str, object], *,
                   xlabel: str = "sequence length T", time_ylabel: str = "ms",
                   time_title: str = "time", memory_title: str = "memory", memory_unit: str = "MiB",
                   memory_ylabel: str | None = None, logx: bool = True, time_logy: bool = True,
                   window: int | None = None, dashed: Sequence[str] = (),
                   quadratic_through: str | None = None, figsize=(10.0, 3.6)) -> Figure:
    """Two panels against the same x (sequence length T, or position p): time on the left, memory
    on the right, one line per model, the memory axis logarithmic (the time axis too, by default).

    Args:
        x: shape (N,).   seconds: {model: seconds (N,)}, drawn in milliseconds.
        saved_bytes: {model: bytes (N,)} (bytes saved for backward, or a state's size), drawn in
            ``memory_unit`` ("KiB", "MiB"; "MB" is read as MiB, 2**20 bytes), the y label
            ``memory_ylabel`` (default: the unit).
        logx: a logarithmic x axis with ticks at the given x (else linear).
        time_logy: a logarithmic time axis (else linear).
        window: if given, the time panel shows the median of each run of ``window`` consecutive
            values, at the x that ends it (per-token timings are noisy).
        dashed: models drawn with dashed lines.
        quadratic_through: a model whose memory curve a dotted grey line proportional to x^2 passes
            through at the last x ("∝ T²").

    Returns:
        The figure: the time axes (one line per model, in order), the memory axes (the same, then the
        x^2 line if asked for) holding the legend.
    """
    scale = {"KiB": 2**10, "MiB": 2**20, "MB": 2**20}
    if memory_unit not in scale:
        raise ValueError(f"memory_unit must be one of {', '.join(scale)}; got {memory_unit!r}")
    xs = as_array(x, "x", ndim=1)
    times, memory = _curves(seconds, "seconds"), _curves(saved_bytes, "saved_bytes")
    if quadratic_through is not None and quadratic_through not in memory:
        raise ValueError(f"quadratic_through={quadratic_through!r} is not one of the models: {', '.join(memory)}")
    if window is not None and (isinstance(window, bool) or not isinstance(window, int) or window < 1):
        raise ValueError(f"window must be an int >= 1 or None; got {window!r}")
    fig, axes = new_figure(figsize, grid=(1, 2))
    left, right = axes[0]
    for panel, curves, name in ((left, times, "seconds"), (right, memory, "saved_bytes")):
        for label, values in curves.items():
            if values.size != xs.size:
                raise ValueError(f"{name}[{label!r}] has {values.size} values but x has {xs.size}")
            style = "--" if label in dashed else "-"
            if panel is left:
                shown_x, shown = xs, values * 1e3
                if window is not None:
                    count = xs.size // window
                    shown = np.median(shown[:count * window].reshape(count, window), axis=1)
                    shown_x = xs[window - 1:count * window:window]
                panel.plot(shown_x, shown, style, marker="o" if window is None else None, label=label)
            else:
                panel.plot(xs, values / scale[memory_unit], style, marker="o" if logx else None, label=label)
    if quadratic_through is not None:
        last = memory[quadratic_through][-1] / scale[memory_unit]
        right.plot(xs, (xs / xs[-1]) ** 2 * last, color="gray", ls=":", label="∝ T²")
    for panel in (left, right):
        if panel is right or time_logy:
            panel.set_yscale("log")
        if logx:
            panel.set_xscale("log")
            panel.set_xticks(xs, [f"{v:g}" for v in xs])
            panel.minorticks_off()
        panel.set_xlabel(xlabel)
    left.set(ylabel=time_ylabel, title=time_title)
    right.set(ylabel=memory_ylabel or memory_unit, title=memory_title)
    right.legend(fontsize="small")
    return fig


def curve_panels(x, panels: Mapping[str, Mapping[str, object]], *, xlabel: str, ylabel: str,
                 logy: bool = False, styles: Mapping[str, str] | None = None, legend: str = "each",
                 panel_size=(4.5, 3.0)) -> Figure:
    """Panels side by side sharing the y axis, each holding several curves over a common x.

    Args:
        x: shape (N,), the x of every curve; a curve with n < N values is drawn over ``x[:n]``.
        panels: {panel title: {curve label: values (n,)}}, in panel order.
        logy: a logarithmic y axis (zeros and non-finite values are then left out of the lines).
        styles: {curve label: a matplotlib format string (e.g. ``"--"``) or a dict of ``plot``
            keyword arguments (e.g. ``{"color": "gray", "lw": 3}``)}, applied to that label in every
            panel. Curves not in it are thin solid lines.
        legend: "each" (a legend in every panel), "last" (only in the last), or "none".

    Returns:
        The figure: one axes per panel, in order, titled with its key, holding its curves in order.
    """
    if legend not in ("each", "last", "none"):
        raise ValueError(f"legend must be 'each', 'last' or 'none'; got {legend!r}")
    if not isinstance(panels, Mapping) or not panels:
        raise TypeError("panels must be a non-empty mapping {title: {label: values}}")
    xs = as_array(x, "x", ndim=1)
    styles = dict(styles or {})
    fig, axes = new_figure((panel_size[0] * len(panels), panel_size[1]), grid=(1, len(panels)), sharey=True)
    for k, (ax, (title, curves)) in enumerate(zip(axes[0], panels.items())):
        for label, values in _curves(curves, f"panels[{title!r}]").items():
            if values.size > xs.size:
                raise ValueError(f"panels[{title!r}][{label!r}] has {values.size} values but x only {xs.size}")
            if logy:
                values = np.where(np.isfinite(values) & (values > 0), values, np.nan)
            style = styles.get(label, "-")
            fmt, kwargs = (style, {}) if isinstance(style, str) else ("-", dict(style))
            ax.plot(xs[:values.size], values, fmt, **{"lw": 1.2, **kwargs}, label=label or None)
        if logy:
            ax.set_yscale("log")
        ax.set_title(str(title))
        ax.set_xlabel(xlabel)
        if legend == "each" or (legend == "last" and k == len(panels) - 1):
            ax.legend(fontsize="small", loc="best")
    axes[0, 0].set_ylabel(ylabel)
    return fig
