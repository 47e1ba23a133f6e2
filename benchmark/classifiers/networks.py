"""The three classifiers of an image task: x [B, C, H, W] (H, W divisible by 4) -> logits [B, K].

- `GuideCNN`, the *guiding* classifier on clean images: what training-free methods differentiate
  (through x0h) and what the `label` objective's log p(c | x) comes from. Smooth activations
  (SiLU) and average pooling, so its input gradient is defined everywhere; trained on the train
  split only, without augmentation, like an off-the-shelf classifier.
- `NoisyClassifier`, the *noise-conditional* classifier p(c | x_t, t) of classifier guidance:
  as in Dhariwal & Nichol (2021) the encoder half of the denoiser's U-Net (residual blocks with
  the time embedding) with a pooled linear head; trained on x_t across all timesteps.
- `EvaluatorCNN`, the *independent evaluator*: another architecture (batch norm, ReLU, max pooling,
  dropout, a narrower feature layer) trained on another split (train + validation), never used to
  guide, as TFG evaluates with a network that did not guide (Ye et al. 2024). Its penultimate
  features are the embedding of the Frechet distance.

`features(x)` is each clean-image classifier's penultimate layer: [B, feature_dim].
"""

from __future__ import annotations

import torch
from torch import nn
from torch.nn import functional as F

from benchmark.denoisers.unet import ResBlock, TimeEmbedding, _norm
from benchmark.diffusion.schedules import make_schedule


class GuideCNN(nn.Module):
    """conv 3x3 -> SiLU -> avg-pool, twice, then a SiLU feature layer and a linear head (~0.1M parameters)."""

    def __init__(self, channels: int = 32, feature_dim: int = 128, num_classes: int = 10, in_channels: int = 1,
                 size: int = 8):
        super().__init__()
        self.config = dict(channels=channels, feature_dim=feature_dim, num_classes=num_classes,
                           in_channels=in_channels, size=size)
        c = channels
        self.conv1 = nn.Conv2d(in_channels, c, 3, padding=1)
        self.conv2 = nn.Conv2d(c, 2 * c, 3, padding=1)
        self.fc = nn.Linear(2 * c * (size // 4) ** 2, feature_dim)
        self.head = nn.Linear(feature_dim, num_classes)

    def features(self, x: torch.Tensor) -> torch.Tensor:
        h = F.avg_pool2d(F.silu(self.conv1(x)), 2)
        h = F.avg_pool2d(F.silu(self.conv2(h)), 2)
        return F.silu(self.fc(h.flatten(1)))

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.head(self.features(x))


class NoisyClassifier(nn.Module):
    """p(c | x_t, t): x_t [B, C, H, W], t [B] integer timesteps in 1..T -> logits [B, K]."""

    def __init__(self, T: int, schedule: str = "cosine", channels: int = 32, t_dim: int = 64,
                 num_classes: int = 10, in_channels: int = 1):
        super().__init__()
        self.config = dict(T=T, schedule=schedule, channels=channels, t_dim=t_dim, num_classes=num_classes,
                           in_channels=in_channels)
        make_schedule(schedule, T)  # validates the names the sampler will be checked against
        c = channels
        self.time = TimeEmbedding(t_dim, T)
        self.inp = nn.Conv2d(in_channels, c, 3, padding=1)
        self.block1 = ResBlock(c, c, t_dim)             # H x W
        self.block2 = ResBlock(c, 2 * c, t_dim)         # H/2 x W/2
        self.block3 = ResBlock(2 * c, 2 * c, t_dim)     # H/4 x W/4
        self.out = nn.Sequential(_norm(2 * c), nn.SiLU())
        self.head = nn.Linear(2 * c, num_classes)

    def forward(self, x: torch.Tensor, t: torch.Tensor) -> torch.Tensor:
        temb = self.time(t)
        h = self.block1(self.inp(x), temb)
        h = self.block2(F.avg_pool2d(h, 2), temb)
        h = self.block3(F.avg_pool2d(h, 2), temb)
        return self.head(self.out(h).mean(dim=(2, 3)))            # global average pool


class EvaluatorCNN(nn.Module):
    """(conv 3x3 -> batch norm -> ReLU) x2 -> max-pool, conv -> BN -> ReLU -> max-pool, ReLU features, dropout."""

    def __init__(self, channels: int = 32, feature_dim: int = 64, num_classes: int = 10, in_channels: int = 1,
                 size: int = 8, dropout: float = 0.3):
        super().__init__()
        self.config = dict(channels=channels, feature_dim=feature_dim, num_classes=num_classes,
                           in_channels=in_channels, size=size, dropout=dropout)
        c = channels

        def conv(a, b):
            return [nn.Conv2d(a, b, 3, padding=1, bias=False), nn.BatchNorm2d(b), nn.ReLU()]

        self.body = nn.Sequential(*conv(in_channels, c), *conv(c, c), nn.MaxPool2d(2),
                                  *conv(c, 2 * c), nn.MaxPool2d(2), nn.Flatten(),
                                  nn.Linear(2 * c * (size // 4) ** 2, feature_dim), nn.ReLU())
        self.drop = nn.Dropout(dropout)
        self.head = nn.Linear(feature_dim, num_classes)

    def features(self, x: torch.Tensor) -> torch.Tensor:
        return self.body(x)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.head(self.drop(self.features(x)))


#: The checkpoint kinds of an image task and the architecture each one is.
NETWORKS: dict[str, type[nn.Module]] = {
    "classifier": GuideCNN,
    "noisy_classifier": NoisyClassifier,
    "evaluator": EvaluatorCNN,
}
