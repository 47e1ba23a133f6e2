"""Planted bugs that the tests must catch (mutation check; not collected by pytest: no test_ prefix).

Each mutation is (name, file, exact original snippet, replacement, tests to run). The script copies
the repository (less .git, .venv, results and caches) to a scratch folder, runs the mapped test files
once unmutated (they must pass), then, one mutation at a time, plants the bug in the scratch copy
(never in the working tree), runs the mutation's tests and restores the file. A mutation whose tests
still pass SURVIVED: no test can see that bug.

    python tests/mutations.py                  # every mutation against its mapped test files
    python tests/mutations.py NAME [NAME ...]  # only these
    python tests/mutations.py --fast-tier      # each against the whole fast tier (-m "not slow"): slower
    python tests/mutations.py --list           # the mutations and their test files

The mapped tests are those that should see the bug (the test files of the changed module), run with
`-x -m "not slow"`. Every original snippet must occur exactly once in its file: when the code
changes under a mutation, the script stops and names it, so the list is kept up to date rather than
silently testing nothing. Exit status: 0 when every mutation is caught, 1 when some survived, 2 when
the list is out of date or the unmutated tests fail.
"""

from __future__ import annotations

import argparse
import os
import shutil
import subprocess
import sys
import tempfile
import time
from dataclasses import dataclass
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
IGNORED = shutil.ignore_patterns(".git", ".venv", "__pycache__", ".pytest_cache", ".snakemake", "*.egg-info",
                                 "results", "reports", "models", "logs")
TIMEOUT_S = 900


@dataclass(frozen=True)
class Mutation:
    name: str
    area: str                 # methods, objectives, sampler, report, tune, tasks, workflow
    file: str
    original: str
    replacement: str
    tests: tuple[str, ...]


def m(name, area, file, original, replacement, *tests):
    return Mutation(name, area, file, original, replacement, tuple(f"tests/{t}.py" for t in tests))


