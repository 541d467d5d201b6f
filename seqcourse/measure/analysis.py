"""Measurements of models: what training costs in memory, and how gradients travel through time.

``saved_tensor_bytes(fn)`` counts the bytes autograd keeps alive for the backward pass while
``fn()`` runs. It is the same number on every device (it counts tensor storages, not allocator
pools), so the book can show on a laptop how training memory grows with sequence length: an RNN
stores every h_t, so its saved bytes grow linearly in T. ``peak_tensor_bytes(fn)`` is the same kind
of count for the forward computation itself: the most bytes that tensors created by ``fn`` hold at
any one time (the readable attention holds T x T scores, the online softmax only blocks of them).

The Gradients chapter's tools (symbols: h_t the state after step t, W_h the recurrent matrix,
J_t = ∂h_t/∂h_{t-1} = diag(φ'(a_t)) W_h the one-step Jacobian):

    state_gradient_norms(model, x, loss_fn=None)   ‖∂L/∂h_t‖ for every t, any model with step()
    jacobian_chain_norms(W_h, derivatives)         ‖J_K ··· J_{K-k+1}‖₂ for k = 1 ... K
    eigenvalues(W), spectral_radius(W), spectral_norm(W)
    random_recurrent_matrix(H, radius)             a Gaussian W scaled to spectral radius ρ
    gradient_decay_curves(radius, distance)        the chain norm over distance, linear vs tanh
    signal_magnitude(L, factor), signal_table()    the idealised signal S(L) = α·ρ^(L-1)
"""
from __future__ import annotations

import math
from collections.abc import Callable

import torch

from torch.multiprocessing.reductions import StorageWeakRef
from torch.utils._python_dispatch import TorchDispatchMode
from torch.utils._pytree import tree_leaves

from ..validation import expect_float, expect_int, expect_nonempty_time, expect_tensor

__all__ = [
    "SIGNAL_FACTORS",
    "eigenvalues",
    "gradient_decay_curves",
    "jacobian_chain_norms",
    "peak_tensor_bytes",
    "random_recurrent_matrix",
    "saved_tensor_bytes",
    "signal_magnitude",
    "signal_table",
    "spectral_norm",
    "spectral_radius",
    "state_gradient_norms",
]


def saved_tensor_bytes(fn: Callable[[], object]) -> int:
    """Run ``fn()`` and return the bytes of the tensors autograd saved for backward during it.

    Each storage is counted once, however many saved tensors (views) share it, and in full:
    a saved view keeps its whole storage alive. Tensors saved by reference (for example weights
    that a matrix multiply needs for its backward) count too, since they must stay in memory.
    Nothing is saved, and 0 is returned, when ``fn`` runs under ``torch.no_grad()`` or touches no
    tensor that requires grad.
    """
    if not callable(fn):
        raise TypeError(f"fn must be a callable taking no arguments; got {type(fn).__name__}")
    # Keyed by address; holding the storage until fn returns keeps the address from being reused
    # by another storage (which would then go uncounted).
    storages: dict[tuple[str, int], torch.UntypedStorage] = {}

    def pack(t: torch.Tensor) -> torch.Tensor:
        storage = t.untyped_storage()
        storages[(str(t.device), storage.data_ptr())] = storage
        return t

    with torch.autograd.graph.saved_tensors_hooks(pack, lambda t: t):
        fn()
    return sum(s.nbytes() for s in storages.values())


