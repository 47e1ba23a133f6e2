"""Denoisers: the analytic oracle of the subspace task and trainable networks.

DENOISERS names the loaders a cell's denoiser can come from (benchmark.denoisers.loaders: oracle,
checkpoint, diffusers, plug-ins); each gives an eps-model (x [B, *shape], t [B]) -> eps [B, *shape]
with its schedule: ScoreMLP for vector tasks, the UNet for image tasks, a diffusers UNet2DModel.
"""

from benchmark.denoisers.network import ScoreMLP
from benchmark.denoisers.oracle import SubspaceOracle
from benchmark.denoisers.pretrain import (ARCHITECTURES, CheckpointError, load_checkpoint, network_metadata, pretrain,
                                         save_checkpoint)
from benchmark.denoisers.pretrain_images import pretrain_unet, unguided_quality
from benchmark.denoisers.unet import UNet

from benchmark.denoisers.loaders import DENOISERS, DenoiserLoader, Loaded

__all__ = ["ARCHITECTURES", "DENOISERS", "DenoiserLoader", "Loaded", "CheckpointError", "network_metadata", "ScoreMLP", "SubspaceOracle", "UNet", "load_checkpoint", "pretrain",
           "pretrain_unet", "save_checkpoint", "unguided_quality"]
