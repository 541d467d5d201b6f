"""Every family side by side: the measurements behind the Comparison chapter.

Glossary (as in the chapters): B batch size, T sequence length, D input features, H hidden size
(model width), L stacked layers, p the position of a generated token.

- ``make_core(name, D, H)``: one core of each family (``FAMILIES``), all with the recurrent-core
  interface ``forward(x (B, T, D)) -> (outputs (B, T, H), state)`` and ``step(x_t (B, D), state)``;
  ``matched_cores`` picks each family's H so that all have about the same number of parameters.
- ``training_costs``: per family and T, the time of one training step (forward + backward, median of
  interleaved rounds), the bytes autograd saves for the backward (``analysis.saved_tensor_bytes``:
  deterministic), and the depth of the autograd graph (``graph_depth``): the length of the longest
  chain of operations that must run one after another, which is what "cannot be parallelised over
  time" means, counted rather than timed.
- ``generation_costs``: per family, the time of each ``step()`` call and the bytes of the state it
  carries (``state_bytes``) at every position p; ``flops_per_token``: the operations of one
  ``step()`` at chosen positions (counted, so deterministic).
- ``gradient_reach``: at initialisation, how much the last output's gradient reaches each earlier
  input (deterministic; the mechanism behind long-range ability).
- ``long_range_scores``: train every family on a long-range task (adding problem, copy, selective
  copy) at several lengths and score it on fresh data; ``long_range_bar``: the score that counts as
  having bridged the distance; ``min_distance``: the fewest steps a recall must bridge at a length
  (against ``TCN_RECEPTIVE_FIELD``).
- ``CLAIMS`` and ``judge_claims``: the source texts' comparison, each claim turned into a test
  that the measurements pass (held) or fail (not held) on this device.
"""
from __future__ import annotations

import time
from collections.abc import Callable, Mapping, Sequence
from dataclasses import dataclass

import torch
from torch import nn
from torch.utils.flop_counter import FlopCounterMode

from ..data import tasks
from .analysis import saved_tensor_bytes
from ..device import get_device, synchronize
from ..models.gated import GRU, LSTM
from ..models.long_context import LinearTransformer
from ..models.mamba import Mamba
from ..models.rnn import RNN
from ..models.s4d import S4D
from ..models.tcn import TCN
from ..models.transformer import Transformer
from ..models.wrappers import Classifier, LanguageModel
from ..data.tasks import adding_baseline_mse, copy_baseline
from .timing import interleaved_medians
from ..train import train
from ..validation import expect_int, module_dtype_device

__all__ = [
    "CLAIMS",
    "FAMILIES",
    "Claim",
    "check_core",
    "count_parameters",
    "flops_per_token",
    "generation_costs",
    "gradient_reach",
    "graph_depth",
    "judge_claims",
    "long_range_bar",
    "long_range_scores",
    "make_core",
    "matched_cores",
    "min_distance",
    "state_bytes",
    "training_costs",
]

FAMILIES = ("RNN", "LSTM", "GRU", "TCN", "Transformer", "LinearTransformer", "S4D", "Mamba")
RECURRENT = ("RNN", "LSTM", "GRU")
"""Families whose training has to walk through time step by step."""
PARALLEL = ("TCN", "Transformer", "LinearTransformer", "S4D", "Mamba")
"""Families the source texts credit with full training parallelism."""
TCN_LEVELS = 4  # receptive field c (k-1)(2^L - 1) + 1 = 31 with k = 2, c = 2
N_HEADS = 2


