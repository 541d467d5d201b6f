"""The diagrams (the Mamba block, the LSTM and GRU cells): each draws every stage of ``MambaBlock.forward`` in the order the data
flows, no two boxes overlap, no arrow runs through a box it does not connect, every label fits
its box, and the figure is returned closed in pyplot; bad diagrams are refused."""
import matplotlib.pyplot as plt
import numpy as np
import pytest
from matplotlib.backends.backend_agg import FigureCanvasAgg

from seqcourse.viz.diagrams import (GRU_EDGES, GRU_NODES, LSTM_EDGES, LSTM_NODES, MAMBA_EDGES, MAMBA_NODES, Edge, Node, draw,
                                draw_gru_cell, draw_lstm_cell, draw_mamba_block)

DIAGRAMS = {"mamba": (MAMBA_NODES, MAMBA_EDGES, draw_mamba_block), "lstm": (LSTM_NODES, LSTM_EDGES, draw_lstm_cell),
            "gru": (GRU_NODES, GRU_EDGES, draw_gru_cell)}


def rectangles(nodes=MAMBA_NODES):
    return {n.name: (n.x - n.width / 2, n.y - n.height / 2, n.x + n.width / 2, n.y + n.height / 2) for n in nodes}


def all_paths(edges, start):
    children = {}
    for edge in edges:
        children.setdefault(edge.source, []).append(edge.target)

    def paths(node):
        return [[node]] if node not in children else [[node, *rest] for child in children[node] for rest in paths(child)]

    return paths(start)


def test_the_graph_follows_the_block_from_input_to_output():
    children = {}
    for edge in MAMBA_EDGES:
        children.setdefault(edge.source, []).append(edge.target)

    def paths(node):
        return [[node]] if node not in children else [[node, *rest] for child in children[node] for rest in paths(child)]

    every = paths("v")
    assert all(path[-1] == "out" for path in every)  # one output, reached from the input along every arrow
    assert ["v", "norm", "in_proj", "conv", "silu_x", "ssm", "gate", "out_proj", "add", "out"] in every
    assert ["v", "norm", "in_proj", "conv", "silu_x", "select", "ssm", "gate", "out_proj", "add", "out"] in every
    assert ["v", "norm", "in_proj", "silu_z", "gate", "out_proj", "add", "out"] in every
    assert ["v", "add", "out"] in every  # the residual connection
    assert {n.name for n in MAMBA_NODES} == {name for path in every for name in path}


def test_the_lstm_cell_carries_c_along_the_top_and_computes_h_from_it():
    every = all_paths(LSTM_EDGES, "inputs") + all_paths(LSTM_EDGES, "c_prev")
    for path in (["c_prev", "keep", "write", "c_next"], ["inputs", "f", "keep", "write", "c_next"],
                 ["inputs", "i", "ig", "write", "c_next"], ["inputs", "g", "ig", "write", "c_next"],
                 ["inputs", "o", "out", "h_next"], ["c_prev", "keep", "write", "squash", "out", "h_next"]):
        assert path in every, path
    assert {path[-1] for path in every} == {"c_next", "h_next"}
    assert {n.name for n in LSTM_NODES} == {name for path in every for name in path}


def test_the_gru_cell_mixes_the_old_state_and_the_candidate_by_z():
    starts = ("h_prev", "inputs", "hidden", "x_part")
    every = [path for start in starts for path in all_paths(GRU_EDGES, start)]
    for path in (["h_prev", "keep", "mix", "h_next"], ["inputs", "z", "one_minus", "keep", "mix", "h_next"],
                 ["inputs", "z", "take", "mix", "h_next"], ["inputs", "r", "reset", "cand", "take", "mix", "h_next"],
                 ["hidden", "reset", "cand", "take", "mix", "h_next"], ["x_part", "cand", "take", "mix", "h_next"]):
        assert path in every, path
    assert {path[-1] for path in every} == {"h_next"}
    assert {n.name for n in GRU_NODES} == {name for path in every for name in path}


@pytest.mark.parametrize("diagram", DIAGRAMS)
def test_no_boxes_overlap_and_no_arrow_crosses_a_box_it_does_not_join(diagram):
    nodes, edges, _ = DIAGRAMS[diagram]
    boxes = rectangles(nodes)
    names = list(boxes)
    for i, a in enumerate(names):
        for b in names[i + 1:]:
            (ax0, ay0, ax1, ay1), (bx0, by0, bx1, by1) = boxes[a], boxes[b]
            assert ax1 <= bx0 or bx1 <= ax0 or ay1 <= by0 or by1 <= ay0, (a, b)
    by_name = {n.name: n for n in nodes}
    for edge in edges:
        points = [(by_name[edge.source].x, by_name[edge.source].y), *edge.via,
                  (by_name[edge.target].x, by_name[edge.target].y)]
        for (x0, y0), (x1, y1) in zip(points, points[1:]):
            for s in np.linspace(0, 1, 400):
                x, y = x0 + s * (x1 - x0), y0 + s * (y1 - y0)
                inside = [name for name, (bx0, by0, bx1, by1) in boxes.items()
                          if bx0 + 0.01 < x < bx1 - 0.01 and by0 + 0.01 < y < by1 - 0.01]
                assert set(inside) <= {edge.source, edge.target}, (edge, inside, (x, y))


@pytest.mark.parametrize("diagram", DIAGRAMS)
def test_labels_fit_their_boxes_and_the_figure_is_closed(diagram):
    nodes, edges, drawer = DIAGRAMS[diagram]
    fig = drawer()
    assert fig.number not in plt.get_fignums()
    canvas = FigureCanvasAgg(fig)  # a closed figure has no canvas of its own to draw on
    canvas.draw()
    renderer = canvas.get_renderer()
    ax = fig.axes[0]
    texts = {t.get_gid(): t for t in ax.texts if t.get_gid()}
    assert set(texts) == {f"label:{n.name}" for n in nodes}
    to_data = ax.transData.inverted()
    for node in nodes:
        if node.circle:
            continue
        (x0, y0), (x1, y1) = to_data.transform(texts[f"label:{node.name}"].get_window_extent(renderer).get_points())
        assert node.x - node.width / 2 <= x0 and x1 <= node.x + node.width / 2, node.name
        assert node.y - node.height / 2 <= y0 and y1 <= node.y + node.height / 2, node.name
    arrows = [p for p in ax.patches if (p.get_gid() or "").startswith("edge:")]
    assert {p.get_gid() for p in arrows} == {f"edge:{e.source}->{e.target}" for e in edges}


def test_bad_diagrams_are_refused():
    nodes = (Node("a", "a", 0, 0, 1, 1), Node("b", "b", 0, 2, 1, 1))
    with pytest.raises(ValueError, match="unknown node 'c'"):
        draw(nodes, (Edge("a", "c"),))
    with pytest.raises(ValueError, match="two nodes are named 'a'"):
        draw(nodes + (Node("a", "again", 3, 3, 1, 1),), ())
    assert draw(nodes, (Edge("a", "b"),)).axes[0].patches
