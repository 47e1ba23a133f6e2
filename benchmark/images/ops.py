"""Differentiable per-sample image operations shared by augmentations and pre-training."""

from __future__ import annotations

import torch
from torch.nn import functional as F


def translate(x: torch.Tensor, shift: torch.Tensor, fill: float = -1.0) -> torch.Tensor:
    """Translate each image by its own integer (dy, dx): output pixel (i, j) is input (i - dy, j - dx),
    pixels from outside the image are `fill`. x: [B, C, H, W], shift: [B, 2] long. Differentiable in x."""
    B, C, H, W = x.shape
    pad = int(shift.abs().max()) if shift.numel() else 0
    xp = F.pad(x, (pad, pad, pad, pad), value=fill)
    rows = torch.arange(H, device=x.device) + pad - shift[:, :1].to(x.device)   # [B, H]
    cols = torch.arange(W, device=x.device) + pad - shift[:, 1:].to(x.device)   # [B, W]
    batch = torch.arange(B, device=x.device)[:, None, None]
    return xp[batch, :, rows[:, :, None], cols[:, None, :]].permute(0, 3, 1, 2)
