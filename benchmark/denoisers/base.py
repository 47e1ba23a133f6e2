"""What every denoiser loader is (benchmark.denoisers.loaders registers them): a class with `needs_source`,
`trainable`, `reads` and `load(spec, task, device) -> Loaded(model, schedule, networks)`. Apart from the
registry so that a loader module (flow.py, latent.py) imports it without a cycle."""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import ClassVar

import torch


@dataclass
class Loaded:
    model: torch.nn.Module                      # eps-model (x [B, *shape], t [B] long) -> eps
    schedule: object                            # VPSchedule
    networks: dict = field(default_factory=dict)  # kind -> {"file", "sha256", figures...}
    trainable: torch.nn.Module | None = None     # what Algorithm 2 fine-tunes


class DenoiserLoader:
    needs_source: ClassVar[bool] = True
    #: Algorithm 2 may fine-tune the loaded network.
    trainable: ClassVar[bool] = False
    #: A text-conditional model with classifier-free guidance: it reads the sampling setting `cfg` (its scale w).
    takes_cfg: ClassVar[bool] = False
    #: The cell spec's fields the loaded model may depend on besides the task, the denoiser and the sampling
    #: (a job reuses a round-0 batch across cells that agree on these, benchmark.cell.Cell.round0_key).
    #: A plug-in's model may read anything, so by default these too; the built-in loaders read none.
    reads: ClassVar[tuple[str, ...]] = ("objective", "objective_params", "rounds")

    @classmethod
    def load(cls, spec, task, device: str) -> Loaded:
        raise NotImplementedError
