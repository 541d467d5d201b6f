"""Figures that every reader can use: alt text that says what a figure shows, and a background
that stays legible in a dark theme.

``describe(fig)`` writes a matplotlib figure's text alternative from what the figure itself
states: for each panel its kind (line plot, heat map, bar chart, scatter plot), its title, its
axis labels and log scales, and the names in its legend, of its bars or heat-map columns (the
tick labels, when they are names) and of its colour scale. For example::

    Line plot "adding problem, T = 10". x axis: training step. y axis: loss (log scale).
    Legend: RNN; LSTM; baseline.

In a notebook the book's figures are stored as PNG outputs, and the rendered book shows those
PNGs. ``setup_notebook_figures()`` makes a Jupyter kernel store each figure's ``describe(fig)``
with its PNG, as the output's ``metadata["image/png"]["alt"]`` (book/_ext/figure_alt.py turns it
into the image's alt text), and gives figures an opaque white background: matplotlib's inline
backend draws them transparent, which leaves black axes and text on a dark page.
``import seqcourse`` calls it inside an IPython kernel, so every chapter (whose first cell imports
the package) gets both without a line of its own; outside a kernel it does nothing.
"""
from __future__ import annotations

import re

__all__ = ["describe", "figure_img", "setup_notebook_figures"]

FACECOLOR = "white"
"""The background of every figure: opaque, so dark text stays readable on a dark page."""


def _plain(text: str) -> str:
    """Matplotlib text without TeX markup: ``$\\|W_h^k\\|_2$`` -> ``|W_h^k|_2``."""
    text = text.replace("$", "")
    text = re.sub(r"\\(?:mathrm|mathbf|mathit|operatorname|text)\{([^}]*)\}", r"\1", text)
    text = re.sub(r"\\([A-Za-z]+)", r"\1", text)
    text = text.replace("\\|", "‖").replace("{", "").replace("}", "").replace("\\", "")
    return " ".join(text.split())


def _names(texts) -> list[str]:
    return [name for name in (_plain(t.get_text()) for t in texts) if name and not name.startswith("_")]


def _axis(ax, which: str) -> str:
    axis = ax.xaxis if which == "x" else ax.yaxis
    label = _plain(axis.get_label_text())
    scale = axis.get_scale()
    if not label and scale == "linear":
        return ""
    said = scale == "linear" or scale in label.lower()  # "MSE (log scale)" needs no second note
    return f"{which} axis: {label or 'unlabelled'}" + ("" if said else f" ({scale} scale)")


def _kind(ax) -> str:
    from matplotlib.collections import PathCollection, PolyCollection, QuadMesh
    from matplotlib.container import BarContainer

    if ax.images or any(isinstance(c, QuadMesh) for c in ax.collections):
        return "Heat map"
    if any(isinstance(c, BarContainer) for c in ax.containers):
        return "Bar chart"
    if any(isinstance(c, PathCollection) for c in ax.collections):
        return "Scatter plot"
    if ax.get_lines() or any(isinstance(c, PolyCollection) for c in ax.collections):
        return "Line plot"
    return "Panel"


def _categories(labels) -> list[str]:
    """Tick labels that name things (tokens, models), not numbers; empty when they are numbers."""
    names = _names(labels)
    numeric = re.compile(r"^[\u2212+-]?[\d.,]+(e[\u2212+-]?\d+)?%?$")
    return [] if not names or all(numeric.match(name) for name in names) else names


def _describe_axes(ax, what: str = "") -> str:
    """One panel in words; ``what`` (the figure's label, if any) replaces the kind of plot."""
    from matplotlib.container import BarContainer

    kind = _kind(ax)
    title = _plain(ax.get_title()) or _plain(ax.get_title("left")) or _plain(ax.get_title("right"))
    if what:
        parts = [what] + ([f'Title: "{title}"'] if title else [])
    else:
        parts = [f'{kind} "{title}"' if title else kind]
    parts += [text for text in (_axis(ax, "x"), _axis(ax, "y")) if text]
    if kind == "Bar chart":
        bars = next(c for c in ax.containers if isinstance(c, BarContainer))
        ticks = ax.get_xticklabels() if bars.orientation == "vertical" else ax.get_yticklabels()
        if _categories(ticks):
            parts.append("Bars: " + "; ".join(_categories(ticks)))
    elif kind == "Heat map" and 0 < len(_categories(ax.get_xticklabels())) <= 60:
        parts.append("Columns: " + " ".join(_categories(ax.get_xticklabels())))
    legend = ax.get_legend()
    if legend is not None and _names(legend.get_texts()):
        parts.append("Legend: " + "; ".join(_names(legend.get_texts())))
    return ". ".join(parts) + "."


