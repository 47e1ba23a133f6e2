"""Jacobian diagnostics of a trained denoiser against the exact (oracle) one, per noise level.

Why: gradient guidance through the denoiser (G_loss, DPS, ...) follows the VJP
    v = J^T g = grad_{x_t} <g, x0h(x_t)>,   J = d x0h / d x_t,
    x0h(x_t) = (x_t - sqrt(1 - ab_t) eps(x_t, t)) / sqrt(ab_t)            (Tweedie, DESIGN.md §2)
and a network whose eps-loss is within a fraction of a percent of the oracle's can still have a J
that differs a lot: on the subspace task the oracle's x0h = sqrt(ab_t) P x_t (P = A A^T, the projector
onto span(A)), so its J = sqrt(ab_t) P and its VJP J^T g = sqrt(ab_t) P g lies in span(A) exactly,
while a network's J leaks off the subspace; for an objective whose gradient is mostly off span(A)
(`quadratic_off`: ||(I - P) g|| = 9 ||P g||) that leak inflates G_loss's step-size denominator
h ||J^T g||^2 and spends guidance off the support.

What is measured (`jacobian_diagnostics`): x_0 ~ task.sample_data (n samples), eps ~ N(0, I), both from
`seed`; at each level, t = round(level * T) (half up, clipped to 1..T) and x_t = sqrt(ab_t) x_0 + sqrt(1 - ab_t) eps.
For each direction (an objective r of the task: g = grad r(x_0), one per sample, the gradient guidance
would follow near the data) and for both networks, x0h(x_t) and v = J^T g per sample (one batched VJP).
Per level, each a mean over the n samples (float32 computation, float64 means):
    vjp_norm_ratio    = mean_i ||v_net,i|| / ||v_or,i||                          (1 for a perfect J)
    vjp_cosine        = mean_i <v_net,i, v_or,i> / (||v_net,i|| ||v_or,i||)       (1)
    vjp_share_in_span = mean_i ||P v_net,i||^2 / ||v_net,i||^2                     (the oracle's: 1)
    x0h_error         = mean_i ||x0h_net,i - x0h_or,i|| / ||x0h_or,i||             (0; per-sample relative
                        error, then the mean; the same for every direction, repeated in each for a flat table)
`vjp_share_in_span` needs the task's projector (`task.project`, x -> P x); a task without one gets no
such entry.

Output layout (JSON-able: str keys, float values):
    {"settings": {"levels": [0.1, ...], "timesteps": [20, ...], "n": 512, "seed": 0},
     "<objective>": {"0.1": {"vjp_norm_ratio": ..., "vjp_cosine": ..., "vjp_share_in_span": ...,
                             "x0h_error": ...},
                     ...,                                   # one entry per level, keyed f"{level:g}"
                     "mean": {same four keys, each the mean over the levels}},
     ...}
e.g. result["quadratic_off"]["0.5"]["vjp_share_in_span"], and result["quadratic_off"]["mean"] for a
report table next to the eps-loss.
"""

from __future__ import annotations

import math
from collections.abc import Iterable, Mapping

import torch

from benchmark.diffusion.noise import derive_seed

METRICS = ("vjp_norm_ratio", "vjp_cosine", "vjp_share_in_span", "x0h_error")
LEVELS = (0.1, 0.3, 0.5, 0.7, 0.9)


def _device_of(module) -> torch.device:
    for tensor in (*module.parameters(), *module.buffers()):
        return tensor.device
    return torch.device("cpu")


def _objectives(task, directions) -> dict:
    """name -> reward callable r(x): [B, D] -> [B]; `directions` is None (all the task's objectives),
    objective names, or a mapping name -> callable."""
    if directions is None:
        directions = task.objectives
    if isinstance(directions, str):
        directions = (directions,)
    if isinstance(directions, Mapping):
        return dict(directions)
    return {name: task.objective(name) for name in directions}


def direction_gradients(task, directions, x0: torch.Tensor) -> dict[str, torch.Tensor]:
    """g = grad r(x_0) per sample for each objective: name -> [n, D] float32 (on x0's device)."""
    out = {}
    for name, r in _objectives(task, directions).items():
        if isinstance(r, torch.nn.Module):
            r = r.to(x0.device)
        with torch.enable_grad():
            x = x0.detach().clone().requires_grad_(True)
            (g,) = torch.autograd.grad(r(x).sum(), x)
        out[name] = g.detach().float()
    return out


