"""Local image / text encoders the reward models and the standard image metrics share (nothing downloaded).

A CLIP-like encoder (`load_clip(path)`) has `encode_image(x)`, images [B, C, H, W] in [-1, 1] -> [B, d]
(differentiable), and `encode_text(texts)` -> [len(texts), d]; `path` is
- a folder: a Hugging Face CLIP model written by `save_pretrained` (or a snapshot in the local cache), read with
  transformers' CLIPModel.from_pretrained(path, local_files_only=True, use_safetensors=True) and its
  tokenizer; the images are resized to the model's input size (bicubic) and normalised with CLIP's mean and
  std (Radford et al. 2021); needs `transformers` (`pip install transformers`), a clear error says so;
- a .safetensors file: `TinyCLIP`, a small CLIP-like encoder whose shapes are read from the file (the stand-in
  the tests use, and a format for small local encoders).
Grey images are repeated to three channels first (every encoder here is RGB).

A feature network for FID / KID (`load_features(path)`): a CLIP folder or TinyCLIP file (its image
embeddings), or `package.module:factory`, a function of no arguments returning a module that maps images in
[-1, 1] to features [B, d] (e.g. an Inception network the user loads from local weights).

An LPIPS network (`load_lpips(path)`): a .safetensors file of `TinyLPIPSNet` (conv stages) with LPIPS's linear
heads `lins.{k}.weight` [1, C_k, 1, 1] and the input shift / scale; or `package.module:factory` returning
(net, lin weights) for a real backbone (benchmark.images.metrics.LPIPS).
"""

from __future__ import annotations

from pathlib import Path

import torch
from torch import nn
from torch.nn import functional as F

from benchmark.rewards import load_state_dict, local_path, weights_digest

#: CLIP's input normalisation (Radford et al. 2021; openai/CLIP clip.py `_transform`).
CLIP_MEAN = (0.48145466, 0.4578275, 0.40821073)
CLIP_STD = (0.26862954, 0.26130258, 0.27577711)
#: LPIPS's input scaling of images in [-1, 1] (Zhang et al. 2018, lpips ScalingLayer).
LPIPS_SHIFT = (-0.030, -0.088, -0.188)
LPIPS_SCALE = (0.458, 0.448, 0.450)
TRANSFORMERS_HINT = ("needs `transformers` (pip install transformers) to read a Hugging Face CLIP folder; or give "
                     "a .safetensors file of benchmark.rewards.encoders.TinyCLIP")


def rgb(x: torch.Tensor) -> torch.Tensor:
    """[B, 1 or 3, H, W] -> [B, 3, H, W] (grey repeated)."""
    if x.shape[1] == 1:
        return x.expand(-1, 3, -1, -1)
    if x.shape[1] != 3:
        raise ValueError(f"images must have 1 or 3 channels, got {x.shape[1]}")
    return x


def clip_pixels(x: torch.Tensor, size: int, mean=CLIP_MEAN, std=CLIP_STD) -> torch.Tensor:
    """Images in [-1, 1] -> CLIP's input: RGB, resized to size x size (bicubic, differentiable), on [0, 1]
    normalised by CLIP's mean and std."""
    u = (rgb(x) + 1) / 2
    if tuple(u.shape[-2:]) != (size, size):
        u = F.interpolate(u, size=(size, size), mode="bicubic", align_corners=False)
    m = torch.tensor(mean, device=u.device, dtype=u.dtype).view(1, 3, 1, 1)
    s = torch.tensor(std, device=u.device, dtype=u.dtype).view(1, 3, 1, 1)
    return (u - m) / s


