"""benchmark/rewards/clip_score.py: the CLIP-score reward on the tiny random stand-in encoder (tests/reward_fixture.py):
100 times the cosine of the image's and the prompt's embeddings, the prompt mattering, and a prompt required. The
value tests run on the `device` fixture (`pytest --device cuda`) and compare on the CPU."""

import pytest
from torch.nn import functional as F

from benchmark.rewards import load_reward, load_state_dict
from benchmark.rewards.clip_score import CLIP_SCALE, ClipScore
from benchmark.rewards.encoders import TinyCLIP
from tests.rewards.test_encoders import CLIP, _images


def test_clip_score_is_100_cosine_with_the_prompt(device):
    x = _images().to(device)
    enc = TinyCLIP.from_state(load_state_dict(CLIP)).to(device)
    r = load_reward("clip_score", CLIP, prompt="a red square").to(device)(x).cpu()
    e_i, e_t = enc.encode_image(x), enc.encode_text(["a red square"])           # text tokens made on the encoder's
    assert (r - 100 * F.cosine_similarity(e_i, e_t).cpu()).abs().max() < 1e-4
    other = load_reward("clip_score", CLIP, prompt="a blue circle").to(device)(x).cpu()
    assert (other - r).abs().max() > 1e-3                                       # the prompt matters


@pytest.mark.parametrize("prompt", ["", None, 3])
def test_the_prompt_must_be_a_non_empty_text(prompt):
    with pytest.raises(ValueError, match=f"reward model 'clip_score' needs prompt: a non-empty text, got {prompt!r}"):
        ClipScore(CLIP, prompt)


def test_the_score_is_not_clamped_at_zero(device):
    """Unlike the metric max(100 cos, 0), the reward keeps negative cosines (and their gradient): the stand-in
    encoder gives "a red square" a negative cosine with these images, and the reward is 100 cos there too."""
    r = ClipScore(CLIP, "a red square").to(device)
    x = _images(8).to(device)
    cos = F.cosine_similarity(r.encoder.encode_image(x), r.encoder.encode_text(["a red square"])).cpu()
    assert (cos < 0).all() and CLIP_SCALE == 100.0
    assert (r(x).cpu() - CLIP_SCALE * cos).abs().max() < 1e-4 and (r(x).cpu() < -1).all()