def _x0h_and_vjp(net, x_t: torch.Tensor, t: int, ab_t: float, G: torch.Tensor):
    """(x0h [n, D], v = J^T g [K, n, D]) for K directions G: [K, n, D]: the K copies of x_t go through
    the network as one batch of K n rows, and one backward gives every per-sample VJP (each row's
    output depends on its own input only)."""
    K, n = G.shape[:2]
    with torch.enable_grad():
        x = x_t.repeat(K, *([1] * (x_t.dim() - 1))).detach().requires_grad_(True)
        tt = torch.full((K * n,), t, dtype=torch.long, device=x.device)
        e = net(x, tt)
        x0h = (x - math.sqrt(1 - ab_t) * e) / math.sqrt(ab_t)
        (v,) = torch.autograd.grad((G.reshape(K * n, *G.shape[2:]) * x0h).sum(), x)
    return x0h[:n].detach(), v.reshape(G.shape)


def _per_sample_norm(x: torch.Tensor, sample_ndim: int = 1) -> torch.Tensor:
    """Euclidean norm over the last `sample_ndim` dimensions (one sample's): [..., *shape] -> [...]."""
    return torch.linalg.vector_norm(x.flatten(-sample_ndim) if sample_ndim > 1 else x, dim=-1)


def _mean(x: torch.Tensor) -> float:
    return float(x.double().mean())


def jacobian_diagnostics(model, oracle, schedule, task, directions=None, *, levels: Iterable[float] = LEVELS,
                         n: int = 512, seed: int = 0) -> dict:
    """Compare the VJPs J^T g of the denoised estimate x0h of `model` with the `oracle`'s, per noise level
    (formulas and output layout: this module's docstring).

    model, oracle: eps-predictors net(x_t [B, D], t [B] long) -> [B, D], each row a function of its own
    input only; schedule: their VPSchedule; task: gives x_0 (`sample_data`), the objectives and the
    projector P (`project`); directions: None (every objective of the task), objective names, or a mapping
    name -> reward callable r(x) -> [B]. Deterministic from `seed` (and the task); runs on the model's
    device; leaves the networks' parameter gradients untouched.
    """
    levels = tuple(float(lv) for lv in levels)
    if n < 1 or not levels:
        raise ValueError(f"jacobian_diagnostics needs n >= 1 and at least one level, got n={n}, levels={levels}")
    T = schedule.T
    device = _device_of(model)
    oracle = oracle.to(device)
    gen = torch.Generator().manual_seed(derive_seed("jacobian-diagnostics", task.name, task.task_seed, seed))
    x0 = task.sample_data(n, gen).float()
    eps = torch.randn(x0.shape, generator=gen)
    x0, eps = x0.to(device), eps.to(device)
    grads = direction_gradients(task, directions, x0)
    names = list(grads)
    G = torch.stack([grads[k] for k in names])  # [K, n, D]
    project = getattr(task, "project", None)
    tiny = torch.finfo(torch.float32).tiny
    sd = x0.dim() - 1  # a sample's dimensions

    timesteps = [min(T, max(1, math.floor(lv * T + 0.5))) for lv in levels]  # round half up
    result: dict = {"settings": {"levels": list(levels), "timesteps": timesteps, "n": n, "seed": seed}}
    per_level: dict[str, dict[str, dict[str, float]]] = {k: {} for k in names}
    for lv, t in zip(levels, timesteps):
        ab = float(schedule.ab[t])
        x_t = math.sqrt(ab) * x0 + math.sqrt(1 - ab) * eps
        x0h_net, v_net = _x0h_and_vjp(model, x_t, t, ab, G)
        x0h_or, v_or = _x0h_and_vjp(oracle, x_t, t, ab, G)
        err = _mean(_per_sample_norm(x0h_net - x0h_or, sd) / _per_sample_norm(x0h_or, sd).clamp_min(tiny))
        nn_, no = _per_sample_norm(v_net, sd), _per_sample_norm(v_or, sd)      # [K, n]
        dot = (v_net * v_or).flatten(2).sum(-1)             # [K, n]
        share = None
        if project is not None:
            pv = project(v_net.reshape(-1, *v_net.shape[2:])).reshape(v_net.shape)
            share = (_per_sample_norm(pv, sd) ** 2) / (nn_ ** 2).clamp_min(tiny)
        for k, name in enumerate(names):
            entry = {"vjp_norm_ratio": _mean(nn_[k] / no[k].clamp_min(tiny)),
                     "vjp_cosine": _mean(dot[k] / (nn_[k] * no[k]).clamp_min(tiny))}
            if share is not None:
                entry["vjp_share_in_span"] = _mean(share[k])
            entry["x0h_error"] = err
            per_level[name][f"{lv:g}"] = entry
    for name in names:
        entries = per_level[name]
        keys = next(iter(entries.values())).keys()
        entries["mean"] = {m: sum(e[m] for e in entries.values()) / len(entries) for m in keys}
        result[name] = entries
    return result