def make_core(name: str, input_size: int, hidden_size: int, num_layers: int = 2, *, fast: bool = False,
              attention_fast: bool = True, mamba_scan: str = "parallel") -> nn.Module:
    """One core of family ``name`` (one of ``FAMILIES``), ``num_layers`` deep and H = ``hidden_size`` wide.

    RNN/LSTM/GRU: stacked cells (``fast`` = torch's fused kernel, same function); TCN: ``TCN_LEVELS``
    dilated levels of kernel size 2 (receptive field 31; ``num_layers`` is not used); Transformer:
    pre-norm, sinusoidal positions, ``N_HEADS`` heads, attention through the fused kernel unless
    ``attention_fast=False`` (the readable softmax(QKᵀ/√d_k)V); LinearTransformer: the same blocks with
    linear attention; S4D: state size 16; Mamba: state size 8, the scan ``mamba_scan`` (default the log-depth
    parallel scan, whose chain of operations the cost measurements count; training passes "auto", the
    fastest scan on the device, the same function)."""
    expect_int(input_size, "input_size", minimum=1)
    expect_int(hidden_size, "hidden_size", minimum=1)
    expect_int(num_layers, "num_layers", minimum=1)
    if name in RECURRENT:
        return {"RNN": RNN, "LSTM": LSTM, "GRU": GRU}[name](input_size, hidden_size, num_layers=num_layers, fast=fast)
    if name == "TCN":
        return TCN(input_size, hidden_size, num_levels=TCN_LEVELS, kernel_size=2)
    if name == "Transformer":
        core = Transformer(input_size, hidden_size, num_layers=num_layers, n_heads=N_HEADS)
        core.fast = attention_fast
        return core
    if name == "LinearTransformer":
        return LinearTransformer(input_size, hidden_size, num_layers=num_layers, n_heads=N_HEADS)
    if name == "S4D":
        return S4D(input_size, hidden_size, state_size=16, num_layers=num_layers)
    if name == "Mamba":
        return Mamba(input_size, hidden_size, state_size=8, num_layers=num_layers, scan=mamba_scan)
    raise ValueError(f"unknown family {name!r}; expected one of {', '.join(FAMILIES)}")


def count_parameters(module: nn.Module) -> int:
    """The number of trainable scalars in ``module``."""
    if not isinstance(module, nn.Module):
        raise TypeError(f"module must be a torch.nn.Module; got {type(module).__name__}")
    return sum(p.numel() for p in module.parameters() if p.requires_grad)


def matched_cores(input_size: int, target_params: int, names: Sequence[str] = FAMILIES, num_layers: int = 2,
                  **options) -> dict[str, tuple[nn.Module, int]]:
    """For each family, the core whose parameter count is closest to ``target_params``: ``{name: (core, H)}``.

    H runs over multiples of ``N_HEADS`` (attention splits H into heads; S4D wants it even too);
    the count grows with H, so a bisection finds the closest. ``options`` go to ``make_core``."""
    expect_int(target_params, "target_params", minimum=1)
    chosen = {}
    for name in names:
        def params(h: int) -> int:
            return count_parameters(make_core(name, input_size, h * N_HEADS, num_layers, **options))

        lo, hi = 1, 2
        while params(hi) < target_params:
            lo, hi = hi, hi * 2
        while hi - lo > 1:  # params(lo) < target <= params(hi), or lo = 1
            mid = (lo + hi) // 2
            lo, hi = (mid, hi) if params(mid) < target_params else (lo, mid)
        best = min((lo, hi), key=lambda h: abs(params(h) - target_params))
        torch.manual_seed(0)
        chosen[name] = (make_core(name, input_size, best * N_HEADS, num_layers, **options), best * N_HEADS)
    return chosen


def graph_depth(output: torch.Tensor) -> int:
    """The number of autograd operations on the longest chain from the inputs to ``output``.

    Each operation on the chain needs the one before it, so no amount of parallel hardware can
    run the chain faster than one operation after another: a recurrence stepped T times has a
    chain proportional to T, a convolution or an attention layer one of fixed length, a log-depth
    scan one proportional to log T. (A fused kernel runs its own loop inside one operation, so
    count the readable path.)"""
    if not isinstance(output, torch.Tensor) or output.grad_fn is None:
        raise ValueError("output must be a tensor computed from tensors that require grad (it has no grad_fn)")
    depth: dict = {}
    stack = [(output.grad_fn, False)]
    while stack:
        node, expanded = stack.pop()
        children = [child for child, _ in node.next_functions if child is not None]
        if expanded:
            depth[node] = 1 + max((depth[child] for child in children), default=0)
        elif node not in depth:
            stack.append((node, True))
            stack.extend((child, False) for child in children if child not in depth)
    return depth[output.grad_fn]


