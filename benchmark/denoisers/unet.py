"""A small convolutional U-Net noise predictor eps_theta(x_t, t) for 8x8 images (the digits task).

The architecture is DDPM's (Ho et al. 2020, App. B) cut to the image size: residual blocks of
GroupNorm -> SiLU -> 3x3 conv with the time embedding added per channel, two resolutions
8x8 -> 4x4 (average-pool down, nearest up), skip connections by concatenation, and two blocks
at the 4x4 bottleneck. No attention: at 4x4 a 3x3 convolution already sees most of the image.
With `channels` = 32 it has 0.41M parameters: enough to model the 1,258 training images of 64
pixels well (unguided samples reach an evaluator confidence close to real images'), small enough
that two CPU cores pre-train it in a few minutes (1,500 steps of 128 images).

Like ScoreMLP it predicts the velocity v = sqrt(ab_t) eps - sqrt(1 - ab_t) x_0 (Salimans & Ho
2022) and returns eps = sqrt(1 - ab_t) x_t + sqrt(ab_t) v, so Tweedie's x0h stays well
conditioned at ab_T ~ 1e-7; the interface is eps_theta(x_t, t) like every other denoiser.

`ResBlock` is shared with the noise-conditional classifier, which (as in Dhariwal & Nichol 2021)
is the encoder half of such a U-Net with a pooled classification head.
"""

from __future__ import annotations

import math

import torch
from torch import nn
from torch.nn import functional as F

from benchmark.denoisers.network import timestep_embedding
from benchmark.diffusion.schedules import make_schedule


def _norm(channels: int) -> nn.GroupNorm:
    """GroupNorm with 8 groups where the width allows (the largest divisor of 8 that divides it)."""
    return nn.GroupNorm(math.gcd(8, channels), channels)


class ResBlock(nn.Module):
    """h + conv(SiLU(norm(conv(SiLU(norm(h))) + W temb))); a 1x1 conv on the skip when widths differ."""

    def __init__(self, c_in: int, c_out: int, t_dim: int):
        super().__init__()
        self.norm1, self.conv1 = _norm(c_in), nn.Conv2d(c_in, c_out, 3, padding=1)
        self.temb = nn.Linear(t_dim, c_out)
        self.norm2, self.conv2 = _norm(c_out), nn.Conv2d(c_out, c_out, 3, padding=1)
        self.skip = nn.Conv2d(c_in, c_out, 1) if c_in != c_out else nn.Identity()

    def forward(self, h: torch.Tensor, temb: torch.Tensor) -> torch.Tensor:
        r = self.conv1(F.silu(self.norm1(h))) + self.temb(temb)[:, :, None, None]
        r = self.conv2(F.silu(self.norm2(r)))
        return self.skip(h) + r


class TimeEmbedding(nn.Module):
    """Sinusoidal embedding of t followed by a two-layer MLP (DDPM): [B] -> [B, t_dim]."""

    def __init__(self, t_dim: int, T: int):
        super().__init__()
        self.t_dim, self.T = t_dim, T
        self.mlp = nn.Sequential(nn.Linear(t_dim, t_dim), nn.SiLU(), nn.Linear(t_dim, t_dim))

    def forward(self, t: torch.Tensor) -> torch.Tensor:
        return self.mlp(timestep_embedding(t, self.t_dim, self.T))


class UNet(nn.Module):
    """x: [B, C, H, W] (H, W divisible by 2), t: [B] integer timesteps in 1..T -> eps: [B, C, H, W]."""

    def __init__(self, T: int, schedule: str = "cosine", channels: int = 32, in_channels: int = 1,
                 t_dim: int = 64):
        super().__init__()
        self.config = dict(T=T, schedule=schedule, channels=channels, in_channels=in_channels, t_dim=t_dim)
        self.register_buffer("ab", make_schedule(schedule, T).ab.float(), persistent=False)
        c = channels
        self.time = TimeEmbedding(t_dim, T)
        self.inp = nn.Conv2d(in_channels, c, 3, padding=1)
        self.down1 = ResBlock(c, c, t_dim)              # H x W
        self.down2 = ResBlock(c, 2 * c, t_dim)          # H/2 x W/2
        self.mid1 = ResBlock(2 * c, 2 * c, t_dim)
        self.mid2 = ResBlock(2 * c, 2 * c, t_dim)
        self.up2 = ResBlock(4 * c, 2 * c, t_dim)        # H/2 x W/2, with the down2 skip
        self.up1 = ResBlock(3 * c, c, t_dim)            # H x W, with the down1 skip
        self.out = nn.Sequential(_norm(c), nn.SiLU(), nn.Conv2d(c, in_channels, 3, padding=1))
        nn.init.zeros_(self.out[-1].weight)             # start as v = 0 (DDPM's zero-initialised output)
        nn.init.zeros_(self.out[-1].bias)

    def forward(self, x: torch.Tensor, t: torch.Tensor) -> torch.Tensor:
        """eps_theta(x_t, t) = sqrt(1 - ab_t) x_t + sqrt(ab_t) v_theta(x_t, t)."""
        ab = self.ab[t].view(-1, 1, 1, 1)
        return (1 - ab).sqrt() * x + ab.sqrt() * self.velocity(x, t)

    def velocity(self, x: torch.Tensor, t: torch.Tensor) -> torch.Tensor:
        """v_theta(x_t, t), the raw network output."""
        temb = self.time(t)
        h1 = self.down1(self.inp(x), temb)                          # [B, c, H, W]
        h2 = self.down2(F.avg_pool2d(h1, 2), temb)                  # [B, 2c, H/2, W/2]
        h = self.mid2(self.mid1(h2, temb), temb)
        h = self.up2(torch.cat([h, h2], 1), temb)
        h = self.up1(torch.cat([F.interpolate(h, scale_factor=2.0, mode="nearest"), h1], 1), temb)
        return self.out(h)
