"""seqcourse.viz.plots: each helper returns a Figure whose data are what it was given (no pixels)."""
import math

import numpy as np
import pytest
import torch
from matplotlib.figure import Figure

from seqcourse.viz import plots


def test_heatmap_image_is_states_transposed():
    states = torch.linspace(-1, 1, 15).reshape(5, 3)  # (T=5, H=3)
    fig = plots.hidden_state_heatmap(states, labels=list("hello"), title="h_t")
    assert isinstance(fig, Figure)
    ax = fig.axes[0]
    image = ax.images[0]
    np.testing.assert_allclose(np.asarray(image.get_array()), states.numpy().T)  # (H, T)
    assert image.get_clim() == (-1.0, 1.0)
    assert [t.get_text() for t in ax.get_xticklabels()] == list("hello")
    assert ax.get_xlabel().startswith("step t") and ax.get_ylabel() == "hidden unit"
    assert ax.get_title() == "h_t"
    assert fig.axes[1].get_ylabel() == "h_t"  # the colour bar


def test_heatmap_default_labels_count_from_one():
    fig = plots.hidden_state_heatmap(np.zeros((4, 2)))
    assert [t.get_text() for t in fig.axes[0].get_xticklabels()] == ["1", "2", "3", "4"]


def test_heatmap_accepts_a_tensor_that_requires_grad():
    states = torch.randn(3, 2, requires_grad=True)
    fig = plots.hidden_state_heatmap(states)
    np.testing.assert_allclose(np.asarray(fig.axes[0].images[0].get_array()), states.detach().numpy().T)


@pytest.mark.parametrize("bad, match", [(np.zeros(5), r"shape \(T, H\)"), (np.zeros((0, 3)), "empty"),
                                        ("abc", "numbers")])
def test_heatmap_rejects_bad_states(bad, match):
    with pytest.raises((ValueError, TypeError), match=match):
        plots.hidden_state_heatmap(bad)


def test_heatmap_rejects_wrong_number_of_labels():
    with pytest.raises(ValueError, match="one label per step: states has T=3 steps, got 2"):
        plots.hidden_state_heatmap(np.zeros((3, 2)), labels=["a", "b"])


def test_loss_curve_lines_and_baseline():
    losses = [4.0, 3.0, 2.5, 2.0, 1.0]
    fig = plots.loss_curve(losses, baseline=math.log(80), baseline_label="uniform guess", smooth=2)
    ax = fig.axes[0]
    raw, running, base = ax.lines
    np.testing.assert_allclose(raw.get_xdata(), [1, 2, 3, 4, 5])
    np.testing.assert_allclose(raw.get_ydata(), losses)
    np.testing.assert_allclose(running.get_ydata(), [3.5, 2.75, 2.25, 1.5])
    np.testing.assert_allclose(base.get_ydata(), [math.log(80)] * 2)
    assert [t.get_text() for t in ax.get_legend().get_texts()][-1] == "uniform guess"
    assert ax.get_xlabel() == "training step" and ax.get_ylabel() == "loss"


def test_loss_curve_without_extras_has_one_line():
    fig = plots.loss_curve(np.array([1.0, 0.5]))
    assert len(fig.axes[0].lines) == 1


@pytest.mark.parametrize("smooth", [1, 2.5, True])
def test_loss_curve_rejects_bad_smooth(smooth):
    with pytest.raises(ValueError, match="smooth must be an int >= 2"):
        plots.loss_curve([1.0, 2.0, 3.0], smooth=smooth)


def test_accuracy_bars_heights_labels_and_chance():
    accuracies = {"bag of words": 0.5, "window MLP": 0.72, "RNN": 0.99}
    fig = plots.accuracy_bars(accuracies, chance=0.5, highlight="RNN")
    ax = fig.axes[0]
    heights = [patch.get_height() for patch in ax.patches]
    np.testing.assert_allclose(heights, [0.5, 0.72, 0.99])
    assert [t.get_text() for t in ax.get_xticklabels()] == list(accuracies)
    assert ax.patches[2].get_facecolor() != ax.patches[0].get_facecolor()
    assert [t.get_text() for t in ax.texts] == ["0.500", "0.720", "0.990"]
    np.testing.assert_allclose(ax.lines[0].get_ydata(), [0.5, 0.5])


@pytest.mark.parametrize("bad, error, match", [({}, TypeError, "non-empty mapping"),
                                               ({"a": 1.5}, ValueError, r"fractions in \[0, 1\]"),
                                               ([0.5], TypeError, "mapping")])
def test_accuracy_bars_rejects_bad_input(bad, error, match):
    with pytest.raises(error, match=match):
        plots.accuracy_bars(bad)


def test_accuracy_bars_rejects_unknown_highlight():
    with pytest.raises(ValueError, match="highlight='LSTM' is not one of the models: RNN"):
        plots.accuracy_bars({"RNN": 0.9}, highlight="LSTM")