def state_bytes(state) -> int:
    """Bytes of every tensor in a carried state (a tensor, or nested tuples/lists of tensors and ints)."""
    if isinstance(state, torch.Tensor):
        return state.numel() * state.element_size()
    if isinstance(state, (tuple, list)):
        return sum(state_bytes(s) for s in state)
    if state is None or isinstance(state, int):
        return 0
    raise TypeError(f"state must hold tensors (in tuples or lists); got {type(state).__name__}")


def check_core(core, name: str = "core", *, step: bool = False) -> None:
    """A sequence core: a ``torch.nn.Module`` with parameters, an ``input_size`` D and
    forward(x (B, T, D)) -> (outputs (B, T, H), state); with ``step``, also step(x_t (B, D), state)."""
    needs = ["input_size"] + (["step"] if step else [])
    if not isinstance(core, nn.Module) or any(not hasattr(core, attr) for attr in needs) \
            or next(core.parameters(), None) is None:
        raise TypeError(f"{name} must be a sequence core: a torch.nn.Module with parameters and "
                        f"{' and '.join(needs)} (like make_core(...)); got {type(core).__name__}")


def _check_cores(cores, *, step: bool = False) -> None:
    if not isinstance(cores, Mapping) or not cores:
        raise TypeError("cores must be a non-empty mapping from names to cores (torch.nn.Module), "
                        "e.g. {name: core for name, (core, H) in matched_cores(...).items()}")
    for name, core in cores.items():
        check_core(core, f"cores[{name!r}]", step=step)


def training_costs(cores: Mapping[str, nn.Module], lengths: Sequence[int], *, batch: int = 8,
                   repeats: int = 3, depth_cores: Mapping[str, nn.Module] | None = None,
                   seed: int = 0) -> list[dict]:
    """One training step's cost per family and length T: rows {"model", "T", "seconds", "saved_bytes",
    "depth"} with the loss mean(outputs²) standing in for a task's loss.

    ``seconds``: forward + backward, median of ``repeats`` interleaved rounds (all families at one T
    in each round); ``saved_bytes``: what autograd keeps for the backward; ``depth``: ``graph_depth``
    of the loss, measured on ``depth_cores[name]`` when given (e.g. the readable twin of a fused core)."""
    _check_cores(cores)
    rows = []
    device = module_dtype_device(next(iter(cores.values())))[1]
    for T in lengths:
        expect_int(T, "each length", minimum=1)
        x = {name: torch.randn(batch, T, core.input_size, generator=torch.Generator().manual_seed(seed))
             .to(module_dtype_device(core)[1]) for name, core in cores.items()}

        def loss(core, inputs):
            return core(inputs)[0].square().mean()

        def step(core, inputs):
            def run():
                core.zero_grad(set_to_none=True)
                loss(core, inputs).backward()
            return run

        times = interleaved_medians({name: step(core, x[name]) for name, core in cores.items()}, repeats, device)
        for name, core in cores.items():
            depth_core = (depth_cores or {}).get(name, core)
            rows.append({"model": name, "T": T, "seconds": times[name],
                         "saved_bytes": saved_tensor_bytes(lambda: loss(core, x[name])),
                         "depth": graph_depth(loss(depth_core, x[name]))})
    return rows