MUTATIONS = [
    # --- methods: one or more per method file ----------------------------------------------------
    m("none-accepts-strength", "methods", "benchmark/methods/none.py",
      "if self.strength != 0:", "if self.strength < 0:", "methods/test_none", "test_contract"),
    m("naive-beta-without-h", "methods", "benchmark/methods/naive.py",
      "beta = step.alpha / (self.sigma ** 2 + step.h * (g * g).flatten(1).sum(-1))",
      "beta = step.alpha / (self.sigma ** 2 + (g * g).flatten(1).sum(-1))",
      "methods/test_naive", "denoisers/test_oracle"),
    m("naive-sign", "methods", "benchmark/methods/naive.py",
      "return e - math.sqrt(step.h) * G", "return e + math.sqrt(step.h) * G",
      "methods/test_naive", "denoisers/test_oracle"),
    m("gloss-loses-factor-2", "methods", "benchmark/methods/gloss.py",
      "G = per_sample(2 * beta * (y - f), grad_f) * grad_f", "G = per_sample(beta * (y - f), grad_f) * grad_f",
      "methods/test_gloss", "denoisers/test_oracle"),
    m("gloss-beta-without-h", "methods", "benchmark/methods/gloss.py",
      "a2 * self.sigma ** 2 + step.h * (grad_f * grad_f)", "a2 * self.sigma ** 2 + (grad_f * grad_f)",
      "methods/test_gloss", "denoisers/test_oracle"),
    m("freedom-drops-sqrt-ab", "methods", "benchmark/methods/freedom.py",
      "self.step_size(self.strength * step.alpha, e, g_t)", "self.step_size(self.strength, e, g_t)",
      "methods/test_freedom"),
    m("freedom-stop-step-off-by-one", "methods", "benchmark/methods/freedom.py",
      "if step.t <= self.stop_t:", "if step.t < self.stop_t:", "methods/test_freedom"),
    m("mpgd-schedule-uses-ab-t", "methods", "benchmark/methods/mpgd.py",
      "self.strength * math.sqrt(step.ab_prev)", "self.strength * math.sqrt(step.ab_t)",
      "methods/test_mpgd", "methods/test_freedom"),
    m("cg-drops-sqrt-h", "methods", "benchmark/methods/cg.py",
      "return e - scaled(self.strength * math.sqrt(step.h), grad)", "return e - scaled(self.strength, grad)",
      "methods/test_cg", "tasks/test_digits_cells"),
    m("ugd-forward-drops-sqrt-h", "methods", "benchmark/methods/ugd.py",
      "e_hat = e - math.sqrt(step.h) * per_sample(w, g_t) * g_t", "e_hat = e - per_sample(w, g_t) * g_t",
      "methods/test_ugd", "methods/test_tfg"),
    m("ugd-backward-inverted-scale", "methods", "benchmark/methods/ugd.py",
      "e_hat = e_hat - math.sqrt(step.ab_t / step.h) * D", "e_hat = e_hat - math.sqrt(step.h / step.ab_t) * D",
      "methods/test_ugd"),
    m("lgd-std-is-variance", "methods", "benchmark/methods/lgd.py",
      "std = math.sqrt(1 - step.ab_t)", "std = 1 - step.ab_t", "methods/test_lgd"),
    m("lgd-plain-reward", "methods", "benchmark/methods/lgd.py",
      "smoothed = lambda x0: log_mean_exp_reward(lambda xs: self.reward(xs, guide, noise), x0, std, draws)",
      "smoothed = lambda x0: self.reward(x0, guide, noise)", "methods/test_lgd"),
    m("tfg-drops-sqrt-a", "methods", "benchmark/methods/tfg.py",
      "x_prev = x_prev + delta_t / math.sqrt(step.a_t)", "x_prev = x_prev + delta_t", "methods/test_tfg"),
    m("tfg-ignores-gamma", "methods", "benchmark/methods/tfg.py",
      "std = self.gamma * math.sqrt(1 - step.ab_t)", "std = math.sqrt(1 - step.ab_t)", "methods/test_tfg"),
    m("tfg-schedule-not-normalised", "methods", "benchmark/methods/tfg.py",
      "return schedule_value(kind, step) / means[kind]", "return schedule_value(kind, step)", "methods/test_tfg"),
    m("tfg-variance-guidance-at-x0h", "methods", "benchmark/methods/tfg.py",
      "(h,) = torch.autograd.grad(rt(x0h + d).sum(), d)", "(h,) = torch.autograd.grad(rt(x0h + 0 * d).sum(), d)",
      "methods/test_tfg"),
    m("shen-without-time-travel", "methods", "benchmark/methods/shen.py",
      "recurrence: int = 2", "recurrence: int = 1", "methods/test_shen"),
    m("tfg-recurrence-without-renoise", "methods", "benchmark/methods/tfg.py",
      "x_t = sampler.renoise(x_prev, step, noise)", "x_t = x_prev", "methods/test_tfg"),
    m("bon-keeps-the-worst", "methods", "benchmark/methods/bon.py",
      "best = r.argmax(0)", "best = r.argmin(0)", "methods/test_bon"),
    m("bon-picks-rows-not-chains", "methods", "benchmark/methods/bon.py",
      "return x[best * B + torch.arange(B, device=x.device)]", "return x[best]", "methods/test_bon"),
    m("smc-ess-without-square", "methods", "benchmark/methods/smc.py",
      "return 1.0 / w.square().sum(0)", "return 1.0 / w.sum(0)", "methods/test_smc"),
    m("smc-weights-kept-after-resampling", "methods", "benchmark/methods/smc.py",
      "log_w = torch.where(resample, 0.0, log_w.view(K, B)).flatten()", "log_w = log_w", "methods/test_smc"),
    m("smc-proposal-not-importance-corrected", "methods", "benchmark/methods/smc.py",
      "log_w = log_w + transition.log_ratio(x_prev, step)", "log_w = log_w + 0 * transition.log_ratio(x_prev, step)",
      "methods/test_smc"),
    # --- the shared pieces of the methods (methods/base.py) --------------------------------------
    m("log-mean-exp-is-a-mean", "methods", "benchmark/methods/base.py",
      "return torch.logsumexp(reward_fn(xs).view(n, x0.shape[0]), dim=0) - math.log(n)",
      "return reward_fn(xs).view(n, x0.shape[0]).mean(0)", "methods/test_base"),
    m("augmentation-sum-not-mean", "methods", "benchmark/methods/base.py",
      "return guide.objective(xs).view(len(zs), x0.shape[0]).mean(0)",
      "return guide.objective(xs).view(len(zs), x0.shape[0]).sum(0)", "methods/test_base", "methods/test_shen"),
    m("time-travel-without-renoise", "methods", "benchmark/methods/base.py",
      "                x_t = sampler.renoise(x_prev, step, noise)\n            x_prev = self.guided_step(",
      "                x_t = x_prev\n            x_prev = self.guided_step(", "methods/test_base", "methods/test_shen"),
    m("norm-over-the-batch", "methods", "benchmark/methods/base.py",
      "return torch.linalg.vector_norm(x.flatten(1), dim=1)",
      "return torch.linalg.vector_norm(x).expand(x.shape[0])", "methods/test_base", "test_contract"),
    # --- issue 22: the published defaults ------------------------------------------------------------
    m("dps-auto-inverse-not-residual", "methods", "benchmark/methods/dps.py",
      'AUTO_RULE = {"inverse": "residual",', 'AUTO_RULE = {"inverse": "none",', "methods/test_dps"),
    m("dps-auto-reward-abs-reward", "methods", "benchmark/methods/dps.py",
      '"log_prob": "abs_reward", "reward": "none"}', '"log_prob": "abs_reward", "reward": "abs_reward"}', "methods/test_dps"),
    m("dps-auto-log-prob-none", "methods", "benchmark/methods/dps.py",
      '{"inverse": "residual", "log_prob": "abs_reward",', '{"inverse": "residual", "log_prob": "none",', "methods/test_dps"),
    m("dps-residual-squared", "methods", "benchmark/methods/dps.py",
      "objective=lambda x: -objective.residual_norm(x))", "objective=lambda x: -objective.residual_norm(x) ** 2)",
      "methods/test_dps"),
    m("dps-drops-abs-reward-normalisation", "methods", "benchmark/methods/dps.py",
      "zeta_t = r.abs().clamp_min(EPS).reciprocal() * chain_scalar(self.strength, r.dtype)",
      "zeta_t = chain_scalar(self.strength, r.dtype)", "methods/test_dps", "methods/test_freedom"),
    m("dps-residual-on-any-objective", "methods", "benchmark/methods/dps.py",
      'if self.normalise == "residual" and kind != "inverse":', 'if False:', "methods/test_dps"),
    m("gaussian-inverse-residual-over-batch", "objectives", "benchmark/objectives/gaussian_inverse.py",
      "return torch.linalg.vector_norm(self.y - x @ self.H.T, dim=-1)",
      "return torch.linalg.vector_norm(self.y - x @ self.H.T).expand(x.shape[0])", "methods/test_dps"),
    m("gaussian-inverse-residual-uncounted", "objectives", "benchmark/objectives/gaussian_inverse.py",
      '    counted_methods = ("residual_norm", "measurement", "log_likelihood")', '    counted_methods = ()',
      "methods/test_dps"),
    m("label-kind-not-log-prob", "objectives", "benchmark/objectives/label.py",
      'kind = "log_prob"', 'kind = "reward"', "methods/test_dps", "objectives/test_label"),
    m("inverse-kind-reward", "objectives", "benchmark/objectives/inverse.py",
      'kind = "inverse"', 'kind = "reward"', "methods/test_dps", "objectives/test_inverse"),
    m("objective-kind-unchecked", "objectives", "benchmark/objectives/base.py",
      "    if kind not in KINDS:\n", "    if False:\n", "methods/test_dps", "objectives/test_base"),
    m("mpgd-default-constant", "methods", "benchmark/methods/mpgd.py",
      'schedule: Literal["rms", "constant", "sqrt_ab_prev"] = "rms"',
      'schedule: Literal["rms", "constant", "sqrt_ab_prev"] = "constant"', "methods/test_mpgd"),
    m("mpgd-rms-over-the-batch", "methods", "benchmark/methods/mpgd.py",
      "rms = norm(h_t) / math.sqrt(h_t[0].numel())",
      "rms = torch.linalg.vector_norm(h_t).expand(h_t.shape[0]) / math.sqrt(h_t.numel())", "methods/test_mpgd"),
    m("mpgd-rms-times-sqrt-ab-prev", "methods", "benchmark/methods/mpgd.py",
      "(rms * math.sqrt(step.ab_prev)).reciprocal()", "(rms / math.sqrt(step.ab_prev)).reciprocal()", "methods/test_mpgd"),
    m("mpgd-zero-gradient-unguarded", "methods", "benchmark/methods/mpgd.py",
      "return torch.where(rms > 0, c, torch.zeros_like(c))", "return c", "methods/test_mpgd"),
    m("mpgd-step-through-e", "methods", "benchmark/methods/mpgd.py",
      "return sampler.ddim(x0h + scaled(self.c_t(h_t, step), h_t), e, step, noise)",
      "return sampler.ddim(x0h, e + scaled(self.c_t(h_t, step), h_t), step, noise)", "methods/test_mpgd"),
    m("shen-default-polyak-guarded", "methods", "benchmark/methods/shen.py",
      'polyak_rule: Literal["published", "guarded"] = "published"',
      'polyak_rule: Literal["published", "guarded"] = "guarded"', "methods/test_shen"),
    m("polyak-default-guarded", "methods", "benchmark/methods/base.py",
      'polyak_rule: Literal["published", "guarded"] = "published"',
      'polyak_rule: Literal["published", "guarded"] = "guarded"', "methods/test_base", "methods/test_shen"),
    m("polyak-published-adds-eps", "methods", "benchmark/methods/base.py",
      "zeta = chain_scalar(self.strength, e.dtype) * norm(e) / g_norm ** 2",
      "zeta = chain_scalar(self.strength, e.dtype) * norm(e) / (g_norm ** 2 + self.polyak_eps)",
      "methods/test_base", "methods/test_shen"),
    m("polyak-published-ignores-strength", "methods", "benchmark/methods/base.py",
      "zeta = chain_scalar(self.strength, e.dtype) * norm(e) / g_norm ** 2", "zeta = norm(e) / g_norm ** 2",
      "methods/test_base", "methods/test_shen"),
    m("polyak-no-cutoff", "methods", "benchmark/methods/base.py",
      "return torch.where(g_norm < POLYAK_CUTOFF, torch.zeros_like(zeta), zeta)", "return zeta",
      "methods/test_base", "methods/test_shen"),
    m("polyak-cutoff-at-zero", "methods", "benchmark/methods/base.py", "g_norm < POLYAK_CUTOFF", "g_norm <= 0",
      "methods/test_base", "methods/test_shen"),
    m("polyak-unsquared-norm", "methods", "benchmark/methods/base.py",
      "norm(e) / (g_norm ** 2 + self.polyak_eps)", "norm(e) / (g_norm + self.polyak_eps)",
      "methods/test_base", "methods/test_shen"),
    m("smc-fk-potential-is-a-ratio", "methods", "benchmark/methods/smc.py",
      "log_w, log_phi = log_w + lam * stat, log_phi + lam * stat",
      "log_w, log_phi = log_w + lam * stat - log_phi, lam * stat", "methods/test_smc"),
    m("smc-fk-max-not-floored", "methods", "benchmark/methods/smc.py",
      "stat = torch.full_like(log_w, self.reward_min) if self.potential in FK_TILTS else None", "stat = None",
      "methods/test_smc"),
    m("smc-fk-final-factor-on-r0", "methods", "benchmark/methods/smc.py",
      "R = self._statistic(stat, r) if self.potential in FK_TILTS else r", "R = r", "methods/test_smc"),
    m("smc-fk-max-is-a-sum", "methods", "benchmark/methods/smc.py",
      'return torch.maximum(stat, r) if self.potential in ("max", "max_ratio") else stat + r',
      'return torch.maximum(stat, r) if self.potential == "max_ratio" else stat + r', "methods/test_smc"),
    m("smc-max-potential-is-a-sum", "methods", "benchmark/methods/smc.py",
      'return torch.maximum(stat, r) if self.potential in ("max", "max_ratio") else stat + r', "return stat + r",
      "methods/test_smc"),
    m("smc-potential-not-incremental", "methods", "benchmark/methods/smc.py",
      "log_w, log_phi = log_w + lam * stat - log_phi, lam * stat", "log_w, log_phi = log_w + lam * stat, lam * stat",
      "methods/test_smc"),
    m("smc-no-final-correction", "methods", "benchmark/methods/smc.py",
      "log_w = log_w + lam * R - log_phi", "log_w = log_w - log_phi", "methods/test_smc"),
    m("smc-fk-product-not-ancestral", "methods", "benchmark/methods/smc.py",
      "x_prev, stat, log_phi = x_prev[rows], stat[rows], log_phi[rows]", "x_prev, stat = x_prev[rows], stat[rows]",
      "methods/test_smc"),
    m("smc-fk-history-not-ancestral", "methods", "benchmark/methods/smc.py",
      "x_prev, stat, log_phi = x_prev[rows], stat[rows], log_phi[rows]",
      "x_prev, log_phi = x_prev[rows], log_phi[rows]", "methods/test_smc"),
    m("smc-prior-mean-unclipped", "methods", "benchmark/methods/smc.py",
      "m_p = ddim_update(*self._sampler.clipped(self.x0h(step), self.e, step), step, torch.zeros_like(x_prev))",
      "m_p = ddim_update(self.x0h(step), self.e, step, torch.zeros_like(x_prev))",
      "methods/test_smc", "diffusion/test_sampler"),
    m("ugd-backward-from-unguided-x0h", "methods", "benchmark/methods/ugd.py",
      "x0_hat = tweedie(x_t, e_hat, step.ab_t)", "x0_hat = tweedie(x_t, e, step.ab_t)",
      "methods/test_ugd", "test_conventions"),
    m("lgd-averages-twice", "methods", "benchmark/methods/lgd.py",
      "zeta = self.step_size(self.strength, e, g_t)", "zeta = self.step_size(self.strength / self.n, e, g_t)",
      "methods/test_lgd", "test_conventions"),
    m("freedom-step-sqrt-a-t", "methods", "benchmark/methods/freedom.py",
      "self.step_size(self.strength * step.alpha, e, g_t)",
      "self.step_size(self.strength * step.alpha / step.a_t ** 0.5, e, g_t)",
      "methods/test_freedom", "test_conventions"),
    m("alg2-finetune-start-off-by-one", "sampler", "benchmark/optimize.py",
      "k - 1 >= config.finetune_start:", "k - 1 > config.finetune_start:", "test_optimize", "denoisers/test_pretrain"),
    m("alg2-skips-round0-batch", "sampler", "benchmark/optimize.py",
      "k - 1 >= config.finetune_start:", "k - 1 >= max(config.finetune_start, 1):", "test_optimize", "denoisers/test_pretrain"),
    m("alg2-finetune-overcounted", "sampler", "benchmark/optimize.py",
      "costs.finetune_samples += B", "costs.finetune_samples += B * steps", "test_optimize", "denoisers/test_pretrain"),
    m("alg2-default-start-50", "sampler", "benchmark/spec.py",
      "finetune_start: int = field(default=0,", "finetune_start: int = field(default=50,", "denoisers/test_pretrain"),
    m("alg2-refusal-removed", "sampler", "benchmark/spec.py",
      'if self.algorithm == "alg2" and self.finetune_start >= self.rounds:', "if False:", "test_spec"),
    m("alg2-config-refusal-removed", "sampler", "benchmark/config_checks.py",
      'if alg == "alg2" and rounds is not None and start >= rounds:', "if False:", "test_config_checks"),
    m("clip-x0-keeps-e", "sampler", "benchmark/diffusion/sampler.py",
      "return x0c, e + math.sqrt(ab_t / (1 - ab_t)) * (x0h - x0c)", "return x0c, e", "diffusion/test_sampler"),
    m("clip-x0-ignored-by-ddim", "sampler", "benchmark/diffusion/sampler.py",
      "return ddim_update(*self.clipped(x0h, e, step), step, noise.draw())",
      "return ddim_update(x0h, e, step, noise.draw())", "diffusion/test_sampler"),
    m("clip-x0-not-wired-into-cell", "sampler", "benchmark/cell.py",
      "clip_x0=self.task.data_range if spec.sampling.clip_x0 else None)", "clip_x0=None)", "test_cell", "diffusion/test_sampler"),
    m("clip-x0-dropped-by-sweep", "sampler", "benchmark/sweep.py",
      'flat = {k: v for k, v in exp.items() if k in names} | cell | {',
      'flat = {k: v for k, v in exp.items() if k in names and k != "clip_x0"} | cell | {', "diffusion/test_sampler"),
    m("clip-x0-not-in-variant-hash", "sampler", "benchmark/spec.py",
      '"(digits, images: [-1, 1])", neutral=False))', '"(digits, images: [-1, 1])", neutral=False, variant=False))',
      "diffusion/test_sampler"),
    m("sampler-law-c-par-wrong", "objectives", "benchmark/objectives/gaussian_inverse.py",
      "c_par = math.sqrt(st.ab_t * st.ab_prev) + k * math.sqrt(1.0 - st.ab_t)",
      "c_par = math.sqrt(st.ab_t * st.ab_prev) + k / math.sqrt(1.0 - st.ab_t)", "objectives/test_gaussian_inverse"),
    m("sampler-law-no-step-noise", "objectives", "benchmark/objectives/gaussian_inverse.py",
      "v_par, v_perp = c_par ** 2 * v_par + s2, c_perp ** 2 * v_perp + s2",
      "v_par, v_perp = c_par ** 2 * v_par, c_perp ** 2 * v_perp + s2", "objectives/test_gaussian_inverse"),
    m("sampler-posterior-prior-scale-inverted", "objectives", "benchmark/objectives/gaussian_inverse.py",
      "L = torch.eye(B.shape[1], dtype=torch.float64) / scale + B.T @ B / s2",
      "L = torch.eye(B.shape[1], dtype=torch.float64) * scale + B.T @ B / s2", "objectives/test_gaussian_inverse"),
    m("sampler-metrics-against-data-posterior", "objectives", "benchmark/objectives/gaussian_inverse.py",
      'out |= _scores(mean, cov, self.sampler_posterior_mean, self.sampler_posterior_cov, "_sampler")',
      'out |= _scores(mean, cov, self.posterior_mean, self.posterior_cov, "_sampler")', "objectives/test_gaussian_inverse"),
    m("sampler-floor-of-data-posterior", "objectives", "benchmark/objectives/gaussian_inverse.py",
      "self._sampler_reference[key] = _reference(n, self.sampler_u_mean, self.sampler_u_cov, g)",
      "self._sampler_reference[key] = _reference(n, self.u_mean, self.u_cov, g)", "objectives/test_gaussian_inverse"),
    m("sampler-law-of-any-basis", "objectives", "benchmark/objectives/gaussian_inverse.py",
      "and torch.allclose(model.A.detach().cpu().double(), self.A64, atol=1e-6)", "and True", "objectives/test_gaussian_inverse"),
    m("sampler-law-despite-clipping", "objectives", "benchmark/objectives/gaussian_inverse.py",
      'getattr(sampler, "clip_x0", None) is None', "True", "objectives/test_gaussian_inverse"),
    m("cell-binds-no-sampler", "objectives", "benchmark/cell.py",
      "            self.objective.bind_sampler(self.sampler)", "            pass", "test_cell", "objectives/test_gaussian_inverse"),
    m("report-drops-metric-notes", "report", "benchmark/report/build.py",
      '"metric_notes": _metric_notes(task, extra)', '"metric_notes": []', "report/test_build"),
    # --- the mixture task (benchmark/tasks/mixture) -----------------------------------------------
    m("mixture-posterior-weights-without-likelihood", "tasks", "benchmark/tasks/mixture/mixture.py", "return GaussianMixture(torch.softmax(self.log_weights + log_lik, 0), means, covs)", "return GaussianMixture(torch.softmax(self.log_weights, 0), means, covs)", "tasks/mixture/test_mixture"),
    m("mixture-posterior-noise-not-squared", "tasks", "benchmark/tasks/mixture/mixture.py", "S_y = H @ SHt + sigma_y ** 2 * eye_m", "S_y = H @ SHt + sigma_y * eye_m", "tasks/mixture/test_mixture"),
    m("mixture-posterior-mean-without-gain", "tasks", "benchmark/tasks/mixture/mixture.py",'means = self.means + torch.einsum("kdm,km->kd", gain, resid)', "means = self.means", "tasks/mixture/test_mixture"),
    m("mixture-posterior-covariance-unconditioned", "tasks", "benchmark/tasks/mixture/mixture.py", "covs = self.covs - gain @ SHt.transpose(-1, -2)", "covs = self.covs", "tasks/mixture/test_mixture"),
    m("mixture-tilt-weights-without-variance-term", "tasks", "benchmark/tasks/mixture/mixture.py", "log_w = self.log_weights + self.means @ theta + 0.5 * (S_theta @ theta)", "log_w = self.log_weights + self.means @ theta", "tasks/mixture/test_mixture"),
    m("mixture-tilt-means-unshifted", "tasks", "benchmark/tasks/mixture/mixture.py", "return GaussianMixture(torch.softmax(log_w, 0), self.means + S_theta, self.covs)", "return GaussianMixture(torch.softmax(log_w, 0), self.means, self.covs)", "tasks/mixture/test_mixture"),
    m("mixture-noised-means-unscaled", "tasks", "benchmark/tasks/mixture/mixture.py", "diff = x[:, None, :] - ab.sqrt() * mu[None]", "diff = x[:, None, :] - mu[None]", "tasks/mixture/test_mixture"),
    m("mixture-noised-covariance-without-noise", "tasks", "benchmark/tasks/mixture/mixture.py", "c = ab * lam[None] + (1 - ab)", "c = lam[None] + (1 - ab)", "tasks/mixture/test_mixture"),
    m("mixture-oracle-eps-scale", "tasks", "benchmark/tasks/mixture/mixture.py", "return (-(1 - ab).sqrt()[:, None] * score).to(x.dtype)", "return (-(1 - ab)[:, None] * score).to(x.dtype)", "tasks/mixture/test_mixture"),
    m("mixture-partial-mean-sign", "tasks", "benchmark/tasks/mixture/mixture.py", "s * (phi(alpha) - phi(beta))", "s * (phi(beta) - phi(alpha))", "tasks/mixture/test_mixture"),
    m("mixture-second-moment-without-variance", "tasks", "benchmark/tasks/mixture/mixture.py", "(self.means ** 2 + self.sds ** 2)", "self.means ** 2", "tasks/mixture/test_mixture"),
    m("mixture-quantile-newton-sign", "tasks", "benchmark/tasks/mixture/mixture.py", "step = q - (Fq - u) / self.pdf(q).clamp_min(1e-300)", "step = q + (Fq - u) / self.pdf(q).clamp_min(1e-300)", "tasks/mixture/test_mixture"),
    m("mixture-off-data-ignored", "tasks", "benchmark/tasks/mixture/metrics.py", "return torch.where(on, k, -1).reshape(x.shape[:-1])", "return k.reshape(x.shape[:-1])", "tasks/mixture/test_metrics"),
    m("mixture-weight-error-drops-off-data-bin", "tasks", "benchmark/tasks/mixture/metrics.py", "return 0.5 * (shares - w).abs().sum(-1)", "return 0.5 * (shares - w)[..., :-1].abs().sum(-1)", "tasks/mixture/test_metrics"),
    m("mixture-coverage-unweighted", "tasks", "benchmark/tasks/mixture/metrics.py", "return (visited.double() * self.target.weights).sum(-1)", "return visited.double().mean(-1)", "tasks/mixture/test_metrics"),
    m("mixture-ci-one-tail", "tasks", "benchmark/tasks/mixture/metrics.py", "tail = (1 - level) / 2", "tail = 1 - level", "tasks/mixture/test_metrics"),
    m("mixture-reference-draws-the-data", "tasks", "benchmark/tasks/mixture/metrics.py", "x, _ = self.target.sample(n, g, shape=(reps,))", "x, _ = self.data.sample(n, g, shape=(reps,))", "tasks/mixture/test_metrics"),
    m("mixture-inverse-H-sees-the-pair", "tasks", "benchmark/tasks/mixture/objectives.py", "Q, _ = torch.linalg.qr(G - torch.outer(d, d @ G))", "Q, _ = torch.linalg.qr(G)", "tasks/mixture/test_objectives"),
    m("mixture-inverse-reward-scale", "tasks", "benchmark/tasks/mixture/objectives.py", "return -self.residual_norm(x) ** 2 / (2 * self.sigma_y ** 2)", "return -self.residual_norm(x) ** 2 / self.sigma_y ** 2", "tasks/mixture/test_objectives"),
    m("mixture-tilt-reward-without-lam", "tasks", "benchmark/tasks/mixture/objectives.py", "return self.lam * (x @ self.theta)", "return x @ self.theta", "tasks/mixture/test_objectives"),
    m("mixture-between-target-scale-squared", "tasks", "benchmark/tasks/mixture/objectives.py", "target = data.condition(eye, b32.double(), scale)", "target = data.condition(eye, b32.double(), scale ** 2)", "tasks/mixture/test_objectives"),
    # --- objectives as components (issue 23) --------------------------------------------------------
    m("task-noisy-objectives-inverted", "objectives", "benchmark/tasks/base.py",
      'if callable(getattr(cls, "noisy_log_prob", None)))', 'if not callable(getattr(cls, "noisy_log_prob", None)))',
      "tasks/test_base", "test_registry"),
    m("objective-param-names-unchecked", "objectives", "benchmark/objectives/__init__.py",
      "unknown = [] if names is None else sorted(set(params) - set(names))", "unknown = []", "test_registry"),
    m("objective-param-values-unchecked", "objectives", "benchmark/objectives/__init__.py",
      "if check is not None:", "if check is None:", "test_registry"),
    m("builtin-objective-duplicates-allowed", "objectives", "benchmark/objectives/__init__.py",
      "if (task, cls.name) in seen:", "if False:", "test_registry"),
    m("builtin-objectives-for-every-task", "objectives", "benchmark/objectives/__init__.py",
      "return {cls.name: cls for cls in builtin_classes() if task_name in cls.tasks}",
      "return {cls.name: cls for cls in builtin_classes()}", "test_registry"),
    m("digits-network-files-ignore-objective", "tasks", "benchmark/tasks/digits.py",
      'kinds = tuple(getattr(objective_class, "needs_networks", ())) + ("evaluator",)', 'kinds = ("evaluator",)',
      "test_registry"),
    m("digits-label-needs-no-noisy-classifier", "objectives", "benchmark/objectives/digits.py",
      'needs_networks = ("classifier", "noisy_classifier")', 'needs_networks = ("classifier",)',
      "test_registry", "objectives/test_digits"),
    # --- the workflow plan (benchmark/plan.py, pretraining.py) ----------------------------------------
    m("plan-gallery-of-every-task", "workflow", "benchmark/plan.py",
      '        return [cell_file(self.results, c, "png") for c, cell in self._chosen(selected).items()\n                if cell.spec.task in self.image_tasks]',
      '        return [cell_file(self.results, c, "png") for c, cell in self._chosen(selected).items()]', "test_plan"),
    m("pretrain-chain-misses-the-needed", "workflow", "benchmark/pretraining.py",
      "if network_needs(t, n) or any(split_member(n)[0] in network_needs(t, m) for u, m in targets if u == t)]",
      "if network_needs(t, n)]", "test_pretraining", "test_plan"),
    # --- the sampler -------------------------------------------------------------------------------
    m("renoise-variance-not-std", "sampler", "benchmark/diffusion/sampler.py",
      "return math.sqrt(step.a_t) * x_prev + math.sqrt(1 - step.a_t) * z",
      "return math.sqrt(step.a_t) * x_prev + (1 - step.a_t) * z", "methods/test_shen", "diffusion/test_sampler"),
    m("ddim-sigma-without-sqrt-1-a", "sampler", "benchmark/diffusion/sampler.py",
      "math.sqrt((1 - self.ab_prev) / (1 - self.ab_t)) * math.sqrt(1 - self.a_t)",
      "math.sqrt((1 - self.ab_prev) / (1 - self.ab_t))", "denoisers/test_oracle", "diffusion/test_sampler"),
    m("ddim-e-coefficient-ignores-sigma", "sampler", "benchmark/diffusion/sampler.py",
      "math.sqrt(max(1 - step.ab_prev - s * s, 0.0)) * e", "math.sqrt(max(1 - step.ab_prev, 0.0)) * e",
      "denoisers/test_oracle", "diffusion/test_sampler"),
    m("tweedie-variance-not-std", "sampler", "benchmark/diffusion/sampler.py",
      "return (x_t - math.sqrt(1 - ab_t) * e) / math.sqrt(ab_t)", "return (x_t - (1 - ab_t) * e) / math.sqrt(ab_t)",
      "denoisers/test_oracle", "diffusion/test_sampler"),
    m("vjp-counter-counts-calls", "sampler", "benchmark/diffusion/counting.py",
      "getattr(ctx.costs, ctx.field) + grad.shape[0]", "getattr(ctx.costs, ctx.field) + 1",
      "test_contract", "diffusion/test_counting"),
    m("forward-counter-counts-calls", "sampler", "benchmark/diffusion/counting.py",
      "self.costs.denoiser_forwards += x.shape[0]", "self.costs.denoiser_forwards += 1", "test_contract", "diffusion/test_counting"),
    m("objective-counter-counts-calls", "sampler", "benchmark/diffusion/counting.py",
      "    def __call__(self, x: torch.Tensor) -> torch.Tensor:\n        self.costs.objective_evals += x.shape[0]",
      "    def __call__(self, x: torch.Tensor) -> torch.Tensor:\n        self.costs.objective_evals += 1",
      "test_contract", "diffusion/test_counting"),
    m("one-seed-for-every-chain", "sampler", "benchmark/diffusion/noise.py",
      "g.manual_seed(int(s))", "g.manual_seed(0)", "denoisers/test_oracle", "diffusion/test_noise"),
    m("cosine-schedule-offset", "sampler", "benchmark/diffusion/schedules.py",
      "f = torch.cos((t + s) / (1 + s) * math.pi / 2) ** 2", "f = torch.cos((t + s) / (1 + 2 * s) * math.pi / 2) ** 2",
      "diffusion/test_schedules"),
    m("linearise-target-minus-delta", "sampler", "benchmark/optimize.py",
      "(y + chain_scalar(delta, y.dtype)).detach()", "(y - chain_scalar(delta, y.dtype)).detach()",
      "test_optimize", "test_contract"),
    # --- objectives --------------------------------------------------------------------------------
    m("quadratic-target-sign", "objectives", "benchmark/objectives/quadratic.py",
      "return self.top - (x @ self.theta - self.target) ** 2", "return self.top - (x @ self.theta + self.target) ** 2",
      "methods/test_freedom", "objectives/test_quadratic"),
    m("quadratic-optimum-on-support", "objectives", "benchmark/objectives/quadratic.py",
      "self.optimum_on_support = top if on else top - target ** 2",
      "self.optimum_on_support = top if on else top - target", "objectives/test_quadratic"),
    m("linear-scaled", "objectives", "benchmark/objectives/linear.py",
      "return x @ self.theta", "return 2 * x @ self.theta", "denoisers/test_oracle", "objectives/test_linear"),
    m("negnorm-norm-over-the-batch", "objectives", "benchmark/objectives/negnorm.py",
      "self.top - self.scale * torch.linalg.vector_norm(x - self.b, dim=-1)",
      "self.top - self.scale * torch.linalg.vector_norm(x - self.b, dim=-1) ** 2", "methods/test_shen", "objectives/test_negnorm"),
    m("negnorm-optimum-on-support-sign", "objectives", "benchmark/objectives/negnorm.py",
      "self.optimum_on_support = top - scale * float(", "self.optimum_on_support = top + scale * float(",
      "methods/test_shen", "objectives/test_negnorm"),
    m("inverse-squared-residual", "objectives", "benchmark/objectives/inverse.py",
      "return -self.residual_norm(x)", "return -self.residual_norm(x) ** 2", "tasks/test_digits", "objectives/test_inverse"),
    m("inpaint-mask-upper-half", "objectives", "benchmark/objectives/inpaint.py",
      "m[:, H // 2:, :] = 0", "m[:, :H // 2, :] = 0", "tasks/test_digits", "objectives/test_inpaint"),
    m("superres-max-pool", "objectives", "benchmark/objectives/superres.py",
      "return F.avg_pool2d(x, self.factor)", "return F.max_pool2d(x, self.factor)", "tasks/test_digits", "objectives/test_superres"),
    m("label-probability-not-log", "objectives", "benchmark/objectives/label.py",
      "return F.log_softmax(self.classifier(x), dim=-1).gather(-1, c[:, None]).squeeze(-1)",
      "return F.softmax(self.classifier(x), dim=-1).gather(-1, c[:, None]).squeeze(-1)", "tasks/test_digits", "objectives/test_label"),
    m("reward-head-unstandardised", "objectives", "benchmark/objectives/reward.py",
      "return ((self.feature_net.features(x) - self.mu) / self.s) @ self.w",
      "return (self.feature_net.features(x) - self.mu) @ self.w", "tasks/test_digits", "objectives/test_reward"),
    m("chain-index-ignores-chains", "objectives", "benchmark/objectives/base.py",
      "return torch.arange(B, device=device) % n % L", "return torch.arange(B, device=device) % L",
      "tasks/test_digits", "objectives/test_base"),
    m("gaussian-inverse-half-missing", "objectives", "benchmark/objectives/gaussian_inverse.py",
      "return -((self.y - x @ self.H.T) ** 2).sum(-1) / (2 * self.sigma_y ** 2)",
      "return -((self.y - x @ self.H.T) ** 2).sum(-1) / (self.sigma_y ** 2)", "objectives/test_gaussian_inverse"),
    # --- the report's aggregation, build and figures -----------------------------------------------
    m("cost-table-keeps-round-0", "report", "benchmark/report/aggregate.py",
      '(df["round"] >= 1)', '(df["round"] >= 0)', "report/test_aggregate"),
    m("unguided-is-the-exact-label-none", "report", "benchmark/report/aggregate.py",
      "return methods.astype(str).str.split(n=1).str[0] == UNGUIDED", "return methods.astype(str) == UNGUIDED",
      "report/test_aggregate"),
    m("unguided-caption-exact-label", "report", "benchmark/report/build.py",
      '"has_unguided": bool(agg.is_unguided(costs["method"]).any())',
      '"has_unguided": bool((costs["method"] == agg.UNGUIDED).any())', "report/test_build", "report/test_aggregate"),
    m("wall-ratio-ignores-the-grid", "report", "benchmark/report/aggregate.py",
      'unguided = per_cell.join(same_grid, on=GRID_KEYS)["unguided_wall"]',
      'unguided = per_cell.join(same_grid.iloc[:0], on=GRID_KEYS)["unguided_wall"]', "report/test_aggregate"),
    m("t-quantile-one-sided", "report", "benchmark/report/aggregate.py",
      "return _t_ppf((1 + level) / 2, float(df))", "return _t_ppf(level, float(df))", "report/test_aggregate"),
    m("ci-with-population-sd", "report", "benchmark/report/aggregate.py",
      "t_quantile(n - 1, level) * float(v.std(ddof=1))", "t_quantile(n - 1, level) * float(v.std(ddof=0))",
      "report/test_aggregate"),
    m("summary-ci-without-sqrt-n", "report", "benchmark/report/aggregate.py",
      'out["ci"] = t * out["sd"].to_numpy(dtype=float) / np.sqrt(out["n"].to_numpy(dtype=float))',
      'out["ci"] = t * out["sd"].to_numpy(dtype=float)', "report/test_aggregate"),
    m("best-strength-is-the-worst", "report", "benchmark/report/aggregate.py",
      'best = out.dropna(subset=["reward"]).groupby("method")["reward"].idxmax()',
      'best = out.dropna(subset=["reward"]).groupby("method")["reward"].idxmin()', "report/test_aggregate"),
    m("final-values-of-failed-cells-kept", "report", "benchmark/report/aggregate.py",
      'out["value"] = out["value"].where(out["status"] == "ok")', 'out["value"] = out["value"]', "report/test_aggregate"),
    m("curves-include-failed-cells", "report", "benchmark/report/aggregate.py",
      'rows = df[(df["metric"] == metric) & (df["status"] == "ok")]', 'rows = df[df["metric"] == metric]',
      "report/test_aggregate", "report/test_build"),
    m("pareto-needs-both-strict", "report", "benchmark/report/aggregate.py",
      "((xs < xs[i]) | (ys > ys[i]))", "((xs < xs[i]) & (ys > ys[i]))", "report/test_aggregate"),
    m("last-round-is-the-first", "report", "benchmark/report/aggregate.py",
      'out["last_round"] = g["round"].max()', 'out["last_round"] = g["round"].min()', "report/test_aggregate"),
    m("variants-not-tagged-by-grid", "report", "benchmark/report/aggregate.py",
      'varies = df.groupby(PANEL_KEYS, dropna=False)[col].transform("nunique") > 1',
      'varies = df.groupby(PANEL_KEYS, dropna=False)[col].transform("nunique") > 2', "report/test_aggregate"),
    m("param-tags-need-three-variants", "report", "benchmark/report/aggregate.py",
      "        if len(variants) < 2:\n            continue", "        if len(variants) < 3:\n            continue",
      "report/test_aggregate", "report/test_figures"),
    m("one-minus-ssim-is-ssim", "report", "benchmark/report/directions.py",
      'DERIVED_METRICS = {"1-ssim": ("ssim", lambda v: 1.0 - v)}',
      'DERIVED_METRICS = {"1-ssim": ("ssim", lambda v: v)}',
      "report/test_directions"),
    m("off-scale-points-not-at-the-edge", "report", "benchmark/report/figures.py",
      'pts["shown"] = pts["reward"].clip(*limits) if limits else pts["reward"]', 'pts["shown"] = pts["reward"]',
      "report/test_figures"),
    m("robust-limits-one-iqr", "report", "benchmark/report/figures.py",
      "lo, hi = q1 - k * span, q3 + k * span", "lo, hi = q1 - span, q3 + span", "report/test_figures"),
    # --- TFG's beam search -------------------------------------------------------------------------
    m("beam-keeps-the-worst", "tune", "benchmark/tune.py",
      "key=lambda t: _rank(t.score), reverse=True)[:beam]", "key=lambda t: _rank(t.score))[:beam]", "test_tune"),
    m("cell-score-reads-round-0", "tune", "benchmark/tune.py",
      'r["round"] == 1 and r["status"] == "ok"', 'r["round"] == 0 and r["status"] == "ok"', "test_tune"),
    m("cell-score-ignores-direction", "tune", "benchmark/tune.py",
      "return values[0] if maximise else -values[0]", "return values[0]", "test_tune"),
    # --- the verdict (benchmark/report/verdict.py) ------------------------------------------------
    m("best-variant-by-held-out-reward", "report", "benchmark/report/verdict.py",
      'if r["method"] not in best or r["tuning_reward"] > best[r["method"]]["tuning_reward"]:',
      'if r["method"] not in best or r["reward"] > best[r["method"]]["reward"]:', "report/test_verdict"),
    m("failed-cell-admissible-when-finite", "report", "benchmark/report/verdict.py",
      'bad = setting[setting["status"] != "ok"]', 'bad = setting[setting["status"] == "no such status"]',
      "report/test_verdict"),
    m("gate-failure-leaves-the-summary", "report", "benchmark/report/summary.py",
      'failed = sorted(set(panel.get("ran", evaluated)) - set(evaluated))', "failed = []", "report/test_summary"),
    m("incapable-panel-counts-as-a-loss", "report", "benchmark/report/summary.py",
      "shares = [(w + t / 2) / (w + t + l) for", "shares = [(w + t / 2) / max(used, 1) for", "report/test_summary"),
    # --- reward models and standard image metrics (issue 26) -------------------------------------------
    m("reward-weights-not-weights-only", "objectives", "benchmark/rewards/__init__.py",
      'map_location="cpu", weights_only=True)', 'map_location="cpu", weights_only=False)', "rewards/test_encoders"),
    m("kid-biased-within", "objectives", "benchmark/images/metrics.py",
      "within = (k11.sum() - k11.diagonal().sum()) / (m * (m - 1))", "within = k11.sum() / (m * m)",
      "images/test_metrics"),
    m("lpips-unnormalised", "objectives", "benchmark/images/metrics.py",
      "d = d + ((self.unit(a) - self.unit(b)).square() * w).sum(1).mean((-2, -1))",
      "d = d + ((a - b).square() * w).sum(1).mean((-2, -1))", "images/test_metrics"),
    m("aesthetic-no-normalise", "objectives", "benchmark/rewards/aesthetic.py",
      "e = e / e.norm(dim=-1, keepdim=True).clamp_min(1e-12)", "e = e", "rewards/test_aesthetic"),
    m("latent-cfg-ignores-the-sampling-setting", "sampler", "benchmark/denoisers/latent.py",
      "w = DEFAULT_CFG if cfg is None else cfg", "w = DEFAULT_CFG", "denoisers/test_latent"),
    m("sd3-cfg-ignores-the-sampling-setting", "sampler", "benchmark/denoisers/latent_flow.py",
      "w = DEFAULT_CFG if cfg is None else cfg", "w = DEFAULT_CFG", "denoisers/test_latent_flow"),
    m("cfg-accepted-by-every-loader", "sampler", "benchmark/spec.py",
      "if not DENOISERS[self.denoiser.loader].takes_cfg:", "if False:", "test_spec"),
    m("pickscore-fixed-scale", "objectives", "benchmark/rewards/pickscore.py",
      "self.scale = math.exp(s)", "self.scale = 100.0", "rewards/test_pickscore"),
    m("clip-cosine-image-unnormalised", "objectives", "benchmark/rewards/clip_score.py",
      "cos = (e_i * e_t).sum(-1) / (e_i.norm(dim=-1) * e_t.norm(dim=-1)).clamp_min(1e-12)",
      "cos = (e_i * e_t).sum(-1) / e_t.norm(dim=-1).clamp_min(1e-12)", "rewards/test_clip_score", "rewards/test_pickscore"),
    # --- one declaration per setting (issue 23 part 1) -------------------------------------------------
    m("variant-when-ignored", "config", "benchmark/spec.py",
      "                        or (when and getattr(obj, when[0]) != when[1])):", "                        or False):",
      "test_schema"),
    m("sweep-drops-a-run-setting", "config", "benchmark/sweep.py",
      'flat = {k: v for k, v in exp.items() if k in names} | cell | {',
      'flat = {k: v for k, v in exp.items() if k in names and k != "samples"} | cell | {', "test_schema"),
    m("pretrain-cli-ignores-declared-defaults", "workflow", "benchmark/pretraining.py",
      "    return defaults | dict(given)", "    return dict(given)", "test_pretraining", "test_schema"),
    m("eta-range-not-generated", "config", "benchmark/spec.py", "minimum=0, maximum=1))", "minimum=0))", "test_schema"),
    m("param-error-not-keyed", "config", "benchmark/config_checks.py",
      "key = f\"{mwhere}.{'params' if param in params else section.split('.')[0]}\"", "key = mwhere",
      "test_config_checks"),
    # --- the posterior samplers and SVDD (issue 24) ----------------------------------------------------
    m("skip-ignores-needs-operator", "methods", "benchmark/methods/base.py",
      "if self.needs_operator and not has_operator(objective):", "if False:",
      "methods/test_base", "objectives/test_operator"),
    m("superres-adjoint-without-f2", "objectives", "benchmark/objectives/superres.py",
      'return F.interpolate(v, scale_factor=self.factor, mode="nearest") / self.factor ** 2',
      'return F.interpolate(v, scale_factor=self.factor, mode="nearest")', "objectives/test_operator", "objectives/test_superres"),
    m("pigdm-scale-ab-prev", "methods", "benchmark/methods/pigdm.py",
      'c = math.sqrt(step.ab_t) * (math.sqrt(step.ab_prev) if self.coefficient == "awd" else 1.0)',
      'c = math.sqrt(step.ab_prev) * (math.sqrt(step.ab_prev) if self.coefficient == "awd" else 1.0)',
      "methods/test_pigdm"),
    m("pigdm-drops-r2-weight", "methods", "benchmark/methods/pigdm.py",
      "return objective.AT(objective.solve(residual, 1.0, s2 / r2))",
      "return objective.AT(objective.solve(residual, 1.0, s2))", "methods/test_pigdm"),
    m("ddnm-plus-lambda-always-1", "methods", "benchmark/methods/ddnm.py",
      "    return k / nu, s", "    return 1.0, s", "methods/test_ddnm", "methods/test_pigdm"),
    m("diffpir-rho-without-ab", "methods", "benchmark/methods/diffpir.py",
      "return self.lam * sigma ** 2 * step.ab_t / (1.0 - step.ab_t)",
      "return self.lam * sigma ** 2 / (1.0 - step.ab_t)", "methods/test_diffpir", "methods/test_pigdm"),
    m("daps-langevin-noise-halved", "methods", "benchmark/methods/daps.py",
      "x = x + lr * (g + (x0h - x) / r2) + math.sqrt(2 * lr) * noise.draw()",
      "x = x + lr * (g + (x0h - x) / r2) + math.sqrt(lr) * noise.draw()", "methods/test_daps"),
    m("daps-r-without-1-minus-ab", "methods", "benchmark/methods/daps.py",
      "return (1.0 - step.ab_t) / step.ab_t if self.r_rule", "return 1.0 / step.ab_t if self.r_rule",
      "methods/test_daps"),
    m("reddiff-data-term-sign", "methods", "benchmark/methods/reddiff.py",
      "grad = self.lambda_t(step.ab_t) * (e - eps) - g", "grad = self.lambda_t(step.ab_t) * (e - eps) + g",
      "methods/test_reddiff"),
    m("reddiff-weight-squared", "methods", "benchmark/methods/reddiff.py",
      "return self.lam * math.sqrt((1.0 - ab_t) / ab_t)", "return self.lam * (1.0 - ab_t) / ab_t",
      "methods/test_reddiff"),
    m("svdd-argmin", "methods", "benchmark/methods/svdd.py",
      "pick = score.argmax(0)", "pick = score.argmin(0)", "methods/test_svdd"),
    m("svdd-pm-value-at-t", "methods", "benchmark/methods/svdd.py",
      "v = pguide.objective(tweedie(x_c, e_c, sampler.steps[i].ab_prev))",
      "v = pguide.objective(tweedie(x_c, e_c, sampler.steps[i].ab_t))", "methods/test_svdd"),
    m("svdd-softmax-without-lambda", "methods", "benchmark/methods/svdd.py",
      'return v if self.select == "argmax" else lam * v', "return v", "methods/test_svdd"),
    m("svdd-mc-mean-instead-of-log-mean-exp", "methods", "benchmark/methods/svdd.py",
      "return torch.logsumexp(lam * r, 0) - math.log(K)", "return lam * r.mean(0)", "methods/test_svdd"),
    m("svdd-pm-cost-pays-forward-twice", "methods", "benchmark/methods/svdd.py",
      "return (1 + M * (S - 1), 0, M * (S - 1), 0)", "return (M * S, 0, M * (S - 1), 0)", "methods/test_svdd"),
    # --- latent and flow models (issue 26) --------------------------------------------------------------
    m("flow-eps-sign", "objectives", "benchmark/denoisers/flow.py",
      "    return x_s + (1 - s) * v\n", "    return x_s + s * v\n", "denoisers/test_flow"),
    m("flow-no-vp-rescale", "objectives", "benchmark/denoisers/flow.py",
      "out = self.model(x_s.to(dtype), (s.flatten() * self.N).to(dtype))",
      "out = self.model(x.to(dtype), (s.flatten() * self.N).to(dtype))", "denoisers/test_flow"),
    m("pigdm-awd-coefficient-ignored", "methods", "benchmark/methods/pigdm.py",
      'c = math.sqrt(step.ab_t) * (math.sqrt(step.ab_prev) if self.coefficient == "awd" else 1.0)',
      "c = math.sqrt(step.ab_t)", "methods/test_pigdm"),
    m("gate-reference-pools-eta", "report", "benchmark/report/verdict.py",
      "float(eta) if eta is not None and pd.notna(eta) else None,", "None,", "report/test_verdict"),
    m("gate-reference-pools-cfg", "report", "benchmark/report/verdict.py",
      "float(cfg) if cfg is not None and pd.notna(cfg) else None)", "None)", "report/test_verdict"),
    m("latent-cfg-base", "objectives", "benchmark/denoisers/latent.py",
      "return out_u + cfg * (out_c - out_u)", "return out_c + cfg * (out_c - out_u)", "denoisers/test_latent",
      "denoisers/test_latent_flow"),
    m("latent-prompt-rows-ignore-chains", "objectives", "benchmark/denoisers/latent.py",
      "return (torch.arange(B, device=device) % n) % P", "return torch.arange(B, device=device) % P",
      "denoisers/test_latent"),
    m("flux-latent-channels-packed", "objectives", "benchmark/denoisers/latent.py",
      'return int(cfg.get("in_channels", 64)) // 4, int(h) // down, int(w) // down',
      'return int(cfg.get("in_channels", 64)), int(h) // down, int(w) // down', "denoisers/test_latent_flow"),
    m("embed-negative-is-a-prompt", "objectives", "benchmark/denoisers/latent.py",
      "neg, neg_pooled = encode(pipe, [negative], device)", "neg, neg_pooled = encode(pipe, list(prompts)[:1], device)",
      "denoisers/test_latent"),
    m("sd3-cfg-halves-swapped", "objectives", "benchmark/denoisers/latent_flow.py",
      "encoder_hidden_states=torch.cat([self.uncond[j], c]).to(dtype)",
      "encoder_hidden_states=torch.cat([c, self.uncond[j]]).to(dtype)", "denoisers/test_latent_flow"),
    m("sd3-pooled-halves-swapped", "objectives", "benchmark/denoisers/latent_flow.py",
      "pooled_projections=torch.cat([self.uncond_pooled[k], p]).to(dtype)",
      "pooled_projections=torch.cat([p, self.uncond_pooled[k]]).to(dtype)", "denoisers/test_latent_flow"),
    m("dynamic-shift-not-exponentiated", "objectives", "benchmark/denoisers/latent_flow.py",
      "return math.exp(mu), mu", "return mu, mu", "denoisers/test_latent_flow"),
    m("flux-timestep-not-scaled", "objectives", "benchmark/denoisers/latent_flow.py",
      "timestep=(timestep / FLUX_TIMESTEP_SCALE).to(dtype)", "timestep=timestep.to(dtype)",
      "denoisers/test_latent_flow"),
    m("flux-patch-transposed", "objectives", "benchmark/denoisers/latent_flow.py",
      "return z.view(B, C, h // 2, 2, w // 2, 2).permute(0, 2, 4, 1, 3, 5)",
      "return z.view(B, C, h // 2, 2, w // 2, 2).permute(0, 2, 4, 1, 5, 3)", "denoisers/test_latent_flow"),
    m("flux-guidance-ignored", "objectives", "benchmark/denoisers/latent_flow.py",
      "torch.full((B,), self.guidance, device=x_s.device)", "torch.full((B,), 3.5, device=x_s.device)",
      "denoisers/test_latent_flow"),
    m("flux-tokens-unpacked-for-the-shift", "objectives", "benchmark/denoisers/latent_flow.py",
      "patch = 2 if cls == FLUX_CLASS else int(transformer.config.patch_size)",
      "patch = int(transformer.config.patch_size)", "denoisers/test_latent_flow"),
    m("latent-decode-scale", "objectives", "benchmark/denoisers/latent.py",
      "z = z / self.scaling_factor + self.shift_factor", "z = z * self.scaling_factor + self.shift_factor",
      "denoisers/test_latent"),
    m("flow-model-read-as-eps", "objectives", "benchmark/denoisers/hf.py",
      'if "FlowMatch" in str(scheduler_config.get("_class_name", "")):', "if False:", "denoisers/test_flow"),
    m("has-operator-blind-to-counting", "objectives", "benchmark/objectives/operator.py",
      "    while isinstance(objective, CountingObjective):", "    while False:", "objectives/test_operator"),
    m("daps-last-annealing-step-renoised", "methods", "benchmark/methods/daps.py",
      "if not self.anneals(step.ab_prev):", "if step.ab_prev >= 1.0:", "methods/test_daps"),
    m("daps-never-skips-below-sigma-min", "methods", "benchmark/methods/daps.py",
      "        if not self.anneals(step.ab_t):\n            return x_t", "        if False:\n            return x_t",
      "methods/test_daps"),
]


