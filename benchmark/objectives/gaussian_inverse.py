"""A linear-Gaussian inverse problem on Gaussian data, whose posterior is known in closed form.

Data x = A u, u ~ N(0, I_d), so x ~ N(0, S0) with S0 = A A^T (rank d). Observation
    y = H x* + sigma_y n,   n ~ N(0, I_m),
H: [m, D] with i.i.d. N(0, 1/D) entries (rows of unit norm on average), x* = A u* one fixed ground
truth drawn from the data distribution, n drawn once: H, u* and n each come from the task seed, so
every cell and every chain sees the same y, and all chains of a batch sample the same posterior.
The reward is the log-likelihood up to a constant,
    r(x) = -||y - H x||^2 / (2 sigma_y^2) = log N(y; H x, sigma_y^2 I) + (m/2) log(2 pi sigma_y^2),
so p(x) exp(r(x)) is exactly the posterior p(x | y): the target of SMC at lam = 1 and of DPS-style
guidance.

Posterior. x = A u maps R^d one-to-one onto span(A), so condition in u: with B = H A [m, d],
    p(u | y) ∝ exp(-||u||^2 / 2 - ||y - B u||^2 / (2 sigma_y^2)),
a Gaussian of precision L = I_d + B^T B / sigma_y^2 and mean L^{-1} B^T y / sigma_y^2. Mapping back,
x = A u | y ~ N(mu, Sigma) with
    Sigma = A L^{-1} A^T = A (I_d + A^T H^T H A / sigma_y^2)^{-1} A^T,
    mu    = A L^{-1} A^T H^T y / sigma_y^2 = Sigma H^T y / sigma_y^2,
equal (Woodbury) to Gaussian conditioning of the joint (x, y) in R^D:
    Sigma = S0 - S0 H^T (H S0 H^T + sigma_y^2 I)^{-1} H S0,   mu = S0 H^T (H S0 H^T + sigma_y^2 I)^{-1} y.
Both are computed in float64 (from the float32 A, H, y the sampler and the reward use).

Optimum: sup_x r = 0 where H x = y (H has rank m <= D almost surely); over span(A) the best is the
least-squares residual, -||y - B B^+ y||^2 / (2 sigma_y^2), 0 when m <= d.

Two references. The data posterior above is p(x | y) under the data prior N(0, A A^T): what an exact
sampler of the DATA's posterior draws. But a guided sampler starts from its own unguided law, and with
the exact (oracle) score the unguided DDIM(eta) chain over a sub-grid of the T steps is not exact
(`oracle_sampler_variances`): it draws N(0, c A A^T), c = 0.914 at 50 of 200 cosine steps with eta = 1
(0.976 at all 200). A method exact for ITS sampler (SMC or best-of-N as K, N -> infinity, whose target is
p_sampler(x) exp(r(x))) then draws the posterior under the prior N(0, c A A^T): the same formulas with
u ~ N(0, c I_d), L_c = I_d / c + B^T B / sigma_y^2. Against the data posterior it scores var_ratio 0.925
and w2 0.133 (n -> infinity) on the default problem at 50 of 200 steps, a gap that is the sampler's, not
the method's. `bind_sampler` (the cell calls it) computes c for the cell's grid, and `calibration` then
reports the `*_sampler` metrics against that posterior beside the data posterior's.

Defaults m = 8, sigma_y = 0.25: each measurement h_i^T x has prior variance ||A^T h_i||^2 ~ d/D = 1/4,
so the signal-to-noise ratio is ~4 per measurement; on the default task the posterior variance along
the 8 measured directions of span(A) is 0.10-0.61 of the prior's (standard deviations 0.32-0.78: much
tighter, not degenerate), the other d - m directions keep the prior's, and tr Sigma = 10.27 against
tr S0 = 16.
"""

from __future__ import annotations

import math

import torch

from benchmark.diffusion.noise import derive_seed
from benchmark.objectives.base import Objective
from benchmark.objectives.operator import MatrixMeasurement

#: Monte-Carlo replicates of the exact-posterior reference (`reference`; fewer for n > 2048): its
#: standard error is sd(w2) / 16, well below the seed-to-seed spread of a cell's w2.
REFERENCE_DRAWS = 256


