"""Input checks shared by every model in seqcourse.

A model that gets the wrong input should say, in one line, what it expected and what it got,
instead of failing deep inside a matrix multiply. Every check here raises

* ``TypeError`` when the value is not a tensor, or has the wrong dtype, and
* ``ValueError`` when the shape, the device or a value range is wrong,

with a message that names the expected shape using the same letters as the docstrings
(``B`` batch, ``T`` time, ``D`` input features, ``H`` hidden units, ``L`` layers, ``V`` vocabulary).
For example::

    x must be a float tensor of shape (B, T, D=3); got shape (4, 7) (rank 2).
    For a single sequence use x.unsqueeze(0).

None of the checks modifies its input.

Where a constructor's argument is checked: once, where the user passes it, under the name the user
passed. Every class a reader may build directly (``LayerNorm``, ``MultiHeadAttention``, ``Block``,
``LSTMCell``, ...) checks its own arguments. A model built of such blocks checks the arguments it
renames or combines (a Transformer's ``hidden_size`` is its blocks' ``d_model``, so the Transformer
checks it, and n_heads dividing it, under its own name) and leaves to the block the ones it passes
on under the same name (reading the checked value back), so that no check is written twice and the
error names the argument the user gave. Checks that several models need are one function (here,
or ``models.transformer.expect_stack`` for the stacks of attention blocks).
"""
from __future__ import annotations

from collections.abc import Mapping, Sequence

import torch

__all__ = [
    "describe_shape",
    "expect_choice",
    "expect_float",
    "expect_ids",
    "expect_int",
    "expect_nonempty_time",
    "expect_step_range",
    "expect_tensor",
    "module_dtype_device",
    "same_device",
]

# How to convert a tensor to a given dtype, for the hint in dtype errors.
_CONVERSIONS = {
    torch.float32: ".float()",
    torch.float64: ".double()",
    torch.float16: ".half()",
    torch.bfloat16: ".bfloat16()",
    torch.int64: ".long()",
}


def describe_shape(dims: Sequence[str], size: Mapping[int | str, int] | None = None) -> str:
    """Format an expected shape, e.g. ``describe_shape(("B", "T", "D"), {"D": 3}) == "(B, T, D=3)"``."""
    size = _sizes_by_index(dims, size or {})
    parts = [f"{d}={size[i]}" if i in size else d for i, d in enumerate(dims)]
    return "(" + ", ".join(parts) + ")"


def _sizes_by_index(dims: Sequence[str], size: Mapping[int | str, int]) -> dict[int, int]:
    """Turn a ``size`` mapping keyed by dimension index or name into one keyed by index."""
    out = {}
    for key, value in size.items():
        if isinstance(key, str):
            if key not in dims:
                raise KeyError(f"size names dimension {key!r}, which is not one of {tuple(dims)}")
            key = list(dims).index(key)
        out[key % len(dims)] = int(value)
    return out


def same_device(a: torch.device, b: torch.device) -> bool:
    """``cuda`` and ``cuda:0`` count as the same device (an index of None means 'the current one')."""
    return a.type == b.type and (a.index is None or b.index is None or a.index == b.index)


def expect_choice(value, name: str, choices: tuple) -> object:
    """``value`` if it is one of ``choices``, else a ValueError naming them."""
    if value not in choices:
        raise ValueError(f"{name} must be one of {choices}; got {value!r}")
    return value


def _shape_str(shape: Sequence[int]) -> str:
    return "(" + ", ".join(str(s) for s in shape) + (",)" if len(shape) == 1 else ")")