class TinyCLIP(nn.Module):
    """A small CLIP-like encoder: image tower conv(3->w, stride 2) GELU conv(w->w, stride 2) GELU, mean pool,
    linear to d, on CLIP-normalised input at `size`; text tower: UTF-8 bytes -> embedding(256, w), mean over
    tokens, linear to d. Keys `image.*`, `text.*` and `size` (a 0-d tensor); shapes read from the file. An optional
    0-d `logit_scale` (log of the learned temperature, as CLIP's) is kept as `logit_scale` (None without it)."""

    def __init__(self, width: int = 8, dim: int = 16, size: int = 16):
        super().__init__()
        self.size = size
        self.logit_scale: float | None = None
        self.image = nn.ModuleDict({"conv1": nn.Conv2d(3, width, 3, 2, 1), "conv2": nn.Conv2d(width, width, 3, 2, 1),
                                    "proj": nn.Linear(width, dim)})
        self.text = nn.ModuleDict({"embed": nn.Embedding(256, width), "proj": nn.Linear(width, dim)})

    @classmethod
    def random(cls, width: int = 8, dim: int = 16, size: int = 16, seed: int = 0) -> "TinyCLIP":
        """A randomly initialised one (torch's default init under `seed`)."""
        with torch.random.fork_rng(devices=[]):
            torch.manual_seed(seed)
            return cls(width, dim, size)

    def state(self) -> dict[str, torch.Tensor]:
        """What `save` writes: the weights, the input size and, when set, the learned logit scale."""
        extra = {} if self.logit_scale is None else {"logit_scale": torch.tensor(float(self.logit_scale))}
        return {k: v.detach().contiguous() for k, v in self.state_dict().items()} | {"size": torch.tensor(self.size)} \
            | extra

    def save(self, path: str | Path) -> None:
        from safetensors.torch import save_file

        save_file(self.state(), str(path))

    @classmethod
    def from_state(cls, state: dict[str, torch.Tensor]) -> "TinyCLIP":
        width, dim = state["image.proj.weight"].shape[1], state["image.proj.weight"].shape[0]
        model = cls(width, dim, int(state["size"]))
        model.load_state_dict({k: v for k, v in state.items() if k not in ("size", "logit_scale")})
        if "logit_scale" in state:
            model.logit_scale = float(state["logit_scale"])
        return model

    def encode_image(self, x: torch.Tensor) -> torch.Tensor:
        h = clip_pixels(x, self.size)
        h = F.gelu(self.image["conv2"](F.gelu(self.image["conv1"](h))))
        return self.image["proj"](h.mean((-2, -1)))

    def tokens(self, texts: list[str]) -> tuple[torch.Tensor, torch.Tensor]:
        """(ids [n, L], mask [n, L]): UTF-8 bytes, padded with 0."""
        ids = [list(t.encode("utf-8")) or [0] for t in texts]
        L = max(len(i) for i in ids)
        dev = self.text["embed"].weight.device
        out = torch.zeros(len(ids), L, dtype=torch.long, device=dev)
        mask = torch.zeros(len(ids), L, dtype=torch.long, device=dev)
        for j, i in enumerate(ids):
            out[j, :len(i)], mask[j, :len(i)] = torch.tensor(i), 1
        return out, mask

    def encode_tokens(self, ids: torch.Tensor, mask: torch.Tensor) -> torch.Tensor:
        m = mask.unsqueeze(-1).to(self.text["embed"].weight.dtype)
        h = (self.text["embed"](ids) * m).sum(1) / m.sum(1).clamp_min(1)
        return self.text["proj"](h)

    def encode_text(self, texts: list[str]) -> torch.Tensor:
        return self.encode_tokens(*self.tokens(list(texts)))

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.encode_image(x)


class HFCLIP(nn.Module):
    """A transformers CLIPModel and its tokenizer read from a local folder (see the module docstring)."""

    def __init__(self, folder: Path):
        super().__init__()
        try:
            from transformers import CLIPModel, CLIPTokenizer
        except ImportError:
            raise ValueError(f"CLIP folder {str(folder)!r}: {TRANSFORMERS_HINT}") from None
        self.model = CLIPModel.from_pretrained(str(folder), local_files_only=True, use_safetensors=True)
        self.tokenizer = CLIPTokenizer.from_pretrained(str(folder), local_files_only=True)
        self.size = int(self.model.config.vision_config.image_size)

    @property
    def logit_scale(self) -> float:
        """log of the model's learned temperature (CLIPModel.logit_scale)."""
        return float(self.model.logit_scale.detach())

    @staticmethod
    def _embeds(out) -> torch.Tensor:
        if isinstance(out, torch.Tensor):
            return out
        for key in ("image_embeds", "text_embeds", "pooler_output"):
            if getattr(out, key, None) is not None:
                return getattr(out, key)
        raise ValueError(f"unexpected CLIP output {type(out).__name__}")

    def encode_image(self, x: torch.Tensor) -> torch.Tensor:
        return self._embeds(self.model.get_image_features(pixel_values=clip_pixels(x, self.size)))

    def encode_text(self, texts: list[str]) -> torch.Tensor:
        t = self.tokenizer(list(texts), padding=True, truncation=True, return_tensors="pt")
        dev = next(self.model.parameters()).device
        return self._embeds(self.model.get_text_features(input_ids=t["input_ids"].to(dev),
                                                         attention_mask=t["attention_mask"].to(dev)))

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.encode_image(x)


