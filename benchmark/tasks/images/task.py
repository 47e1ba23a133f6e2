"""The `images` task: real pre-trained image models (e.g. a diffusers UNet2DModel) on a folder of images.

Data. Any folder of PNG / JPEG images (suffixes .png, .jpg, .jpeg, any case; other files are ignored)
at the model's resolution, loaded with PIL sorted by file name, converted to the model's channels
(PIL mode "L" for 1 channel, "RGB" for 3: colour is averaged to grey, an alpha channel dropped) and
scaled to [-1, 1]: x = pixel / 255 * 2 - 1, [C, H, W]. Images are never resized: one whose size is
not the resolution is a ValueError naming the file, its size and the expected one. `resolution`
(int for square, or (H, W)) and `channels` (1 or 3) default to the first file's size and to 1 when
every file is grey (modes 1, L, LA, I, I;16, F), else 3. Without a folder, a task given `resolution`
and `channels` still offers the `reward` objective (it needs no data).

Ground truths. The N images are the ground truths of the inverse problems: with `image` = "all"
(default) chain i of a batch restores image i mod N, with an integer k every chain restores image k
(benchmark.objectives.inverse). Each image's measurement noise is drawn once from the task seed, so
every cell sees the same observation y = A x* + sigma_y n.

Objectives (benchmark/tasks/images/objectives.py; their parameters are their constructors' keywords), the
inverse ones with the shared operators and the shared reward r(x) = -||y - A x||_2 (0 only where A x = y: at
the ground truth when sigma_y = 0):
- `inpaint`: A x = M x; mask "centre" hides a centred box whose side is `size` times the image's,
  "random" hides each pixel with probability `size`, drawn once from the task seed;
- `superres`: A x = average pooling by `factor` (which must divide the image size);
- `deblur`: A x = a Gaussian blur of standard deviation `blur_sigma` pixels, kernel `kernel_size`
  (benchmark.objectives.deblur);
- `reward`: fn = "package.module:function", a user's differentiable reward, images [B, C, H, W] in
  [-1, 1] -> [B] (a function returning any other shape is refused when called).
- `reward_model`: a learned reward model (benchmark.rewards: aesthetic, clip_score, a plug-in) from local
  weights; its name and version (sha256) are recorded with its parameters.

Metrics (on samples clipped to [-1, 1]), per sample: inverse problems psnr, ssim (on [0, 1],
benchmark.images.metrics) against the chain's ground truth and meas_error = ||y - A x||_2; reward:
diversity (mean pairwise distance). Standard metrics, each off unless its task parameter names local
weights (benchmark.rewards.encoders loads them; benchmark.images.metrics documents each one's sample-size
bias): `metric_features` (a CLIP folder or TinyCLIP file, or 'package.module:factory' of a feature
network) gives fid (biased upward at small n) and kid (unbiased) of the round's samples against the
folder's images, one value per round; `metric_lpips` (a LPIPS network file or factory) gives lpips per
sample against the chain's ground truth (inverse problems); `metric_clip` (a CLIP folder or file) gives
clip_score per sample for the text `metric_prompt`, else the reward model's prompt. The reward
itself is recorded by benchmark.metrics for every objective. METRIC_DIRECTIONS says which way each
is better. No oracle denoiser: the model is a pre-trained network given as the cell's checkpoint.
"""

from __future__ import annotations

from pathlib import Path

import numpy as np
import torch

from benchmark.images.metrics import mean_pairwise_distance, psnr, ssim
from benchmark.objectives.inverse import InverseProblem
from benchmark.tasks.base import Task

IMAGE_SUFFIXES = (".png", ".jpg", ".jpeg")
GREY_MODES = ("1", "L", "LA", "I", "I;16", "F")
PIL_MODES = {1: "L", 3: "RGB"}

#: Each sample metric's better direction ("higher" or "lower"), read by the report.
METRIC_DIRECTIONS = {"psnr": "higher", "ssim": "higher", "meas_error": "lower", "diversity": "higher",
                     "fid": "lower", "kid": "lower", "lpips": "lower", "clip_score": "higher"}
