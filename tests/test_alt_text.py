"""Figures for every reader: seqcourse.viz.alt_text (alt text from a figure's own text, an opaque
background) and book/_ext/figure_alt.py (the stored alt text onto the book's images)."""
import base64
import hashlib
import html
import importlib.util
import io
import json
import sys
from pathlib import Path

import nbformat
import numpy as np
import pytest
from matplotlib.figure import Figure
from PIL import Image

from seqcourse.viz import alt_text, plots
from seqcourse.viz.receptive_field import receptive_field_figure

ROOT = Path(__file__).resolve().parents[1]


def test_describe_says_kind_title_axes_and_names():
    heatmap = plots.hidden_state_heatmap(np.zeros((3, 2)), ["a", "␣", "b"], title="h_t of the RNN")
    assert alt_text.describe(heatmap) == (
        'Heat map "h_t of the RNN". x axis: step t (input token). y axis: hidden unit. Columns: a ␣ b. '
        "Colour scale: h_t.")
    curves = plots.gradient_norms(np.arange(1, 4), {"linear: $\\|W_h^k\\|_2$": np.ones(3), "tanh": np.ones(3)},
                                  title="decay")
    assert alt_text.describe(curves) == (
        'Line plot "decay". x axis: distance k (steps back from the loss). y axis: gradient norm (log scale). '
        "Legend: linear: ‖W_h^k‖_2; tanh.")
    bars = plots.accuracy_bars({"RNN": 0.6, "LSTM": 0.9}, chance=0.5)
    assert alt_text.describe(bars) == "Bar chart. y axis: held-out accuracy. Bars: RNN; LSTM. Legend: chance."
    eigen = plots.eigenvalue_plot({"trained": np.array([0.5 + 0.1j])}, title="eigenvalues")
    assert alt_text.describe(eigen).startswith('Scatter plot "eigenvalues". x axis: Re λ. y axis: Im λ.')


def test_describe_numbers_the_panels_and_reads_the_suptitle():
    fig = Figure()
    left, right = fig.subplots(1, 2)
    left.plot([1, 2], label="train")
    left.legend()
    left.set_title("loss")
    right.bar(["a", "b"], [1, 2])
    fig.suptitle("two views")
    assert alt_text.describe(fig) == ('Figure: two views. 2 panels. Panel 1: Line plot "loss". Legend: train. '
                                      "Panel 2: Bar chart. Bars: a; b.")
    diagram = receptive_field_figure(2, 2)
    assert alt_text.describe(diagram) == (
        "Diagram of 2 causal convolutions with kernel size 2 and dilations 1, 2 over 8 steps: lines trace the 4 "
        'inputs that reach the last output. Title: "k = 2, 2 levels: R = (2−1)·(2^2−1)+1 = 4". x axis: step t.')
    with pytest.raises(TypeError, match="matplotlib.figure.Figure"):
        alt_text.describe("a figure")


def test_package_figures_are_opaque_and_widget_images_carry_alt_text():
    for fig in (plots.loss_curve(np.ones(5)), receptive_field_figure(2, 2)):
        png, tag = alt_text.figure_img(fig)
        pixels = np.asarray(Image.open(io.BytesIO(png)).convert("RGBA"))
        assert pixels[..., 3].min() == 255, "a transparent figure is black on black in a dark theme"
        assert tag.startswith('<img src="data:image/png;base64,')
        assert f'alt="{html.escape(alt_text.describe(fig))}"' in tag
        assert base64.b64decode(tag.split("base64,")[1].split('"')[0]) == png


def test_a_kernel_that_imports_seqcourse_stores_alt_text_and_opaque_figures():
    """The notebook route end to end: a real kernel, figures shown by plt.show() and returned."""
    from nbclient import NotebookClient

    nb = nbformat.v4.new_notebook()
    nb.cells = [nbformat.v4.new_code_cell(source) for source in (
        "import seqcourse\nimport matplotlib.pyplot as plt",
        "fig, ax = plt.subplots()\nax.plot([1, 2, 3], label='loss')\nax.set_title('shown')\nax.legend()\nplt.show()",
        "from seqcourse.viz import plots\nplots.loss_curve([3.0, 2.0, 1.0], title='returned')",
    )]
    NotebookClient(nb, timeout=120, kernel_name="python3").execute()
    figures = [o for cell in nb.cells for o in cell.outputs if "image/png" in o.get("data", {})]
    assert [o.metadata["image/png"]["alt"] for o in figures] == [
        'Line plot "shown". Legend: loss.',
        'Line plot "returned". x axis: training step. y axis: loss. Legend: loss per step.']
    for output in figures:
        pixels = np.asarray(Image.open(io.BytesIO(base64.b64decode(output.data["image/png"]))).convert("RGBA"))
        assert pixels[..., 3].min() == 255



def test_outside_a_kernel_setup_does_nothing():
    assert alt_text.setup_notebook_figures() is False


def _figure_alt():
    spec = importlib.util.spec_from_file_location("figure_alt", ROOT / "book" / "_ext" / "figure_alt.py")
    module = importlib.util.module_from_spec(spec)
    sys.modules[spec.name] = module
    spec.loader.exec_module(module)
    return module


def test_the_book_reads_alt_text_by_image_content():
    figure_alt = _figure_alt()
    png, _ = alt_text.figure_img(plots.loss_curve(np.ones(4)))
    encoded = base64.b64encode(png).decode()
    notebook = {"cells": [{"cell_type": "code", "outputs": [
        {"output_type": "display_data", "data": {"image/png": encoded}, "metadata": {"image/png": {"alt": "A curve."}}},
        {"output_type": "display_data", "data": {"image/png": encoded[:-8] + "AAAAAAA="}, "metadata": {}},
    ]}]}
    assert figure_alt.stored_alt_texts(json.loads(json.dumps(notebook))) == {
        hashlib.sha256(png).hexdigest(): "A curve."}