def expect_tensor(
    x,
    name: str,
    *,
    dims: Sequence[str] | None = None,
    ndim: int | None = None,
    size: Mapping[int | str, int] | None = None,
    dtype: str | torch.dtype | None = None,
    device: torch.device | str | None = None,
    dtype_reason: str = "",
) -> torch.Tensor:
    """Check that ``x`` is a tensor of the expected rank, sizes, dtype and device; return it unchanged.

    Args:
        x: the value to check.
        name: how the message refers to it (``"x"``, ``"h0"``, ...).
        dims: names of the dimensions, e.g. ``("B", "T", "D")``; fixes the rank and is used in messages.
        ndim: the expected rank, when ``dims`` is not given.
        size: required sizes, keyed by dimension index (``{-1: 3}``) or, with ``dims``, by name (``{"D": 3}``).
        dtype: ``"float"`` (any floating dtype), ``"long"`` (torch.int64), or an exact ``torch.dtype``.
        device: the device ``x`` must be on (usually the model's parameters' device).
        dtype_reason: appended to the expected dtype in the message, e.g. ``"(the dtype of the model's weights)"``.

    Raises:
        TypeError: ``x`` is not a tensor, or has the wrong dtype.
        ValueError: wrong rank, wrong size along a dimension, or wrong device.
    """
    if dims is not None:
        if ndim is not None and ndim != len(dims):
            raise ValueError(f"ndim={ndim} disagrees with dims={tuple(dims)}")
        ndim = len(dims)
    elif ndim is not None:
        dims = [f"dim{i}" for i in range(ndim)]
    elif size:
        raise ValueError("size needs dims or ndim to say the rank")
    if isinstance(dtype, str) and dtype not in ("float", "long"):
        raise ValueError(f"dtype must be 'float', 'long', a torch.dtype or None; got {dtype!r}")
    # The word before "tensor" in messages: "float", "long", "float32", ... or nothing.
    kind = "" if dtype is None else (dtype if isinstance(dtype, str) else str(dtype).removeprefix("torch.")) + " "

    if not isinstance(x, torch.Tensor):
        expected = f" of shape {describe_shape(dims, size)}" if dims is not None else ""
        raise TypeError(f"{name} must be a {kind}torch.Tensor{expected}; got {type(x).__name__}")

    if ndim is not None:
        sizes = _sizes_by_index(dims, size or {})
        bad_rank = x.ndim != ndim
        bad_size = not bad_rank and any(x.shape[i] != n for i, n in sizes.items())
        if bad_rank or bad_size:
            msg = (
                f"{name} must be a {kind}tensor of shape {describe_shape(dims, size)}; "
                f"got shape {_shape_str(x.shape)} (rank {x.ndim})."
            )
            if bad_size:
                wrong = [f"{dims[i]} = {x.shape[i]} (expected {n})" for i, n in sizes.items() if x.shape[i] != n]
                msg += " Mismatch: " + ", ".join(wrong) + "."
            elif dims[0] == "B" and x.ndim == ndim - 1:
                msg += f" For a single sequence use {name}.unsqueeze(0)."
            raise ValueError(msg)

    if dtype == "float" and not x.is_floating_point():
        raise TypeError(
            f"{name} must be a floating-point tensor{(' ' + dtype_reason) if dtype_reason else ''}; "
            f"got dtype {x.dtype}. Convert it with {name}.float()."
        )
    if dtype == "long" and x.dtype != torch.int64:
        raise TypeError(
            f"{name} must be a long (torch.int64) tensor of integer ids; got dtype {x.dtype}. "
            f"Convert it with {name}.long()."
        )
    if isinstance(dtype, torch.dtype) and x.dtype != dtype:
        fix = _CONVERSIONS.get(dtype, f".to({dtype})")
        raise TypeError(
            f"{name} must have dtype {dtype}{(' ' + dtype_reason) if dtype_reason else ''}; "
            f"got dtype {x.dtype}. Convert it with {name}{fix}."
        )

    if device is not None:
        device = torch.device(device)
        if not same_device(x.device, device):
            raise ValueError(
                f"{name} is on device {x.device}, but the model's parameters are on {device}; "
                f"move it with {name}.to({str(device)!r}) (or the model with model.to({str(x.device)!r}))."
            )
    return x


