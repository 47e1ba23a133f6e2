"""CLIP score as a reward (Hessel et al. 2021, with torchmetrics' scale w = 100): r(x) = 100 cos(E_I(x), E_T(c)),
the cosine similarity of the image's embedding and the prompt c's, from a local CLIP-like encoder.

No clamp at 0 (the metric CLIPScore = max(100 cos, 0) has no gradient below 0; the reward keeps it).
`weights`: a Hugging Face CLIP folder (needs `transformers`; a clear error names it and the folder) or a
.safetensors file of benchmark.rewards.encoders.TinyCLIP; `prompt`: the text c.
"""

from __future__ import annotations

import torch
from torch import nn

from benchmark.rewards.encoders import load_clip

#: torchmetrics' CLIPScore scale (100 cos); Hessel et al.'s CLIP-S uses 2.5.
CLIP_SCALE = 100.0


class ClipScore(nn.Module):
    """r(x) = w cos(E_I(x), E_T(prompt)) -> [B], w = 100 (in [-100, 100])."""

    name = "clip_score"

    def __init__(self, weights: str, prompt: str):
        super().__init__()
        if not isinstance(prompt, str) or not prompt:
            raise ValueError(f"reward model {self.name!r} needs prompt: a non-empty text, got {prompt!r}")
        self.prompt = prompt
        self.encoder, digest = load_clip(weights, f"reward model {self.name!r}")
        self.files = {"weights": digest}
        self.version = digest
        #: w in r = w cos (a subclass with a learned temperature sets its own: benchmark.rewards.pickscore)
        self.scale = CLIP_SCALE

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        e_i = self.encoder.encode_image(x)
        with torch.no_grad():
            e_t = self.encoder.encode_text([self.prompt])
        cos = (e_i * e_t).sum(-1) / (e_i.norm(dim=-1) * e_t.norm(dim=-1)).clamp_min(1e-12)
        return self.scale * cos
