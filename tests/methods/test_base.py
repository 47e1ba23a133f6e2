"""benchmark/methods/base.py: the Gaussian-smoothed reward of LGD-MC and TFG (log_mean_exp_reward), checked on its
own (not one method against the other; the methods' steps with it: tests/methods/test_lgd.py, test_tfg.py).

    rt(x) = log (1/n) sum_i exp r(x + s eps_i)   (log_mean_exp_reward),  grad rt(x) = sum_i w_i grad r(x + s eps_i)
with w = softmax_i r(x + s eps_i). Closed forms: for r(x) = a^T x, log E exp r(x + s eps) = a^T x + s^2 |a|^2 / 2;
for r(x) = -c |x|^2 / 2, grad log E exp r(x + s eps) = -c x / (1 + c s^2). A plain mean of r over the draws
would give a^T x and -c x instead: the checks below tell the two apart by a wide margin.
"""

import math

import pytest
import torch

from benchmark.methods.base import log_mean_exp_reward


def test_log_mean_exp_with_fixed_draws_by_hand():
    x0 = torch.tensor([[0.5, -1.0], [2.0, 0.0]], dtype=torch.float64)
    draws = [torch.tensor([[1.0, 0.0], [0.0, 1.0]], dtype=torch.float64),
             torch.tensor([[-1.0, 2.0], [1.0, 1.0]], dtype=torch.float64),
             torch.tensor([[0.0, -3.0], [-2.0, 0.5]], dtype=torch.float64)]
    calls = []

    def reward(x):                                       # r(x) = x_1 - x_2^2 / 2, one value per row
        calls.append(x.shape[0])
        return x[:, 0] - x[:, 1] ** 2 / 2

    got = log_mean_exp_reward(reward, x0, 0.7, draws)
    for b in range(2):
        values = []
        for eps in draws:
            u, v = (float(x0[b, k] + 0.7 * eps[b, k]) for k in range(2))
            values.append(u - v * v / 2)
        want = math.log(sum(math.exp(r) for r in values) / 3)
        assert float(got[b]) == pytest.approx(want, rel=1e-12)
        assert want > sum(values) / 3 + 0.1               # log-mean-exp is not the mean here
    assert calls == [6]                                   # one call on all n B points
    assert torch.equal(log_mean_exp_reward(reward, x0, 0.7, []), reward(x0))


def test_smoothed_linear_reward_converges_to_its_closed_form():
    """r = a^T x, s |a| = 1: rt -> a^T x + 1/2 as n grows (Monte-Carlo error ~ 1.3 / sqrt(n) = 0.006 at
    n = 50 000); a plain mean would give a^T x, 0.5 lower."""
    g = torch.Generator().manual_seed(0)
    a = torch.tensor([0.6, -0.8, 0.0, 1.0], dtype=torch.float64) / math.sqrt(2)   # |a| = 1
    x0 = torch.randn(3, 4, generator=g, dtype=torch.float64)
    s, n = 1.0, 50_000
    draws = list(torch.randn(n, 3, 4, generator=g, dtype=torch.float64))
    got = log_mean_exp_reward(lambda x: x @ a, x0, s, draws)
    want = x0 @ a + s ** 2 * float(a @ a) / 2
    assert torch.allclose(got, want, atol=0.03), (got, want)


def test_smoothed_quadratic_gradient_converges_to_its_closed_form():
    """r = -c |x|^2 / 2: grad rt(x) -> -c x / (1 + c s^2) (= -x / 2 for c s^2 = 1); a plain mean gives -c x."""
    g = torch.Generator().manual_seed(1)
    c, s, n = 1.0, 1.0, 50_000
    x0 = torch.tensor([[0.3, -0.4], [0.0, 0.5]], dtype=torch.float64, requires_grad=True)
    draws = list(torch.randn(n, 2, 2, generator=g, dtype=torch.float64))
    (grad,) = torch.autograd.grad(log_mean_exp_reward(lambda x: -c * (x * x).sum(-1) / 2, x0, s, draws).sum(), x0)
    assert torch.allclose(grad, -c * x0.detach() / (1 + c * s * s), atol=0.03), grad
