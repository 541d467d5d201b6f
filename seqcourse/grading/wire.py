"""The one wire format between a submission's process and the batch grader outside it.

Everything that crosses the sandbox's walls is JSON built and read here, by both sides:

- **inputs** (grader -> sandbox): a tensor is an ``.npy`` file (no pickle) in base64,
  ``{"npy": ..., "requires_grad": bool}``; a plain number or string is ``{"value": x}``;
- **outcomes** (sandbox -> grader): what the student's function did on one case, as a
  :class:`StudentOutcome` would hold it: ``{"values": {name: {"shape": [...], "data": b64}}}`` with
  the raw little-endian float64 bytes, ``{"error": "raised ValueError: ..."}``, or
  ``{"not_implemented": true}``; anything else is refused by :func:`outcome_from_wire`;
- **messages** (sandbox -> grader): one JSON object per line on the result pipe, each carrying the
  job's random ``nonce``; ``event`` is ``ready``, ``start`` / ``end`` (of a unit, with ``unit``), or
  ``done``. An ``end`` holds ``stdout``, ``error`` (``{"ename", "evalue", "memory"}`` or null),
  ``outcomes`` (for a recording), ``checks`` (what ``check()`` recorded in a test cell:
  ``[{"question": id, "outcomes": [...]}]``), ``forbidden`` (``{question id: [what]}``, what a
  question forbids that the student's function used), ``tampered`` (flag tokens) and ``runtime``
  (the runtime audit's findings: ``{"rule", "cell", "line", "detail"}``).

The helpers that reduce a student's return value to plain data (:func:`read_outputs`,
:func:`describe_exception`) live here too, since ``check()`` and the sandbox both use them.
"""
from __future__ import annotations

import base64
import io
import math
import re
from dataclasses import dataclass

import numpy as np

MAX_ENTRIES = 10_000_000  # an output with more float64 entries than this is refused (80 MB)
FINDING_RULE = re.compile(r"^[a-z][a-z0-9-]{0,40}$")


@dataclass
class StudentOutcome:
    """What the student's function did on one case, as plain data (nothing the student made).

    values: the returned arrays by output name (float64), when they could be read.
    error: why they could not: the exception raised, or what was returned instead of tensors.
    not_implemented: the function raised ``NotImplementedError`` (the exercise stub).
    """

    values: dict[str, np.ndarray] | None = None
    error: str | None = None
    not_implemented: bool = False


def describe_exception(exc: BaseException, allow_autograd: bool = True) -> str:
    """``"raised NAME: first line of the message"`` (at most 200 characters of message); for a
    question without autograd, a gradient error says that autograd is switched off."""
    try:
        text = str(exc).strip()
    except Exception:  # an exception whose __str__ fails
        text = "(message could not be read)"
    text = text.splitlines()[0] if text else ""
    if len(text) > 200:
        text = text[:197] + "..."
    message = f"raised {type(exc).__name__}" + (f": {text}" if text else "")
    if not allow_autograd and isinstance(exc, RuntimeError) and "grad" in text:
        message += " (autograd is switched off for this question: compute the gradient by hand)"
    return message


def read_outputs(value, names: tuple[str, ...]) -> tuple[dict[str, np.ndarray] | None, str | None]:
    """The returned tensors by output name (float64 copies), or an error saying what was
    returned instead: one name expects a tensor, several a tuple of that many tensors."""
    if len(names) == 1:
        parts = (value,)
    else:
        expected = f"a tuple of {len(names)} tensors ({', '.join(names)})"
        if not isinstance(value, (tuple, list)):
            return None, f"returned {type(value).__name__}, expected {expected}"
        if len(value) != len(names):
            return None, f"returned a {type(value).__name__} of {len(value)}, expected {expected}"
        parts = value
    values = {}
    for name, part in zip(names, parts):
        array = _as_array(part)
        if isinstance(array, str):
            return None, array if len(names) == 1 else f"{name}: {array}"
        values[name] = array
    return values, None


def _as_array(value) -> np.ndarray | str:
    """A float64 copy of a floating-point tensor or array, or a message saying why not."""
    import torch

    try:
        if isinstance(value, torch.Tensor):
            dtype = str(value.dtype).removeprefix("torch.")
            if not value.is_floating_point():
                return f"dtype {dtype}, expected a floating-point tensor"
            tensor = value.detach()
            if tensor.layout != torch.strided:
                tensor = tensor.to_dense()
            return tensor.to(device="cpu", dtype=torch.float64).numpy().copy()
        if isinstance(value, np.ndarray):
            if value.dtype.kind != "f":
                return f"dtype {value.dtype}, expected a floating-point tensor"
            return value.astype(np.float64)
    except Exception as exc:  # a tensor that cannot be read back (meta device, odd subclass, ...)
        return f"returned a {type(value).__name__} that could not be read ({type(exc).__name__}: {exc})"
    return f"returned {type(value).__name__}, expected a tensor"


