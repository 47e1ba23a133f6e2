"""Objectives: rewards r(x) -> [B] to maximise. Which objective a task offers is the task's business."""

from benchmark.objectives.base import Objective
from benchmark.objectives.linear import Linear
from benchmark.objectives.negnorm import NegNorm
from benchmark.objectives.quadratic import Quadratic

__all__ = ["Objective", "Linear", "NegNorm", "Quadratic"]
