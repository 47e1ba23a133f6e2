"""Denoisers: the analytic oracle of the subspace task and trainable networks.

DENOISERS names the kinds a cell can ask for; each is an eps-model (x [B, *shape], t [B]) -> eps
[B, *shape] with its schedule: ScoreMLP for vector tasks, the UNet for image tasks.
"""

from benchmark.denoisers.network import ScoreMLP
from benchmark.denoisers.oracle import SubspaceOracle
from benchmark.denoisers.pretrain import (ARCHITECTURES, CheckpointError, load_checkpoint, network_metadata, pretrain,
                                         save_checkpoint)
from benchmark.denoisers.pretrain_images import pretrain_unet, unguided_quality
from benchmark.denoisers.unet import UNet

DENOISERS = ("oracle", "trained")

__all__ = ["ARCHITECTURES", "DENOISERS", "CheckpointError", "network_metadata", "ScoreMLP", "SubspaceOracle", "UNet", "load_checkpoint", "pretrain",
           "pretrain_unet", "save_checkpoint", "unguided_quality"]
