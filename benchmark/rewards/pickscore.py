"""PickScore (Kirstain et al., NeurIPS 2023, "Pick-a-Pic", sec. 4): r(x) = exp(s) cos(E_I(x), E_T(c)), the
CLIP-H/14 model fine-tuned on human preferences, with its own learned temperature exp(s) (about 100).

As the authors' inference code (yuvalkirstain/PickScore, README "Inference with PickScore"): both embeddings are
L2-normalised, the score is `model.logit_scale.exp() * (text_embs @ image_embs.T)`; a softmax of the scores of
several images for one prompt is their preference probability. The image is resized (bicubic) and centre-cropped
to the model's input size and CLIP-normalised, as their processor does (benchmark.rewards.encoders.clip_pixels,
differentiably; the processor's PIL resize is not differentiable).

`weights`: the PickScore_v1 folder (a transformers CLIPModel with its tokenizer; needs `transformers`) or a
.safetensors file of benchmark.rewards.encoders.TinyCLIP with a `logit_scale` entry; `prompt`: the text c.
Differs from `clip_score` only in the weights and the scale (a subclass: the learned exp(s) instead of
torchmetrics' 100).
"""

from __future__ import annotations

import math

from benchmark.rewards.clip_score import ClipScore


class PickScore(ClipScore):
    """r(x) = exp(s) cos(E_I(x), E_T(prompt)) -> [B], s the encoder's learned logit scale: ClipScore's reward
    with the model's own temperature in place of 100."""

    name = "pickscore"

    def __init__(self, weights: str, prompt: str):
        super().__init__(weights, prompt)
        s = getattr(self.encoder, "logit_scale", None)
        if s is None or not math.isfinite(s):
            raise ValueError(f"reward model 'pickscore': {weights!r} has no learned logit_scale (PickScore's "
                             "temperature); expected the PickScore_v1 CLIPModel folder or a TinyCLIP file with a "
                             "'logit_scale' entry")
        self.scale = math.exp(s)
