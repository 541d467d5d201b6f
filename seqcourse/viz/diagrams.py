"""Block diagrams drawn by code, for the book's figures (no pasted images).

    draw_lstm_cell()        one step of ``seqcourse.models.gated.LSTMCell``: four gates, the cell state c
                            along the top, h_t = o_t ⊙ tanh(c_t)
    draw_gru_cell()         one step of ``GRUCell``: reset gate on the candidate's hidden part, update
                            gate mixing h_{t-1} and the candidate
    draw_mamba_block()      one residual layer of ``seqcourse.models.mamba.Mamba``: RMSNorm, the
                            MambaBlock's two branches (convolution, selective SSM; SiLU gate), the
                            output projection and the residual sum

A diagram is a list of ``Node`` (a labelled box, or a small circle for a sum or a product, at a
centre in data coordinates) and of ``Edge`` (an arrow between two nodes, with an optional label).
``draw`` lays them on one axes with the arrows clipped to the node outlines. Like the helpers in
``seqcourse.viz.plots``, ``draw_mamba_block`` closes its figure in pyplot and returns the
``matplotlib.figure.Figure``: a notebook cell shows it by ending with it.

The Mamba block, with the symbols of the State-space chapter (``seqcourse.models.mamba``):

    [x, z] = W_in RMSNorm(v);   x = SiLU(conv_K(x));   Δ_t, B_t, C_t from x_t (W_x, W_Δ);
    y = selective SSM(x; Δ, B, C) (with D x);   out = W_out (y ⊙ SiLU(z));   v <- v + out
"""
from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass

from matplotlib.figure import Figure
from matplotlib.patches import Circle, FancyArrowPatch, FancyBboxPatch, Rectangle

from .figure import new_figure

__all__ = ["Edge", "GRU_EDGES", "GRU_NODES", "LSTM_EDGES", "LSTM_NODES", "MAMBA_EDGES", "MAMBA_NODES", "Node", "draw",
           "draw_gru_cell", "draw_lstm_cell", "draw_mamba_block"]


@dataclass(frozen=True)
class Node:
    """A box (``width`` > 0, ``height`` > 0) or, with ``circle=True``, a circle of diameter ``width``,
    centred at (x, y), showing ``label`` (matplotlib mathtext allowed)."""

    name: str
    label: str
    x: float
    y: float
    width: float
    height: float
    color: str = "white"
    circle: bool = False


@dataclass(frozen=True)
class Edge:
    """An arrow from node ``source`` to node ``target``; ``via`` are corner points it passes through."""

    source: str
    target: str
    label: str = ""
    via: tuple[tuple[float, float], ...] = ()


_PROJECTION, _MIXING, _SSM, _NORM = "#dbe9f6", "#fde9d4", "#d9f0d3", "#eeeeee"

MAMBA_NODES = (
    Node("v", "$v$  (B, T, H)", 5.1, 0.4, 2.6, 0.55, color="none"),
    Node("norm", "RMSNorm", 5.1, 1.5, 2.4, 0.6, _NORM),
    Node("in_proj", "input projection $W_{in}$: H → 2E", 5.1, 2.8, 4.6, 0.6, _PROJECTION),
    Node("conv", "causal depthwise conv, K = 4", 2.2, 4.2, 3.6, 0.6, _MIXING),
    Node("silu_x", "SiLU", 2.2, 5.4, 1.6, 0.55, _MIXING),
    Node("select", "$\\Delta_t,\\ B_t,\\ C_t$ from $x_t$\n($W_x$, $W_\\Delta$, softplus)", 5.85, 7.3, 2.8, 0.95,
         _PROJECTION),
    Node("ssm", "selective SSM\n$h_t = e^{\\Delta_t A} h_{t-1} + \\Delta_t B_t x_t$\n$y_t = C_t h_t + D x_t$",
         2.2, 7.3, 3.6, 1.25, _SSM),
    Node("silu_z", "SiLU", 8.4, 7.3, 1.4, 0.55, _MIXING),
    Node("gate", "×", 5.1, 9.2, 0.55, 0.55, circle=True),
    Node("out_proj", "output projection $W_{out}$: E → H", 5.1, 10.3, 4.6, 0.6, _PROJECTION),
    Node("add", "+", 5.1, 11.5, 0.55, 0.55, circle=True),
    Node("out", "$v$ + MambaBlock(RMSNorm($v$))", 5.1, 12.5, 4.6, 0.55, color="none"),
)

MAMBA_EDGES = (
    Edge("v", "norm"),
    Edge("norm", "in_proj"),
    Edge("in_proj", "conv", "$x$", via=((2.2, 2.8),)),
    Edge("in_proj", "silu_z", "$z$", via=((8.4, 2.8),)),
    Edge("conv", "silu_x"),
    Edge("silu_x", "ssm", "$x_t$"),
    Edge("silu_x", "select", via=((5.85, 5.4),)),
    Edge("select", "ssm"),
    Edge("ssm", "gate", "$y$", via=((2.2, 9.2),)),
    Edge("silu_z", "gate", via=((8.4, 9.2),)),
    Edge("gate", "out_proj"),
    Edge("out_proj", "add"),
    Edge("v", "add", "residual", via=((9.9, 0.4), (9.9, 11.5))),
    Edge("add", "out"),
)


