"""benchmark/tasks/latent.py: the `latent` task's own parameters, without a pipeline (nothing here loads diffusers or
a model): errors naming the bad key and what is allowed, the prompt file read when the task is built and the prompt
each chain takes, the classifier-free guidance scale, no data and no range, and the reward-model objective taking
the cell's prompt. The task on a tiny pipeline (shape, conditioning, decoded rewards, cells end to end):
tests/denoisers/test_latent.py."""

import json
from pathlib import Path

import pytest
import torch

from benchmark.tasks import make_task
from benchmark.tasks.images.objectives import RewardModelObjective
from benchmark.tasks.latent import LatentRewardModel, LatentTask

PROMPTS = Path(__file__).resolve().parents[1] / "fixtures" / "latent_prompts.txt"   # 3 prompts, '#' comments


def _task(**params):
    return LatentTask(**({"pipeline": "no/such/pipeline", "prompts": str(PROMPTS)} | params))


@pytest.mark.parametrize("params, match", [
    ({"pipeline": None}, "task 'latent' needs pipeline: a Stable-Diffusion-style pipeline folder"),
    ({"pipeline": ""}, "task 'latent' needs pipeline"),
    ({"prompts": None}, r"task 'latent' needs prompts: a prompt file \(.txt one per line, or a JSON list\)"),
    ({"prompt": -1}, r"task 'latent': prompt must be 'all' or a prompt's index \(>= 0\), got -1"),
    ({"prompt": True}, r"prompt must be 'all' or a prompt's index \(>= 0\), got True"),
    ({"prompt": "first"}, r"prompt must be 'all' or a prompt's index \(>= 0\), got 'first'"),
])
def test_bad_parameters_name_the_key_and_what_is_allowed(params, match):
    with pytest.raises(ValueError, match=match):
        _task(**params)


def test_an_unknown_parameter_names_the_allowed_ones():
    with pytest.raises(ValueError, match=r"task 'latent' has no parameter\(s\) \['steps'\]; allowed: \['pipeline', "
                                         r"'prompts', 'embeds', 'prompt', 'negative'\]"):
        make_task("latent", pipeline="p", prompts=str(PROMPTS), steps=3)


def test_prompts_are_read_from_the_file_and_each_chain_takes_one(tmp_path):
    """.txt: one per line, '#' lines and blank lines skipped; an index: every chain that prompt; "all": chain i
    prompt i mod P; an index out of range names the file and its count; .json: a list."""
    one = _task(prompt=1)
    assert one.prompts == ["A red colored car.", "A photo of a cat sitting on a wooden bench.",
                           "An oil painting of a lighthouse at sunset."]
    assert [one.prompt_text(i) for i in range(3)] == [one.prompts[1]] * 3
    every = _task(prompt="all")
    assert [every.prompt_text(i) for i in range(5)] == [every.prompts[i % 3] for i in range(5)]
    with pytest.raises(ValueError, match=f"task 'latent': prompt 3 is out of range: .*{PROMPTS.name} holds 3 prompts"):
        _task(prompt=3)
    (tmp_path / "p.json").write_text(json.dumps(["a dog", {"prompt": "a cat"}]))
    assert _task(prompts=str(tmp_path / "p.json"), prompt="all").prompts == ["a dog", "a cat"]
    with pytest.raises(ValueError, match="prompt file .*none.txt' does not exist"):
        _task(prompts=str(tmp_path / "none.txt"))


def test_cfg_is_a_sampling_setting_not_a_task_parameter():
    """The guidance scale is the cell spec's sampling.cfg (tests/test_spec.py), read by the loader."""
    with pytest.raises(ValueError, match=r"task 'latent' has no parameter\(s\) \['cfg'\]"):
        make_task("latent", pipeline="p", prompts=str(PROMPTS), cfg=7.5)
    t = _task(negative="blurry")
    assert (t.negative, t.prompt, t.embeds) == ("blurry", 0, None) and not hasattr(t, "cfg")


def test_no_data_no_range_no_gallery_and_nothing_loaded_for_one_latent():
    t = _task()
    assert t.data_range is None and not t.is_image and not t.has_oracle and t.networks == {}
    assert t.metric_directions == {"diversity": "higher"}
    with pytest.raises(ValueError, match="task 'latent' has no data: its denoiser is a pre-trained latent"):
        t.sample_data(2, torch.Generator())
    assert t.sample_metrics(torch.zeros(1, 4, 8, 8)) == {}                # one latent: no decode (no pipeline here)


def test_a_reward_model_that_takes_a_prompt_gets_the_cells():
    """clip_score needs a prompt: the images task's objective refuses it without one; the latent task's fills in
    the cell's prompt text (before any file exists)."""
    params = {"model": "clip_score", "weights": "models/clip", "encoder": None, "prompt": None, "sha256": None}
    with pytest.raises(ValueError, match=r"reward model 'clip_score' needs option\(s\) \['prompt'\]"):
        RewardModelObjective.check_params(params, LatentTask)
    LatentRewardModel.check_params(params, LatentTask)
    with pytest.raises(ValueError, match=r"reward model 'aesthetic' needs option\(s\) \['encoder'\]"):
        LatentRewardModel.check_params(params | {"model": "aesthetic"}, LatentTask)   # nothing else is filled in