@torch.no_grad()
def generation_costs(cores: Mapping[str, nn.Module], positions: int, *, batch: int = 1, seed: int = 0) -> dict:
    """Generate ``positions`` tokens with each core's ``step()`` (inputs: random vectors; only the
    cost matters): ``{name: {"seconds": [per step], "state_bytes": [after each step]}}``."""
    expect_int(positions, "positions", minimum=1)
    _check_cores(cores, step=True)
    out = {}
    for name, core in cores.items():
        g = torch.Generator().manual_seed(seed)
        device = module_dtype_device(core)[1]
        xs = torch.randn(positions, batch, core.input_size, generator=g).to(device)
        state, seconds, sizes = None, [], []
        for x_t in xs:
            synchronize(device)
            start = time.perf_counter()
            _, state = core.step(x_t, state)
            synchronize(device)
            seconds.append(time.perf_counter() - start)
            sizes.append(state_bytes(state))
        out[name] = {"seconds": seconds, "state_bytes": sizes}
    return out


def gradient_reach(core: nn.Module, length: int, *, batch: int = 4, seed: int = 0) -> torch.Tensor:
    """How strongly the last output depends on each earlier input, at initialisation:
    r_k = ‖∂(w · y_T)/∂x_{T-k}‖ / ‖∂(w · y_T)/∂x_T‖ for k = 0 ... T-1 (a (T,) tensor, r_0 = 1), with
    w a fixed random (H,) vector (a plain sum would see nothing through a final LayerNorm, whose
    outputs always sum to the same value).

    A recurrence multiplies one Jacobian per step, so r_k typically decays geometrically; a TCN's
    r_k is exactly 0 once k reaches its receptive field; attention reaches every position in one hop."""
    check_core(core)
    expect_int(length, "length", minimum=2)
    g = torch.Generator().manual_seed(seed)
    device = module_dtype_device(core)[1]
    x = torch.randn(batch, length, core.input_size, generator=g).to(device).requires_grad_()
    y_last = core(x)[0][:, -1]  # (B, H)
    (grad,) = torch.autograd.grad((y_last * torch.randn(y_last.shape[-1], generator=g).to(device)).sum(), x)
    norms = grad.norm(dim=(0, 2)).flip(0)  # index k = distance back from the last step
    return (norms / norms[0]).cpu()


@torch.no_grad()
def flops_per_token(core: nn.Module, positions: Sequence[int], *, batch: int = 1, seed: int = 0) -> dict[int, int]:
    """Floating-point operations of ``step()`` at each position p in ``positions`` (1-based), counted
    by ``torch.utils.flop_counter.FlopCounterMode`` (matrix products and convolutions; elementwise
    work is not counted): ``{p: flops}``. Deterministic. Fused attention kernels are not counted on
    every device, so count a Transformer with its readable attention (``attention_fast=False``)."""

    check_core(core, step=True)
    wanted = sorted({expect_int(p, "each position", minimum=1) for p in positions})
    device = module_dtype_device(core)[1]
    g = torch.Generator().manual_seed(seed)
    state, counts = None, {}
    for p in range(1, wanted[-1] + 1):
        x_t = torch.randn(batch, core.input_size, generator=g).to(device)
        if p in wanted:
            with FlopCounterMode(display=False) as counter:
                _, state = core.step(x_t, state)
            counts[p] = counter.get_total_flops()
        else:
            _, state = core.step(x_t, state)
    return counts


# ---- long-range tasks ---------------------------------------------------------------------------


def _task_batches(task: str, length: int, n: int, generator: torch.Generator):
    """(inputs, targets) of a task at ``length``: adding (x (n, T, 2) float, y (n,)), copy and selective
    copy (ids (n, T), targets (n, T): the symbols at the last ``RECALLED`` steps; before them blank for
    copy, IGNORE_INDEX for selective copy)."""
    if task == "adding":
        return tasks.adding_problem(n, length, generator=generator)
    if task == "copy":
        return tasks.copy_task(n, delay=length, n_symbols=N_SYMBOLS, copy_length=RECALLED, generator=generator)
    if task == "selective_copy":
        return tasks.selective_copy_task(n, length=length, n_tokens=RECALLED, n_symbols=N_SYMBOLS, generator=generator)
    raise ValueError(f"unknown task {task!r}; expected 'adding', 'copy' or 'selective_copy'")


