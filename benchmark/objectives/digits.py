"""The digits task's objectives (benchmark.tasks.digits), each built from the task: `label` (the guiding
classifier's log-probability of a target class), `inpaint` and `superres` (restoring held-out test images from
a noisy measurement), `reward` (a random linear head on the classifier's features).

Building one checks its parameters, then loads the networks it needs (`needs_networks`) and the evaluator
(every digits cell's metrics need it), so a missing network fails before anything runs. The inverse problems'
ground truths are the test split; each test image's measurement noise is one fixed draw from the task seed,
whichever images a cell restores.
"""

from __future__ import annotations

import torch

from benchmark.objectives.inpaint import MASKS, Inpaint
from benchmark.objectives.inverse import InverseProblem
from benchmark.objectives.label import Label
from benchmark.objectives.reward import FeatureReward
from benchmark.objectives.superres import SuperRes


def _load_networks(task, kinds: tuple[str, ...]) -> None:
    """Load `kinds` and the evaluator: a missing network is a ValueError naming the command that makes it."""
    for kind in kinds + ("evaluator",):
        task.network(kind)


def _observation(task, name: str, image: int | str, measurement: tuple[int, ...]):
    """(x_star, noise): the test images the chains restore (all, or image k) [L, C, H, W] and their
    measurement noise [L, *measurement], one fixed draw per test image."""
    x_test, _ = task.split("test")
    pick = slice(None) if image == "all" else slice(image, image + 1)
    noise = torch.randn((len(x_test), *measurement), generator=task.generator("observation", name))
    return x_test[pick], noise[pick]


def _check_inverse(name: str, params: dict, task: type, task_seed: int) -> None:
    """sigma_y a finite number >= 0; image 'all' or an index of the test split (the task's split: built)."""
    InverseProblem.check_sigma_y(name, params["sigma_y"])
    if name == "inpaint" and params["mask"] not in MASKS:
        raise ValueError(f"objective 'inpaint': unknown mask {params['mask']!r}; allowed: {list(MASKS)}")
    image = params["image"]
    if image != "all":
        n_test = len(task(task_seed).split("test")[0])
        if isinstance(image, bool) or not isinstance(image, int) or not 0 <= image < n_test:
            raise ValueError(f"objective {name!r}: image must be 'all' or an index 0..{n_test - 1} of "
                             f"the test split, got {image!r}")


class DigitsLabel(Label):
    """log p_phi(c | x) under the guiding classifier; cg guides with the noise-conditional one."""

    tasks = ("digits",)
    needs_networks = ("classifier", "noisy_classifier")

    def __init__(self, task, target: int | str = "all"):
        self.check_params({"target": target}, type(task), task.task_seed)
        _load_networks(task, self.needs_networks)
        super().__init__(task.network("classifier"), task.network("noisy_classifier"), target, task.num_classes)

    @classmethod
    def check_params(cls, params: dict, task: type, task_seed: int = 0) -> None:
        Label.check_target(params["target"], task.num_classes)


class DigitsInpaint(Inpaint):
    """Restore the test images from their pixels outside a mask ("centre" or "lower_half")."""

    tasks = ("digits",)

    def __init__(self, task, image: int | str = "all", sigma_y: float = 0.05, mask: str = "centre"):
        self.check_params({"image": image, "sigma_y": sigma_y, "mask": mask}, type(task), task.task_seed)
        _load_networks(task, self.needs_networks)
        x_star, noise = _observation(task, self.name, image, task.shape)
        super().__init__(x_star, noise, sigma_y, image, mask)

    @classmethod
    def check_params(cls, params: dict, task: type, task_seed: int = 0) -> None:
        _check_inverse(cls.name, params, task, task_seed)


class DigitsSuperRes(SuperRes):
    """Restore the test images from their 2x2 average pooling (8x8 -> 4x4)."""

    tasks = ("digits",)

    def __init__(self, task, image: int | str = "all", sigma_y: float = 0.05):
        self.check_params({"image": image, "sigma_y": sigma_y}, type(task), task.task_seed)
        _load_networks(task, self.needs_networks)
        C, H, W = task.shape
        x_star, noise = _observation(task, self.name, image, (C, H // self.factor, W // self.factor))
        super().__init__(x_star, noise, sigma_y, image)

    @classmethod
    def check_params(cls, params: dict, task: type, task_seed: int = 0) -> None:
        _check_inverse(cls.name, params, task, task_seed)


class DigitsReward(FeatureReward):
    """A random head (`head` picks the draw) on the guiding classifier's features of the training images."""

    tasks = ("digits",)
    needs_networks = ("classifier",)

    def __init__(self, task, head: int = 0):
        self.check_params({"head": head}, type(task), task.task_seed)
        _load_networks(task, self.needs_networks)
        with torch.no_grad():
            features = task.network("classifier").features(task.split("train")[0])
        w, mu, s = FeatureReward.fit_head(features, task.generator("reward-head", head))
        super().__init__(task.network("classifier"), w, mu, s, head)

    @classmethod
    def check_params(cls, params: dict, task: type, task_seed: int = 0) -> None:
        head = params["head"]
        if not isinstance(head, int) or isinstance(head, bool):
            raise ValueError(f"objective 'reward': head must be an integer (which random head), got {head!r}")