# ---- arrays and inputs ----------------------------------------------------------------------


def encode_array(array) -> dict:
    """``{"shape": [...], "data": base64 of the little-endian float64 bytes}``."""
    array = np.asarray(array, dtype="<f8")  # not ascontiguousarray, which makes a 0-d array 1-d
    return {"shape": list(array.shape), "data": base64.b64encode(array.tobytes(order="C")).decode()}


def decode_array(encoded) -> np.ndarray | None:
    """The float64 array of :func:`encode_array`'s JSON; None when it is malformed (a shape that
    is not a list of at most 8 sizes, more than :data:`MAX_ENTRIES` entries, bytes of the wrong
    length, data that is not base64)."""
    shape = encoded.get("shape") if isinstance(encoded, dict) else None
    data = encoded.get("data") if isinstance(encoded, dict) else None
    if not (isinstance(shape, list) and len(shape) <= 8 and all(type(n) is int and n >= 0 for n in shape)):
        return None
    size = math.prod(shape)
    if size > MAX_ENTRIES or not isinstance(data, str):
        return None
    try:
        raw = base64.b64decode(data, validate=True)
    except ValueError:
        return None
    if len(raw) != 8 * size:
        return None
    return np.frombuffer(raw, dtype="<f8").reshape(shape).astype(np.float64)


class InputError(ValueError):
    """A case input that cannot be sent to the sandbox (not a tensor or a plain value)."""


def encode_input(value, where: str) -> dict:
    """A case input as JSON: a tensor as an ``.npy`` file (pickle off), a plain value as is."""
    import torch

    if isinstance(value, torch.Tensor):
        buffer = io.BytesIO()
        try:
            np.save(buffer, value.detach().cpu().numpy(), allow_pickle=False)
        except (TypeError, RuntimeError) as error:
            raise InputError(f"{where}: cannot send this input to the sandbox ({error})") from None
        return {"npy": base64.b64encode(buffer.getvalue()).decode(), "requires_grad": bool(value.requires_grad)}
    if value is None or isinstance(value, (bool, int, float, str)):
        return {"value": value}
    raise InputError(f"{where}: case inputs must be tensors or plain numbers, got {type(value).__name__}")


def decode_input(encoded: dict):
    """The tensor (or plain value) of :func:`encode_input`'s JSON, as a fresh tensor."""
    import torch

    if "npy" not in encoded:
        return encoded["value"]
    array = np.load(io.BytesIO(base64.b64decode(encoded["npy"])), allow_pickle=False)
    tensor = torch.from_numpy(array.copy())
    return tensor.requires_grad_() if encoded.get("requires_grad") else tensor


# ---- outcomes -------------------------------------------------------------------------------


def outcome_to_wire(outcome: StudentOutcome) -> dict:
    if outcome.not_implemented:
        return {"not_implemented": True}
    if outcome.error is not None:
        return {"error": outcome.error}
    too_big = [name for name, array in outcome.values.items() if array.size > MAX_ENTRIES]
    if too_big:
        return {"error": f"{too_big[0]}: more than {MAX_ENTRIES} entries"}
    return {"values": {name: encode_array(array) for name, array in outcome.values.items()}}


def outcome_from_wire(item, names: tuple[str, ...]) -> StudentOutcome | None:
    """A :class:`StudentOutcome` from :func:`outcome_to_wire`'s JSON (raw float64 bytes, never
    unpickled); None when it is malformed or its outputs are not exactly ``names``."""
    if not isinstance(item, dict):
        return None
    if item.get("not_implemented") is True:
        return StudentOutcome(not_implemented=True)
    if isinstance(item.get("error"), str):
        return StudentOutcome(error=item["error"][:500])
    values = item.get("values")
    if not isinstance(values, dict) or set(values) != set(names):
        return None
    arrays = {}
    for name in names:
        array = decode_array(values[name])
        if array is None:
            return None
        arrays[name] = array
    return StudentOutcome(values=arrays)


def finding_from_wire(item) -> dict | None:
    """A runtime-audit finding ``{"rule", "cell", "line", "detail"}`` with bounded plain fields,
    or None when it is malformed."""
    if not isinstance(item, dict):
        return None
    rule, cell, line, detail = (item.get(key) for key in ("rule", "cell", "line", "detail"))
    if not (isinstance(rule, str) and FINDING_RULE.match(rule) and isinstance(cell, str) and type(line) is int
            and isinstance(detail, str)):
        return None
    return {"rule": rule, "cell": cell[:100], "line": line, "detail": detail[:300]}
