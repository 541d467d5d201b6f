"""The shared input checks: what they accept, and that each message names what was expected."""
import numpy as np
import pytest
import torch

from seqcourse.validation import (
    describe_shape,
    expect_float,
    expect_ids,
    expect_int,
    expect_tensor,
    module_dtype_device,
)


def test_describe_shape():
    assert describe_shape(("B", "T", "D"), {"D": 3}) == "(B, T, D=3)"
    assert describe_shape(("L", "B", "H"), {0: 2, -1: 8}) == "(L=2, B, H=8)"
    with pytest.raises(KeyError, match="'Q'"):
        describe_shape(("B", "T"), {"Q": 1})


def test_expect_tensor_returns_input_unchanged():
    x = torch.randn(2, 3, 4)
    assert expect_tensor(x, "x", dims=("B", "T", "D"), size={"D": 4}, dtype="float", device="cpu") is x


def test_rank_and_size_messages():
    with pytest.raises(ValueError, match=r"x must be a float tensor of shape \(B, T, D=3\); got shape \(4, 7\) \(rank 2\)\. For a single sequence use x\.unsqueeze\(0\)\."):
        expect_tensor(torch.zeros(4, 7), "x", dims=("B", "T", "D"), size={"D": 3}, dtype="float")
    with pytest.raises(ValueError, match=r"got shape \(4, 7, 2\) \(rank 3\)\. Mismatch: D = 2 \(expected 3\)\."):
        expect_tensor(torch.zeros(4, 7, 2), "x", dims=("B", "T", "D"), size={-1: 3})
    with pytest.raises(ValueError, match=r"v must be a tensor of shape \(dim0, dim1\); got shape \(3,\) \(rank 1\)\.$"):
        expect_tensor(torch.zeros(3), "v", ndim=2)


def test_size_without_rank_is_a_usage_error():
    with pytest.raises(ValueError, match=r"size needs dims or ndim"):
        expect_tensor(torch.zeros(3), "v", size={0: 3})


def test_dtype_messages():
    with pytest.raises(TypeError, match=r"x must be a floating-point tensor; got dtype torch\.int64\. Convert it with x\.float\(\)"):
        expect_tensor(torch.zeros(2, dtype=torch.long), "x", dtype="float")
    with pytest.raises(TypeError, match=r"ids must be a long \(torch\.int64\) tensor.*torch\.int32.*ids\.long\(\)"):
        expect_tensor(torch.zeros(2, dtype=torch.int32), "ids", dtype="long")
    with pytest.raises(TypeError, match=r"must have dtype torch\.bfloat16 \(why\); got dtype torch\.float32\. Convert it with h\.bfloat16\(\)"):
        expect_tensor(torch.zeros(2), "h", dtype=torch.bfloat16, dtype_reason="(why)")
    with pytest.raises(ValueError, match=r"dtype must be 'float', 'long'"):
        expect_tensor(torch.zeros(2), "h", dtype="int")


def test_not_a_tensor():
    with pytest.raises(TypeError, match=r"x must be a float torch\.Tensor of shape \(B, D\); got ndarray"):
        expect_tensor(np.zeros((2, 3)), "x", dims=("B", "D"), dtype="float")


def test_device_check_treats_cuda_and_cuda0_alike():
    x = torch.zeros(2)
    expect_tensor(x, "x", device=torch.device("cpu"))
    with pytest.raises(ValueError, match=r"x is on device cpu, but the model's parameters are on cuda:0; move it with x\.to\('cuda:0'\)"):
        expect_tensor(x, "x", device="cuda:0")
    meta = torch.zeros(2, device="meta")
    with pytest.raises(ValueError, match=r"on device meta"):
        expect_tensor(meta, "x", device="cpu")


def test_expect_ids_range():
    ids = torch.tensor([[0, 4, 2]])
    assert expect_ids(ids, "ids", 5) is ids
    with pytest.raises(ValueError, match=r"ids must hold token ids in \[0, 4\] \(vocab_size=5\); got values from -1 to 2"):
        expect_ids(torch.tensor([[0, -1, 2]]), "ids", 5)
    expect_ids(torch.zeros(0, 3, dtype=torch.long), "ids", 5)  # empty is fine


def test_expect_int_and_float():
    assert expect_int(3, "n", minimum=1, maximum=3) == 3
    with pytest.raises(TypeError, match=r"n must be an int; got bool True"):
        expect_int(True, "n")
    with pytest.raises(ValueError, match=r"n must be <= 3; got 4"):
        expect_int(4, "n", maximum=3)
    assert expect_float(2, "lr", positive=True) == 2.0
    with pytest.raises(ValueError, match=r"lr must be finite; got nan"):
        expect_float(float("nan"), "lr")
    with pytest.raises(ValueError, match=r"lr must be > 0; got 0\.0"):
        expect_float(0, "lr", positive=True)
    with pytest.raises(TypeError, match=r"lr must be a number; got str"):
        expect_float("0.1", "lr")


def test_module_dtype_device():
    assert module_dtype_device(torch.nn.Linear(2, 3).double()) == (torch.float64, torch.device("cpu"))
    with pytest.raises(ValueError, match=r"ReLU has no parameters"):
        module_dtype_device(torch.nn.ReLU())
