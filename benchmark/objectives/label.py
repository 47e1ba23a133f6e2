"""r(x) = log p_phi(c | x): the guiding classifier's log-probability of the chain's target class c.

The conditional-generation objective of TFG (Ye et al. 2024) and Shen et al. (2024), where
training-free methods differentiate an off-the-shelf classifier on clean images through x0h.
r <= 0 with optimum 0 (p = 1). With `target` = "all", chain i targets class i mod K, so one cell
averages over every class; with an integer, every chain targets that class.

`noisy_log_prob(x_t, t)` = log p_psi(c | x_t, t) under the noise-conditional classifier, the
quantity classifier guidance differentiates in x_t (Dhariwal & Nichol 2021). It is listed in
`counted_methods`, so its evaluations and gradients are counted as objective evaluations and
gradients (one classifier forward / backward, like the objective's own).
"""

from __future__ import annotations

import torch
from torch import nn
from torch.nn import functional as F

from benchmark.objectives.base import Objective


class Label(Objective):
    name = "label"
    kind = "log_prob"      # r = log p_phi(c | x): dps's default step is TFG's |log p| rule
    optimum = 0.0
    counted_methods = ("noisy_log_prob",)

    def __init__(self, classifier: nn.Module, noisy_classifier: nn.Module, target: int | str = "all",
                 num_classes: int = 10):
        super().__init__()
        self.check_target(target, num_classes)
        classes = torch.arange(num_classes) if target == "all" else torch.tensor([target])
        self.target = target
        self.classifier, self.noisy_classifier = classifier, noisy_classifier
        self.register_buffer("classes", classes)

    @staticmethod
    def check_target(target, num_classes: int = 10) -> None:
        """`target` must be 'all' or an integer class 0..num_classes - 1 (checked before any network loads)."""
        if target != "all" and not (isinstance(target, int) and not isinstance(target, bool)
                                    and 0 <= target < num_classes):
            raise ValueError(f"objective 'label': target must be an integer class 0..{num_classes - 1} or 'all', "
                             f"got {target!r}")

    def params(self) -> dict:
        return {"target": self.target}

    def targets(self, B: int, device) -> torch.Tensor:
        """The target class of each row of a batch of B: [B] (long)."""
        return self.classes[self.chain_index(B, len(self.classes), self.classes.device)].to(device)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        """x: [B, C, H, W] -> log p_phi(c_i | x_i): [B]."""
        c = self.targets(x.shape[0], x.device)
        return F.log_softmax(self.classifier(x), dim=-1).gather(-1, c[:, None]).squeeze(-1)

    def noisy_log_prob(self, x_t: torch.Tensor, t: int) -> torch.Tensor:
        """x_t: [B, C, H, W], t: one integer timestep -> log p_psi(c_i | x_t, t): [B]."""
        c = self.targets(x_t.shape[0], x_t.device)
        tt = torch.full((x_t.shape[0],), t, dtype=torch.long, device=x_t.device)
        return F.log_softmax(self.noisy_classifier(x_t, tt), dim=-1).gather(-1, c[:, None]).squeeze(-1)

    @property
    def noise_schedule(self) -> tuple[str, int]:
        """(schedule name, T) the noise-conditional classifier was trained on; the sampler's must match."""
        cfg = self.noisy_classifier.config
        return cfg["schedule"], cfg["T"]
