"""ddlight.models.kernels: ConvNet's ReLU and 2x2 pooling kernels against ATen's ops."""

import pytest
import torch


@pytest.mark.parametrize("shape", [(3, 5, 8, 8), (2, 4, 7, 9), (2, 3, 66, 70), (1, 2, 71, 65)])
def test_avgpool2x2_equals_avg_pool2d_in_values_gradients_and_dtype(shape):
    # small fp32 maps take the depthwise convolution, large ones the pair sums: both equal avg_pool2d
    from ddlight.models.convnet import make_pool
    from ddlight.models.kernels import AvgPool2x2

    assert isinstance(make_pool("avgpooling"), AvgPool2x2) and not list(AvgPool2x2().parameters())
    x = torch.randn(*shape, requires_grad=True)
    ref_x = x.detach().clone().requires_grad_()
    out, ref = AvgPool2x2()(x), torch.nn.functional.avg_pool2d(ref_x, 2, 2)
    assert out.shape == ref.shape  # odd sizes floor, as avg_pool2d does
    torch.testing.assert_close(out, ref, rtol=0, atol=1e-6)
    g = torch.randn_like(ref)
    out.backward(g)
    ref.backward(g)
    assert x.grad.shape == x.shape
    torch.testing.assert_close(x.grad, ref_x.grad, rtol=0, atol=1e-7)
    nhwc = x.detach().contiguous(memory_format=torch.channels_last)
    torch.testing.assert_close(AvgPool2x2()(nhwc), ref.detach(), rtol=0, atol=1e-6)
    with torch.autocast("cpu", dtype=torch.bfloat16):  # fp32 in, fp32 out, as avg_pool2d under autocast
        assert AvgPool2x2()(x).dtype == torch.float32
        half = AvgPool2x2()(x.detach().bfloat16())
    assert half.dtype == torch.bfloat16
    torch.testing.assert_close(half.float(), ref.detach(), rtol=0.02, atol=0.02)


def test_avgpool2x2_differentiates_twice():
    # DC/DSA and trajectory matching take gradients of gradients through the pooling
    from ddlight.models.kernels import AvgPool2x2

    x = torch.randn(2, 3, 5, 6, dtype=torch.float64, requires_grad=True)
    assert torch.autograd.gradcheck(AvgPool2x2(), (x,))
    assert torch.autograd.gradgradcheck(AvgPool2x2(), (x,))


def test_lean_fp32_pooling_backward_first_order_and_under_create_graph_is_avg_pool2d():
    # lean: a first-order backward runs the transposed depthwise convolution, one whose graph is kept
    # (create_graph) the pair-sum spread; odd sizes floor as avg_pool2d and get zeros where it drops input
    from ddlight.models.kernels import AvgPool2x2

    x = torch.randn(2, 3, 9, 7, requires_grad=True)
    w = torch.randn(2, 3, 4, 3)
    (ref,) = torch.autograd.grad((torch.nn.functional.avg_pool2d(x, 2, 2) * w).sum(), x)
    (first,) = torch.autograd.grad((AvgPool2x2(lean=True)(x) * w).sum(), x)
    (kept,) = torch.autograd.grad((AvgPool2x2(lean=True)(x) * w).sum(), x, create_graph=True)
    torch.testing.assert_close(first, ref, rtol=0, atol=1e-7)
    torch.testing.assert_close(kept, ref, rtol=0, atol=1e-7)
    assert first[:, :, -1].abs().sum() == 0 and first[..., -1].abs().sum() == 0


def test_fp32_depthwise_pooling_differentiates_twice_as_avg_pool2d():
    # the fp32 path (depthwise convolution, pair-sum spread backward) under a gradient of a gradient
    from ddlight.models.kernels import AvgPool2x2

    x = torch.randn(2, 3, 8, 10, requires_grad=True)
    w = torch.randn(2, 3, 4, 5)
    grads = []
    for pool in (AvgPool2x2(lean=True), lambda t: torch.nn.functional.avg_pool2d(t, 2, 2)):
        y = x.sin()  # the first-order gradient depends on x, so its own gradient is not zero
        (g,) = torch.autograd.grad((pool(y) * w).sum(), y, create_graph=True)
        grads.append(torch.autograd.grad((g * y).square().sum(), x)[0])
    torch.testing.assert_close(grads[0], grads[1], rtol=0, atol=1e-6)


def test_mask_relu_is_relu_and_its_graph_keeps_a_bool_mask_not_the_output():
    from ddlight.models.convnet import make_act
    from ddlight.models.kernels import AvgPool2x2, MaskReLU

    assert isinstance(make_act("relu"), MaskReLU) and isinstance(make_act("relu"), torch.nn.ReLU)
    assert not make_act("relu").lean and make_act("relu", lean=True).lean
    x64 = torch.randn(2, 3, 4, 4, dtype=torch.float64, requires_grad=True)
    assert torch.autograd.gradcheck(MaskReLU(lean=True), (x64,))
    assert torch.autograd.gradgradcheck(MaskReLU(lean=True), (x64,))
    x = torch.randn(4, 8, 16, 16, requires_grad=True)
    torch.testing.assert_close(MaskReLU(lean=True)(x), torch.relu(x), rtol=0, atol=0)
    assert MaskReLU()(x).grad_fn.name() == "ReluBackward0"  # not lean: ATen's op
    saved = []
    with torch.autograd.graph.saved_tensors_hooks(lambda t: saved.append(t) or t, lambda t: t):
        act = MaskReLU(lean=True)(x * 1.5)
        out = AvgPool2x2(lean=True)(act)
        (g,) = torch.autograd.grad(out.square().sum(), x, create_graph=True)  # a second order follows
    full = [t for t in saved if t.shape == act.shape]
    assert full and all(t.dtype == torch.bool for t in full)  # neither ReLU nor pooling keeps the output
    with torch.no_grad():  # inference: the plain op, no autograd Function
        assert MaskReLU(lean=True)(x).grad_fn is None
