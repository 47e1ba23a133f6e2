"""Tiny random stand-ins of the reward models' and image metrics' networks (nothing downloaded), and a reward
model that tests and the README name by import path ('reward_fixture:Brightness'; tests/ is on sys.path).

`write_reward_weights(folder)` writes, from fixed seeds (so the files are byte-identical on every run):
- tiny_clip.safetensors: benchmark.rewards.encoders.TinyCLIP (width 8, 16-d embeddings, input 16 px);
- aesthetic_head.safetensors: an aesthetic head with the published key layout layers.{0,2,4,6,7} (16 -> 12 -> 8
  -> 6 -> 4 -> 1, as 768 -> 1024 -> 128 -> 64 -> 16 -> 1 with dropouts at 1, 3, 5);
- tiny_lpips.safetensors: a TinyLPIPSNet (widths 4, 8) with non-negative heads and LPIPS's shift / scale.
tests/fixtures/rewards/ holds these files as written (tests/rewards/test_encoders.py checks they regenerate).
"""

from __future__ import annotations

from pathlib import Path

import torch
from torch import nn

from benchmark.rewards import load_state_dict, local_path, sha256_file

FIXTURES = Path(__file__).parent / "fixtures" / "rewards"
#: The published head's Sequential indices of its Linear layers (dropouts between them).
HEAD_LAYERS = (0, 2, 4, 6, 7)
HEAD_SIZES = (16, 12, 8, 6, 4, 1)


def aesthetic_head_state(seed: int = 1) -> dict[str, torch.Tensor]:
    with torch.random.fork_rng(devices=[]):
        torch.manual_seed(seed)
        state = {}
        for i, (n_in, n_out) in zip(HEAD_LAYERS, zip(HEAD_SIZES[:-1], HEAD_SIZES[1:])):
            lin = nn.Linear(n_in, n_out)
            state[f"layers.{i}.weight"], state[f"layers.{i}.bias"] = lin.weight.detach(), lin.bias.detach()
    return state


def write_reward_weights(folder: str | Path) -> dict[str, Path]:
    """Write the three stand-in weight files into `folder`; return {role: path}."""
    from safetensors.torch import save_file

    from benchmark.rewards.encoders import TinyCLIP, random_lpips_state

    folder = Path(folder)
    folder.mkdir(parents=True, exist_ok=True)
    paths = {"clip": folder / "tiny_clip.safetensors", "head": folder / "aesthetic_head.safetensors",
             "lpips": folder / "tiny_lpips.safetensors"}
    TinyCLIP.random(seed=0).save(paths["clip"])
    save_file(aesthetic_head_state(), str(paths["head"]))
    save_file(random_lpips_state(seed=2), str(paths["lpips"]))
    return paths


class Brightness(nn.Module):
    """A plug-in reward model in one class: r(x) = scale * mean pixel, `scale` read from its weights file."""

    name = "brightness"

    def __init__(self, weights: str):
        super().__init__()
        path = local_path("reward model 'brightness'", weights)
        self.register_buffer("scale", load_state_dict(path)["scale"])
        self.version = sha256_file(path)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.scale * x.flatten(1).mean(-1)


class NoVersion(nn.Module):
    """Breaks the protocol: no `version`."""

    name = "no_version"

    def __init__(self, weights: str):
        super().__init__()

    def forward(self, x):
        return x.flatten(1).mean(-1)


if __name__ == "__main__":                                   # regenerate tests/fixtures/rewards/
    print(write_reward_weights(FIXTURES))