RECALLED = 3
"""Symbols to write back in the copy tasks (scored on those steps only)."""
N_SYMBOLS = 4
"""Distinct symbols in the copy tasks (chance accuracy 1/4)."""
TASK_VOCAB = {"copy": 6, "selective_copy": 6}
"""One-hot width of the token tasks: blank, 4 symbols, the delimiter/marker."""


def long_range_scores(names: Sequence[str], task: str, lengths: Sequence[int], *, target_params: int,
                      steps: int, batch: int = 32, lr: float = 3e-3, num_layers: int = 2, eval_size: int = 256,
                      device=None, seed: int = 0) -> list[dict]:
    """Train each family (at matched parameter counts, ``num_layers`` deep) on ``task`` at each length
    for ``steps`` Adam updates (gradient norm clipped at 1, fresh data each step) and score it on
    ``eval_size`` new sequences: rows {"model", "task", "T", "score", "chance", "parameters"} (the
    core's count, without the input projection and the head). In the token tasks the loss is the
    cross-entropy of the ``RECALLED`` recall steps only, and the answer at a recall step is the
    likeliest of the ``N_SYMBOLS`` symbols.

    adding: score = 1 - MSE / MSE of always answering 1 (``tasks.adding_baseline_mse``; 1 = solved,
    0 = no better than the mean, so chance = 0); copy, selective_copy: accuracy on the ``RECALLED``
    recall steps (chance = ``tasks.copy_baseline``'s recall accuracy 1/K = 1/4). For copy, T is the
    delay ℓ between the symbols and the delimiter (the first symbol is recalled ``RECALLED`` + ℓ steps
    after it was read); for selective copy, the span the symbols are scattered over.
    Each family's width is matched once per task; every (family, T) starts from the same seed."""
    if task not in ("adding", *TASK_VOCAB):
        raise ValueError(f"unknown task {task!r}; expected 'adding', 'copy' or 'selective_copy'")
    steps = expect_int(steps, "steps", minimum=1)
    device = get_device(device)
    token_task = task in TASK_VOCAB
    input_size = TASK_VOCAB.get(task, 2)
    widths = {name: hidden for name, (_, hidden)
              in matched_cores(input_size, target_params, names, num_layers, fast=True).items()}
    rows = []
    for T in lengths:
        expect_int(T, "each length", minimum=1)
        for name in names:
            torch.manual_seed(seed)
            core = make_core(name, input_size, widths[name], num_layers, fast=True, mamba_scan="auto")
            model = (LanguageModel(core, input_size, hidden_size=widths[name]) if token_task
                     else Classifier(core, widths[name], num_classes=1)).to(device)
            g = torch.Generator().manual_seed(seed + T)

            if token_task:  # the loss counts the recall steps only (the last RECALLED)
                def loss_fn(m, ids, targets):
                    logits = m(ids)[0][:, -RECALLED:]
                    return nn.functional.cross_entropy(logits.flatten(0, 1), targets[:, -RECALLED:].flatten())
            else:
                def loss_fn(m, x, y):
                    return nn.functional.mse_loss(m(x).squeeze(-1), y)

            train(model, lambda step: _task_batches(task, T, batch, g), loss_fn, steps=steps, lr=lr,
                  clip_norm=1.0, device=device, progress=False)
            x, y = _task_batches(task, T, eval_size, torch.Generator().manual_seed(10_000 + T))
            x, y = x.to(device), y.to(device)
            with torch.no_grad():
                if token_task:  # the last RECALLED steps hold the symbols; the answer: the likeliest symbol
                    predicted = model(x)[0][:, -RECALLED:, 1:N_SYMBOLS + 1].argmax(-1) + 1
                    score = (predicted == y[:, -RECALLED:]).float().mean().item()
                    chance = copy_baseline(T, N_SYMBOLS, RECALLED)["recall_accuracy"]
                else:
                    mse = nn.functional.mse_loss(model(x).squeeze(-1), y).item()
                    score, chance = 1 - mse / adding_baseline_mse(), 0.0
            rows.append({"model": name, "task": task, "T": T, "score": score, "chance": chance,
                         "parameters": count_parameters(core)})
    return rows


