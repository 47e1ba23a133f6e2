"""Noise schedules, the Tweedie estimate, the shared DDIM/DDPM loop and the cost counters."""

from benchmark.diffusion.counting import Costs, CountingDenoiser, CountingObjective
from benchmark.diffusion.noise import ParticleNoise, PerSampleNoise, derive_seed
from benchmark.diffusion.sampler import Sampler, Step, ddim_update, renoise, run_steps, sample, tweedie
from benchmark.diffusion.schedules import SCHEDULES, VPSchedule, make_schedule, timestep_grid

__all__ = ["Costs", "CountingDenoiser", "CountingObjective", "ParticleNoise", "PerSampleNoise", "derive_seed",
           "Sampler", "Step", "ddim_update", "renoise", "run_steps", "sample", "tweedie", "SCHEDULES",
           "VPSchedule", "make_schedule", "timestep_grid"]