class _LiveStorages(TorchDispatchMode):
    """Follows every storage an operator creates while the mode is on, and the peak of their bytes.

    After each operator: the storages of its outputs that are not its inputs' (a view or an
    in-place result shares its input's storage) are new; storages no longer referenced anywhere
    are dropped (a weak reference says so); the total of the rest is compared with the peak.
    """

    def __init__(self):
        super().__init__()
        self.live: dict[int, tuple[StorageWeakRef, int]] = {}  # StorageImpl address -> (weak ref, bytes)
        self.peak = 0

    @classmethod
    def _should_skip_dynamo(cls) -> bool:
        """False: nothing here runs under torch.compile, and keeping torch's default (wrap
        __torch_dispatch__ to skip Dynamo) imports torch._dynamo on the first operator, 1.5-3 s."""
        return False

    def __torch_dispatch__(self, func, types, args=(), kwargs=None):
        out = func(*args, **(kwargs or {}))
        inputs = {t.untyped_storage()._cdata for t in tree_leaves((args, kwargs)) if isinstance(t, torch.Tensor)}
        for t in tree_leaves(out):
            if isinstance(t, torch.Tensor):
                storage = t.untyped_storage()
                if storage._cdata not in inputs and storage._cdata not in self.live:
                    self.live[storage._cdata] = (StorageWeakRef(storage), storage.nbytes())
        self.live = {key: entry for key, entry in self.live.items() if not entry[0].expired()}
        self.peak = max(self.peak, sum(nbytes for _, nbytes in self.live.values()))
        return out


def peak_tensor_bytes(fn: Callable[[], object]) -> int:
    """Run ``fn()`` and return the largest number of bytes that tensors created during it held at
    the same time, counted after every operator.

    Each storage counts once, in full, from the operator that creates it until nothing references
    it. Tensors that existed before the call (inputs, weights) are not counted, and neither is
    scratch memory a kernel allocates and frees inside one operator. The count follows the
    operators fn runs, not the allocator, so it is the same on every machine and every run. Run fn
    under ``torch.no_grad()`` to measure inference: with autograd, what it saves stays alive too.
    """
    if not callable(fn):
        raise TypeError(f"fn must be a callable taking no arguments; got {type(fn).__name__}")
    mode = _LiveStorages()
    with mode:
        fn()
    return mode.peak


# ---------------------------------------------------------------------------------------------
# Gradients over time (the Gradients chapter)
#
# Symbols: h_t (B, H) the state after step t, W_h (H, H) the recurrent matrix, a_t the
# pre-activation W_x x_t + W_h h_{t-1} + b, so h_t = phi(a_t). One step's Jacobian is
#
#     J_t = dh_t/dh_{t-1} = diag(phi'(a_t)) W_h,
#
# and the gradient a loss at step T sends back k steps is dL/dh_{T-k} = dL/dh_T J_T ... J_{T-k+1}.
# ---------------------------------------------------------------------------------------------


def _flat_state(state) -> list[torch.Tensor]:
    """The tensors of a carried state: one tensor, or a tuple/list of them (e.g. an LSTM's (h, c))."""
    if isinstance(state, torch.Tensor):
        return [state]
    if isinstance(state, (tuple, list)) and state and all(isinstance(s, torch.Tensor) for s in state):
        return list(state)
    raise TypeError(
        "the model's step() must return (y_t, state) with state a tensor or a tuple of tensors; "
        f"got state of type {type(state).__name__}"
    )


def _zeros_like_state(state):
    if isinstance(state, torch.Tensor):
        return torch.zeros_like(state)
    return type(state)(torch.zeros_like(s) for s in state)


