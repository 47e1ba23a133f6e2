"""The 8x8 handwritten digits that scikit-learn ships (1,797 images, 10 classes, no download).

Images x in [-1, 1]^{1x8x8}: x = pixel / 16 * 2 - 1 (the raw pixels count 0..16 strokes per cell),
so the blank background is -1.

Split, deterministic from the task seed and stratified by class: the images of each class are
permuted by the task's generator; the first 70 % (rounded) go to `train`, the next 15 % to
`validation`, the rest to `test` (1,258 / 269 / 270 images). Who sees what:
- the denoiser, the guiding classifier and the noise-conditional classifier train on `train`
  (validation: their held-out numbers);
- the independent evaluator trains on `train` + `validation`, another split than the guide's,
  and reports its accuracy on `test`;
- `test` is never trained on: it holds the ground truths of the inverse problems and the real
  images of the Frechet distance.

Pre-trained networks (safetensors) come from the folder `models_dir`, under the names in
MODEL_FILES (`python -m benchmark pretrain --task digits --network KIND --out DIR/FILE`); the
denoiser comes in as a cell's checkpoint (`--denoiser trained --checkpoint DIR/digits_denoiser.safetensors`).

Objectives (benchmark/objectives/digits.py): `label`, `inpaint`, `superres`, `reward`, their parameters
their constructors' keywords. Metrics are measured on the samples as images are saved, clipped to [-1, 1];
PSNR and SSIM on those mapped to [0, 1] (L = 1, benchmark.images.metrics); METRIC_DIRECTIONS says
which way each metric is better.
"""

from __future__ import annotations

import gzip
import importlib.util
import math
from functools import lru_cache
from pathlib import Path

import numpy as np
import torch

from benchmark.images.metrics import frechet_distance, mean_pairwise_distance, psnr, ssim
from benchmark.images.ops import translate
from benchmark.objectives import OBJECTIVES, builtin_objectives
from benchmark.paths import checkpoint_name
from benchmark.tasks.base import Task
from benchmark.tasks.networks import SHARED, Network, train_classifier, train_unet

SPLITS = ("train", "validation", "test")
SPLIT_FRACTIONS = (0.70, 0.15, 0.15)

#: The pre-trained networks a digits cell loads from its models folder (the workflow's contract).
MODEL_FILES = {kind: checkpoint_name("digits", kind) for kind in ("denoiser", "classifier", "noisy_classifier",
                                                                   "evaluator")}

#: Each sample metric's better direction ("higher" or "lower"), read by the report.
METRIC_DIRECTIONS = {"eval_accuracy": "higher", "guide_accuracy": "higher", "fd": "lower", "diversity": "higher",
                     "digit_confidence": "higher", "psnr": "higher", "ssim": "higher", "meas_error": "lower"}
#: The four networks (benchmark.tasks.networks): the three classifiers are independent; the denoiser
#: waits for the evaluator, which scores its unguided samples in the denoiser's report.
NETWORKS = {
    "denoiser": Network(train_unet, ("epochs", "batch_size", "lr", "width", "quality_samples", "quality_steps"),
                        SHARED, needs=("evaluator",), doc="U-Net denoiser (v-prediction)",
                        defaults={"schedule": "cosine", "T": 200, "seed": 0}),
    "classifier": Network(train_classifier, ("epochs", "batch_size", "lr", "width"), ("seed",),
                          doc="guiding classifier on clean images"),
    "noisy_classifier": Network(train_classifier, ("epochs", "batch_size", "lr", "width"), SHARED,
                                doc="noise-conditional classifier of classifier guidance (the denoiser's schedule)"),
    "evaluator": Network(train_classifier, ("epochs", "batch_size", "lr", "width"), ("seed",),
                         doc="independent evaluator (another split), never used for guidance"),
}

#: DiffAugment-style augmentation sizes for 8x8 images (Zhao et al. 2020 use brightness +-0.5,
#: contrast x[0.5, 1.5], translation by 1/8 of the size, cutout of half the size, on larger images).
BRIGHTNESS = 0.25          # offset uniform in [-0.25, 0.25] (1/8 of the data range)
CONTRAST = (0.75, 1.25)    # factor about the image mean
SHIFT = 1                  # pixels, each axis
CUTOUT = 3                 # side of the blanked square


def digits_file() -> Path:
    """scikit-learn's copy of the UCI digits (sklearn/datasets/data/digits.csv.gz: 1,797 rows of 64 pixel
    counts and the label), found without importing scikit-learn, which takes a job 1.5 s here."""
    spec = importlib.util.find_spec("sklearn")
    path = None if spec is None or not spec.submodule_search_locations else (
        Path(spec.submodule_search_locations[0]) / "datasets" / "data" / "digits.csv.gz")
    if path is None or not path.is_file():
        raise FileNotFoundError("the digits task reads scikit-learn's copy of the 8x8 digits "
                                f"(sklearn/datasets/data/digits.csv.gz), not found{f' at {path}' if path else ''}: "
                                "pip install scikit-learn")
    return path


