"""benchmark/objectives/digits.py: the digits task's objectives as components: the networks each one loads, its
parameter checks made on the task's class before anything loads, and each test image's fixed measurement noise
(`_observation`). Built with pre-trained networks, they are tested with the task in tests/tasks/test_digits.py."""

import pytest
import torch

from benchmark.objectives.digits import DigitsInpaint, DigitsLabel, DigitsReward, DigitsSuperRes, _observation
from benchmark.tasks import make_task
from benchmark.tasks.digits import DigitsTask


def test_each_objective_names_the_networks_it_loads():
    assert DigitsLabel.needs_networks == ("classifier", "noisy_classifier")     # cg guides with the noisy one
    assert DigitsReward.needs_networks == ("classifier",)
    assert DigitsInpaint.needs_networks == DigitsSuperRes.needs_networks == ()
    assert {c.name for c in (DigitsLabel, DigitsInpaint, DigitsSuperRes, DigitsReward)} == {
        "label", "inpaint", "superres", "reward"}
    assert all(c.tasks == ("digits",) for c in (DigitsLabel, DigitsInpaint, DigitsSuperRes, DigitsReward))


def test_parameters_are_checked_on_the_task_class():
    DigitsLabel.check_params({"target": 9}, DigitsTask)
    DigitsInpaint.check_params(DigitsInpaint.param_defaults() | {"image": 269}, DigitsTask)
    DigitsReward.check_params({"head": 4}, DigitsTask)
    for cls, params, message in (
            (DigitsLabel, {"target": 10}, r"objective 'label': target must be an integer class 0..9 or 'all', got 10"),
            (DigitsInpaint, {"mask": "ring"}, r"objective 'inpaint': unknown mask 'ring'; allowed: \['centre', "
                                              r"'lower_half'\]"),
            (DigitsInpaint, {"image": 270}, r"objective 'inpaint': image must be 'all' or an index 0..269 of the "
                                            r"test split, got 270"),
            (DigitsSuperRes, {"image": -1}, r"objective 'superres': image must be 'all' or an index 0..269"),
            (DigitsSuperRes, {"sigma_y": -1.0}, r"objective 'superres': sigma_y must be a finite number >= 0"),
            (DigitsReward, {"head": 1.5}, r"objective 'reward': head must be an integer \(which random head\), got "
                                          r"1.5")):
        with pytest.raises(ValueError, match=message):
            cls.check_params(cls.param_defaults() | params, DigitsTask)


def test_observation_noise_is_one_fixed_draw_per_test_image():
    task = make_task("digits")
    x_all, n_all = _observation(task, "inpaint", "all", (1, 8, 8))
    x_9, n_9 = _observation(task, "inpaint", 9, (1, 8, 8))
    assert x_all.shape == n_all.shape == (270, 1, 8, 8)
    assert torch.equal(x_all, task.split("test")[0])
    assert torch.equal(x_9, x_all[9:10]) and torch.equal(n_9, n_all[9:10])
    _, again = _observation(task, "inpaint", "all", (1, 8, 8))
    assert torch.equal(again, n_all)
    _, other = _observation(task, "superres", "all", (1, 4, 4))
    assert other.shape == (270, 1, 4, 4) and not torch.equal(other, n_all[:, :, :4, :4])