#: The standard metrics' task parameters (None: off), each the local weights of its network.
METRIC_NETWORKS = ("metric_features", "metric_lpips", "metric_clip")


def image_files(folder: Path) -> list[Path]:
    """The PNG / JPEG files of `folder`, sorted by name."""
    return sorted((p for p in folder.iterdir() if p.is_file() and p.suffix.lower() in IMAGE_SUFFIXES),
                  key=lambda p: p.name)


def load_folder(folder: str | Path, resolution: int | tuple[int, int] | None = None, channels: int | None = None
                ) -> tuple[torch.Tensor, list[str]]:
    """(images [N, C, H, W] in [-1, 1], their file names) of a folder (see the module docstring)."""
    from PIL import Image

    folder = Path(folder)
    if not folder.is_dir():
        raise ValueError(f"task 'images': folder {str(folder)!r} is not a directory")
    files = image_files(folder)
    if not files:
        raise ValueError(f"task 'images': folder {str(folder)!r} holds no images ({', '.join(IMAGE_SUFFIXES)})")
    if channels is None:
        grey = True
        for p in files:
            with Image.open(p) as img:
                grey = grey and img.mode in GREY_MODES
        channels = 1 if grey else 3
    check_channels(channels)
    images = []
    for p in files:
        with Image.open(p) as img:
            if resolution is None:
                resolution = (img.height, img.width)
            H, W = as_hw(resolution)
            if (img.height, img.width) != (H, W):
                raise ValueError(f"task 'images': {p} is {img.width}x{img.height} (width x height), expected "
                                 f"{W}x{H}, the model's resolution; resize the images beforehand")
            a = np.asarray(img.convert(PIL_MODES[channels]), dtype=np.float32) / 255 * 2 - 1
        images.append(torch.from_numpy(a.reshape(H, W, channels)).permute(2, 0, 1))
    return torch.stack(images).to(torch.get_default_dtype()), [p.name for p in files]


def as_hw(resolution) -> tuple[int, int]:
    """int or (H, W) -> (H, W), each a positive integer."""
    hw = (resolution, resolution) if isinstance(resolution, int) and not isinstance(resolution, bool) else resolution
    if (not isinstance(hw, (tuple, list)) or len(hw) != 2
            or not all(isinstance(v, int) and not isinstance(v, bool) and v > 0 for v in hw)):
        raise ValueError(f"task 'images': resolution must be a positive integer or (height, width), got {resolution!r}")
    return int(hw[0]), int(hw[1])


def check_channels(channels) -> None:
    if channels not in PIL_MODES or isinstance(channels, bool):
        raise ValueError(f"task 'images': channels must be 1 (grey) or 3 (RGB), got {channels!r}")


