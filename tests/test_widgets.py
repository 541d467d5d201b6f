"""seqcourse.viz.widgets: drive the hidden-state explorer as a reader would, without a front end."""
import html

import numpy as np
import pytest
import torch

from seqcourse import seed_everything
from seqcourse.models.rnn import RNN
from seqcourse.data.text import CharVocab
from seqcourse.viz.widgets import HiddenStateExplorer, char_encoder, number_encoder, step_states

pytest.importorskip("ipywidgets")


@pytest.fixture
def vocab():
    return CharVocab("abc def")


@pytest.fixture
def rnn(vocab, device):
    seed_everything(0)
    return RNN(len(vocab), 6).to(device)


def test_step_states_match_forward(rnn, vocab, device):
    _, x = char_encoder(vocab)("abc")
    states = step_states(rnn, x)
    expected, _ = rnn(x.unsqueeze(0).to(device))
    assert states.shape == (3, 6)
    np.testing.assert_allclose(states, expected[0].detach().cpu().numpy(), atol=1e-6)


def test_typing_updates_states_figure_and_image(rnn, vocab):
    explorer = HiddenStateExplorer(rnn, char_encoder(vocab), value="ab")
    first_image = explorer.png
    assert explorer.states.shape == (2, 6) and explorer.labels == ["a", "b"]
    assert first_image.startswith(b"\x89PNG")

    explorer.text.value = "bad cafe"  # what a reader's typing does: the observer redraws
    assert explorer.error is None
    assert explorer.labels == ["b", "a", "d", "\u2423", "c", "a", "f", "e"]  # a space shows as a visible mark
    _, x = char_encoder(vocab)("bad cafe")
    np.testing.assert_allclose(explorer.states, step_states(rnn, x))
    heat = np.asarray(explorer.figure.axes[0].images[0].get_array())
    np.testing.assert_allclose(heat, explorer.states.T)
    assert explorer.png != first_image
    assert "8 steps, 6 hidden units" in explorer.message.value


@pytest.mark.parametrize("text, message", [
    ("abz!", "not in the model's vocabulary of 7 characters: '!' 'z'"),
    ("", "the box is empty"),
    ("   ", "the box is empty"),
    ("a" * 41, "The input has 41 characters; this explorer takes at most 40."),
])
def test_bad_input_shows_a_message_and_keeps_last_heatmap(rnn, vocab, text, message):
    explorer = HiddenStateExplorer(rnn, char_encoder(vocab), value="abc")
    states, image = explorer.states.copy(), explorer.png
    explorer.text.value = text  # must not raise
    assert message in explorer.error
    assert html.escape(message) in explorer.message.value  # shown to the reader, HTML-escaped
    np.testing.assert_array_equal(explorer.states, states)
    assert explorer.png == image
    explorer.text.value = "cab"  # a good input clears the message
    assert explorer.error is None and explorer.labels == ["c", "a", "b"]


def test_number_input_reproduces_the_worked_example(device):
    rnn = RNN(1, 2).to(device)
    with torch.no_grad():
        rnn.cells[0].W_h.copy_(torch.tensor([[0.5, 0.1], [0.2, 0.6]]))
        rnn.cells[0].W_x.copy_(torch.tensor([[0.3], [0.4]]))
        rnn.cells[0].b.zero_()
    explorer = HiddenStateExplorer(rnn, number_encoder, value="1, -1, 2")
    h1 = np.tanh([0.3, 0.4])
    np.testing.assert_allclose(explorer.states[0], h1, atol=1e-6)
    assert explorer.labels == ["1", "-1", "2"]
    explorer.text.value = "1, two"
    assert explorer.error == "Cannot read this input: 'two' is not a number; type numbers separated by commas, e.g. 1, -1, 2"


def test_number_encoder_shapes_and_errors():
    labels, x = number_encoder("0.5 -1,2")
    assert labels == ["0.5", "-1", "2"] and x.shape == (3, 1)
    np.testing.assert_allclose(x[:, 0].numpy(), [0.5, -1.0, 2.0])
    with pytest.raises(ValueError, match="finite"):
        number_encoder("1, inf")
    with pytest.raises(ValueError, match="at least one number"):
        number_encoder(" , ")


def test_explorer_displays_as_its_widget_box(rnn, vocab):
    explorer = HiddenStateExplorer(rnn, char_encoder(vocab), value="a")
    bundle = explorer._repr_mimebundle_()
    assert bundle["application/vnd.jupyter.widget-view+json"]["model_id"] == explorer.widget.model_id


def test_explorer_rejects_bad_construction(rnn, vocab):
    with pytest.raises(TypeError, match="encode must be a callable"):
        HiddenStateExplorer(rnn, "abc", value="a")
    with pytest.raises(ValueError, match="max_len must be a positive int"):
        HiddenStateExplorer(rnn, char_encoder(vocab), value="a", max_len=0)
    with pytest.raises(TypeError, match="must have a step"):
        step_states(torch.nn.Linear(2, 2), torch.zeros(3, 2))
    with pytest.raises(ValueError, match=r"shape \(T, D\)"):
        step_states(rnn, torch.zeros(1, 3, 7))


def test_module_imports_without_ipywidgets_and_explains_what_is_missing(monkeypatch, rnn, vocab):
    import importlib
    import sys

    import seqcourse.viz.widgets as widgets_module

    monkeypatch.setitem(sys.modules, "ipywidgets", None)  # makes `import ipywidgets` fail
    reloaded = importlib.reload(widgets_module)  # the module itself must not need ipywidgets
    with pytest.raises(ImportError, match="needs ipywidgets to build an explorer: pip install ipywidgets"):
        reloaded.HiddenStateExplorer(rnn, reloaded.char_encoder(vocab), value="a")
    monkeypatch.undo()
    importlib.reload(widgets_module)
