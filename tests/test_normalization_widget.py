"""seqcourse.viz.widgets.NormPlacementExplorer: drive the depth/placement explorer as a reader would."""
import numpy as np
import pytest
import torch

from seqcourse.measure.normalization import stack_gradient_norms
from seqcourse.viz.widgets import NormPlacementExplorer

pytest.importorskip("ipywidgets")
pytestmark = pytest.mark.usefixtures("one_thread")

SMALL = {"d_model": 8, "n_heads": 2, "seq_len": 4, "batch_size": 2}


def test_initial_curves_are_the_static_computation():
    explorer = NormPlacementExplorer(4, "both", max_depth=8, **SMALL)
    assert sorted(explorer.curves) == ["post", "pre"]
    for norm in ("pre", "post"):
        expected = stack_gradient_norms(norm, 4, **SMALL)
        torch.testing.assert_close(explorer.curves[norm].parameters, expected.parameters)
    lines = explorer.figure.axes[0].get_lines()
    assert [line.get_label() for line in lines] == ["pre-norm", "post-norm"]
    np.testing.assert_allclose(lines[1].get_ydata(), explorer.curves["post"].parameters.numpy(), rtol=1e-6)
    assert explorer.png.startswith(b"\x89PNG")
    assert "pre-norm: first block" in explorer.message.value and "post-norm" in explorer.message.value


def test_moving_the_controls_redraws():
    explorer = NormPlacementExplorer(4, "both", max_depth=8, **SMALL)
    first_image = explorer.png
    explorer.depth.value = 6  # what a reader's slider does: the observer redraws
    assert explorer.curves["pre"].parameters.shape == (6,)
    assert len(explorer.figure.axes[0].get_lines()[0].get_xdata()) == 6
    assert explorer.png != first_image
    explorer.placement.value = "post"
    assert list(explorer.curves) == ["post"]
    assert [line.get_label() for line in explorer.figure.axes[0].get_lines()] == ["post-norm"]
    explorer.measure.value = "inputs"
    np.testing.assert_allclose(explorer.figure.axes[0].get_lines()[0].get_ydata(),
                               explorer.curves["post"].inputs.numpy(), rtol=1e-6)
    assert "block input" in explorer.figure.axes[0].get_ylabel()


def test_results_are_cached_per_placement_and_depth():
    explorer = NormPlacementExplorer(4, "pre", max_depth=8, **SMALL)
    cached = explorer.curves["pre"]
    explorer.depth.value = 6
    explorer.depth.value = 4
    assert explorer.curves["pre"] is cached  # the same object: not recomputed


def test_explorer_displays_as_its_widget_box():
    explorer = NormPlacementExplorer(2, "post", max_depth=4, **SMALL)
    bundle = explorer._repr_mimebundle_()
    assert bundle["application/vnd.jupyter.widget-view+json"]["model_id"] == explorer.widget.model_id


@pytest.mark.parametrize("kwargs, message", [
    ({"placement": "middle"}, "placement must be 'pre', 'post' or 'both'"),
    ({"measure": "weights"}, "measure must be 'parameters' or 'inputs'"),
    ({"depth": 50}, r"depth must lie in \[min_depth, max_depth\] = \[2, 48\]"),
    ({"depth": 0}, "depth must be a positive int"),
])
def test_bad_construction_raises(kwargs, message):
    with pytest.raises(ValueError, match=message):
        NormPlacementExplorer(**kwargs, **SMALL)