# ---- the claims ---------------------------------------------------------------------------------


@dataclass(frozen=True)
class Claim:
    """One row of the source texts' comparison: what is claimed, for which families, and how a
    measurement decides it (``test(measured) -> (held, evidence)``)."""

    property: str
    claim: str
    test: Callable[[dict], tuple[bool, str]]


def _ratio(rows: Sequence[dict], model: str, key: str) -> float:
    """value at the longest T / value at the shortest T, for one model's rows."""
    mine = sorted((r for r in rows if r["model"] == model), key=lambda r: r["T"])
    return mine[-1][key] / mine[0][key]


def _growth_factor(rows: Sequence[dict]) -> float:
    Ts = sorted({r["T"] for r in rows})
    return Ts[-1] / Ts[0]


def _depth_claim(m: dict) -> tuple[bool, str]:
    """Recurrences: depth grows like T; parallel families: far less than T."""
    rows, k = m["training"], _growth_factor(m["training"])
    ratios = {name: _ratio(rows, name, "depth") for name in sorted({r["model"] for r in rows})}
    sequential = [n for n in ratios if n in RECURRENT]
    parallel = [n for n in ratios if n in PARALLEL]
    held = all(ratios[n] > k / 2 for n in sequential) and all(ratios[n] < k / 2 for n in parallel)
    return held, ", ".join(f"{n} ×{ratios[n]:.1f}" for n in sequential + parallel) + f" (T ×{k:g})"


def _train_memory_claim(m: dict) -> tuple[bool, str]:
    """Saved bytes grow like T for every family, like T² for the Transformer."""
    rows, k = m["training"], _growth_factor(m["training"])
    ratios = {name: _ratio(rows, name, "saved_bytes") for name in sorted({r["model"] for r in rows})}
    linear = [n for n in ratios if n != "Transformer" and n in RECURRENT + PARALLEL]
    held = all(ratios[n] < 1.5 * k for n in linear) and ratios["Transformer"] > k * k / 2
    return held, ", ".join(f"{n} ×{ratios[n]:.1f}" for n in linear + ["Transformer"]) + f" (T ×{k:g}, T² ×{k * k:g})"


def _inference_memory_claim(m: dict) -> tuple[bool, str]:
    """State bytes constant in p for recurrences, TCN and SSMs; growing like p for the KV cache."""
    gen = m["generation"]
    growth = {n: g["state_bytes"][-1] / g["state_bytes"][0] for n, g in gen.items()}
    positions = len(next(iter(gen.values()))["state_bytes"])
    constant = [n for n in growth if n != "Transformer"]
    held = all(growth[n] == 1 for n in constant) and growth["Transformer"] > positions / 2
    return held, ", ".join(f"{n} ×{growth[n]:.0f}" for n in constant + ["Transformer"]) + \
        f" (from p = 1 to p = {positions})"


def _inference_ops_claim(m: dict) -> tuple[bool, str]:
    """Operations per token: the same at every position for the constant-state families; for the
    Transformer growing by the same amount per position (linear in p)."""
    ops = m["flops"]
    constant = [n for n in ops if n != "Transformer"]
    ps = sorted(ops["Transformer"])
    steps = {ops["Transformer"][b] - ops["Transformer"][a] for a, b in zip(ps, ps[1:]) if b == a + 1}
    linear = len(steps) == 1 and steps.pop() > 0 and ops["Transformer"][ps[-1]] > ops["Transformer"][ps[0]]
    held = linear and all(len(set(ops[n].values())) == 1 for n in constant)
    first, last = ps[0], ps[-1]
    return held, ", ".join(f"{n} ×{ops[n][last] / ops[n][first]:.2f}" for n in constant + ["Transformer"]) + \
        f" (operations at p = {last} / at p = {first})"


