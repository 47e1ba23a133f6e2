"""The linear measurement of an inverse problem, y = A x + sigma_y n, n ~ N(0, I): what the posterior samplers
(pigdm, ddnm, diffpir, daps, reddiff) read besides the reward.

An objective whose measurement is linear says so by subclassing `LinearMeasurement` and gives, per sample:

    A(x)           [B, *x] -> [B, *m]   the forward operator
    AT(v)          [B, *m] -> [B, *x]   its adjoint, <A x, v> = <x, A^T v>
    A_pinv(v)      [B, *m] -> [B, *x]   the Moore-Penrose pseudo-inverse A^+ (A A^+ A = A, A^+ A A^+ = A^+); the
                                        built-ins treat singular values below PINV_RCOND x the largest as 0, the
                                        default (CG on A A^T) has no cut-off and needs A of full row rank
    solve(v, a, b) [B, *m] -> [B, *m]   (a A A^T + b I)^{-1} v, a >= 0, b > 0 floats or per-sample [B] tensors
                                        (PiGDM's (r_t^2 A A^T + sigma_y^2 I)^{-1}, DiffPIR's proximal step)
    measurement(x) [B, *m]              y of each row of the batch x (its chain's observation)
    sigma_y                             the noise level (>= 0)
    log_likelihood(x) [B]               log N(y; A x, sigma_y^2 I) up to a constant, -||y - A x||^2 / (2 sigma_y^2)

Counting: a method's data-consistency step reads y through `measurement` or `log_likelihood`, each counted as an
objective evaluation per sample (and a gradient when differentiated); see `counted_methods`.

The defaults (`AT` by autograd, since A is linear; `solve` and `A_pinv` by conjugate gradients on A A^T) hold for
any operator; every built-in overrides them with its closed form: a matrix H (gaussian_inverse, the mixture's
inverse and between), a mask (inpaint), block averaging (superres) and a separable blur by its SVD (deblur).
A method that needs the operator (`GuidanceMethod.needs_operator`) is refused on an objective without one when
the sweep is built (`GuidanceMethod.skip`).
"""

from __future__ import annotations

import torch

#: Relative cut-off of A^+: singular values below PINV_RCOND x the largest are treated as 0 (a Gaussian blur's
#: smallest are ~1e-8 of its largest; inverting them would amplify the noise by 1e8).
PINV_RCOND = 1e-3
#: Conjugate-gradient iterations of the default `solve` / `A_pinv` (exact in dim(m) iterations in exact arithmetic).
CG_ITERS = 100


def per_sample(c, like: torch.Tensor) -> torch.Tensor | float:
    """A float, or a per-sample [B] tensor shaped to broadcast against `like` [B, ...]."""
    if isinstance(c, torch.Tensor) and c.dim() > 0:
        return c.to(like.device, like.dtype).view(-1, *([1] * (like.dim() - 1)))
    return float(c)


def has_operator(objective) -> bool:
    """Whether `objective` (a class or an instance, also behind the counting wrapper a method is handed,
    benchmark.diffusion.counting.CountingObjective) exposes a linear measurement (LinearMeasurement)."""
    from benchmark.diffusion.counting import CountingObjective

    while isinstance(objective, CountingObjective):
        objective = objective.objective
    cls = objective if isinstance(objective, type) else type(objective)
    return issubclass(cls, LinearMeasurement)