@lru_cache(maxsize=1)
def load_images() -> tuple[torch.Tensor, torch.Tensor]:
    """All 1,797 images [N, 1, 8, 8] in [-1, 1] and their labels [N]: scikit-learn's `load_digits()`, read
    as it reads it (the CSV through numpy), no download."""
    with gzip.open(digits_file(), "rt") as f:
        data = np.loadtxt(f, delimiter=",")
    x = torch.tensor(data[:, :-1].reshape(-1, 8, 8), dtype=torch.float32)[:, None] / 16 * 2 - 1
    return x, torch.tensor(data[:, -1].astype(int), dtype=torch.long)


def _uniform(z: torch.Tensor) -> torch.Tensor:
    """Phi(z): standard normal draws -> uniform on (0, 1)."""
    return 0.5 * (1 + torch.erf(z / math.sqrt(2)))


class DigitsTask(Task):
    name = "digits"
    metric_directions = METRIC_DIRECTIONS
    is_image = True
    data_range = (-1.0, 1.0)
    uses_models = True
    networks = NETWORKS
    num_classes = 10

    def __init__(self, task_seed: int = 0, models_dir: str | Path | None = None):
        super().__init__(task_seed)
        self.models_dir = None if models_dir is None else Path(models_dir)
        x, y = load_images()
        g = self.generator("split")
        parts: dict[str, list[torch.Tensor]] = {s: [] for s in SPLITS}
        for c in range(self.num_classes):
            idx = torch.nonzero(y == c).squeeze(1)
            idx = idx[torch.randperm(len(idx), generator=g)]
            n_train = round(SPLIT_FRACTIONS[0] * len(idx))
            n_val = round(SPLIT_FRACTIONS[1] * len(idx))
            for s, part in zip(SPLITS, (idx[:n_train], idx[n_train:n_train + n_val], idx[n_train + n_val:])):
                parts[s].append(part)
        self._index = {s: torch.cat(p).sort().values for s, p in parts.items()}
        self._networks: dict = {}
        self._cache: dict = {}

    @property
    def shape(self) -> tuple[int, ...]:
        return (1, 8, 8)

    def split(self, name: str) -> tuple[torch.Tensor, torch.Tensor]:
        """(images [N, 1, 8, 8], labels [N]) of `train`, `validation`, `test` or `train+validation`."""
        names = name.split("+")
        if any(n not in SPLITS for n in names):
            raise ValueError(f"unknown split {name!r}; allowed: {list(SPLITS)} or 'train+validation'")
        x, y = load_images()
        idx = torch.cat([self._index[n] for n in names])
        return x[idx], y[idx]

    def sample_data(self, n: int, generator: torch.Generator) -> torch.Tensor:
        """n training images drawn uniformly with replacement: [n, 1, 8, 8]."""
        x, _ = self.split("train")
        return x[torch.randint(len(x), (n,), generator=generator)]

    # --- pre-trained networks -------------------------------------------------------------------

    def network(self, kind: str):
        """The pre-trained classifier `kind` (classifier | noisy_classifier | evaluator), frozen, in eval mode.

        A missing models folder or file is a specification error (ValueError) naming the file and
        the command that makes it."""
        if kind not in self._networks:
            from benchmark.classifiers import load_classifier

            path = self.network_path(kind)
            model, report = load_classifier(path, kind)
            if report.get("task") != self.name or report.get("task_seed") != self.task_seed:
                raise ValueError(f"{path} was trained on task {report.get('task')!r} (task_seed "
                                 f"{report.get('task_seed')}), not {self.name!r} ({self.task_seed}): its split differs")
            self._networks[kind] = model.requires_grad_(False).eval()
        return self._networks[kind]

    @classmethod
    def network_files(cls, objective: str, models_dir: str | Path | None) -> dict[str, Path]:
        """The classifiers a cell of `objective` loads (the objective's `needs_networks`) and the evaluator."""
        if models_dir is None:
            return {}
        objective_class = builtin_objectives(cls.name).get(objective) or OBJECTIVES.get(objective)
        kinds = tuple(getattr(objective_class, "needs_networks", ())) + ("evaluator",)
        return {kind: Path(models_dir) / MODEL_FILES[kind] for kind in kinds}

    def network_path(self, kind: str) -> Path:
        make = f"`python -m benchmark pretrain --task digits --network {kind} --task-seed {self.task_seed} --out "
        if self.models_dir is None:
            raise ValueError(f"task 'digits' needs --models-dir, the folder of its pre-trained networks "
                             f"({', '.join(MODEL_FILES.values())}); make each with {make}DIR/{MODEL_FILES[kind]}`")
        path = self.models_dir / MODEL_FILES[kind]
        if not path.exists():
            raise ValueError(f"{path} does not exist; make it with {make}{path}`")
        return path

    # --- Shen et al.'s random augmentation -----------------------------------------------------

    def augment(self, x: torch.Tensor, z: torch.Tensor) -> torch.Tensor:
        """DiffAugment-style T(x) (Zhao et al. 2020: colour, translation, cutout) sized for 8x8 images.

        x, z: [B, 1, 8, 8]; sample b's random choices come from u = Phi(z_b) (its first six entries,
        uniform on (0, 1)), never from a global generator, so a batch equals its samples one by one:
        - contrast c in [0.75, 1.25] about the image mean, then brightness offset in [-0.25, 0.25];
        - translation by (dy, dx) in {-1, 0, 1}^2, vacated pixels blank (-1);
        - cutout: a 3x3 square centred on a uniform pixel set blank (-1), clipped at the border.
        Differentiable in x (the gradient through a blanked pixel is 0).
        """
        B, C, H, W = x.shape
        u = _uniform(z.flatten(1)[:, :6].to(x.dtype))                        # [B, 6]
        lo, hi = CONTRAST
        c = (lo + (hi - lo) * u[:, 0]).view(B, 1, 1, 1)
        b = (BRIGHTNESS * (2 * u[:, 1] - 1)).view(B, 1, 1, 1)
        mean = x.mean(dim=(1, 2, 3), keepdim=True)
        x = (x - mean) * c + mean + b
        span = 2 * SHIFT + 1
        shift = (u[:, 2:4] * span).floor().clamp(max=span - 1).long() - SHIFT  # [B, 2] in {-1, 0, 1}
        x = translate(x, shift, fill=-1.0)
        # cutout
        cy = (u[:, 4] * H).floor().clamp(max=H - 1)
        cx = (u[:, 5] * W).floor().clamp(max=W - 1)
        i = torch.arange(H, device=x.device, dtype=x.dtype)
        j = torch.arange(W, device=x.device, dtype=x.dtype)
        half = CUTOUT // 2
        hole = (((i[None, :, None] - cy[:, None, None]).abs() <= half)
                & ((j[None, None, :] - cx[:, None, None]).abs() <= half))     # [B, H, W]
        return torch.where(hole[:, None], torch.full_like(x, -1.0), x)

    # --- metrics --------------------------------------------------------------------------------

    def _test_features(self, device) -> tuple[torch.Tensor, torch.Tensor]:
        """Evaluator features of the test images [N, d] and their labels [N], cached per device."""
        key = ("test-features", str(device))
        if key not in self._cache:
            x, y = self.split("test")
            with torch.no_grad():
                self._cache[key] = (self.network("evaluator").to(device).features(x.to(device)), y.to(device))
        return self._cache[key]

    def sample_metrics(self, x: torch.Tensor, objective=None) -> dict[str, float]:
        """Fidelity and task metrics of samples x [B, 1, 8, 8] (clipped to [-1, 1]), averaged over samples.

        every objective: digit_confidence (the evaluator's mean max-probability: is it a digit at all);
        label: eval_accuracy / guide_accuracy (target hit by the evaluator / the guiding classifier),
            fd (evaluator features vs the test images of the targeted classes), diversity (mean
            pairwise distance among samples of the same target);
        inpaint, superres: psnr, ssim to the ground truth (on [0, 1]), meas_error ||y - A x||;
        reward: fd to the whole test set, diversity.
        """
        x = x.clamp(-1, 1)
        B = x.shape[0]
        evaluator = self.network("evaluator").to(x.device)
        with torch.no_grad():
            feats = evaluator.features(x)
            p = evaluator.head(feats).softmax(-1)
            out = {"digit_confidence": float(p.max(-1).values.mean())}
            name = getattr(objective, "name", None)
            test_f, test_y = self._test_features(x.device)
            if name == "label":
                c = objective.targets(B, x.device)
                out["eval_accuracy"] = float((p.argmax(-1) == c).double().mean())
                out["guide_accuracy"] = float((objective.classifier(x).argmax(-1) == c).double().mean())
                if B >= 2:
                    out["fd"] = frechet_distance(feats, test_f[torch.isin(test_y, c)])
                per_target = [mean_pairwise_distance(x[c == k]) for k in c.unique() if (c == k).sum() >= 2]
                if per_target:
                    out["diversity"] = sum(per_target) / len(per_target)
            elif name in ("inpaint", "superres"):
                gt = objective.ground_truth(B, x.device)
                out["psnr"] = float(psnr(x, gt).mean())
                out["ssim"] = float(ssim(x, gt).mean())
                out["meas_error"] = float(objective.residual_norm(x).mean())
            elif name == "reward":
                if B >= 2:
                    out["fd"] = frechet_distance(feats, test_f)
                    out["diversity"] = mean_pairwise_distance(x)
        return out
