"""Associative recall against state size: the measurement behind the Comparison chapter's recall section.

Multi-query associative recall (MQAR; Arora et al., 2024, "Zoology"; ``tasks.associative_recall``)
shows N key–value pairs and then asks for the value of every key. A model that reads the sequence once,
left to right, must hold all N associations at the moment the queries start. What it can hold is
bounded by what it carries from step to step:

- a recurrence (RNN, LSTM, GRU), S4D, Mamba and linear attention carry a state of fixed size,
  whatever N;
- the TCN carries its buffers (fixed too), and sees only its receptive field;
- the Transformer's KV cache grows by one key and one value per step, so at the first query it
  holds every pair exactly.

``recall_scores`` trains every family, at a matched parameter count, at several N and scores it on
fresh sequences; ``state_floats`` counts the numbers each core carries after it has read the N
pairs (batch 1), which is what the accuracy is set against. ``outer_product_recall`` measures the
same limit without training, for the memory linear attention keeps: a sum of outer products of
d-dimensional keys and one-hot values, read out with the query key.
"""
from __future__ import annotations

from collections.abc import Sequence

import torch
from torch import nn

from .comparison import check_core, count_parameters, make_core, matched_cores, state_bytes
from ..models.bidirectional import Tagger
from ..data.tasks import IGNORE_INDEX, associative_recall
from ..device import get_device
from ..train import train
from ..validation import expect_float, expect_int, module_dtype_device

__all__ = ["N_KEYS", "N_VALUES", "outer_product_recall", "recall_scores", "state_floats"]

N_KEYS = 32
"""Distinct keys in the recall task: the most pairs a sequence can hold (each key at most once)."""
N_VALUES = 16
"""Distinct values: chance accuracy is 1/16."""


def state_floats(core: nn.Module, n_steps: int) -> int:
    """The numbers ``core`` carries after ``step()`` over ``n_steps`` inputs (batch 1, zeros:
    only the state's size matters), i.e. ``state_bytes`` over the element size. A fixed-state
    family gives the same count for every ``n_steps``; the Transformer's KV cache grows with it."""
    check_core(core, step=True)
    n_steps = expect_int(n_steps, "n_steps", minimum=1)
    dtype, device = module_dtype_device(core)
    x_t = torch.zeros(1, core.input_size, dtype=dtype, device=device)
    state = None
    with torch.no_grad():
        for _ in range(n_steps):
            _, state = core.step(x_t, state)
    return state_bytes(state) // x_t.element_size()


def outer_product_recall(key_size: int, n_pairs: int, *, n_values: int = N_VALUES, trials: int = 200,
                         seed: int = 0) -> float:
    r"""Recall accuracy of an outer-product memory holding ``n_pairs`` associations in float64.

    Keys :math:`k_i` are independent random unit vectors in :math:`\mathbb{R}^d` (d = ``key_size``),
    values one-hot :math:`e_{v_i}` over ``n_values``; the memory is the (d, V) matrix
    :math:`S = \sum_{i=1}^{N} k_i e_{v_i}^\top`, linear attention's state without its feature map and
    normaliser. Reading key j gives :math:`k_j^\top S = e_{v_j}^\top + \sum_{i \ne j} (k_j^\top k_i)\,
    e_{v_i}^\top`: the right value plus crosstalk from every other pair, whose size grows like
    :math:`\sqrt{N/d}`. The answer is the largest entry. Returns the fraction of the N reads (over
    ``trials`` independent memories) that answer :math:`v_j`; ties count as wrong.
    """
    d = expect_int(key_size, "key_size", minimum=1)
    n = expect_int(n_pairs, "n_pairs", minimum=1)
    V = expect_int(n_values, "n_values", minimum=2)
    trials = expect_int(trials, "trials", minimum=1)
    g = torch.Generator().manual_seed(seed)
    keys = nn.functional.normalize(torch.randn(trials, n, d, generator=g, dtype=torch.float64), dim=-1)
    values = torch.randint(0, V, (trials, n), generator=g)
    memory = keys.transpose(1, 2) @ nn.functional.one_hot(values, V).to(torch.float64)  # (trials, d, V)
    read = keys @ memory  # (trials, n, V): row j is k_j^T S
    best = read.max(dim=-1)
    unique = (read == best.values.unsqueeze(-1)).sum(-1) == 1
    return ((best.indices == values) & unique).double().mean().item()


def recall_scores(names: Sequence[str], pair_counts: Sequence[int], *, target_params: int, steps: int,
                  batch: int = 64, lr: float = 3e-3, num_layers: int = 1, eval_size: int = 512,
                  device=None, seed: int = 0) -> list[dict]:
    """Train each family on ``associative_recall`` with N pairs, for each N in ``pair_counts``,
    and score it on ``eval_size`` fresh sequences.

    Every model is a core of ``make_core`` (width H matched once to ``target_params``, ``num_layers``
    deep) under a per-step readout ``Tagger`` to the ``N_VALUES`` values, trained for ``steps`` Adam
    updates (gradient norm clipped at 1, fresh sequences every step, the cross-entropy of the N
    query steps only). Every (family, N) starts from the same seed: ``seed`` for the weights,
    ``1000 * seed + N`` for the training data; the evaluation sequences are the same for every seed.

    Returns rows ``{"model", "pairs", "accuracy", "chance", "parameters", "state_floats"}``:
    accuracy on the query steps, chance ``1 / N_VALUES``, the core's parameter count, and the
    numbers the core carries after reading the N pairs (``state_floats``).
    """
    steps = expect_int(steps, "steps", minimum=1)
    batch = expect_int(batch, "batch", minimum=1)
    eval_size = expect_int(eval_size, "eval_size", minimum=1)
    lr = expect_float(lr, "lr", positive=True)
    counts = [expect_int(n, "each pair count", minimum=1, maximum=N_KEYS) for n in pair_counts]
    device = get_device(device)
    input_size = N_KEYS + N_VALUES + 1
    widths = {name: hidden for name, (_, hidden)
              in matched_cores(input_size, target_params, names, num_layers, fast=True).items()}

    def loss_fn(model, x, targets):
        logits = model(x)  # (B, 2N, N_VALUES); only the query steps have targets
        return nn.functional.cross_entropy(logits.flatten(0, 1), targets.flatten(), ignore_index=IGNORE_INDEX)

    rows = []
    for n_pairs in counts:
        x_eval, y_eval = associative_recall(eval_size, n_pairs, N_KEYS, N_VALUES,
                                            generator=torch.Generator().manual_seed(10_000 + n_pairs))
        for name in names:
            torch.manual_seed(seed)
            core = make_core(name, input_size, widths[name], num_layers, fast=True, mamba_scan="auto")
            model = Tagger(core, None, num_tags=N_VALUES).to(device)
            g = torch.Generator().manual_seed(1000 * seed + n_pairs)
            train(model, lambda step: associative_recall(batch, n_pairs, N_KEYS, N_VALUES, generator=g), loss_fn,
                  steps=steps, lr=lr, clip_norm=1.0, device=device, progress=False)
            with torch.no_grad():
                predicted = model(x_eval.to(device))[:, n_pairs:].argmax(-1).cpu()
            accuracy = (predicted == y_eval[:, n_pairs:]).float().mean().item()
            rows.append({"model": name, "pairs": n_pairs, "accuracy": accuracy, "chance": 1 / N_VALUES,
                         "parameters": count_parameters(core), "state_floats": state_floats(core, n_pairs)})
    return rows