def load_clip(path: str | Path, owner: str = "CLIP encoder") -> tuple[nn.Module, str]:
    """(a CLIP-like encoder, the sha256 digest of its weights) from a local folder or .safetensors file."""
    p = local_path(owner, path, "encoder")
    if p.is_dir():
        try:
            return HFCLIP(p), weights_digest(p)
        except ValueError as exc:
            raise ValueError(f"{owner}: {exc}") from None
    return TinyCLIP.from_state(load_state_dict(p)), weights_digest(p)


class _Factory(nn.Module):
    """A user's feature module from an import path, applied to images in [-1, 1]."""

    def __init__(self, module: nn.Module):
        super().__init__()
        self.module = module

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.module(x)


def load_features(path: str, owner: str = "feature network") -> tuple[nn.Module, str]:
    """(a feature network, images [B, C, H, W] in [-1, 1] -> [B, d], its identity: a weights digest or the
    import path) from a CLIP folder or TinyCLIP file (image embeddings) or 'package.module:factory'."""
    from benchmark.registry import IMPORT_PATH, import_path

    if isinstance(path, str) and IMPORT_PATH.match(path) and not Path(path).exists():
        module = import_path(path)()
        if not isinstance(module, nn.Module):
            raise ValueError(f"{owner}: {path} must return a torch.nn.Module, got {type(module).__name__}")
        return _Factory(module), path
    return load_clip(path, owner)


class TinyLPIPSNet(nn.Module):
    """A small LPIPS backbone: conv stages (3x3, ReLU; stride 2 after the first), each stage's output a layer
    whose unit-normalised differences LPIPS weighs. Keys `stages.{k}.weight/bias`."""

    def __init__(self, widths: tuple[int, ...] = (4, 8)):
        super().__init__()
        chans = (3, *widths)
        self.stages = nn.ModuleList(nn.Conv2d(chans[k], chans[k + 1], 3, 1 if k == 0 else 2, 1)
                                    for k in range(len(widths)))

    def forward(self, x: torch.Tensor) -> list[torch.Tensor]:
        outs = []
        for conv in self.stages:
            x = F.relu(conv(x))
            outs.append(x)
        return outs


def random_lpips_state(widths: tuple[int, ...] = (4, 8), seed: int = 0) -> dict[str, torch.Tensor]:
    """A random TinyLPIPSNet with non-negative linear heads and LPIPS's shift / scale: what `load_lpips` reads."""
    with torch.random.fork_rng(devices=[]):
        torch.manual_seed(seed)
        net = TinyLPIPSNet(widths)
        lins = {f"lins.{k}.weight": torch.rand(1, w, 1, 1) for k, w in enumerate(widths)}
    return ({f"net.{k}": v.detach().contiguous() for k, v in net.state_dict().items()} | lins
            | {"shift": torch.tensor(LPIPS_SHIFT), "scale": torch.tensor(LPIPS_SCALE)})


def load_lpips(path: str, owner: str = "LPIPS network") -> tuple[nn.Module, str]:
    """(benchmark.images.metrics.LPIPS, its identity) from a .safetensors file (`random_lpips_state`'s keys)
    or 'package.module:factory' returning (net, [lin weights [1, C_k, 1, 1]]) (shift / scale: LPIPS's)."""
    from benchmark.images.metrics import LPIPS
    from benchmark.registry import IMPORT_PATH, import_path

    if isinstance(path, str) and IMPORT_PATH.match(path) and not Path(path).exists():
        net, lins = import_path(path)()
        return LPIPS(net, lins), path
    p = local_path(owner, path, "weights")
    state = load_state_dict(p)
    n = sum(1 for k in state if k.startswith("lins."))
    widths = tuple(state[f"net.stages.{k}.weight"].shape[0] for k in range(n))
    net = TinyLPIPSNet(widths)
    net.load_state_dict({k[4:]: v for k, v in state.items() if k.startswith("net.")})
    lins = [state[f"lins.{k}.weight"] for k in range(n)]
    return LPIPS(net, lins, state.get("shift"), state.get("scale")), weights_digest(p)
