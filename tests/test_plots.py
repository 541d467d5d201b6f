"""seqcourse.viz.plots: each helper returns a Figure whose data are what it was given (no pixels)."""
import math

import numpy as np
import pytest
import torch
from matplotlib.figure import Figure

from seqcourse.viz import attention_plots, plots, state_space_plots


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
    attention_plots.attention_heads(np.full((1, 1, 2, 2), 0.5))
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
    fig = attention_plots.attention_heads(weights, source_labels=list("abcde"), target_labels=list("wxyz"),
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
    fig = attention_plots.attention_heads(np.full((1, 2, 2, 3), 1 / 3))
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
        attention_plots.attention_heads(weights, **kwargs)


# ---- figures of trained results: this run against the recorded seeds -------------------------


def test_accuracy_bars_draw_the_recorded_range_as_error_bars_named_in_the_legend():
    from seqcourse.viz.alt_text import describe

    fig = plots.accuracy_bars({"a": 0.5, "b": 0.9, "c": 0.7}, chance=0.5,
                              spread={"b": (0.8, 1.0), "a": (0.45, 0.55)}, spread_label="5 recorded seeds, min to max")
    ax = fig.axes[0]
    segments = ax.containers[-1].lines[2][0].get_segments()  # the error bars' vertical segments, in spread order
    np.testing.assert_allclose([s[:, 0] for s in segments], [[1, 1], [0, 0]])
    np.testing.assert_allclose([sorted(s[:, 1]) for s in segments], [[0.8, 1.0], [0.45, 0.55]])
    assert [t.get_text() for t in ax.get_legend().get_texts()] == ["this run", "5 recorded seeds, min to max", "chance"]
    assert "Legend: this run; 5 recorded seeds, min to max; chance." in describe(fig)
    with pytest.raises(ValueError, match=r"no bar: \['d'\]"):
        plots.accuracy_bars({"a": 0.5}, spread={"d": (0, 1)})


def test_metric_vs_length_draws_error_bars_where_only_some_lengths_are_recorded():
    nan = float("nan")
    fig = plots.metric_vs_length([1, 2, 3], {"a": [1.0, 0.9, 0.8], "b": [1.0, 0.5, 0.2]}, dashed=["b"],
                                 spread={"a": ([nan, 0.85, 0.7], [nan, 0.95, 0.9])}, spread_label="recorded")
    ax = fig.axes[0]
    from matplotlib.collections import PolyCollection

    assert not any(isinstance(c, PolyCollection) for c in ax.collections)  # no band: bars instead
    bars = ax.containers[0].lines[2][0].get_segments()  # one error bar per recorded length
    assert len(bars) == 3 and np.isnan(bars[0]).all()
    np.testing.assert_allclose(bars[1], [[2, 0.85], [2, 0.95]])
    np.testing.assert_allclose(bars[2], [[3, 0.7], [3, 0.9]])
    line = {l.get_label(): l for l in ax.lines}
    assert line["b"].get_linestyle() == "--" and line["a"].get_linestyle() == "-"
    assert [t.get_text() for t in ax.get_legend().get_texts()] == ["a", "b", "recorded"]
    assert type(ax.get_legend().legend_handles[2]).__name__ == "LineCollection"  # the entry is drawn as an error bar


def test_scores_by_task_one_panel_per_task_with_chance_bar_spread_and_a_shared_legend():
    from seqcourse.viz.alt_text import describe

    tasks = {"copy": {"lengths": (4, 32), "scores": {"RNN": [0.4, 0.25], "S4D": [1.0, 1.0]}, "chance": 0.25,
                      "bar": 0.35, "xlabel": "delay"},
             "selective": {"lengths": (8, 32), "scores": {"RNN": [0.5, 0.3], "S4D": [0.9, 0.6]}, "chance": 0.25,
                           "bar": 0.35, "xlabel": "length T"}}
    fig = plots.scores_by_task(tasks, spread={"copy": {"RNN": ([0.3, 0.2], [0.5, 0.3])}}, dashed=["RNN"],
                               spread_label="5 recorded seeds")
    left, right = fig.axes
    assert (left.get_title(), right.get_title()) == ("copy", "selective")
    np.testing.assert_allclose(left.lines[0].get_xdata(), [4, 32])
    np.testing.assert_allclose(right.lines[1].get_ydata(), [0.9, 0.6])
    np.testing.assert_allclose(left.lines[2].get_ydata(), [0.25, 0.25])  # chance, then the bar
    np.testing.assert_allclose(left.lines[3].get_ydata(), [0.35, 0.35])
    assert type(fig.legends[0].legend_handles[-1]).__name__ == "Rectangle"  # bands: a patch says what they are
    band = left.collections[0].get_paths()[0].vertices
    assert band[:, 1].min() == pytest.approx(0.2) and band[:, 1].max() == pytest.approx(0.5)
    assert not right.collections
    assert right.get_xlabel() == "length T" and left.get_ylim() == (0, 1.02)
    assert "Legend for all panels: RNN; S4D; chance / baseline; bar" in describe(fig)
    with pytest.raises(ValueError, match="lacks"):
        plots.scores_by_task({"copy": {"lengths": (1,)}})


# ---- the Attention chapter ---------------------------------------------------------------------


def test_attention_maps_one_panel_per_model_with_its_own_output_labels():
    from seqcourse.viz.alt_text import describe

    a = torch.softmax(torch.randn(4, 3), -1)  # (T=4, S=3)
    b = torch.softmax(torch.randn(4, 3), -1)
    fig = attention_plots.attention_maps({"additive": a, "dot-product": b}, source_labels=["5", "9", "7"],
                               target_labels={"additive": list("7952"), "dot-product": list("7953")})
    left, right, colour_bar = fig.axes
    np.testing.assert_allclose(np.asarray(left.images[0].get_array()), a.numpy(), rtol=1e-6)
    np.testing.assert_allclose(np.asarray(right.images[0].get_array()), b.numpy(), rtol=1e-6)
    assert [t.get_text() for t in right.get_yticklabels()] == list("7953")
    assert [t.get_text() for t in left.get_xticklabels()] == ["5", "9", "7"]
    assert left.get_title() == "additive attention $\\alpha_{t,j}$"
    assert colour_bar.get_ylabel() == "attention weight"
    assert 'Heat map "dot-product attention alpha_t,j". x axis: source token x_j.' in describe(fig)
    with pytest.raises(ValueError, match="one label per target position"):
        attention_plots.attention_maps({"a": a}, target_labels=["x"])


def test_heatmap_of_a_long_sequence_keeps_its_width_and_takes_other_labels():
    P = np.sin(np.arange(128)[:, None] / (1 + np.arange(8)))  # (T=128, H=8)
    fig = plots.hidden_state_heatmap(P, xlabel="position t", ylabel="feature", value_label="P_t")
    ax, colour_bar = fig.axes
    assert fig.get_size_inches()[0] == pytest.approx(6.0)  # not 0.28 inch per step
    assert len(ax.get_xticks()) < 20 and ax.get_xlim() == (0.5, 128.5)  # column t sits at x = t
    assert (ax.get_xlabel(), ax.get_ylabel(), colour_bar.get_ylabel()) == ("position t", "feature", "P_t")
    np.testing.assert_allclose(np.asarray(ax.images[0].get_array()), P.T)


def test_cost_vs_length_time_in_ms_memory_in_unit_and_a_quadratic_line():
    T = [128, 256, 512]
    fig = plots.cost_vs_length(T, {"attention": [0.001, 0.004, 0.016], "RNN": [0.002, 0.004, 0.008]},
                               {"attention": [2**20, 4 * 2**20, 16 * 2**20], "RNN": [2**19, 2**20, 2**21]},
                               quadratic_through="attention", dashed=["RNN"], time_title="time", memory_title="memory")
    left, right = fig.axes
    np.testing.assert_allclose(left.lines[0].get_ydata(), [1, 4, 16])  # ms
    np.testing.assert_allclose(right.lines[1].get_ydata(), [0.5, 1, 2])  # MiB
    np.testing.assert_allclose(right.lines[2].get_ydata(), [1, 4, 16])  # ∝ T², through the last point
    assert left.lines[1].get_linestyle() == "--"
    assert left.get_xscale() == right.get_yscale() == "log"
    assert [t.get_text() for t in right.get_legend().get_texts()] == ["attention", "RNN", "∝ T²"]
    with pytest.raises(ValueError, match="quadratic_through='GRU'"):
        plots.cost_vs_length(T, {"a": [1, 2, 3]}, {"a": [1, 2, 3]}, quadratic_through="GRU")


def test_cost_vs_length_window_takes_the_median_of_each_run_of_values():
    seconds = [0.001, 0.009, 0.002, 0.002, 0.003, 0.001, 0.004]  # one timing per position
    fig = plots.cost_vs_length(range(1, 8), {"m": seconds}, {"m": [1024] * 7}, window=3, logx=False,
                               time_logy=False, memory_unit="KiB", memory_ylabel="state (KiB)", xlabel="position p")
    left, right = fig.axes
    np.testing.assert_allclose(left.lines[0].get_xdata(), [3, 6])
    np.testing.assert_allclose(left.lines[0].get_ydata(), [2, 2])
    np.testing.assert_allclose(right.lines[0].get_ydata(), [1] * 7)
    assert left.get_xscale() == left.get_yscale() == "linear" and right.get_yscale() == "log"
    assert right.get_ylabel() == "state (KiB)" and right.get_xlabel() == "position p"


def test_curve_panels_share_x_prefixes_styles_and_drop_non_positive_values_on_log_axes():
    fig = plots.curve_panels(range(1, 5), {"pre-norm": {"L = 2": [1.0, 2.0], "L = 4": [1.0, 0.0, 3.0, 4.0]},
                                           "post-norm": {"L = 2": [5.0, 6.0]}},
                             xlabel="block l", ylabel="gradient", logy=True, styles={"L = 4": "--"}, legend="last")
    left, right = fig.axes
    np.testing.assert_allclose(left.lines[0].get_xdata(), [1, 2])
    assert np.isnan(left.lines[1].get_ydata()[1]) and left.lines[1].get_linestyle() == "--"
    assert left.get_legend() is None and right.get_legend() is not None
    assert (left.get_title(), right.get_title(), left.get_ylabel()) == ("pre-norm", "post-norm", "gradient")
    fig = plots.curve_panels([0, 1], {"a": {"signal": [0, 1]}}, xlabel="x", ylabel="y",
                             styles={"signal": {"color": "gray", "lw": 3}})
    assert fig.axes[0].lines[0].get_linewidth() == 3
    with pytest.raises(ValueError, match="has 3 values but x only 2"):
        plots.curve_panels([0, 1], {"a": {"b": [1, 2, 3]}}, xlabel="x", ylabel="y")


def test_gradient_norms_styles_and_a_vertical_line():
    fig = plots.gradient_norms([1, 2, 3], {"a": [1.0, 0.1, 0.01], "b": [1, 1, 1]}, styles={"a": "o"},
                               vertical=2, reference=None)
    ax = fig.axes[0]
    assert ax.lines[0].get_linestyle() == "None" and ax.lines[0].get_marker() == "o"
    np.testing.assert_allclose(ax.lines[2].get_xdata(), [2, 2])
    with pytest.raises(ValueError, match="styles or spread name curves"):
        plots.gradient_norms([1], {"a": [1]}, styles={"z": "o"})


def test_gradient_norms_draws_a_recorded_range_at_the_one_distance_recorded():
    nan = float("nan")
    fig = plots.gradient_norms([3, 2, 1], {"vanilla": [1e-6, 1e-2, 1.0]}, spread={"vanilla": ([1e-8, nan, nan], [1e-5, nan, nan])},
                               spread_label="5 recorded seeds, min to max")
    ax = fig.axes[0]
    bar = ax.containers[0].lines[2][0].get_segments()[0]
    np.testing.assert_allclose(bar, [[3, 1e-8], [3, 1e-5]])
    assert [t.get_text() for t in ax.get_legend().get_texts()] == ["vanilla", "5 recorded seeds, min to max"]


def test_loss_curves_smooth_draws_each_run_faint_and_its_running_mean_labelled():
    fig = plots.loss_curves({"S4D": [4.0, 2.0, 2.0, 0.0], "Mamba": [1.0, 1.0, 1.0]}, smooth=2, baseline=1.4)
    ax = fig.axes[0]
    raw, running = ax.lines[:2]
    assert raw.get_alpha() == 0.3 and running.get_color() == raw.get_color()
    np.testing.assert_allclose(running.get_xdata(), [2, 3, 4])
    np.testing.assert_allclose(running.get_ydata(), [3.0, 2.0, 1.0])
    assert [t.get_text() for t in ax.get_legend().get_texts()] == ["S4D", "Mamba", "baseline"]
    with pytest.raises(ValueError, match="smooth must be an int >= 2"):
        plots.loss_curves({"a": [1.0, 2.0]}, smooth=1)


# ---- the State-space chapter -------------------------------------------------------------------


def test_discretization_samples_continuous_line_markers_and_input_staircase():
    fig = state_space_plots.discretization_samples([0.1, 0.2, 0.3], [0.0, 0.5, 0.7], [0.5, 1.0],
                                       {"zoh": [0.4, 0.6], "bilinear": [0.5, 0.8]}, [1.0, -1.0])
    ax = fig.axes[0]
    continuous, zoh, bilinear, staircase = ax.lines
    np.testing.assert_allclose(continuous.get_ydata(), [0.0, 0.5, 0.7])
    np.testing.assert_allclose(bilinear.get_ydata(), [0.5, 0.8])
    assert zoh.get_marker() == "o" and bilinear.get_marker() == "x"
    np.testing.assert_allclose(staircase.get_xdata(), [0.0, 0.5, 1.0])  # the first step starts at t = 0
    assert [t.get_text() for t in ax.get_legend().get_texts()] == ["continuous system", "zoh", "bilinear", "input x(t)"]
    with pytest.raises(ValueError, match="one value per sample time"):
        state_space_plots.discretization_samples([0], [0], [1, 2], {}, [1])


def test_memory_decay_draws_each_kernel_with_its_envelope_and_the_gates_powers():
    lags = np.arange(5)
    kernel = np.array([1.0, 0.5, 0.2, 1e-9, 0.01])
    fig = state_space_plots.memory_decay(lags, {0.1: kernel}, [0.5])
    ax = fig.axes[0]
    k, envelope, gate = ax.lines
    np.testing.assert_allclose(k.get_ydata(), [0.5, 0.2, 1e-5, 0.01])  # lag 0 left out, tiny values floored
    np.testing.assert_allclose(envelope.get_ydata(), np.exp(-np.arange(1, 5) * 0.1 / 2))  # tau = 2 / delta
    np.testing.assert_allclose(gate.get_ydata(), 0.5 ** np.arange(1, 5))
    assert envelope.get_color() == k.get_color() and envelope.get_linestyle() == "--"
    assert [t.get_text() for t in ax.get_legend().get_texts()] == ["S4D, delta = 0.1: exp(-l/tau), |K_l|",
                                                                   "LSTM, f = 0.50: f^l"]


def test_token_bars_one_panel_per_row_tokens_on_the_bottom_and_highlighted_steps():
    fig = state_space_plots.token_bars(list("a.b>"), {"write": [3, 0, 2, 0], "mean Delta_t": [0.1, 0.2, 0.3, 0.4]},
                           highlight=[True, False, True, False], title="writes")
    top, bottom = fig.axes
    assert [p.get_height() for p in top.patches] == [3, 0, 2, 0]
    assert top.patches[0].get_facecolor() != top.patches[1].get_facecolor()
    assert [t.get_text() for t in bottom.get_xticklabels()] == list("a.b>")
    assert (top.get_ylabel(), bottom.get_ylabel(), top.get_title()) == ("write", "mean Delta_t", "writes")
    with pytest.raises(ValueError, match="one flag per token"):
        state_space_plots.token_bars("ab", {"w": [1, 2]}, highlight=[True])


def test_matrix_panels_signed_matrices_get_a_symmetric_scale():
    L = np.tril(np.full((3, 3), 0.5))
    M = np.array([[1.0, 0, 0], [-2.0, 0.5, 0], [0.1, 0.2, 0.3]])
    fig = state_space_plots.matrix_panels({"L": L, "M": M}, signed=["M"])
    left, right = [ax for ax in fig.axes if ax.images]
    assert left.images[0].get_clim() == (0.0, 0.5) and right.images[0].get_clim() == (-2.0, 2.0)
    np.testing.assert_allclose(np.asarray(right.images[0].get_array()), M)
    assert len(fig.axes) == 4  # two panels, two colour bars
    with pytest.raises(ValueError, match="signed names matrices"):
        state_space_plots.matrix_panels({"L": L}, signed=["X"])