class LinearMeasurement:
    """Mixin of an objective with a linear measurement y = A x + sigma_y n (see the module docstring)."""

    sigma_y: float = 0.0
    #: Counted like the reward (benchmark.diffusion.counting.CountingObjective): each call of `measurement` or
    #: `log_likelihood` (a use of the observation y: a projection, a proximal step, a likelihood) is one objective
    #: evaluation per sample, its backward one objective gradient; A, A^T, A^+ and `solve` themselves are not
    #: counted (the operator's arithmetic, like the reward's own). An objective that lists its own keeps these.
    counted_methods: tuple[str, ...] = ("residual_norm", "measurement", "log_likelihood")

    def A(self, x: torch.Tensor) -> torch.Tensor:  # pragma: no cover - interface
        raise NotImplementedError

    def measurement(self, x: torch.Tensor) -> torch.Tensor:  # pragma: no cover - interface
        raise NotImplementedError

    def AT(self, v: torch.Tensor) -> torch.Tensor:
        """A^T v by autograd: the gradient of <A x, v> in x (at x = 0: A is linear)."""
        shape = getattr(self, "x_shape", None)
        if shape is None:
            raise NotImplementedError(f"{type(self).__name__}: AT needs x_shape or an override")
        with torch.enable_grad():
            x = torch.zeros(v.shape[0], *shape, device=v.device, dtype=v.dtype, requires_grad=True)
            (g,) = torch.autograd.grad((self.A(x) * v).sum(), x)
        return g

    def solve(self, v: torch.Tensor, a, b) -> torch.Tensor:
        """(a A A^T + b I)^{-1} v by conjugate gradients (CG_ITERS iterations, per sample)."""
        a, b = per_sample(a, v), per_sample(b, v)
        return _cg(lambda u: a * self.A(self.AT(u)) + b * u, v)

    def A_pinv(self, v: torch.Tensor) -> torch.Tensor:
        """A^+ v = A^T (A A^T)^{-1} v (A of full row rank), the inverse by conjugate gradients."""
        return self.AT(_cg(lambda u: self.A(self.AT(u)), v))

    def log_likelihood(self, x: torch.Tensor) -> torch.Tensor:
        """-||y - A x||^2 / (2 sigma_y^2) per sample [B] (sigma_y > 0)."""
        if not self.sigma_y > 0:
            raise ValueError(f"objective {getattr(self, 'name', '')!r}: the log-likelihood needs sigma_y > 0, "
                             f"got {self.sigma_y}")
        r = (self.measurement(x) - self.A(x)).flatten(1)
        return -(r ** 2).sum(-1) / (2 * self.sigma_y ** 2)


def _cg(op, v: torch.Tensor, iters: int = CG_ITERS) -> torch.Tensor:
    """op^{-1} v for a symmetric positive (semi-)definite op, per sample (rows of v), by conjugate gradients."""
    dims = tuple(range(1, v.dim()))
    x = torch.zeros_like(v)
    r = v.clone()
    p = r.clone()
    rs = (r * r).sum(dims, keepdim=True)
    scale = rs.clamp_min(1e-30)
    for _ in range(iters):
        done = rs <= 1e-24 * scale          # per row: a converged row stays put, whatever its batch neighbours do
        if bool(done.all()):
            break
        Ap = op(p)
        alpha = torch.where(done, torch.zeros_like(rs), rs / (p * Ap).sum(dims, keepdim=True).clamp_min(1e-30))
        x = x + alpha * p
        r = r - alpha * Ap
        rs_new = (r * r).sum(dims, keepdim=True)
        p = r + (rs_new / rs.clamp_min(1e-30)) * p
        rs = rs_new
    return x


class MatrixMeasurement(LinearMeasurement):
    """A = H, a matrix [m, D] (buffer `H`), and one observation y [m] (buffer `y`) shared by every chain, on
    x: [B, D]. Closed forms from the eigen-decomposition H H^T = Q diag(lam) Q^T (computed once, float64)."""

    def A(self, x):
        return x @ self.H.T

    def AT(self, v):
        return v @ self.H

    def measurement(self, x):
        return self.y.to(x.device, x.dtype).expand(x.shape[0], -1)

    def _eig(self):
        cache = getattr(self, "_eig_cache", None)
        if cache is None or cache[0] is not self.H:
            H = self.H.detach().double().cpu()
            lam, Q = torch.linalg.eigh(H @ H.T)
            cache = (self.H, lam.clamp_min(0), Q, torch.linalg.pinv(H, rtol=PINV_RCOND))
            object.__setattr__(self, "_eig_cache", cache)
        return cache[1:]

    def solve(self, v, a, b):
        lam, Q, _ = self._eig()
        Q = Q.to(v.device, v.dtype)
        a, b = per_sample(a, v), per_sample(b, v)
        return ((v @ Q) / (a * lam.to(v.device, v.dtype) + b)) @ Q.T

    def A_pinv(self, v):
        return v @ self._eig()[2].to(v.device, v.dtype).T