def expect_nonempty_time(x: torch.Tensor, name: str, dim: int = 1) -> torch.Tensor:
    """Check that a sequence tensor has at least one time step along ``dim``; return it unchanged."""
    if x.shape[dim] == 0:
        raise ValueError(f"{name} must have at least one time step (T >= 1); got shape {_shape_str(x.shape)}")
    return x


def expect_ids(ids, name: str, vocab_size: int, *, dims: Sequence[str] = ("B", "T"), device=None) -> torch.Tensor:
    """Check a long tensor of token ids with every value in ``[0, vocab_size)``; return it unchanged."""
    expect_tensor(ids, name, dims=dims, dtype="long", device=device)
    if ids.numel():
        lo, hi = int(ids.min()), int(ids.max())
        if lo < 0 or hi >= vocab_size:
            raise ValueError(
                f"{name} must hold token ids in [0, {vocab_size - 1}] (vocab_size={vocab_size}); "
                f"got values from {lo} to {hi}."
            )
    return ids


def expect_int(value, name: str, *, minimum: int | None = None, maximum: int | None = None) -> int:
    """Check a Python int (``bool`` is rejected) within ``[minimum, maximum]``; return it."""
    if isinstance(value, bool) or not isinstance(value, int):
        raise TypeError(f"{name} must be an int; got {type(value).__name__} {value!r}")
    if minimum is not None and value < minimum:
        raise ValueError(f"{name} must be >= {minimum}; got {value}")
    if maximum is not None and value > maximum:
        raise ValueError(f"{name} must be <= {maximum}; got {value}")
    return value


def expect_float(value, name: str, *, minimum: float | None = None, positive: bool = False) -> float:
    """Check a real number (int or float, finite), positive or ``>= minimum`` if asked; return it as float."""
    if isinstance(value, bool) or not isinstance(value, (int, float)):
        raise TypeError(f"{name} must be a number; got {type(value).__name__} {value!r}")
    value = float(value)
    if value != value or value in (float("inf"), float("-inf")):
        raise ValueError(f"{name} must be finite; got {value}")
    if positive and value <= 0:
        raise ValueError(f"{name} must be > 0; got {value}")
    if minimum is not None and value < minimum:
        raise ValueError(f"{name} must be >= {minimum}; got {value}")
    return value


def expect_step_range(dt_min, dt_max) -> tuple[float, float]:
    """The range [dt_min, dt_max] a state-space layer draws its initial step sizes Δ from: two positive
    floats with dt_min <= dt_max, else an error naming them."""
    dt_min = expect_float(dt_min, "dt_min", positive=True)
    dt_max = expect_float(dt_max, "dt_max", positive=True)
    if dt_min > dt_max:
        raise ValueError(f"dt_min must be <= dt_max; got dt_min={dt_min}, dt_max={dt_max}")
    return dt_min, dt_max


def module_dtype_device(module: torch.nn.Module) -> tuple[torch.dtype, torch.device]:
    """The dtype and device of a module's first parameter (what its inputs must match)."""
    try:
        p = next(module.parameters())
    except StopIteration:
        raise ValueError(f"{type(module).__name__} has no parameters, so it has no dtype or device") from None
    return p.dtype, p.device


WEIGHTS_DTYPE = "(the dtype of the model's weights)"


def expect_model_tensor(module: torch.nn.Module, x, name: str, *, dims: Sequence[str],
                        size: dict | None = None) -> tuple[torch.dtype, torch.device]:
    """``expect_tensor`` against the dtype and device of ``module``'s weights (what a model's
    inputs and states must match); returns that (dtype, device)."""
    dtype, device = module_dtype_device(module)
    expect_tensor(x, name, dims=dims, size=size, dtype=dtype, device=device, dtype_reason=WEIGHTS_DTYPE)
    return dtype, device