def sqrtm_psd(S: torch.Tensor) -> torch.Tensor:
    """The symmetric square root of a PSD matrix (or a batch [..., D, D]) by eigh, tiny negative
    eigenvalues (rounding) clipped to 0."""
    evals, evecs = torch.linalg.eigh(S)
    return (evecs * evals.clamp_min(0).sqrt().unsqueeze(-2)) @ evecs.transpose(-1, -2)


def gaussian_w2(m1: torch.Tensor, S1: torch.Tensor, m2: torch.Tensor, S2: torch.Tensor) -> torch.Tensor:
    """2-Wasserstein distance between N(m1, S1) and N(m2, S2), in float64:
        W2^2 = ||m1 - m2||^2 + tr(S1 + S2 - 2 (S2^{1/2} S1 S2^{1/2})^{1/2}).
    m: [..., D], S: [..., D, D] (batch dimensions broadcast); returns [...]."""
    m1, S1, m2, S2 = (t.double() for t in (m1, S1, m2, S2))
    r2 = sqrtm_psd(S2)
    cross = torch.linalg.eigvalsh(r2 @ S1 @ r2).clamp_min(0).sqrt().sum(-1)  # tr (S2^1/2 S1 S2^1/2)^1/2
    w2_sq = ((m1 - m2) ** 2).sum(-1) + S1.diagonal(dim1=-2, dim2=-1).sum(-1) \
        + S2.diagonal(dim1=-2, dim2=-1).sum(-1) - 2 * cross
    return w2_sq.clamp_min(0).sqrt()


