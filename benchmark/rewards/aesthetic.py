"""Aesthetic predictor (LAION "improved aesthetic predictor", Schuhmann 2022): r(x) = MLP(e(x) / ||e(x)||),
e the image embedding of a local CLIP-like encoder (the published head: CLIP ViT-L/14, 768-d).

The head is the published one's: linear layers applied in order with no nonlinearity between them (its
ReLUs are commented out; its dropouts are the identity at evaluation), 768 -> 1024 -> 128 -> 64 -> 16 -> 1,
keys `layers.{i}.weight` / `layers.{i}.bias` (christophschuhmann/improved-aesthetic-predictor,
simple_inference.py: MLP, normalized). Its `sac+logos+ava1-l14-linearMSE.pth` is such a state dict, read with
torch.load(weights_only=True); a .safetensors file with the same keys is read as well. Layer sizes are read
from the file, so any depth works.
"""

from __future__ import annotations

import re

import torch
from torch import nn

from benchmark.rewards import combined_digest, load_state_dict, local_path, weights_digest
from benchmark.rewards.encoders import load_clip

LAYER_KEY = re.compile(r"^layers\.(\d+)\.weight$")


class AestheticPredictor(nn.Module):
    """r(x) = MLP(e(x) / ||e(x)||_2) -> [B]; `weights`: the head's file; `encoder`: the CLIP folder or file."""

    name = "aesthetic"

    def __init__(self, weights: str, encoder: str):
        super().__init__()
        state = load_state_dict(local_path("reward model 'aesthetic'", weights))
        idx = sorted(int(m.group(1)) for k in state if (m := LAYER_KEY.match(k)))
        if not idx:
            raise ValueError(f"reward model 'aesthetic': {weights!r} has no keys layers.<i>.weight (the published "
                             "head's MLP); keys found: " + ", ".join(sorted(state)[:8]))
        layers = []
        for i in idx:
            w = state[f"layers.{i}.weight"]
            lin = nn.Linear(w.shape[1], w.shape[0], bias=f"layers.{i}.bias" in state)
            lin.load_state_dict({"weight": w} | ({"bias": state[f"layers.{i}.bias"]} if lin.bias is not None else {}))
            layers.append(lin)
        if layers[-1].out_features != 1:
            raise ValueError(f"reward model 'aesthetic': the head's last layer has {layers[-1].out_features} outputs, "
                             "expected 1 (one score per image)")
        self.head = nn.Sequential(*layers)
        self.encoder, encoder_sha = load_clip(encoder, "reward model 'aesthetic'")
        self.files = {"weights": weights_digest(weights), "encoder": encoder_sha}
        self.version = combined_digest(self.files)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        e = self.encoder.encode_image(x)
        e = e / e.norm(dim=-1, keepdim=True).clamp_min(1e-12)
        return self.head(e.to(self.head[0].weight.dtype)).squeeze(-1)