def _outline(node: Node):
    if node.circle:
        return Circle((node.x, node.y), node.width / 2, facecolor=node.color, edgecolor="black", lw=1.0)
    if node.color == "none":  # a plain label: no outline, but a patch to clip the arrows at
        return Rectangle((node.x - node.width / 2, node.y - node.height / 2), node.width, node.height,
                         facecolor="none", edgecolor="none")
    return FancyBboxPatch((node.x - node.width / 2, node.y - node.height / 2), node.width, node.height,
                          boxstyle="round,pad=0,rounding_size=0.12", facecolor=node.color, edgecolor="black", lw=1.0)


def draw(nodes: Sequence[Node], edges: Sequence[Edge], *, title: str | None = None, figsize=(6.0, 7.5),
         group: tuple[str, tuple[float, float, float, float]] | None = None) -> Figure:
    """Draw ``nodes`` and ``edges`` on one axes -> the figure (closed in pyplot).

    ``group`` = (label, (x0, y0, x1, y1)) draws a dashed frame around part of the diagram.
    Raises ``ValueError`` for two nodes with one name or an edge naming an unknown node.
    """
    by_name = {}
    for node in nodes:
        if node.name in by_name:
            raise ValueError(f"two nodes are named {node.name!r}")
        by_name[node.name] = node
    for edge in edges:
        for end in (edge.source, edge.target):
            if end not in by_name:
                raise ValueError(f"edge {edge.source!r} -> {edge.target!r} names an unknown node {end!r}; "
                                 f"known: {', '.join(by_name)}")
    fig, ax = new_figure(figsize)
    patches = {}
    for node in nodes:
        patches[node.name] = ax.add_patch(_outline(node))
        ax.text(node.x, node.y, node.label, ha="center", va="center", fontsize=9 if not node.circle else 12,
                gid=f"label:{node.name}")
    for edge in edges:
        source, target = by_name[edge.source], by_name[edge.target]
        points = [(source.x, source.y), *edge.via, (target.x, target.y)]
        for i, (start, end) in enumerate(zip(points, points[1:])):
            last = i == len(points) - 2
            ax.add_patch(FancyArrowPatch(start, end, arrowstyle="-|>" if last else "-", mutation_scale=12, lw=1.1,
                                         color="black", shrinkA=0, shrinkB=0, zorder=0,
                                         patchA=patches[edge.source] if i == 0 else None,
                                         patchB=patches[edge.target] if last else None,
                                         gid=f"edge:{edge.source}->{edge.target}"))
        if edge.label:  # beside the last segment, the one that ends in the arrow head
            (x0, y0), (x1, y1) = points[-2], points[-1]
            ax.text((x0 + x1) / 2 + 0.12, (y0 + y1) / 2 + 0.12, edge.label, fontsize=9, ha="left", va="center",
                    color="#333333")
    if group is not None:
        label, (x0, y0, x1, y1) = group
        ax.add_patch(Rectangle((x0, y0), x1 - x0, y1 - y0, facecolor="none", edgecolor="gray", ls="--", lw=1.0,
                               zorder=-1))
        ax.text(x0 + 0.1, y1 - 0.1, label, ha="left", va="top", fontsize=9, color="gray", style="italic")
    xs = [n.x - n.width / 2 for n in nodes] + [n.x + n.width / 2 for n in nodes]
    ys = [n.y - n.height / 2 for n in nodes] + [n.y + n.height / 2 for n in nodes]
    corners = [p for edge in edges for p in edge.via]
    ax.set_xlim(min(xs + [p[0] for p in corners]) - 0.3, max(xs + [p[0] for p in corners]) + 0.3)
    ax.set_ylim(min(ys) - 0.2, max(ys) + 0.2)
    ax.set_aspect("equal")
    ax.axis("off")
    if title:
        ax.set_title(title, fontsize=10)
    return fig


def draw_mamba_block(figsize=(6.0, 7.5)) -> Figure:
    """One layer of the course's ``Mamba``: v <- v + MambaBlock(RMSNorm(v)), the block drawn inside a
    dashed frame, from the input v at the bottom to the output at the top (module docstring)."""
    return draw(MAMBA_NODES, MAMBA_EDGES, figsize=figsize, group=("MambaBlock", (0.2, 2.2, 9.4, 10.85)))


_GATE, _CANDIDATE, _STATE = "#dbe9f6", "#fde9d4", "#d9f0d3"