def _is_colorbar(ax) -> bool:
    return getattr(ax, "_colorbar", None) is not None


def describe(fig) -> str:
    """What ``fig`` (a ``matplotlib.figure.Figure``) shows, in words: one sentence group per
    panel (kind, title, axes, curve or bar names), a legend placed on the figure, colour bars by
    their label, the figure's suptitle first. A figure that is not a chart (a diagram) says what it is with its label,
    ``fig.set_label("Diagram of ...")``, which then replaces the kind of plot of its single panel
    or leads the panels. Raises ``TypeError`` for anything that is not a Figure."""
    from matplotlib.figure import Figure

    if not isinstance(fig, Figure):
        raise TypeError(f"describe needs a matplotlib.figure.Figure; got {type(fig).__name__}")
    panels = [ax for ax in fig.axes if ax.get_visible() and not _is_colorbar(ax)
              and (ax.axison or ax.images or ax.get_lines() or ax.collections or ax.patches)]
    scales = [_plain(ax.get_ylabel() or ax.get_xlabel()) for ax in fig.axes if _is_colorbar(ax)]
    suptitle = _plain(fig._suptitle.get_text()) if getattr(fig, "_suptitle", None) is not None else ""
    what = _plain(fig.get_label()).rstrip(".")
    parts = [f"Figure: {suptitle}." if suptitle else ""]
    if len(panels) == 1:
        parts.append(_describe_axes(panels[0], what))
    elif panels:
        parts.append(f"{what}." if what else "")
        parts.append(f"{len(panels)} panels.")
        parts += [f"Panel {i}: {_describe_axes(ax)}" for i, ax in enumerate(panels, 1)]
    else:
        parts.append("An empty figure.")
    shared = [name for legend in fig.legends for name in _names(legend.get_texts())]
    if shared:  # a legend for all panels, placed on the figure
        parts.append("Legend for all panels: " + "; ".join(shared) + ".")
    named = [scale for scale in scales if scale]
    if named:
        parts.append("Colour scale: " + "; ".join(named) + ".")
    return " ".join(part for part in parts if part)


def figure_img(fig, *, dpi: int = 80) -> tuple[bytes, str]:
    """``fig`` as PNG bytes and as an HTML ``<img>`` of those bytes (a data: URL) whose alt text is
    ``describe(fig)``, scaled down to fit a narrow screen. The book's widgets show their plots
    this way: an ``ipywidgets.Image`` has no alt text."""
    import base64
    import html
    import io

    buffer = io.BytesIO()
    fig.savefig(buffer, format="png", dpi=dpi, facecolor=FACECOLOR)
    png = buffer.getvalue()
    source = "data:image/png;base64," + base64.b64encode(png).decode()
    tag = (f'<img src="{source}" alt="{html.escape(describe(fig))}" '
           'style="max-width: 100%; height: auto">')
    return png, tag


def _png_with_alt(png_formatter):
    """Wrap IPython's PNG formatter for Figures so that it returns (png, {"alt": describe(fig)})."""

    def png_and_alt(fig):
        data, metadata = png_formatter(fig), {}
        if isinstance(data, tuple):
            data, metadata = data
        return data, {**(metadata or {}), "alt": describe(fig)}

    png_and_alt.adds_alt_text = True
    return png_and_alt


def setup_notebook_figures(shell=None) -> bool:
    """In an IPython kernel: make every figure displayed from now on carry ``describe(fig)`` as
    its PNG output's ``metadata["image/png"]["alt"]``, and draw figures on an opaque white
    background. Returns True if it did (or had done) so, False where there is no kernel.

    Matplotlib's inline backend installs its PNG formatter when the backend is first loaded (at the
    first figure), replacing any formatter registered before; this loads it now and wraps it.
    """
    if shell is None:
        import sys

        if "IPython" not in sys.modules:
            return False
        from IPython import get_ipython

        shell = get_ipython()
    if shell is None or not hasattr(shell, "kernel"):
        return False
    import matplotlib
    import matplotlib.pyplot as plt
    from matplotlib.figure import Figure

    plt.switch_backend(matplotlib.get_backend())  # the inline backend configures IPython here
    matplotlib.rcParams["figure.facecolor"] = FACECOLOR
    formatter = shell.display_formatter.formatters["image/png"]
    try:
        current = formatter.lookup_by_type(Figure)
    except KeyError:  # PNG output is switched off (e.g. figure_formats = {"svg"}): nothing to wrap
        return False
    if not getattr(current, "adds_alt_text", False):
        formatter.for_type(Figure, _png_with_alt(current))
    return True