def test_memory_vs_length_scales_to_unit():
    lengths = [16, 32, 64]
    fig = plots.memory_vs_length(lengths, {"full": [1024, 2048, 4096], "chunks": [512, 512, 512]}, unit="KiB")
    ax = fig.axes[0]
    full, chunks = ax.lines
    np.testing.assert_allclose(full.get_xdata(), lengths)
    np.testing.assert_allclose(full.get_ydata(), [1, 2, 4])
    np.testing.assert_allclose(chunks.get_ydata(), [0.5, 0.5, 0.5])
    assert ax.get_xlabel() == "sequence length T" and ax.get_ylabel() == "saved for backward (KiB)"


def test_memory_vs_length_single_sequence_gets_default_label():
    fig = plots.memory_vs_length([1, 2], [10, 20], unit="B")
    assert fig.axes[0].lines[0].get_label() == "saved for backward"
    np.testing.assert_allclose(fig.axes[0].lines[0].get_ydata(), [10, 20])


def test_memory_vs_length_rejects_mismatch_and_unit():
    with pytest.raises(ValueError, match="has 2 values but lengths has 3"):
        plots.memory_vs_length([1, 2, 3], {"full": [1, 2]})
    with pytest.raises(ValueError, match="unit must be one of B, KiB, MiB"):
        plots.memory_vs_length([1], [1], unit="GB")


def test_helpers_leave_no_open_pyplot_figures():
    import matplotlib.pyplot as plt

    before = plt.get_fignums()
    plots.loss_curve([1.0, 2.0])
    plots.hidden_state_heatmap(np.zeros((2, 2)))
    plots.attention_heads(np.full((1, 1, 2, 2), 0.5))
    assert plt.get_fignums() == before


def test_metric_vs_length_draws_a_band_per_spread_and_checks_its_size():
    fig = plots.metric_vs_length([4, 16], {"a": [0.9, 0.5], "b": [0.2, 0.1]}, logx=True,
                                 spread={"a": ([0.8, 0.4], [1.0, 0.6])})
    ax = fig.axes[0]
    assert len(ax.collections) == 1  # one band, for "a" only
    band = ax.collections[0].get_paths()[0].vertices
    assert band[:, 1].min() == pytest.approx(0.4) and band[:, 1].max() == pytest.approx(1.0)
    assert ax.get_xscale() == "log"
    with pytest.raises(ValueError, match="no curve"):
        plots.metric_vs_length([4, 16], {"a": [0.9, 0.5]}, spread={"c": ([0, 0], [1, 1])})
    with pytest.raises(ValueError, match="needs 2 lows"):
        plots.metric_vs_length([4, 16], {"a": [0.9, 0.5]}, spread={"a": ([0], [1])})


def test_attention_heads_one_panel_per_layer_and_head():
    weights = torch.softmax(torch.randn(2, 3, 4, 5), dim=-1)  # (L=2, nh=3, T=4, S=5)
    fig = plots.attention_heads(weights, source_labels=list("abcde"), target_labels=list("wxyz"),
                                highlight=[(1, 2)], title="cross-attention")
    panels, colour_bar = fig.axes[:6], fig.axes[6:]
    assert len(colour_bar) == 1 and colour_bar[0].get_ylabel() == "attention weight"
    for k, ax in enumerate(panels):
        l, i = divmod(k, 3)
        np.testing.assert_allclose(np.asarray(ax.images[0].get_array()), weights[l, i].numpy(), rtol=1e-6)
        assert ax.images[0].get_clim() == (0.0, 1.0)
        assert ax.get_title() == f"layer {l + 1}, head {i + 1}"
        assert (ax.spines["left"].get_linewidth() == 2.5) == ((l, i) == (1, 2))  # only the highlighted head
    assert [t.get_text() for t in panels[3].get_xticklabels()] == list("abcde")  # bottom row: source tokens
    assert [t.get_text() for t in panels[0].get_yticklabels()] == list("wxyz")  # first column: targets
    assert fig._suptitle.get_text() == "cross-attention"


def test_attention_heads_default_labels_count_from_one():
    fig = plots.attention_heads(np.full((1, 2, 2, 3), 1 / 3))
    assert [t.get_text() for t in fig.axes[0].get_xticklabels()] == ["1", "2", "3"]
    assert [t.get_text() for t in fig.axes[0].get_yticklabels()] == ["1", "2"]


@pytest.mark.parametrize("kwargs, match", [
    ({"weights": np.zeros((2, 4, 5))}, r"shape \(L, nh, T, S\)"),
    ({"weights": np.zeros((1, 1, 0, 3))}, "empty"),
    ({"weights": np.zeros((1, 2, 2, 3)), "source_labels": ["a", "b"]}, "one label per source position"),
    ({"weights": np.zeros((1, 2, 2, 3)), "target_labels": ["a"]}, "one label per target position"),
    ({"weights": np.zeros((1, 2, 2, 3)), "highlight": [(0, 2)]}, r"1 layers and 2 heads"),
])
def test_attention_heads_rejects_bad_input(kwargs, match):
    weights = kwargs.pop("weights")
    with pytest.raises(ValueError, match=match):
        plots.attention_heads(weights, **kwargs)