def state_gradient_norms(
    model: torch.nn.Module,
    x: torch.Tensor,
    loss_fn: Callable[[torch.Tensor], torch.Tensor] | None = None,
    *,
    state=None,
) -> torch.Tensor:
    r"""``‖∂L/∂h_t‖`` for t = 0, 1, ..., T-1: how much gradient reaches each step's state.

    Works for any seqcourse recurrent model, because it only uses the protocol they all share,
    ``step(x_t, state) -> (y_t, state)``: the sequence is stepped through one token at a time,
    the outputs y_1 ... y_T are stacked to (B, T, ·) and ``L = loss_fn(outputs)``. Then for each
    carried state s_t (s_0 the initial state, s_t the state after reading x_1 ... x_t)

        norms[t] = ‖∂L/∂s_t‖ = sqrt( Σ over the batch, the layers and every tensor of the state
                                     of (∂L/∂s_t)² ),

    the gradient that flows into s_t from the later steps t+1 ... T (backpropagation through
    time stopped at s_t). With the default loss, which reads only the last output,
    ``L = Σ_b Σ_i y_T[b, i]``, this is the whole ∂L/∂h_t, and ``T - t`` is the distance the
    gradient has travelled; norms[T-1] is one step away from the loss.

    Args:
        model: a module with ``step`` (``RNN``, ``OrthogonalRNN``, the later cores; a
            ``LanguageModel`` takes ids). For a ``Classifier`` pass its ``.core`` and put the
            readout ``W_o h_T + b_o`` into ``loss_fn``.
        x: inputs (B, T, D) float, or ids (B, T) long for a model whose step takes ids.
        loss_fn: outputs (B, T, ·) -> scalar tensor. Default: the sum of the last output.
        state: the initial state s_0 (the model's state format), default zeros.

    Returns:
        A float64 tensor of shape (T,) on the CPU: entry t is ‖∂L/∂s_t‖.
    """
    if not isinstance(model, torch.nn.Module) or not callable(getattr(model, "step", None)):
        raise TypeError(
            "model must be a seqcourse recurrent model with step(x_t, state) -> (y_t, state); "
            f"got {type(model).__name__} (for a Classifier pass classifier.core)"
        )
    if not isinstance(x, torch.Tensor) or x.ndim not in (2, 3):
        got = f"shape {tuple(x.shape)}" if isinstance(x, torch.Tensor) else type(x).__name__
        raise ValueError(f"x must be inputs of shape (B, T, D) or token ids of shape (B, T); got {got}")
    expect_nonempty_time(x, "x")
    if loss_fn is None:
        def loss_fn(outputs: torch.Tensor) -> torch.Tensor:
            return outputs[:, -1].sum()
    elif not callable(loss_fn):
        raise TypeError(f"loss_fn must be callable as loss_fn(outputs) -> scalar; got {type(loss_fn).__name__}")
    steps = x.unbind(1)
    with torch.enable_grad():
        if state is None:
            with torch.no_grad():
                _, probe = model.step(steps[0], None)
            state = _zeros_like_state(probe)
        else:
            _flat_state(state)
            state = state.detach() if isinstance(state, torch.Tensor) else type(state)(s.detach() for s in state)
        for s in _flat_state(state):
            s.requires_grad_(True)
        carried, outputs = [], []
        for x_t in steps:
            carried.append(state)  # s_{t-1}, the state step t reads
            y_t, state = model.step(x_t, state)
            outputs.append(y_t)
        loss = loss_fn(torch.stack(outputs, dim=1))
        if not isinstance(loss, torch.Tensor) or loss.numel() != 1:
            raise ValueError("loss_fn must return a scalar tensor (did you forget .sum() or .mean()?)")
        flat = [s for st in carried for s in _flat_state(st)]
        grads = torch.autograd.grad(loss, flat, allow_unused=True)
    per_state = len(_flat_state(carried[0]))
    norms = []
    for t in range(len(carried)):
        parts = [g for g in grads[t * per_state:(t + 1) * per_state] if g is not None]
        squares = sum(float(g.double().pow(2).sum()) for g in parts)
        norms.append(math.sqrt(squares))
    return torch.tensor(norms, dtype=torch.float64)