class ImagesTask(Task):
    name = "images"
    metric_directions = METRIC_DIRECTIONS
    is_image = True
    data_range = (-1.0, 1.0)
    networks = {}  # nothing to pre-train: the model is declared under `denoisers` (e.g. a diffusers UNet2DModel)

    def __init__(self, task_seed: int = 0, folder: str | Path | None = None,
                 resolution: int | tuple[int, int] | None = None, channels: int | None = None,
                 metric_features: str | None = None, metric_lpips: str | None = None, metric_clip: str | None = None,
                 metric_prompt: str | None = None):
        super().__init__(task_seed)
        self.metric_paths = {"metric_features": metric_features, "metric_lpips": metric_lpips,
                             "metric_clip": metric_clip}
        for key, path in self.metric_paths.items():
            if path is not None and not (isinstance(path, str) and path):
                raise ValueError(f"task 'images': {key} must be a local weights path or 'package.module:factory', "
                                 f"got {path!r}")
        if metric_prompt is not None and not (isinstance(metric_prompt, str) and metric_prompt):
            raise ValueError(f"task 'images': metric_prompt must be a non-empty text, got {metric_prompt!r}")
        self.metric_prompt = metric_prompt
        self._metric_nets: dict = {}
        self._real_features: dict = {}
        self.folder = None if folder is None else Path(folder)
        self.images: torch.Tensor | None = None
        self.files: list[str] = []
        if self.folder is not None:
            self.images, self.files = load_folder(self.folder, resolution, channels)
            self._shape = tuple(self.images.shape[1:])
        elif resolution is not None and channels is not None:
            check_channels(channels)
            self._shape = (channels, *as_hw(resolution))
        else:
            self._shape = None

    @property
    def shape(self) -> tuple[int, ...]:
        if self._shape is None:
            raise ValueError("task 'images' needs folder= (the ground-truth images) or resolution= and channels= "
                             "to know its image shape")
        return self._shape

    def ground_truths(self) -> torch.Tensor:
        """The folder's images [N, C, H, W] in [-1, 1], sorted by file name."""
        if self.images is None:
            raise ValueError("task 'images' has no images: give folder=, a folder of PNG / JPEG images at the "
                             "model's resolution (the ground truths of inpaint, superres and deblur)")
        return self.images

    def sample_data(self, n: int, generator: torch.Generator) -> torch.Tensor:
        """n of the folder's images drawn uniformly with replacement: [n, C, H, W]."""
        x = self.ground_truths()
        return x[torch.randint(len(x), (n,), generator=generator)]

    # --- metrics --------------------------------------------------------------------------------

    def sample_metrics(self, x: torch.Tensor, objective=None) -> dict:
        """Per-sample metrics [B] of samples x [B, C, H, W] (clipped to [-1, 1]): inverse problems psnr,
        ssim (on [0, 1]) against each chain's ground truth and meas_error ||y - A x||_2; the reward
        objective diversity (a float, for B >= 2)."""
        x = x.clamp(-1, 1)
        B = x.shape[0]
        out: dict = {}
        with torch.no_grad():
            if isinstance(objective, InverseProblem):
                gt = objective.ground_truth(B, x.device)
                out["psnr"] = psnr(x, gt)
                out["ssim"] = ssim(x, gt)
                out["meas_error"] = objective.residual_norm(x)
            elif B >= 2:
                out["diversity"] = mean_pairwise_distance(x)
            out |= self.standard_metrics(x, objective)
        return out

    # --- standard metrics on local networks (off unless configured) -------------------------------

    def metric_network(self, key: str, device) -> torch.nn.Module | None:
        """The network task parameter `key` names (loaded once, on `device`), or None when it is off."""
        path = self.metric_paths[key]
        if path is None:
            return None
        if key not in self._metric_nets:
            from benchmark.rewards.encoders import load_clip, load_features, load_lpips

            load = {"metric_features": load_features, "metric_lpips": load_lpips, "metric_clip": load_clip}[key]
            net, _ = load(path, f"task 'images': {key}")
            self._metric_nets[key] = net.eval().requires_grad_(False)
        return self._metric_nets[key].to(device)

    def standard_metrics(self, x: torch.Tensor, objective=None) -> dict:
        """fid, kid (floats, against the folder's images), lpips [B] (inverse problems) and clip_score [B] of
        samples x in [-1, 1], those whose network is configured (module docstring)."""
        from benchmark.images.metrics import clip_score, frechet_distance, kernel_distance

        out: dict = {}
        feats = self.metric_network("metric_features", x.device)
        if feats is not None and self.images is not None and x.shape[0] >= 2 and len(self.images) >= 2:
            key = str(x.device)
            if key not in self._real_features:
                self._real_features[key] = feats(self.images.to(x.device, x.dtype)).double()
            f_real, f_x = self._real_features[key], feats(x).double()
            out["fid"] = frechet_distance(f_x, f_real)
            out["kid"] = kernel_distance(f_x, f_real)
        lp = self.metric_network("metric_lpips", x.device)
        if lp is not None and isinstance(objective, InverseProblem):
            out["lpips"] = lp(x, objective.ground_truth(x.shape[0], x.device)).to(torch.get_default_dtype())
        clip = self.metric_network("metric_clip", x.device)
        reward = getattr(objective, "reward", None)
        prompt = self.metric_prompt or getattr(reward, "prompt", None)
        if clip is not None and prompt:
            out["clip_score"] = clip_score(clip.encode_image(x), clip.encode_text([prompt]))
        return out