LSTM_NODES = (
    Node("c_prev", "$c_{t-1}$", 0.6, 6.2, 1.0, 0.5, color="none"),
    Node("keep", "×", 2.4, 6.2, 0.5, 0.5, circle=True),
    Node("write", "+", 5.0, 6.2, 0.5, 0.5, circle=True),
    Node("c_next", "$c_t$", 10.4, 6.2, 0.8, 0.5, color="none"),
    Node("f", "$f_t$\nσ", 2.4, 3.0, 1.1, 0.8, _GATE),
    Node("i", "$i_t$\nσ", 4.0, 3.0, 1.1, 0.8, _GATE),
    Node("g", "$g_t$\ntanh", 5.6, 3.0, 1.1, 0.8, _CANDIDATE),
    Node("o", "$o_t$\nσ", 7.4, 3.0, 1.1, 0.8, _GATE),
    Node("ig", "×", 5.0, 4.5, 0.5, 0.5, circle=True),
    Node("squash", "tanh", 8.7, 5.0, 1.0, 0.5, _STATE),
    Node("out", "×", 8.7, 3.9, 0.5, 0.5, circle=True),
    Node("h_next", "$h_t$", 10.4, 3.9, 0.8, 0.5, color="none"),
    Node("inputs", "$[x_t;\\ h_{t-1}]$", 4.9, 0.8, 2.2, 0.55, color="none"),
)

LSTM_EDGES = (
    Edge("c_prev", "keep"),
    Edge("keep", "write"),
    Edge("write", "c_next"),
    Edge("inputs", "f"), Edge("inputs", "i"), Edge("inputs", "g"), Edge("inputs", "o"),
    Edge("f", "keep", "forget"),
    Edge("i", "ig", via=((4.0, 4.5),)),
    Edge("g", "ig", via=((5.6, 4.5),)),
    Edge("ig", "write", "write"),
    Edge("write", "squash", via=((8.7, 6.2),)),
    Edge("squash", "out"),
    Edge("o", "out", via=((7.4, 3.9),)),
    Edge("out", "h_next"),
)

GRU_NODES = (
    Node("h_prev", "$h_{t-1}$", 0.6, 6.2, 1.0, 0.5, color="none"),
    Node("keep", "×", 3.0, 6.2, 0.5, 0.5, circle=True),
    Node("mix", "+", 6.6, 6.2, 0.5, 0.5, circle=True),
    Node("h_next", "$h_t$", 10.2, 6.2, 0.8, 0.5, color="none"),
    Node("r", "$r_t$\nσ", 1.8, 3.0, 1.1, 0.8, _GATE),
    Node("z", "$z_t$\nσ", 4.8, 3.0, 1.1, 0.8, _GATE),
    Node("one_minus", "$1 - z_t$", 3.0, 4.6, 1.2, 0.5, _GATE),
    Node("reset", "×", 6.6, 1.9, 0.5, 0.5, circle=True),
    Node("cand", "$\\tilde h_t$\ntanh", 8.2, 3.0, 1.2, 0.8, _CANDIDATE),
    Node("take", "×", 8.2, 4.6, 0.5, 0.5, circle=True),
    Node("inputs", "$[x_t;\\ h_{t-1}]$", 3.3, 0.8, 2.2, 0.55, color="none"),
    Node("hidden", "$W_h^h h_{t-1} + b_h^h$", 6.6, 0.5, 2.6, 0.5, color="none"),
    Node("x_part", "$W_x^h x_t + b_x^h$", 9.7, 1.9, 1.9, 0.5, color="none"),
)

GRU_EDGES = (
    Edge("h_prev", "keep"),
    Edge("keep", "mix"),
    Edge("mix", "h_next"),
    Edge("inputs", "r"), Edge("inputs", "z"),
    Edge("z", "one_minus", via=((4.8, 4.0), (3.0, 4.0))),
    Edge("one_minus", "keep", "keep"),
    Edge("z", "take", via=((4.8, 3.8), (8.2, 3.8))),
    Edge("r", "reset", "reset", via=((1.8, 1.9),)),
    Edge("hidden", "reset"),
    Edge("reset", "cand", via=((7.6, 1.9), (7.6, 3.0))),
    Edge("x_part", "cand", via=((9.7, 3.0),)),
    Edge("cand", "take"),
    Edge("take", "mix", "take", via=((8.2, 6.2),)),
)


def draw_lstm_cell(figsize=(6.5, 4.2)) -> Figure:
    """One step of the course's ``LSTMCell``: the four gates from [x_t; h_{t-1}], the cell state c
    along the top (kept by f_t, written by i_t ⊙ g_t), and h_t = o_t ⊙ tanh(c_t) (module docstring
    of ``seqcourse.models.gated``)."""
    return draw(LSTM_NODES, LSTM_EDGES, figsize=figsize)


def draw_gru_cell(figsize=(6.5, 4.2)) -> Figure:
    """One step of the course's ``GRUCell`` (z_t = 1 takes the candidate): reset gate r_t on the
    candidate's hidden part, update gate z_t mixing h_{t-1} and the candidate h̃_t along the top."""
    return draw(GRU_NODES, GRU_EDGES, figsize=figsize)
