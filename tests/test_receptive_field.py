"""The receptive field three ways: the closed form R(k, d), the sum over dilations, and autograd on
real models (plus the traced cone the figure draws), for one and two convolutions per level."""
import matplotlib
import pytest
import torch

from seqcourse.models.tcn import TCN, CausalConv1d, receptive_field, tcn_receptive_field
from seqcourse.viz.receptive_field import (
    ReceptiveFieldExplorer,
    empirical_receptive_field,
    influence_cone,
    input_gradient_mask,
    receptive_field_figure,
)

matplotlib.use("Agg")


def _dilations(levels, convs_per_block):
    return [2**level for level in range(levels) for _ in range(convs_per_block)]


@pytest.mark.parametrize("kernel_size", [1, 2, 3, 5])
@pytest.mark.parametrize("levels", [1, 2, 4, 10])
@pytest.mark.parametrize("convs_per_block", [1, 2])
def test_closed_form_equals_sum_over_dilations(kernel_size, levels, convs_per_block):
    closed = tcn_receptive_field(kernel_size, levels, convs_per_block=convs_per_block)
    assert closed == receptive_field(kernel_size, _dilations(levels, convs_per_block))
    assert closed == TCN(1, 1, num_levels=levels, kernel_size=kernel_size, convs_per_block=convs_per_block).receptive_field


def test_known_values():
    d = 9  # ten levels, dilations 1 ... 512
    assert tcn_receptive_field(2, d + 1, convs_per_block=1) == (2 - 1) * (2 ** (d + 1) - 1) + 1 == 1024
    assert tcn_receptive_field(2, 10, convs_per_block=2) == 2047  # Bai et al.'s two convolutions per level
    assert receptive_field(3, [1, 2, 4]) == 15
    assert receptive_field(4, []) == 1


@pytest.mark.parametrize("kernel_size, levels, convs_per_block", [
    (2, 1, 1), (2, 3, 1), (3, 4, 1), (4, 3, 1), (2, 10, 1),  # the last: R = 1024
    (2, 3, 2), (3, 3, 2), (5, 2, 2),
])
def test_autograd_agrees_with_the_formula(kernel_size, levels, convs_per_block, device):
    torch.manual_seed(0)
    model = TCN(2, 8, num_levels=levels, kernel_size=kernel_size, convs_per_block=convs_per_block).to(device)
    r = tcn_receptive_field(kernel_size, levels, convs_per_block=convs_per_block)
    length = r + 17
    g = torch.Generator().manual_seed(1)
    assert empirical_receptive_field(model, length, generator=g) == r
    # Every lag 0 ... R-1 is reachable (no holes), and nothing before the field is.
    x = torch.randn(32, length, 2, generator=g).to(device)
    mask = input_gradient_mask(model, x, generator=g)
    assert mask.dtype == torch.bool and mask.shape == (length,)
    assert mask[length - r:].all() and not mask[: length - r].any()


def test_cone_is_what_autograd_measures(device):
    """The positions the figure colours are the inputs autograd finds, layer by layer at the bottom."""
    torch.manual_seed(2)
    model = TCN(1, 8, num_levels=3, kernel_size=3, convs_per_block=2).to(device)
    length = 40
    cone = influence_cone(3, _dilations(3, 2), length)
    mask = input_gradient_mask(model, torch.randn(32, length, 1, device=device), generator=torch.Generator().manual_seed(0))
    assert cone[0].tolist() == mask.nonzero().flatten().tolist()
    assert len(cone) == 7 and cone[-1].tolist() == [length - 1]


def test_middle_output_sees_only_its_past(device):
    torch.manual_seed(3)
    conv = CausalConv1d(2, 3, kernel_size=3, dilation=2).to(device)
    mask = input_gradient_mask(conv, torch.randn(2, 12, 2, device=device), t=7)
    assert mask.nonzero().flatten().tolist() == [3, 5, 7]  # taps t - 4, t - 2, t


def test_recurrent_model_sees_everything(device):
    torch.manual_seed(4)
    lstm = torch.nn.LSTM(2, 4, batch_first=True).to(device)
    mask = input_gradient_mask(lstm, torch.randn(3, 30, 2, device=device))
    assert mask.all()
    with pytest.raises(ValueError, match="at least length=30"):
        empirical_receptive_field(lstm, 30, input_size=2)


def test_too_short_a_sequence_raises():
    model = TCN(1, 8, num_levels=4, kernel_size=2, convs_per_block=1)  # R = 16
    with pytest.raises(ValueError, match="at least length=16"):
        empirical_receptive_field(model, 16)
    assert empirical_receptive_field(model, 17) == 16


def test_bad_arguments():
    model = TCN(2, 3, num_levels=2)
    with pytest.raises(ValueError, match=r"x must be a float32 tensor of shape \(B, T, D\)"):
        input_gradient_mask(model, torch.randn(5, 2))
    with pytest.raises(ValueError, match="t must be <= 4"):
        input_gradient_mask(model, torch.randn(1, 5, 2), t=5)
    with pytest.raises(ValueError, match="no input_size attribute; pass input_size"):
        empirical_receptive_field(torch.nn.Conv1d(2, 2, 1), 5)
    with pytest.raises(ValueError, match=r"outputs of shape \(B, T, H\)"):
        input_gradient_mask(torch.nn.Sequential(torch.nn.Linear(2, 2), torch.nn.Flatten()), torch.randn(1, 5, 2))
    with pytest.raises(TypeError, match="dilations must be a sequence"):
        receptive_field(2, 4)
    with pytest.raises(ValueError, match=r"dilations\[1\] must be >= 1"):
        receptive_field(2, [1, 0])


def test_figure_draws_the_cone():
    fig = receptive_field_figure(2, 3)
    ax = fig.axes[0]
    assert "R = (2−1)·(2^3−1)+1 = 8" in ax.get_title()
    assert any("8 inputs reach" in text.get_text() for text in ax.texts)
    assert len(ax.get_yticklabels()) == 4  # the input and three convolutions
    fig2 = receptive_field_figure(3, 2, convs_per_block=2, length=30)
    assert "= 13" in fig2.axes[0].get_title() and len(fig2.axes[0].get_yticklabels()) == 5


def test_explorer_redraws_on_slider_change():
    explorer = ReceptiveFieldExplorer(kernel_size=2, num_levels=3)
    assert explorer.receptive_field == 8 and len(explorer.cone[0]) == 8
    first_image = explorer.png
    assert first_image[:4] == b"\x89PNG"
    explorer.kernel_size.value = 3
    assert explorer.receptive_field == 15 and "= 15 inputs" in explorer.message.value
    explorer.convs_per_block.value = 2
    assert explorer.receptive_field == 29 and len(explorer.cone[0]) == 29
    assert explorer.png != first_image
    with pytest.raises(ValueError, match="num_levels must be <= 6"):
        ReceptiveFieldExplorer(num_levels=7)
