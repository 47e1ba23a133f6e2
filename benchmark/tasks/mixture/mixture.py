"""Gaussian mixtures in closed form (DESIGN.md section 7): the `mixture` task's data, its law at every
noise level, posteriors of a linear-Gaussian observation and targets tilted by a linear reward.

    p(x) = sum_k w_k N(x; mu_k, Sigma_k),   Sigma_k = U_k diag(lam_k) U_k^T  (full rank, lam_k > 0).

Noise level (VP forward x_t = sqrt(ab) x_0 + sqrt(1 - ab) n, n ~ N(0, I)): a mixture stays a mixture,
    p_t = sum_k w_k N(sqrt(ab) mu_k, C_k),   C_k = ab Sigma_k + (1 - ab) I = U_k diag(ab lam_k + 1 - ab) U_k^T,
    grad log p_t(x) = sum_k pi_k(x) C_k^{-1} (sqrt(ab) mu_k - x),   pi_k(x) ∝ w_k N(x; sqrt(ab) mu_k, C_k),
    eps(x_t) = -sqrt(1 - ab) grad log p_t(x_t),
the responsibilities pi_k by log-sum-exp; one eigendecomposition of each Sigma_k serves every noise level,
so a batch may carry one ab per sample.

Posterior of y = H x_0 + sigma_y e, e ~ N(0, I_m): per component, Gaussian conditioning (Kalman form),
    S_yk = H Sigma_k H^T + sigma_y^2 I,   G_k = Sigma_k H^T S_yk^{-1},
    m_k  = mu_k + G_k (y - H mu_k),       S_k = Sigma_k - G_k H Sigma_k = (Sigma_k^{-1} + H^T H / sigma_y^2)^{-1},
    w'_k ∝ w_k N(y; H mu_k, S_yk)         (each component's marginal likelihood of y).

Tilt by exp(theta^T x) (completing the square in each component),
    w_k N(x; mu_k, Sigma_k) exp(theta^T x)
        = w_k exp(theta^T mu_k + theta^T Sigma_k theta / 2) N(x; mu_k + Sigma_k theta, Sigma_k),
so p(x) exp(theta^T x) / Z has means mu_k + Sigma_k theta and weights
    w''_k ∝ w_k exp(theta^T mu_k + theta^T Sigma_k theta / 2).

A linear functional c^T x is the 1-D mixture sum_k w_k N(c^T mu_k, c^T Sigma_k c) (`project`), with its CDF,
quantiles and partial moments (`Mixture1D`), which the sliced W2 of benchmark/tasks/mixture/metrics.py needs.

Everything here is float64 on the CPU; `MixtureOracle` (the exact eps as a denoiser) computes in float64 on
the input's device and returns the input's dtype.
"""

from __future__ import annotations

import math

import torch
from torch import nn

LOG_2PI = math.log(2 * math.pi)


def ndtr(z: torch.Tensor) -> torch.Tensor:
    """The standard normal CDF, as erfc(-z / sqrt(2)) / 2 (accurate in the lower tail; ndtr is
    far slower on the CPU)."""
    return 0.5 * torch.erfc(-z / math.sqrt(2))


def _as64(t) -> torch.Tensor:
    """A tensor (detached) or nested numbers as float64 on the CPU (numbers straight to float64, not via float32)."""
    if isinstance(t, torch.Tensor):
        return t.detach().to("cpu", torch.float64)
    return torch.as_tensor(t, dtype=torch.float64)


def _ab_of(ab, B: int, like: torch.Tensor) -> torch.Tensor:
    """ab as [B or 1, 1, 1] on `like`'s device and dtype: a float, a 0-d tensor or one value per sample [B]."""
    ab = torch.as_tensor(ab, dtype=like.dtype, device=like.device)
    if ab.dim() == 0:
        return ab.reshape(1, 1, 1)
    if ab.shape != (B,):
        raise ValueError(f"ab must be a number or one value per sample [{B}], got shape {list(ab.shape)}")
    return ab.reshape(B, 1, 1)


def component_terms(x: torch.Tensor, ab, log_w: torch.Tensor, mu: torch.Tensor, U: torch.Tensor,
                    lam: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor, torch.Tensor]:
    """(log w_k + log N(x; sqrt(ab) mu_k, C_k) [B, K], z [B, K, D], c [B or 1, K, D]) of x: [B, D] under the
    mixture at noise level ab (a number or [B]); z = U_k^T (x - sqrt(ab) mu_k) and c = ab lam_k + 1 - ab are
    the residual and C_k's eigenvalues in component k's eigenbasis. All tensors on one device and dtype."""
    B, D = x.shape
    ab = _ab_of(ab, B, x)
    diff = x[:, None, :] - ab.sqrt() * mu[None]                         # [B, K, D]
    z = torch.einsum("bkd,kde->bke", diff, U)
    c = ab * lam[None] + (1 - ab)
    log_n = -0.5 * ((z * z / c).sum(-1) + torch.log(c).sum(-1) + D * LOG_2PI)
    return log_w[None] + log_n, z, c


