"""Sample galleries: a grid of image samples saved as a PNG next to a cell's Parquet file.

Contract with the report: for an image task the gallery of `X.parquet` is `X.png` (the final
round's samples, at most 10 x 10 tiles, 10 to a row so that with digits' `target=all` (chain i
targets class i mod 10) column j holds class j, each pixel shown as a `scale` x `scale` block, samples
clipped to [-1, 1] and shown black = -1 to white = 1; 1 channel as grey, 3 as RGB), written atomically
like every result. The default scale makes tiles about 32 px a side: `auto_scale` = max(1, 32 // max(H, W))
(4 for digits' 8x8, 1 from 32x32 up: real images are shown at their own resolution).
"""

from __future__ import annotations

import math
from pathlib import Path

import numpy as np
import torch
from PIL import Image, ImageDraw

from benchmark.results import atomic_path

MAX_COLS = 10
MAX_TILES = MAX_COLS ** 2
#: Tiles are drawn about this many pixels a side (small images are enlarged, never shrunk).
TILE_PX = 32


def auto_scale(H: int, W: int) -> int:
    """The default pixel scale of a gallery of H x W images: max(1, TILE_PX // max(H, W))."""
    return max(1, TILE_PX // max(H, W))


def gallery_path(parquet: str | Path) -> Path:
    """Where the gallery of a cell's Parquet file goes: the same path with suffix .png."""
    return Path(parquet).with_suffix(".png")


def grid_image(x: torch.Tensor | None, scale: int | None = None, border: int = 1) -> Image.Image:
    """x: [B, C, H, W] in [-1, 1] (C = 1 or 3) -> a grid of the first 100 samples, 10 per row at most,
    each pixel a `scale` x `scale` block (None: `auto_scale(H, W)`).

    None or an empty batch gives a small grey tile saying so (a cell that produced no samples)."""
    if x is None or x.shape[0] == 0:
        img = Image.new("L", (96, 24), 128)
        ImageDraw.Draw(img).text((4, 6), "no samples", fill=0)
        return img
    x = torch.nan_to_num(x.detach().float().cpu(), nan=0.0).clamp(-1, 1)[:MAX_TILES]
    B, C, H, W = x.shape
    if C not in (1, 3):
        raise ValueError(f"a gallery shows 1-channel (grey) or 3-channel (RGB) images, got {C} channels")
    scale = auto_scale(H, W) if scale is None else scale
    cols = min(MAX_COLS, B)
    rows = math.ceil(B / cols)
    tile_h, tile_w = H * scale + border, W * scale + border
    canvas = np.full((rows * tile_h + border, cols * tile_w + border, C), 96, dtype=np.uint8)
    pixels = ((x + 1) * 127.5).round().to(torch.uint8)
    pixels = pixels.repeat_interleave(scale, 2).repeat_interleave(scale, 3).permute(0, 2, 3, 1).numpy()
    for i in range(B):
        r, c = divmod(i, cols)
        top, left = border + r * tile_h, border + c * tile_w
        canvas[top:top + H * scale, left:left + W * scale] = pixels[i]
    return Image.fromarray(canvas[..., 0] if C == 1 else canvas)


def save_gallery(x: torch.Tensor | None, path: str | Path, scale: int | None = None) -> Path:
    """Write the grid of x as a PNG at `path`, atomically."""
    path = Path(path)
    with atomic_path(path) as tmp:
        grid_image(x, scale=scale).save(tmp, format="PNG")
    return path
