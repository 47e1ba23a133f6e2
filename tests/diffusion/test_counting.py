"""benchmark/diffusion/counting.py: what a method spent, counted where it is spent: denoiser forwards and objective
evaluations per sample per call, VJPs and objective gradients per sample only when a gradient flows back, the
objective's `counted_methods` like the reward, and the Costs arithmetic."""

import torch

from benchmark.diffusion.counting import Costs, CountingDenoiser, CountingObjective


class Reward(torch.nn.Module):
    counted_methods = ("measured",)
    scale = 2.0

    def forward(self, x):
        return (x ** 2).sum(-1)

    def measured(self, x, k):
        return k * x.sum(-1)

    def free(self, x):
        return x.sum(-1)


def test_costs_arithmetic():
    a = Costs(denoiser_forwards=5, objective_grads=2)
    snap = a.snapshot()
    a.denoiser_forwards += 3
    assert snap.denoiser_forwards == 5                                             # a copy, not a view
    assert (a - snap).as_dict() == {"denoiser_forwards": 3, "denoiser_vjps": 0, "objective_evals": 0,
                                    "objective_grads": 0, "finetune_samples": 0}
    a.add(Costs(finetune_samples=4, objective_evals=1))
    assert (a.finetune_samples, a.objective_evals, a.objective_grads) == (4, 1, 2)


def test_denoiser_forwards_and_vjps_count_samples_not_calls():
    costs = Costs()
    seen = []
    denoiser = CountingDenoiser(lambda x, t: (seen.append(t), 3 * x)[1], costs)
    x = torch.randn(4, 2, requires_grad=True)
    e = denoiser(x, 7)
    assert torch.equal(seen[0], torch.full((4,), 7)) and seen[0].dtype == torch.long
    assert (costs.denoiser_forwards, costs.denoiser_vjps) == (4, 0)
    e.sum().backward()
    assert costs.denoiser_vjps == 4 and torch.equal(x.grad, torch.full((4, 2), 3.0))   # the identity backward
    with torch.no_grad():
        denoiser(x, 7)
    denoiser(torch.randn(3, 2), 1)                                                   # no graph: no VJP to count
    assert (costs.denoiser_forwards, costs.denoiser_vjps) == (11, 4)


def test_objective_evaluations_gradients_and_counted_methods():
    costs = Costs()
    objective = CountingObjective(Reward(), costs)
    x = torch.randn(5, 3, requires_grad=True)
    r = objective(x)
    assert torch.allclose(r, (x.detach() ** 2).sum(-1)) and (costs.objective_evals, costs.objective_grads) == (5, 0)
    r.sum().backward()
    assert costs.objective_grads == 5
    objective.measured(x[:2], 3.0).sum().backward()                                   # a counted method, args passed on
    assert (costs.objective_evals, costs.objective_grads) == (7, 7)
    objective.free(x).sum().backward()                                                # not listed: not counted
    assert (costs.objective_evals, costs.objective_grads) == (7, 7)
    assert objective.scale == 2.0                                                     # other attributes pass through
