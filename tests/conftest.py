"""Shared fixtures. Tests that touch models take the ``device`` fixture, which runs them once on
every device this machine has (cpu always; cuda and mps where present)."""
import pytest

from seqcourse.device import available_devices


@pytest.fixture(params=[str(d) for d in available_devices()])
def device(request):
    import torch

    return torch.device(request.param)
