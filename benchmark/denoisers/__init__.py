"""Denoisers: the analytic oracle of the subspace task and trainable networks.

DENOISERS names the kinds a cell can ask for; `build_denoiser` turns a name into an
eps-model (x [B, D], t [B]) -> eps [B, D] and its schedule.
"""

from benchmark.denoisers.network import ScoreMLP
from benchmark.denoisers.oracle import SubspaceOracle
from benchmark.denoisers.pretrain import load_checkpoint, pretrain, save_checkpoint

DENOISERS = ("oracle", "trained")

__all__ = ["DENOISERS", "ScoreMLP", "SubspaceOracle", "load_checkpoint", "pretrain", "save_checkpoint"]
