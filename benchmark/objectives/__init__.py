"""Objectives: rewards r(x) -> [B] to maximise. Which objective a task offers is the task's business."""

from benchmark.objectives.base import Objective
from benchmark.objectives.gaussian_inverse import GaussianInverse
from benchmark.objectives.inpaint import Inpaint
from benchmark.objectives.label import Label
from benchmark.objectives.linear import Linear
from benchmark.objectives.negnorm import NegNorm
from benchmark.objectives.quadratic import Quadratic
from benchmark.objectives.reward import FeatureReward
from benchmark.objectives.superres import SuperRes

__all__ = ["Objective", "FeatureReward", "GaussianInverse", "Inpaint", "Label", "Linear", "NegNorm", "Quadratic",
           "SuperRes"]