def jacobian_chain_norms(
    W_h: torch.Tensor,
    derivatives: torch.Tensor | None = None,
    *,
    steps: int | None = None,
) -> torch.Tensor:
    r"""Spectral norms of the Jacobian chain ‖∂h_K/∂h_{K-k}‖₂ for distances k = 1 ... K.

    With d_s = φ'(z_s) the activation's derivative at step s (for tanh, d_s = 1 - h_s²),

        ∂h_K/∂h_{K-k} = diag(d_K) W_h · diag(d_{K-1}) W_h ··· diag(d_{K-k+1}) W_h,

    a product of k one-step Jacobians, the latest on the left; entry k-1 of the result is its
    largest singular value. Without ``derivatives`` every d_s is 1 (a linear recurrence) and the
    product is the matrix power W_h^k.

    Args:
        W_h: the recurrent matrix (H, H).
        derivatives: φ'(z_s) for s = 1 ... K, shape (K, H), or (B, K, H) for a batch of sequences.
        steps: K when ``derivatives`` is None (the largest power).

    Returns:
        norms of shape (K,), or (B, K) for batched derivatives; float64 on W_h's device.
    """
    expect_tensor(W_h, "W_h", dims=("H", "H"), dtype="float")
    if W_h.shape[0] != W_h.shape[1]:
        raise ValueError(f"W_h must be square (H, H); got shape {tuple(W_h.shape)}")
    H = W_h.shape[0]
    W = W_h.detach().double()
    if derivatives is None:
        if steps is None:
            raise ValueError("give derivatives (K, H) or (B, K, H), or steps=K for the powers W_h^1 ... W_h^K")
        K = expect_int(steps, "steps", minimum=1)
        d = torch.ones(1, K, H, dtype=torch.float64, device=W.device)
        batched = False
    else:
        if steps is not None:
            raise ValueError("give either derivatives or steps, not both (steps is K = derivatives.shape[-2])")
        if not isinstance(derivatives, torch.Tensor) or derivatives.ndim not in (2, 3):
            expect_tensor(derivatives, "derivatives", dims=("K", "H"), size={"H": H}, dtype="float")
        batched = derivatives.ndim == 3
        dims = ("B", "K", "H") if batched else ("K", "H")
        expect_tensor(derivatives, "derivatives", dims=dims, size={"H": H}, dtype="float", device=W.device)
        if derivatives.shape[-2] == 0:
            raise ValueError("derivatives must hold at least one step (K >= 1)")
        d = derivatives.detach().double()
        d = d if batched else d.unsqueeze(0)
    K = d.shape[1]
    product = torch.eye(H, dtype=torch.float64, device=W.device).expand(d.shape[0], H, H)
    norms = []
    for s in range(K - 1, -1, -1):  # append J_s on the right: J_K, then J_K J_{K-1}, ...
        J_s = d[:, s, :, None] * W  # diag(d_s) W_h, (B, H, H)
        product = product @ J_s
        norms.append(torch.linalg.matrix_norm(product, ord=2))
    norms = torch.stack(norms, dim=1)  # (B, K)
    return norms if batched else norms[0]


def eigenvalues(W: torch.Tensor) -> torch.Tensor:
    """Eigenvalues of a square matrix W (H, H), complex (H,), sorted by modulus, largest first."""
    expect_tensor(W, "W", dims=("H", "H"), dtype="float")
    if W.shape[0] != W.shape[1]:
        raise ValueError(f"W must be square (H, H); got shape {tuple(W.shape)}")
    values = torch.linalg.eigvals(W.detach().double())
    return values[torch.argsort(values.abs(), descending=True)]


def spectral_radius(W: torch.Tensor) -> float:
    """``ρ(W) = max_i |λ_i(W)|``, the largest eigenvalue modulus: ``‖W^k‖^(1/k) → ρ(W)`` as k → ∞."""
    return float(eigenvalues(W).abs().max())


def spectral_norm(W: torch.Tensor) -> float:
    """‖W‖₂ = σ_max(W), the largest singular value: the most W can stretch a vector (≥ ρ(W))."""
    expect_tensor(W, "W", ndim=2, dtype="float")
    return float(torch.linalg.matrix_norm(W.detach().double(), ord=2))


def random_recurrent_matrix(
    hidden_size: int,
    radius: float,
    *,
    generator: torch.Generator | None = None,
    dtype: torch.dtype = torch.float32,
) -> torch.Tensor:
    """A random W (H, H) with spectral radius exactly ``radius``: a Gaussian matrix G scaled by ρ/ρ(G).

    G has independent N(0, 1/H) entries (its eigenvalues fill the unit disc as H grows); the
    scaling fixes the largest eigenvalue modulus, not the largest singular value, which is larger.
    """
    H = expect_int(hidden_size, "hidden_size", minimum=1)
    radius = expect_float(radius, "radius", positive=True)
    if generator is not None and not isinstance(generator, torch.Generator):
        raise TypeError(f"generator must be a torch.Generator or None; got {type(generator).__name__}")
    G = torch.randn(H, H, generator=generator, dtype=torch.float64) / math.sqrt(H)
    return (G * (radius / spectral_radius(G))).to(dtype)