def _inference_time_claim(m: dict) -> tuple[bool, str]:
    """Time per token: flat for the constant-state families, growing for the Transformer."""
    gen = m["generation"]
    window = max(1, len(next(iter(gen.values()))["seconds"]) // 8)

    def growth(seconds):
        first = sorted(seconds[1:window + 1])[window // 2]  # skip the very first call
        last = sorted(seconds[-window:])[window // 2]
        return last / first

    g = {n: growth(v["seconds"]) for n, v in gen.items()}
    flat = [n for n in g if n != "Transformer"]
    held = all(g[n] < 1.5 for n in flat) and g["Transformer"] > 1.5
    return held, ", ".join(f"{n} ×{g[n]:.2f}" for n in flat + ["Transformer"]) + " (last / first positions)"


def _train_time_claim(m: dict) -> tuple[bool, str]:
    """At the longest T, a training step of every parallel family is faster than every recurrence's."""
    rows = m["training"]
    T = max(r["T"] for r in rows)
    t = {r["model"]: r["seconds"] for r in rows if r["T"] == T}
    parallel = [n for n in t if n in PARALLEL]
    sequential = [n for n in t if n in RECURRENT]
    held = max(t[n] for n in parallel) < min(t[n] for n in sequential)
    slowest = max(parallel, key=t.get)
    fastest = min(sequential, key=t.get)
    return held, f"T = {T}: slowest parallel {slowest} {t[slowest] * 1e3:.0f} ms, fastest recurrence " \
                 f"{fastest} {t[fastest] * 1e3:.0f} ms"


def _reach_claim(m: dict) -> tuple[bool, str]:
    """Reach at the longest distance k = T-1 over reach at k = 1: the TCN's is exactly 0 (beyond its
    receptive field), the Transformer's above 0.1 (one hop, however far), the vanilla RNN's below
    0.01 (a product of k Jacobians)."""
    far = {name: float(r[-1] / r[1]) for name, r in m["reach"].items()}
    k = len(next(iter(m["reach"].values()))) - 1
    held = far["TCN"] == 0 and far["Transformer"] > 0.1 and far["RNN"] < 0.01
    return held, ", ".join(f"{n} {v:.1e}" for n, v in far.items()) + f" (reach at k = {k} / reach at k = 1)"


def long_range_bar(task: str) -> float:
    """The score a family must reach on ``task`` to count as having bridged the distance.

    copy, selective_copy: chance (1/``N_SYMBOLS``) + 0.1; 0.1 is more than six standard deviations of a
    guesser's accuracy over 256 sequences × ``RECALLED`` answers. adding: 0.5, the score of a model that
    knows the *later* marked value exactly and nothing of the earlier one (its MSE is the variance of
    the earlier value, 1/12, half the baseline's 1/6): only carrying the earlier value across at
    least half the sequence gets a model past it."""
    if task == "adding":
        return 0.5
    if task in TASK_VOCAB:
        return 1 / N_SYMBOLS + 0.1
    raise ValueError(f"unknown task {task!r}; expected 'adding', 'copy' or 'selective_copy'")


TCN_RECEPTIVE_FIELD = 2 * (2 ** TCN_LEVELS - 1) + 1
"""Inputs the TCN of ``make_core`` sees at each output: 2 convolutions of kernel 2 per level, dilations 1, 2, 4, 8."""


def min_distance(task: str, length: int) -> int:
    """The fewest steps between an input a recall needs and the output that needs it, at ``length``:
    adding: T - ⌊T/2⌋ (the earlier marked value lies in the first half, the answer at step T - 1);
    copy: ``RECALLED`` + ℓ, ℓ = ``length`` the delay (every symbol is written back M + ℓ steps after
    it was read, M = ``RECALLED``);
    selective copy: ``RECALLED`` (the k-th of the M = ``RECALLED`` symbols sits at step ≤ T - M + k,
    k = 0 ... M-1, and is written back at step T + k, with T = ``length``)."""
    expect_int(length, "length", minimum=1)
    if task == "adding":
        return length - length // 2
    if task == "copy":
        return RECALLED + length
    if task == "selective_copy":
        return RECALLED
    raise ValueError(f"unknown task {task!r}; expected 'adding', 'copy' or 'selective_copy'")


def _long_range_claim(m: dict) -> tuple[bool, str]:
    """Per task, which families clear ``long_range_bar`` at the longest length. A task where no family
    clears the bar at any length says nothing (the training was too short to learn it at all) and is
    left out. On every other task: the Transformer clears it ("excellent"), at least one of S4D and
    Mamba clears it ("good"), the plain RNN does not ("difficult"), and the TCN does not when even the
    shortest distance to bridge is outside its receptive field (>= ``TCN_RECEPTIVE_FIELD``). Held when at least one task decides and
    every deciding task agrees."""
    verdicts, evidence = [], []
    for task, rows in m["long_range"].items():
        bar, T = long_range_bar(task), max(r["T"] for r in rows)
        if not any(r["score"] >= bar for r in rows):
            evidence.append(f"{task}: no family reaches {bar:.2f} at any length (says nothing)")
            continue
        above = [r["model"] for r in rows if r["T"] == T and r["score"] >= bar]
        tcn_blind = min_distance(task, T) >= TCN_RECEPTIVE_FIELD
        ok = ("Transformer" in above and any(n in above for n in ("S4D", "Mamba")) and "RNN" not in above
              and not (tcn_blind and "TCN" in above))
        verdicts.append(ok)
        length_name = "ℓ" if task == "copy" else "T"  # the copy task's length is its delay ℓ
        evidence.append(f"{task} {length_name}={T}: {', '.join(above) or 'none'} reach {bar:.2f}"
                        + (" (beyond the TCN's field)" if tcn_blind else ""))
    return bool(verdicts) and all(verdicts), "; ".join(evidence)


CLAIMS = (
    Claim("training parallelism", "RNN/LSTM: none (sequential); TCN, Transformer, SSM: full", _depth_claim),
    Claim("training time", "parallel families train faster than recurrences on long sequences", _train_time_claim),
    Claim("memory (train)", "O(T) for RNN, TCN, SSM; O(T²) for the Transformer", _train_memory_claim),
    Claim("memory (inference)", "O(d) for RNN, TCN, SSM; O(T·d) for the Transformer (KV cache)",
          _inference_memory_claim),
    Claim("inference per token", "O(1) for RNN and SSM, O(k) for TCN, O(p) for the Transformer",
          _inference_ops_claim),
    Claim("inference time per token", "constant for RNN, TCN and SSM; growing with p for the Transformer",
          _inference_time_claim),
    Claim("long-range dependencies", "RNN difficult, TCN fixed receptive field, Transformer excellent, SSM good",
          _long_range_claim),
    Claim("gradient path", "attention: one hop to any position; recurrence: a product over the distance; "
          "TCN: nothing beyond the receptive field", _reach_claim),
)


def judge_claims(measured: dict, claims: Sequence[Claim] = CLAIMS) -> list[dict]:
    """Each claim with its verdict on ``measured`` (keys "training", "generation", "flops", "long_range",
    "reach", as returned by ``training_costs``, ``generation_costs``, ``{name: flops_per_token(...)}``,
    ``{task: long_range_scores(...)}`` and ``{name: gradient_reach(...)}``);
    a claim whose measurement is missing is skipped. Rows {"property", "claim", "held", "evidence"}."""
    needs = {"training parallelism": "training", "training time": "training", "memory (train)": "training",
             "memory (inference)": "generation", "inference per token": "flops",
             "inference time per token": "generation",
             "long-range dependencies": "long_range", "gradient path": "reach"}
    rows = []
    for c in claims:
        if needs.get(c.property, "") in measured or c.property not in needs:
            held, evidence = c.test(measured)
            rows.append({"property": c.property, "claim": c.claim, "held": bool(held), "evidence": evidence})
    return rows
