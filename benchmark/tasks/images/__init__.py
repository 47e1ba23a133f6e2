"""The `images` task: guidance on real pre-trained image models, with a folder of images as ground truths."""

from benchmark.tasks.images.task import METRIC_DIRECTIONS, ImagesTask, load_folder

__all__ = ["ImagesTask", "METRIC_DIRECTIONS", "load_folder"]
