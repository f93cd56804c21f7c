import pytest
import torch

from ddlight.ops.chunked import chunked_sums, class_sums


def test_class_sums_by_hand():
    x = torch.tensor([[1.0, 2.0], [3.0, 4.0], [5.0, 6.0]])
    assert class_sums(x, torch.tensor([1, 0, 1]), 3).tolist() == [[3.0, 4.0], [6.0, 8.0], [0.0, 0.0]]


@pytest.mark.parametrize("autocast", [False, True])
def test_chunked_sums_give_the_whole_batch_value_and_gradient(autocast):
    torch.manual_seed(0)
    w = torch.randn(5, 7)
    x = torch.randn(6, 5, requires_grad=True)
    labels = torch.tensor([0, 0, 1, 1, 2, 2])
    calls = []

    def fn(part, idx):
        calls.append(torch.is_grad_enabled())
        return [class_sums(torch.tanh(part @ w), labels[idx], 3), part.pow(2).sum(0, keepdim=True)]

    with torch.autocast("cpu", dtype=torch.bfloat16, enabled=autocast):
        chunked = chunked_sums(fn, x, 4)  # chunks of 4 and 2
        whole = fn(x, torch.arange(6))
    assert calls[:2] == [False, False]  # the forward keeps no graph
    assert chunked[0].dtype == whole[0].dtype == (torch.bfloat16 if autocast else torch.float32)
    for c, w_ in zip(chunked, whole, strict=True):
        torch.testing.assert_close(c, w_)
    loss = lambda outs: outs[0].float().square().sum() + 0.5 * outs[1].float().sum()  # noqa: E731
    (g_chunked,) = torch.autograd.grad(loss(chunked), x)
    (g_whole,) = torch.autograd.grad(loss(whole), x)
    assert calls[-2:] == [True, True]  # the backward rebuilt each chunk's graph
    torch.testing.assert_close(g_chunked, g_whole)