def check_snippets(mutations: list[Mutation], root: Path) -> list[str]:
    """Problems that make the list out of date: a missing file or test file, a snippet found 0 or >1 times."""
    problems = []
    for mu in mutations:
        path = root / mu.file
        if not path.exists():
            problems.append(f"{mu.name}: {mu.file} does not exist")
            continue
        n = path.read_text().count(mu.original)
        if n != 1:
            problems.append(f"{mu.name}: the original snippet occurs {n} times in {mu.file} (must be once):\n"
                            f"    {mu.original!r}")
        if not any((root / t).exists() for t in mu.tests):
            problems.append(f"{mu.name}: none of its test files exists: {list(mu.tests)}")
    return problems


def scratch_copy(dest: Path) -> Path:
    repo = dest / "repo"
    shutil.copytree(ROOT, repo, ignore=IGNORED, symlinks=True)
    return repo


def pytest_cmd(tests: list[str], fast_tier: bool) -> list[str]:
    return [sys.executable, "-m", "pytest", "-x", "-q", "-m", "not slow", "-p", "no:cacheprovider",
            *(["tests"] if fast_tier else tests)]


def run(cmd: list[str], repo: Path, timeout: int = TIMEOUT_S) -> tuple[int | None, str, float]:
    """(exit status, or None on timeout; the output's tail; seconds)."""
    # The scratch copy's package first on the path: the virtualenv's editable install points at the
    # working tree, which must not be what the tests import.
    path = os.pathsep.join(p for p in (str(repo), os.environ.get("PYTHONPATH", "")) if p)
    env = {**os.environ, "PYTHONPATH": path, "PYTHONDONTWRITEBYTECODE": "1"}
    start = time.monotonic()
    try:
        proc = subprocess.run(cmd, cwd=repo, env=env, capture_output=True, text=True, timeout=timeout)
    except subprocess.TimeoutExpired:
        return None, "", time.monotonic() - start
    return proc.returncode, (proc.stdout + proc.stderr)[-3000:], time.monotonic() - start


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("names", nargs="*", help="mutations to run (default: all)")
    parser.add_argument("--list", action="store_true", help="list the mutations and their tests, run nothing")
    parser.add_argument("--fast-tier", action="store_true", help="run the whole fast tier for every mutation")
    parser.add_argument("--no-baseline", action="store_true", help="skip the unmutated run of the mapped tests")
    args = parser.parse_args(argv)

    unknown = sorted(set(args.names) - {mu.name for mu in MUTATIONS})
    if unknown:
        print(f"unknown mutation(s): {unknown}", file=sys.stderr)
        return 2
    chosen = [mu for mu in MUTATIONS if not args.names or mu.name in args.names]
    if args.list:
        for mu in chosen:
            print(f"{mu.area:10s} {mu.name:40s} {mu.file}  ->  {' '.join(mu.tests)}")
        return 0
    problems = check_snippets(chosen, ROOT)
    if problems:
        print("The mutation list is out of date with the code:\n" + "\n".join(problems), file=sys.stderr)
        return 2

    with tempfile.TemporaryDirectory(prefix="guidebench-mutations-") as tmp:
        repo = scratch_copy(Path(tmp))
        where = subprocess.run([sys.executable, "-c", "import benchmark; print(benchmark.__file__)"], cwd=repo,
                               env={**os.environ, "PYTHONPATH": str(repo)}, capture_output=True, text=True)
        if not where.stdout.strip().startswith(str(repo)):
            print(f"the scratch copy's package is not the one imported: {where.stdout}{where.stderr}", file=sys.stderr)
            return 2
        test_files = {mu.name: [t for t in mu.tests if (repo / t).exists()] for mu in chosen}
        if not args.no_baseline:
            union = sorted({t for ts in test_files.values() for t in ts})
            rc, out, secs = run(pytest_cmd(union, args.fast_tier), repo)
            print(f"baseline (no mutation): {'pass' if rc == 0 else 'FAIL'} in {secs:.0f} s")
            if rc != 0:
                print(out, file=sys.stderr)
                print("the unmutated tests must pass before a mutation can be judged", file=sys.stderr)
                return 2

        survived, results = [], []
        for mu in chosen:
            path = repo / mu.file
            original = path.read_text()
            path.write_text(original.replace(mu.original, mu.replacement, 1))
            try:
                rc, out, secs = run(pytest_cmd(test_files[mu.name], args.fast_tier), repo)
            finally:
                path.write_text(original)
            if rc == 0:
                verdict = "SURVIVED"
                survived.append(mu)
            elif rc is None:
                verdict = "killed (timeout)"
            elif rc == 5:
                verdict = "SURVIVED (no tests ran)"
                survived.append(mu)
            else:
                verdict = "killed" if rc == 1 else f"killed (pytest exit {rc})"
            tests = "fast tier" if args.fast_tier else " ".join(Path(t).stem for t in test_files[mu.name])
            results.append((mu, verdict))
            print(f"{verdict:24s} {mu.area:10s} {mu.name:40s} {secs:5.0f} s  [{tests}]", flush=True)

    print(f"\n{len(chosen) - len(survived)} of {len(chosen)} mutations killed; {len(survived)} survived"
          + (":" if survived else "."))
    for mu in survived:
        print(f"  {mu.area}: {mu.name} ({mu.file})")
    return 1 if survived else 0


if __name__ == "__main__":
    sys.exit(main())