def mean_and_cov(x: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
    """Sample mean [..., D] and unbiased sample covariance [..., D, D] (divisor n - 1; n = 1 gives
    the zero matrix) of samples x: [..., n, D], in float64."""
    x = x.double()
    n = x.shape[-2]
    mean = x.mean(-2)
    c = x - mean.unsqueeze(-2)
    return mean, c.transpose(-1, -2) @ c / max(n - 1, 1)


def oracle_sampler_variances(steps) -> tuple[float, float]:
    """(v_par, v_perp): the unguided DDIM(eta) chain with the exact eps of data N(0, A A^T) (A orthonormal
    columns, P = A A^T, benchmark.denoisers.oracle), run over `steps` (benchmark.diffusion.Step, noisiest
    first) from x_T ~ N(0, I), outputs x_0 ~ N(0, v_par P + v_perp (I - P)), whatever A is.

    Each step is linear in x_t plus independent noise: x0h = sqrt(ab_t) P x_t, e = (I - ab_t P) x_t /
    sqrt(1 - ab_t), so x_{t'} = sqrt(ab_t') x0h + k e + s z (benchmark.diffusion.sampler) is
        x_{t'} = c_par P x_t + c_perp (I - P) x_t + s z,   k = sqrt(1 - ab_t' - s^2),
        c_par = sqrt(ab_t ab_t') + k sqrt(1 - ab_t),   c_perp = k / sqrt(1 - ab_t),
    and the variance in span(A) and across it each follows v <- c^2 v + s^2 from v = 1 (float64, exact).
    The last step (t' = 0, ab_0 = 1) has k = s = 0, so v_perp = 0: the law lives on span(A)."""
    v_par = v_perp = 1.0
    for st in steps:
        s2 = st.sigma ** 2
        k = math.sqrt(max(1.0 - st.ab_prev - s2, 0.0))
        c_par = math.sqrt(st.ab_t * st.ab_prev) + k * math.sqrt(1.0 - st.ab_t)
        c_perp = k / math.sqrt(1.0 - st.ab_t)
        v_par, v_perp = c_par ** 2 * v_par + s2, c_perp ** 2 * v_perp + s2
    return v_par, v_perp


def _scores(mean: torch.Tensor, cov: torch.Tensor, mu: torch.Tensor, Sigma: torch.Tensor, suffix: str) -> dict:
    """w2, mean_error and var_ratio (each name + suffix) of a batch's (mean, cov) against N(mu, Sigma)."""
    return {"w2" + suffix: float(gaussian_w2(mean, cov, mu, Sigma)),
            "mean_error" + suffix: float(torch.linalg.vector_norm(mean - mu)),
            "var_ratio" + suffix: float(cov.trace() / Sigma.trace())}


def _reference(n: int, u_mean: torch.Tensor, u_cov: torch.Tensor, g: torch.Generator) -> dict[str, float]:
    """E[w2] and E[mean_error] of n exact draws of N(u_mean, u_cov) (the u-space law of a posterior on
    span(A)), averaged over REFERENCE_DRAWS batches (fewer for n > 2048); var_ratio's is 1."""
    reps = max(32, min(REFERENCE_DRAWS, 2 ** 19 // n))
    chunk = max(1, 2 ** 19 // n)
    chol = torch.linalg.cholesky(u_cov)
    w2, err = [], []
    for start in range(0, reps, chunk):
        z = torch.randn(min(chunk, reps - start), n, u_mean.shape[0], generator=g, dtype=torch.float64)
        u_bar, S_u = mean_and_cov(u_mean + z @ chol.T)
        w2.append(gaussian_w2(u_bar, S_u, u_mean, u_cov))
        err.append(torch.linalg.vector_norm(u_bar - u_mean, dim=-1))
    return {"w2": float(torch.cat(w2).mean()), "mean_error": float(torch.cat(err).mean()), "var_ratio": 1.0}


class GaussianInverse(MatrixMeasurement, Objective):
    """r(x) = -||y - H x||^2 / (2 sigma_y^2) for x: [B, D] -> [B]; the exact posterior N(mu, Sigma) of
    x ~ N(0, A A^T) given y as `posterior_mean` [D] and `posterior_cov` [D, D] (float64, CPU).

    A: [D, d] the data basis (orthonormal columns); H: [m, D]; u_star: [d] (x* = A u_star); noise: [m]
    standard normal; `reference_seed` seeds the Monte-Carlo reference of the calibration metrics."""

    kind = "inverse"       # dps's default step is Chung et al.'s, on residual_norm
    counted_methods = ("residual_norm", "measurement", "log_likelihood")
    optimum = 0.0
    #: The calibration metrics (`calibration`): errors, and the floors of the errors at the batch size,
    #: lower is better; var_ratio is best at 1 (< 1 over-confident, > 1 too wide). Without a suffix against
    #: the data posterior; `_sampler`: against the posterior under the sampler's own unguided law (oracle only).
    metric_directions = {"w2": "lower", "w2_exact_n": "lower", "mean_error": "lower", "mean_error_exact_n": "lower",
                         "var_ratio": 1.0,
                         "w2_sampler": "lower", "w2_sampler_exact_n": "lower", "mean_error_sampler": "lower",
                         "mean_error_sampler_exact_n": "lower", "var_ratio_sampler": 1.0}
    #: What each calibration metric is measured against (the report's captions group metrics by note).
    metric_notes = dict.fromkeys(
        ("w2", "w2_exact_n", "mean_error", "mean_error_exact_n", "var_ratio"),
        "against the data posterior p(x0 | y), prior N(0, A A^T)") | dict.fromkeys(
        ("w2_sampler", "w2_sampler_exact_n", "mean_error_sampler", "mean_error_sampler_exact_n", "var_ratio_sampler"),
        "against the posterior under the unguided sampler's own output law N(0, c A A^T) on the cell's grid "
        "(oracle only; c < 1 on a sub-grid, e.g. 0.914 at 50 of 200 steps): what a method exact for its sampler "
        "reaches")

    def __init__(self, name: str, A: torch.Tensor, H: torch.Tensor, u_star: torch.Tensor, noise: torch.Tensor,
                 sigma_y: float, reference_seed: int = 0):
        super().__init__()
        if not (isinstance(sigma_y, (int, float)) and not isinstance(sigma_y, bool) and sigma_y > 0):
            raise ValueError(f"objective {name!r}: sigma_y must be a number > 0, got {sigma_y!r}")
        self.name, self.sigma_y, self.reference_seed = name, float(sigma_y), reference_seed
        A, H = A.float(), H.float()
        if not torch.allclose(A.T @ A, torch.eye(A.shape[1]), atol=1e-5):
            raise ValueError(f"objective {name!r}: the data basis A must have orthonormal columns")
        x_star = A @ u_star.float()
        self.register_buffer("H", H)
        self.register_buffer("x_star", x_star)
        self.register_buffer("y", H @ x_star + self.sigma_y * noise.float())

        A64, H64, y64, s2 = A.double(), H.double(), self.y.double(), self.sigma_y ** 2
        B = H64 @ A64                                                            # [m, d]
        self.A64 = A64
        self.u_mean, self.u_cov = self._posterior_u(1.0)
        self.posterior_cov = A64 @ self.u_cov @ A64.T                            # Sigma [D, D]
        self.posterior_mean = self.posterior_cov @ H64.T @ y64 / s2              # mu = Sigma H^T y / sigma_y^2
        self.prior_cov = A64 @ A64.T                                             # S0 = A A^T
        residual = y64 - B @ (torch.linalg.pinv(B) @ y64)
        self.optimum_on_support = -float(residual @ residual) / (2 * s2)
        self._reference: dict[int, dict[str, float]] = {}
        #: The unguided sampler's law N(0, sampler_scale A A^T) and the posterior under it (`bind_sampler`;
        #: None until bound, and with a denoiser other than the oracle, whose law is not known).
        self.sampler_scale: float | None = None
        self.sampler_u_mean = self.sampler_u_cov = self.sampler_posterior_mean = self.sampler_posterior_cov = None
        self._sampler_reference: dict[tuple[float, int], dict[str, float]] = {}

    def _posterior_u(self, scale: float) -> tuple[torch.Tensor, torch.Tensor]:
        """(mean [d], cov [d, d]) of u | y under the prior u ~ N(0, scale I_d), float64: precision
        L = I_d / scale + B^T B / sigma_y^2, mean L^{-1} B^T y / sigma_y^2 (B = H A)."""
        B, s2 = self.H.detach().cpu().double() @ self.A64, self.sigma_y ** 2
        L = torch.eye(B.shape[1], dtype=torch.float64) / scale + B.T @ B / s2
        cov = torch.linalg.inv(L)
        cov = (cov + cov.T) / 2
        return cov @ B.T @ self.y.detach().cpu().double() / s2, cov

    def bind_sampler(self, sampler) -> None:
        """Score later batches also against the posterior under the unguided law of `sampler`
        (benchmark.diffusion.Sampler: its grid, eta and schedule), when its denoiser is the exact one
        of this objective's data (benchmark.denoisers.oracle.SubspaceOracle with the same A, on the
        sampler's schedule, no x0 clipping): that law is N(0, c A A^T), c from `oracle_sampler_variances`.
        With any other denoiser (a trained network), or x0h clipped to a data range (not linear), the law
        is not known: nothing is bound, and `calibration` reports the data posterior's metrics only."""
        from benchmark.denoisers.oracle import SubspaceOracle

        model = getattr(sampler.denoiser, "model", sampler.denoiser)
        if not (isinstance(model, SubspaceOracle) and getattr(sampler, "clip_x0", None) is None
                and model.A.shape == self.A64.shape
                and torch.allclose(model.A.detach().cpu().double(), self.A64, atol=1e-6)
                and torch.allclose(model.ab.detach().cpu().double(), sampler.schedule.ab, atol=1e-6)):
            self.sampler_scale = None
            self.sampler_u_mean = self.sampler_u_cov = self.sampler_posterior_mean = self.sampler_posterior_cov = None
            return
        v_par, v_perp = oracle_sampler_variances(sampler.steps)
        if v_perp > 1e-12:
            raise ValueError(f"objective {self.name!r}: the sampler's grid does not end at t = 0 (its output has "
                             f"variance {v_perp:.3g} off span(A)); the sampler posterior needs the law on span(A)")
        self.sampler_scale = v_par
        self.sampler_u_mean, self.sampler_u_cov = self._posterior_u(v_par)
        self.sampler_posterior_mean = self.A64 @ self.sampler_u_mean
        self.sampler_posterior_cov = self.A64 @ self.sampler_u_cov @ self.A64.T

    @property
    def m(self) -> int:
        return self.H.shape[0]

    def params(self) -> dict:
        return {"m": self.m, "sigma_y": self.sigma_y}

    def residual_norm(self, x: torch.Tensor) -> torch.Tensor:
        """||y - H x||_2 per sample: [B, D] -> [B] (r = -residual_norm^2 / (2 sigma_y^2))."""
        return torch.linalg.vector_norm(self.y - x @ self.H.T, dim=-1)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return -((self.y - x @ self.H.T) ** 2).sum(-1) / (2 * self.sigma_y ** 2)

    def sample_posterior(self, n: int, generator: torch.Generator, reps: tuple[int, ...] = ()) -> torch.Tensor:
        """Exact posterior draws x = A u, u ~ N(u_mean, u_cov): [*reps, n, D], float64 on the CPU."""
        return self._sample_u(n, generator, reps) @ self.A64.T

    def _sample_u(self, n: int, generator: torch.Generator, reps: tuple[int, ...] = ()) -> torch.Tensor:
        z = torch.randn(*reps, n, self.u_mean.shape[0], generator=generator, dtype=torch.float64)
        return self.u_mean + z @ torch.linalg.cholesky(self.u_cov).T

    def calibration(self, x: torch.Tensor) -> dict[str, float]:
        """Calibration of samples x: [n, D] against the exact data posterior N(mu, Sigma), with x_bar and
        S their mean and unbiased covariance:
            w2         = W2(N(x_bar, S), N(mu, Sigma))  (0 = calibrated)
            mean_error = ||x_bar - mu||
            var_ratio  = tr S / tr Sigma                 (1 = calibrated; < 1 over-confident, > 1 too wide)
        plus their floors at this n, `w2_exact_n` and `mean_error_exact_n` (see `reference`). Once a
        sampler is bound (`bind_sampler`), the same five against the posterior N(mu_c, Sigma_c) under the
        sampler's unguided law N(0, c A A^T): `w2_sampler`, `mean_error_sampler`, `var_ratio_sampler`,
        `w2_sampler_exact_n`, `mean_error_sampler_exact_n`."""
        mean, cov = mean_and_cov(x.detach().cpu())
        out = _scores(mean, cov, self.posterior_mean, self.posterior_cov, "")
        ref = self.reference(x.shape[0])
        out |= {"w2_exact_n": ref["w2"], "mean_error_exact_n": ref["mean_error"]}
        if self.sampler_scale is not None:
            out |= _scores(mean, cov, self.sampler_posterior_mean, self.sampler_posterior_cov, "_sampler")
            ref = self.sampler_reference(x.shape[0])
            out |= {"w2_sampler_exact_n": ref["w2"], "mean_error_sampler_exact_n": ref["mean_error"]}
        return out

    def reference(self, n: int) -> dict[str, float]:
        """The calibration metrics' expected values for n exact posterior draws (cached per n).

        A finite batch is not calibrated exactly even when every draw is: E[var_ratio] = 1 (S is
        unbiased) with sd sqrt(2 tr Sigma^2 / (n - 1)) / tr Sigma; E[mean_error^2] = tr Sigma / n; and
        w2 is biased upwards by the noise of S, strongly unless n >> d (default problem: 1.24 at n = 32,
        against 2.2 from the prior to the posterior; 0.15 at n = 2000). E[w2] and E[mean_error] are
        averaged over batches of n exact draws (REFERENCE_DRAWS of them, fewer for n > 2048, where the
        batches' w2 varies less) from a generator seeded by (reference_seed, n): compare w2 with this
        floor, not with 0. The draws are made in u-space, where the distances are the same (both laws
        live on span(A), and A has orthonormal columns)."""
        if n not in self._reference:
            g = torch.Generator().manual_seed(derive_seed(self.reference_seed, "reference", n))
            self._reference[n] = _reference(n, self.u_mean, self.u_cov, g)
        return self._reference[n]

    def sampler_reference(self, n: int) -> dict[str, float]:
        """`reference` for n exact draws of the posterior under the bound sampler's law (`bind_sampler`):
        the floors of w2_sampler and mean_error_sampler (cached per (c, n))."""
        if self.sampler_scale is None:
            raise ValueError(f"objective {self.name!r}: no sampler bound (bind_sampler with the oracle denoiser)")
        key = (self.sampler_scale, n)
        if key not in self._sampler_reference:
            g = torch.Generator().manual_seed(derive_seed(self.reference_seed, "reference_sampler", n))
            self._sampler_reference[key] = _reference(n, self.sampler_u_mean, self.sampler_u_cov, g)
        return self._sampler_reference[key]

    def sample_sampler_posterior(self, n: int, generator: torch.Generator) -> torch.Tensor:
        """Exact draws of the posterior under the bound sampler's law: [n, D], float64 on the CPU."""
        if self.sampler_scale is None:
            raise ValueError(f"objective {self.name!r}: no sampler bound (bind_sampler with the oracle denoiser)")
        z = torch.randn(n, self.sampler_u_mean.shape[0], generator=generator, dtype=torch.float64)
        return (self.sampler_u_mean + z @ torch.linalg.cholesky(self.sampler_u_cov).T) @ self.A64.T

    def prior_var_ratio(self) -> float:
        """E[var_ratio] of prior (unguided) samples: tr(A A^T) / tr Sigma."""
        return float(self.prior_cov.trace() / self.posterior_cov.trace())

