"""SMC's three potentials (benchmark/methods/smc.py) kept apart: their running statistics by hand, and
with resampling on, each potential steers the particles its own way (without resampling they agree:
tests/test_bon_smc.py)."""

import torch

from benchmark.diffusion import Costs, CountingDenoiser, PerSampleNoise, Sampler, make_schedule, sample
from benchmark.methods import Guide, make_method
from benchmark.tasks.subspace import SubspaceTask


def test_running_statistic_of_each_potential_by_hand():
    """difference: r_t; max: max_{s >= t} r_s; sum: sum_{s >= t} r_s (t counts down, so 'so far')."""
    rewards = [torch.tensor([1.0, -2.0]), torch.tensor([3.0, -5.0]), torch.tensor([2.0, 0.0])]
    want = {"difference": [[1, -2], [3, -5], [2, 0]],
            "max": [[1, -2], [3, -2], [3, 0]],
            "sum": [[1, -2], [4, -7], [6, -7]]}
    for potential, expected in want.items():
        method, stat = make_method("smc", 1.0, potential=potential), None
        for r, e in zip(rewards, expected):
            stat = method._statistic(stat, r)
            assert stat.tolist() == e, (potential, stat, e)


def test_with_resampling_every_potential_steers_its_own_way():
    task = SubspaceTask(dim=8, d=4)
    sched = make_schedule("cosine", 200)
    sampler = Sampler(CountingDenoiser(task.oracle(sched), Costs()), sched, steps=20)
    objective = task.objective("quadratic_on")

    def run(potential):
        noise = PerSampleNoise.for_chains(("smc-potentials",), 16, (task.dim,))
        method = make_method("smc", 2.0, particles=8, potential=potential, ess_threshold=1.0)   # resample always
        return sample(sampler, method, noise.draw(), noise, Guide(objective))

    outs = {p: run(p) for p in ("difference", "max", "sum")}
    assert all(torch.isfinite(x).all() for x in outs.values())
    assert not torch.equal(outs["max"], outs["sum"])
    assert not torch.equal(outs["max"], outs["difference"])
    assert not torch.equal(outs["sum"], outs["difference"])
