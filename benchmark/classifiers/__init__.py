"""Classifiers of image tasks: the guiding classifier, the noise-conditional classifier of classifier
guidance and the independent evaluator; their pre-training and safe checkpoints."""

from benchmark.classifiers.networks import NETWORKS, EvaluatorCNN, GuideCNN, NoisyClassifier
from benchmark.classifiers.pretrain import load_classifier, pretrain_classifier, save_classifier

__all__ = ["NETWORKS", "EvaluatorCNN", "GuideCNN", "NoisyClassifier", "load_classifier", "pretrain_classifier",
           "save_classifier"]
