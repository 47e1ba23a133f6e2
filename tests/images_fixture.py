"""A folder of image files for the `images` task's tests and the CI end-to-end run, and reward functions
that tests name by import path ('images_fixture:brightness'; tests/ is on sys.path under pytest).

`write_digit_folder(folder, n, channels)` writes the first n of scikit-learn's 8x8 digits (the
digits task's `load_images`, no download) upsampled to size x size (bilinear) as 8-bit PNGs
digit_000.png, digit_001.png, ...: grey (mode L) for channels=1; for channels=3 a colour image
(R, G, B) = (v, 3v/4, 255 - v) of the grey value v, so that colour-to-grey conversion is exercised.
"""

from __future__ import annotations

from pathlib import Path

import numpy as np
import torch
from PIL import Image
from torch.nn import functional as F


def save_tiny_model(folder: str | Path) -> Path:
    """A DDPMPipeline folder (model_index.json, unet/, scheduler/) of a tiny randomly initialised 1x32x32
    UNet2DModel (v-prediction, T = 100, torch seed 0); needs diffusers."""
    import diffusers

    torch.manual_seed(0)
    unet = diffusers.UNet2DModel(sample_size=32, in_channels=1, out_channels=1, layers_per_block=1,
                                 block_out_channels=(8, 16), down_block_types=("DownBlock2D", "DownBlock2D"),
                                 up_block_types=("UpBlock2D", "UpBlock2D"), norm_num_groups=4)
    scheduler = diffusers.DDPMScheduler(num_train_timesteps=100, prediction_type="v_prediction")
    diffusers.DDPMPipeline(unet=unet, scheduler=scheduler).save_pretrained(folder)
    return Path(folder)


def digit_pixels(n: int, size: int = 32) -> np.ndarray:
    """The first n digits as uint8 grey images [n, size, size] (0 = background, 255 = stroke)."""
    from benchmark.tasks.digits import load_images

    x = load_images()[0][:n]                                                   # [n, 1, 8, 8] in [-1, 1]
    x = F.interpolate(x, size=(size, size), mode="bilinear", align_corners=False)
    return ((x[:, 0].clamp(-1, 1) + 1) * 127.5).round().to(torch.uint8).numpy()


def write_digit_folder(folder: str | Path, n: int = 10, channels: int = 1, size: int = 32) -> list[Path]:
    """Write n digit images (PNG, size x size, 1 or 3 channels) into `folder`; return their paths, sorted."""
    if channels not in (1, 3):
        raise ValueError(f"channels must be 1 or 3, got {channels!r}")
    folder = Path(folder)
    folder.mkdir(parents=True, exist_ok=True)
    paths = []
    for i, v in enumerate(digit_pixels(n, size)):
        if channels == 1:
            img = Image.fromarray(v)
        else:
            v = v.astype(np.int32)
            img = Image.fromarray(np.stack([v, 3 * v // 4, 255 - v], -1).astype(np.uint8))
        path = folder / f"digit_{i:03d}.png"
        img.save(path)
        paths.append(path)
    return paths


# --- reward functions named by import path --------------------------------------------------------

def brightness(x: torch.Tensor) -> torch.Tensor:
    """Mean pixel value per image: [B, C, H, W] -> [B] (differentiable)."""
    return x.flatten(1).mean(-1)


def wrong_shape(x: torch.Tensor) -> torch.Tensor:
    """One reward per image but as [B, 1]: refused."""
    return x.flatten(1).mean(-1, keepdim=True)


def detached(x: torch.Tensor) -> torch.Tensor:
    """[B] but cut from autograd: refused under a gradient."""
    return x.detach().flatten(1).mean(-1)


NOT_CALLABLE = 3.0