def mixture_score(x: torch.Tensor, ab, log_w, mu, U, lam) -> torch.Tensor:
    """grad_x log p_t(x) = sum_k pi_k(x) C_k^{-1} (sqrt(ab) mu_k - x): [B, D]."""
    log_joint, z, c = component_terms(x, ab, log_w, mu, U, lam)
    pi = torch.softmax(log_joint, dim=-1)                                # [B, K], log-sum-exp inside
    per_component = -torch.einsum("bke,kde->bkd", z / c, U)             # C_k^{-1} (sqrt(ab) mu_k - x)
    return (pi[..., None] * per_component).sum(1)


class GaussianMixture:
    """sum_k w_k N(mu_k, Sigma_k): weights [K] (positive, summing to 1), means [K, D], covs [K, D, D]
    (symmetric positive definite), float64 on the CPU."""

    def __init__(self, weights, means, covs):
        w, mu, S = _as64(weights), _as64(means), _as64(covs)
        if mu.dim() != 2 or w.shape != (mu.shape[0],) or S.shape != (*mu.shape, mu.shape[1]):
            raise ValueError(f"a Gaussian mixture needs weights [K], means [K, D] and covs [K, D, D]; got "
                             f"{list(w.shape)}, {list(mu.shape)}, {list(S.shape)}")
        if not (torch.isfinite(w).all() and (w >= 0).all() and abs(float(w.sum()) - 1) < 1e-9):
            raise ValueError(f"mixture weights must be >= 0 and sum to 1, got {w.tolist()}")
        S = (S + S.transpose(-1, -2)) / 2
        lam, U = torch.linalg.eigh(S)
        if not (lam > 0).all():
            raise ValueError("mixture covariances must be positive definite; smallest eigenvalue "
                             f"{float(lam.min()):.3g}")
        self.weights, self.means, self.covs, self.lam, self.U = w, mu, S, lam, U

    @property
    def K(self) -> int:
        return self.means.shape[0]

    @property
    def dim(self) -> int:
        return self.means.shape[1]

    @property
    def log_weights(self) -> torch.Tensor:
        return torch.log(self.weights)

    # --- densities at noise level ab (ab = 1: the mixture itself) ---------------------------------

    def _terms(self, x: torch.Tensor, ab):
        x = _as64(x)
        return component_terms(x, ab, self.log_weights, self.means, self.U, self.lam)

    def component_log_prob(self, x: torch.Tensor, ab=1.0) -> torch.Tensor:
        """log w_k + log N(x; sqrt(ab) mu_k, C_k): [B, K] for x: [B, D]."""
        return self._terms(x, ab)[0]

    def log_prob(self, x: torch.Tensor, ab=1.0) -> torch.Tensor:
        """log p_t(x) at noise level ab (a number or [B]): [B]."""
        return torch.logsumexp(self.component_log_prob(x, ab), dim=-1)

    def responsibilities(self, x: torch.Tensor, ab=1.0) -> torch.Tensor:
        """pi_k(x): [B, K], rows summing to 1."""
        return torch.softmax(self.component_log_prob(x, ab), dim=-1)

    def mahalanobis(self, x: torch.Tensor) -> torch.Tensor:
        """(x - mu_k)^T Sigma_k^{-1} (x - mu_k): [B, K]."""
        return self.placement(x)[1]

    def placement(self, x: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
        """(component_log_prob(x), mahalanobis(x)), both [B, K], from one pass."""
        log_joint, z, c = self._terms(x, 1.0)
        return log_joint, (z * z / c).sum(-1)

    def score(self, x: torch.Tensor, ab=1.0) -> torch.Tensor:
        """grad_x log p_t(x): [B, D]."""
        return mixture_score(_as64(x), ab, self.log_weights, self.means, self.U, self.lam)

    def eps(self, x: torch.Tensor, ab) -> torch.Tensor:
        """The exact noise prediction -sqrt(1 - ab) grad log p_t(x): [B, D]."""
        ab_b = _ab_of(ab, x.shape[0], _as64(x)).reshape(-1, 1)
        return -(1 - ab_b).sqrt() * self.score(x, ab)

    def noised(self, ab: float) -> GaussianMixture:
        """The law of x_t = sqrt(ab) x_0 + sqrt(1 - ab) n: means sqrt(ab) mu_k, covariances ab Sigma_k + (1 - ab) I."""
        eye = torch.eye(self.dim, dtype=torch.float64)
        return GaussianMixture(self.weights, math.sqrt(ab) * self.means, ab * self.covs + (1 - ab) * eye)

    # --- exact draws, moments -----------------------------------------------------------------------

    def sample(self, n: int, generator: torch.Generator,
               shape: tuple[int, ...] = ()) -> tuple[torch.Tensor, torch.Tensor]:
        """(x [*shape, n, D], component labels [*shape, n]): exact draws, float64 on the CPU."""
        count = math.prod(shape) * n
        labels = torch.multinomial(self.weights, count, replacement=True, generator=generator)
        z = torch.randn(count, self.dim, generator=generator, dtype=torch.float64)
        root = self.U * self.lam.sqrt()[:, None, :]                          # Sigma_k = root_k root_k^T
        x = self.means[labels] + torch.einsum("nde,ne->nd", root[labels], z)
        return x.reshape(*shape, n, self.dim), labels.reshape(*shape, n)

    def mean(self) -> torch.Tensor:
        return self.weights @ self.means

    def cov(self) -> torch.Tensor:
        """Sum_k w_k (Sigma_k + mu_k mu_k^T) - m m^T."""
        m = self.mean()
        second = (self.weights[:, None, None] * (self.covs + self.means[:, :, None] * self.means[:, None, :])).sum(0)
        return second - torch.outer(m, m)

    # --- exact transforms ---------------------------------------------------------------------------

    def condition(self, H: torch.Tensor, y: torch.Tensor, sigma_y: float) -> GaussianMixture:
        """The posterior of x given y = H x + sigma_y e, e ~ N(0, I_m) (module docstring): H [m, D], y [m]."""
        H, y = _as64(H), _as64(y)
        if H.dim() != 2 or H.shape[1] != self.dim or y.shape != (H.shape[0],):
            raise ValueError(f"condition needs H [m, {self.dim}] and y [m]; got {list(H.shape)} and {list(y.shape)}")
        if not (math.isfinite(sigma_y) and sigma_y > 0):
            raise ValueError(f"sigma_y must be a finite number > 0, got {sigma_y!r}")
        eye_m = torch.eye(H.shape[0], dtype=torch.float64)
        SHt = self.covs @ H.T                                                # [K, D, m]
        S_y = H @ SHt + sigma_y ** 2 * eye_m                                 # [K, m, m]
        S_y = (S_y + S_y.transpose(-1, -2)) / 2
        gain = torch.linalg.solve(S_y, SHt.transpose(-1, -2)).transpose(-1, -2)   # Sigma_k H^T S_yk^{-1}
        resid = y - self.means @ H.T                                         # [K, m]
        means = self.means + torch.einsum("kdm,km->kd", gain, resid)
        covs = self.covs - gain @ SHt.transpose(-1, -2)
        chol = torch.linalg.cholesky(S_y)
        white = torch.linalg.solve_triangular(chol, resid[..., None], upper=False)[..., 0]
        log_lik = -0.5 * ((white ** 2).sum(-1) + 2 * torch.log(torch.diagonal(chol, dim1=-2, dim2=-1)).sum(-1)
                          + H.shape[0] * LOG_2PI)                            # log N(y; H mu_k, S_yk)
        return GaussianMixture(torch.softmax(self.log_weights + log_lik, 0), means, covs)

    def tilt(self, theta: torch.Tensor) -> GaussianMixture:
        """p(x) exp(theta^T x) / Z (module docstring): theta [D]."""
        theta = _as64(theta)
        if theta.shape != (self.dim,):
            raise ValueError(f"tilt needs theta [{self.dim}], got {list(theta.shape)}")
        S_theta = self.covs @ theta                                          # [K, D]
        log_w = self.log_weights + self.means @ theta + 0.5 * (S_theta @ theta)
        return GaussianMixture(torch.softmax(log_w, 0), self.means + S_theta, self.covs)

    def project(self, c: torch.Tensor) -> Mixture1D:
        """The law of c^T x, x ~ this mixture, for c: [D] (one law) or [L, D] (L laws)."""
        c = _as64(c)
        means = c @ self.means.T                                             # [(L,) K]
        var = torch.einsum("...d,kde,...e->...k", c, self.covs, c)
        return Mixture1D(self.weights.expand_as(means), means, var.sqrt())


class Mixture1D:
    """sum_k w_k N(m_k, s_k^2) on the line, or L of them side by side: weights, means, sds [(L,) K]."""

    def __init__(self, weights: torch.Tensor, means: torch.Tensor, sds: torch.Tensor):
        self.weights, self.means, self.sds = weights, means, sds

    def cdf(self, v: torch.Tensor) -> torch.Tensor:
        """F(v) for v: [(L,) n] -> [(L,) n]."""
        z = (v[..., None] - self.means[..., None, :]) / self.sds[..., None, :]
        return (self.weights[..., None, :] * ndtr(z)).sum(-1)

    def pdf(self, v: torch.Tensor) -> torch.Tensor:
        """The density at v: [(L,) n] -> [(L,) n]."""
        z = (v[..., None] - self.means[..., None, :]) / self.sds[..., None, :]
        return (self.weights[..., None, :] * torch.exp(-0.5 * z * z) / (math.sqrt(2 * math.pi)
                                                                        * self.sds[..., None, :])).sum(-1)

    def quantile(self, u: torch.Tensor, grid: int = 1024, iterations: int = 4) -> torch.Tensor:
        """F^{-1}(u) for u in (0, 1): [(L,) n]. F on a grid of `grid` + 1 points over [min m - 12 max s,
        max m + 12 max s] brackets each u; then safeguarded Newton steps (a bisection of the bracket when
        a step leaves it) from the linear interpolation of the bracket."""
        width = 12 * self.sds.max(-1, keepdim=True).values
        lo = self.means.min(-1, keepdim=True).values - width
        hi = self.means.max(-1, keepdim=True).values + width
        v = lo + (hi - lo) * torch.linspace(0, 1, grid + 1, dtype=lo.dtype)          # [(L,) grid + 1]
        F = self.cdf(v)
        j = torch.searchsorted(F.contiguous(), u.contiguous()).clamp(1, grid)
        a, b = v.gather(-1, j - 1), v.gather(-1, j)
        Fa, Fb = F.gather(-1, j - 1), F.gather(-1, j)
        q = a + (b - a) * ((u - Fa) / (Fb - Fa).clamp_min(1e-300)).clamp(0, 1)
        for _ in range(iterations):
            Fq = self.cdf(q)
            below = Fq < u
            a, b = torch.where(below, q, a), torch.where(below, b, q)
            step = q - (Fq - u) / self.pdf(q).clamp_min(1e-300)
            q = torch.where((step >= a) & (step <= b), step, (a + b) / 2)
        return q

    def partial_mean(self, a: torch.Tensor, b: torch.Tensor) -> torch.Tensor:
        """int_a^b v dF(v) for bounds [(L,) n] (+-inf allowed): per component m P + s (phi(alpha) - phi(beta)),
        alpha, beta the standardised bounds, P = Phi(beta) - Phi(alpha)."""
        m, s, w = (t[..., None, :] for t in (self.means, self.sds, self.weights))
        alpha, beta = (a[..., None] - m) / s, (b[..., None] - m) / s

        def phi(z):
            return torch.where(torch.isfinite(z), torch.exp(-0.5 * z * z) / math.sqrt(2 * math.pi), 0.0)

        return (w * (m * (ndtr(beta) - ndtr(alpha)) + s * (phi(alpha) - phi(beta)))).sum(-1)

    def second_moment(self) -> torch.Tensor:
        """E[v^2] = sum_k w_k (m_k^2 + s_k^2): [(L,)]."""
        return (self.weights * (self.means ** 2 + self.sds ** 2)).sum(-1)


class MixtureOracle(nn.Module):
    """The exact eps(x_t, t) of a GaussianMixture's data under `schedule`: x [B, D], t [B] integer timesteps.

    Computed in float64 on x's device (the responsibilities of well-separated components underflow in
    float32 far from the data), returned in x's dtype; differentiable in x (for methods that take VJPs)."""

    def __init__(self, mixture: GaussianMixture, schedule):
        super().__init__()
        self.register_buffer("log_w", mixture.log_weights.clone())
        self.register_buffer("mu", mixture.means.clone())
        self.register_buffer("U", mixture.U.clone())
        self.register_buffer("lam", mixture.lam.clone())
        self.register_buffer("ab", _as64(schedule.ab).clone())

    def forward(self, x: torch.Tensor, t: torch.Tensor) -> torch.Tensor:
        ab = self.ab[t.long()]                                               # [B], float64
        x64 = x.to(torch.float64)
        score = mixture_score(x64, ab, self.log_w, self.mu, self.U, self.lam)
        return (-(1 - ab).sqrt()[:, None] * score).to(x.dtype)