# The idealised signal model: a learning signal that must cross L steps keeps the fraction
# S(L) = α · ρ^(L-1) of itself, where ρ is the per-step factor of the path it travels.
SIGNAL_FACTORS = {
    "vanilla RNN (ρ = 0.90)": 0.90,
    "LSTM (forget gate f = 0.99)": 0.99,
    "GRU (update gate z = 0.05, 1 − z = 0.95)": 1 - 0.05,
}
"""Per-step factors of the signal model: ρ for the RNN, f for the LSTM's cell path, 1 − z for the GRU."""


def signal_magnitude(length: int, factor: float, alpha: float = 1.0) -> float:
    """S(L) = α · factor^(L − 1): the signal left after L − 1 multiplications by ``factor``."""
    L = expect_int(length, "length", minimum=1)
    factor = expect_float(factor, "factor", minimum=0.0)
    alpha = expect_float(alpha, "alpha")
    return alpha * factor ** (L - 1)


def signal_table(lengths=(100, 500), factors=None, alpha: float = 1.0) -> dict[str, dict[int, float]]:
    """S(L) for every model in ``factors`` (default ``SIGNAL_FACTORS``) and every L in ``lengths``.

    Returns {model name: {L: S(L)}}, in the order of ``factors`` and ``lengths``.
    """
    factors = SIGNAL_FACTORS if factors is None else factors
    return {name: {L: signal_magnitude(L, f, alpha) for L in lengths} for name, f in factors.items()}


def gradient_decay_curves(
    radius: float,
    distance: int,
    *,
    hidden_size: int = 32,
    input_scale: float = 1.0,
    seed: int = 0,
) -> dict[str, torch.Tensor]:
    r"""The Jacobian-chain norm over distance k = 1 ... K for a linear and a tanh recurrence with the same W_h.

    W_h = ``random_recurrent_matrix(H, radius)`` (the same underlying Gaussian matrix for every
    radius with the same seed, only scaled). The tanh RNN h_t = tanh(W_x x_t + W_h h_{t-1}) has
    input weights W_x (H, 1) with N(0, input_scale²) entries and reads K = ``distance`` scalar
    inputs x_t ~ N(0, 1) from h_0 = 0; its chain uses the derivatives d_t = 1 − h_t² along that
    trajectory. The linear recurrence has every d_t = 1.

    Returns:
        ``{"linear": ‖W_h^k‖₂, "tanh": ‖∂h_K/∂h_{K-k}‖₂}``, each float64 of shape (K,), entry
        k-1 for distance k (``jacobian_chain_norms``).
    """
    H = expect_int(hidden_size, "hidden_size", minimum=1)
    K = expect_int(distance, "distance", minimum=1)
    input_scale = expect_float(input_scale, "input_scale", minimum=0.0)
    generator = torch.Generator().manual_seed(expect_int(seed, "seed"))
    W_h = random_recurrent_matrix(H, radius, generator=generator, dtype=torch.float64)
    W_x = input_scale * torch.randn(H, 1, generator=generator, dtype=torch.float64)
    x = torch.randn(K, 1, generator=generator, dtype=torch.float64)
    h, derivatives = torch.zeros(H, dtype=torch.float64), []
    for x_t in x:
        h = torch.tanh(W_x @ x_t + W_h @ h)  # (H,)
        derivatives.append(1 - h**2)  # tanh'(a_t)
    return {
        "linear": jacobian_chain_norms(W_h, steps=K),
        "tanh": jacobian_chain_norms(W_h, torch.stack(derivatives)),
    }
