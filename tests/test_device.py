"""Device choice (order, override, errors) and seeding."""
import random

import numpy as np
import pytest
import torch

from seqcourse import available_devices, get_device, seed_everything


@pytest.fixture
def no_env(monkeypatch):
    monkeypatch.delenv("SEQCOURSE_DEVICE", raising=False)


def _fake_backends(monkeypatch, cuda, mps):
    monkeypatch.setattr(torch.cuda, "is_available", lambda: cuda)
    monkeypatch.setattr(torch.cuda, "device_count", lambda: 2 if cuda else 0)
    monkeypatch.setattr(torch.backends.mps, "is_available", lambda: mps)


@pytest.mark.parametrize("cuda, mps, expected", [
    (True, True, "cuda"), (True, False, "cuda"), (False, True, "mps"), (False, False, "cpu"),
])
def test_order_cuda_then_mps_then_cpu(monkeypatch, no_env, cuda, mps, expected):
    _fake_backends(monkeypatch, cuda, mps)
    assert get_device().type == expected
    assert available_devices()[-1] == torch.device("cpu")
    assert available_devices()[0].type == expected


def test_env_override_cpu(monkeypatch):
    _fake_backends(monkeypatch, cuda=True, mps=False)
    monkeypatch.setenv("SEQCOURSE_DEVICE", "cpu")
    assert get_device() == torch.device("cpu")
    # An explicit argument beats the environment.
    assert get_device("cuda") == torch.device("cuda")


def test_empty_env_means_automatic(monkeypatch):
    _fake_backends(monkeypatch, cuda=False, mps=False)
    monkeypatch.setenv("SEQCOURSE_DEVICE", "")
    assert get_device() == torch.device("cpu")


def test_unknown_name_lists_choices(monkeypatch):
    monkeypatch.setenv("SEQCOURSE_DEVICE", "tpu")
    with pytest.raises(ValueError, match=r"SEQCOURSE_DEVICE='tpu' is not a device seqcourse knows; expected one of cuda, mps, cpu"):
        get_device()
    with pytest.raises(ValueError, match=r"expected one of cuda, mps, cpu"):
        get_device("cuda:x")


def test_unavailable_kind_is_a_runtime_error(monkeypatch, no_env):
    _fake_backends(monkeypatch, cuda=False, mps=False)
    with pytest.raises(RuntimeError, match=r"asks for cuda, which is not available here \(available: cpu\)"):
        get_device("cuda")
    monkeypatch.setenv("SEQCOURSE_DEVICE", "mps")
    with pytest.raises(RuntimeError, match=r"SEQCOURSE_DEVICE='mps' asks for mps"):
        get_device()


def test_cuda_index(monkeypatch, no_env):
    _fake_backends(monkeypatch, cuda=True, mps=False)
    assert get_device("CUDA:1") == torch.device("cuda:1")
    with pytest.raises(RuntimeError, match=r"asks for GPU 2, but this machine has 2 GPU"):
        get_device("cuda:2")


def test_real_machine_default_is_available(no_env):
    device = get_device()
    assert device in available_devices()
    torch.zeros(1, device=device)  # usable


def _draws(gen):
    return (random.random(), np.random.rand(3).tolist(), torch.rand(3).tolist(), torch.rand(2, generator=gen).tolist())


def test_seed_everything_repeats_every_stream():
    first = _draws(seed_everything(123))
    second = _draws(seed_everything(123))
    other = _draws(seed_everything(124))
    assert first == second
    for a, b in zip(first, other):
        assert a != b


def test_seed_everything_returns_seeded_generator():
    g = seed_everything(7)
    assert isinstance(g, torch.Generator)
    assert torch.equal(torch.rand(4, generator=g), torch.rand(4, generator=torch.Generator().manual_seed(7)))


@pytest.mark.parametrize("seed", [-1, 1.5, "3", True, None])
def test_bad_seeds_rejected(seed):
    with pytest.raises(ValueError, match=r"seed must be a non-negative int"):
        seed_everything(seed)


def test_large_seed_accepted():
    # numpy takes seeds below 2**32 only; seed_everything must still accept larger ones.
    a = _draws(seed_everything(2**40 + 5))
    b = _draws(seed_everything(2**40 + 5))
    assert a == b


@pytest.mark.parametrize("device, expected", [
    ("cpu", []), (torch.device("cuda", 1), ["cuda"]), ("cuda", ["cuda"]), ("mps", ["mps"]),
])
def test_synchronize_waits_on_the_device_s_own_backend(monkeypatch, device, expected):
    from seqcourse.device import synchronize

    calls = []
    monkeypatch.setattr(torch.cuda, "synchronize", lambda d=None: calls.append(("cuda", torch.device(d))))
    monkeypatch.setattr(torch.mps, "synchronize", lambda: calls.append(("mps", None)))
    synchronize(device)
    assert [kind for kind, _ in calls] == expected
    if expected == ["cuda"]:
        assert calls[0][1] == torch.device(device)
