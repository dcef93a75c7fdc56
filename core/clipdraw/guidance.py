"""CLIP guidance: augment renders in one batched op and score them against the prompts.

The loss of CLIPDraw (Frans et al., 2021): n augmented copies of the render (random perspective,
distortion 0.5, white fill; random resized crop, scale 0.7-0.9, back to the model's input size;
CLIP normalisation), and minus the mean cosine similarity between the copies' embeddings and the
prompt's; each negative prompt adds +weight x its similarity (a sum over the negatives). Models are loaded by models.py.
"""
from __future__ import annotations

import math
from typing import Optional, Sequence

import torch
import torch.nn.functional as F

from .models import Clip


# ---- augmentation ---------------------------------------------------------------------------


def _homographies(src: torch.Tensor, dst: torch.Tensor) -> torch.Tensor:
    """[n, 3, 3] matrices H with H @ dst_i ~ src_i for 4 point pairs src, dst [n, 4, 2]."""
    x, y = dst[..., 0], dst[..., 1]
    u, v = src[..., 0], src[..., 1]
    zero, one = torch.zeros_like(x), torch.ones_like(x)
    rows_u = torch.stack([x, y, one, zero, zero, zero, -u * x, -u * y], -1)  # [n, 4, 8]
    rows_v = torch.stack([zero, zero, zero, x, y, one, -v * x, -v * y], -1)
    a = torch.cat([rows_u, rows_v], 1)  # [n, 8, 8]
    b = torch.cat([u, v], 1)  # [n, 8]
    h = torch.linalg.solve(a, b)
    return torch.cat([h, torch.ones_like(h[:, :1])], 1).view(-1, 3, 3)


def augment_grid(n: int, height: int, width: int, size: int, generator: Optional[torch.Generator] = None,
                 distortion: float = 0.5, scale=(0.7, 0.9), ratio=(3 / 4, 4 / 3)) -> torch.Tensor:
    """Sampling grids [n, size, size, 2] (grid_sample coordinates, align_corners=False) for n copies
    of torchvision's RandomPerspective(distortion) followed by RandomResizedCrop(size, scale, ratio),
    composed so that one grid_sample does both. Parameters are per copy; image coordinates run
    over [0, W] x [0, H]."""
    g = dict(generator=generator, dtype=torch.float64)
    w, h = float(width), float(height)
    # Perspective: each corner moves inward by up to distortion/2 of the side (as torchvision).
    corners = torch.tensor([[0, 0], [w, 0], [w, h], [0, h]], dtype=torch.float64)
    inward = torch.tensor([[1, 1], [-1, 1], [-1, -1], [1, -1]], dtype=torch.float64)
    reach = torch.tensor([distortion * w / 2, distortion * h / 2], dtype=torch.float64)
    moved = corners + inward * reach * torch.rand(n, 4, 2, **g)  # [n, 4, 2]
    to_src = _homographies(corners.expand(n, 4, 2), moved)  # distorted -> original image
    # Random resized crop of the distorted image (clamped to fit instead of torchvision's retries).
    area = w * h * (scale[0] + (scale[1] - scale[0]) * torch.rand(n, **g))
    log_r = math.log(ratio[0]) + (math.log(ratio[1]) - math.log(ratio[0])) * torch.rand(n, **g)
    cw = (area * log_r.exp()).sqrt().clamp(max=w)
    ch = (area / log_r.exp()).sqrt().clamp(max=h)
    x0 = (w - cw) * torch.rand(n, **g)
    y0 = (h - ch) * torch.rand(n, **g)
    t = (torch.arange(size, dtype=torch.float64) + 0.5) / size  # output pixel centres in 0..1
    xs = x0[:, None, None] + cw[:, None, None] * t[None, None, :]  # [n, 1, S]
    ys = y0[:, None, None] + ch[:, None, None] * t[None, :, None]  # [n, S, 1]
    pts = torch.stack(torch.broadcast_tensors(xs, ys, torch.ones_like(xs)), -1)  # [n, S, S, 3]
    src = torch.einsum("nij,nabj->nabi", to_src, pts)
    src = src[..., :2] / src[..., 2:]
    grid = src / torch.tensor([w, h], dtype=torch.float64) * 2 - 1
    return grid.float()


def augment(image: torch.Tensor, n: int, size: int, generator: Optional[torch.Generator] = None,
            fill: float = 1.0) -> torch.Tensor:
    """n augmented copies [n, 3, size, size] of image [H, W, 3], differentiable, one grid_sample."""
    h, w, _ = image.shape
    x = image.permute(2, 0, 1)[None]  # [1, 3, H, W]
    # The crop covers ~0.8 of the area; shrink big renders first so sampling does not alias.
    target = round(size / math.sqrt(0.8))
    if max(h, w) > target * 1.25:
        k = target / max(h, w)
        x = F.interpolate(x, size=(max(1, round(h * k)), max(1, round(w * k))), mode="bilinear",
                          antialias=True, align_corners=False)
    grid = augment_grid(n, h, w, size, generator).to(image.device)
    # Sampling (x - fill) with zero padding and adding fill back gives `fill` outside the image.
    out = F.grid_sample((x - fill).expand(n, -1, -1, -1), grid, mode="bilinear",
                        padding_mode="zeros", align_corners=False)
    return out + fill


# ---- loss -----------------------------------------------------------------------------------

# The fair measure of a drawing: this many augmented copies, always the same ones.
MEASURE_COPIES = 16
MEASURE_SEED = 0



class ClipLoss:
    """loss(image [H, W, 3]) = -mean cos(copies, targets) + negative_weight * sum over negatives of
    mean cos(copies, negative).

    Targets are the prompts' text embeddings and/or image prompts' embeddings; the means are over
    the augmented copies (and the targets). Each negative counts in full, as in CLIPDraw."""

    def __init__(self, clip: Clip, prompts: Sequence[str] = (), negatives: Sequence[str] = (),
                 negative_weight: float = 0.3, augmentations: int = 4,
                 image_prompts: Sequence[torch.Tensor] = (), generator: Optional[torch.Generator] = None):
        targets = []
        if prompts:
            targets.append(clip.encode_text(prompts))
        for img in image_prompts:  # [H, W, 3] in 0..1
            with torch.no_grad():
                targets.append(clip.encode_image(clip.preprocess(img.to(clip.device))))
        if not targets:
            raise ValueError("a CLIP loss needs a text prompt or an image prompt")
        self.clip = clip
        self.targets = torch.cat(targets)  # [T, D]
        self.negatives = clip.encode_text(negatives) if negatives else None  # [Q, D]
        self.negative_weight = negative_weight
        self.augmentations = augmentations
        self.generator = generator

    def __call__(self, image: torch.Tensor) -> torch.Tensor:
        copies = augment(image, self.augmentations, self.clip.image_size, self.generator)
        f = self.clip.encode_image(copies)  # [n, D], in the precision the model was loaded with
        loss = -(f @ self.targets.T).mean()
        if self.negatives is not None:
            loss = loss + self.negative_weight * (f @ self.negatives.T).mean(0).sum()
        return loss

    @torch.no_grad()
    def similarity(self, image: torch.Tensor, copies: int = MEASURE_COPIES) -> tuple[float, list[float]]:
        """A fair measure of image [H, W, 3]: the mean cosine similarity to the targets, and to
        each negative, over `copies` augmented copies drawn from a fixed seed, so that the start
        and the result of a run (any two images of one size) are judged on the same copies."""
        fixed = torch.Generator().manual_seed(MEASURE_SEED)
        f = self.clip.encode_image(augment(image, copies, self.clip.image_size, fixed))  # [n, D]
        negatives = (f @ self.negatives.T).mean(0).tolist() if self.negatives is not None else []
        return float((f @ self.targets.T).mean()), negatives


@torch.no_grad()
def label_probabilities(clip: Clip, image: torch.Tensor, labels: Sequence[str],
                        template: str = "{}") -> list[tuple[str, float]]:
    """CLIP zero-shot with the model's own logit scale, best first: a softmax over the labels of
    logit_scale x cosine(image, label), or, for a model trained with a logit bias (SigLIP), each
    label's own sigmoid(logit_scale x cosine + logit_bias). image [H, W, 3]."""
    f = clip.encode_image(clip.preprocess(image.to(clip.device)))  # [1, D]
    t = clip.encode_text([template.format(l) for l in labels])  # [L, D]
    logits = clip.model.logit_scale.exp().float() * (f @ t.T)  # [1, L]
    bias = getattr(clip.model, "logit_bias", None)
    p = (logits + bias.float()).sigmoid() if bias is not None else logits.softmax(-1)
    return sorted(zip(labels, p[0].tolist()), key=lambda lp: -lp[1])


def context_warnings(clip: Clip, prompts: Sequence[str]) -> list[str]:
    """A sentence for each prompt longer than the model's context: CLIP reads only its start."""
    out = []
    for text in prompts:
        n = clip.dropped_tokens(text)
        if n:
            out.append(f"the prompt {quoted(text)} is too long for {clip.name}: its last {n} "
                       f"token{'s' * (n != 1)} are dropped; shorten it")
    return out


def quoted(text: str, limit: int = 60) -> str:
    """'text' in quotes, its middle elided when it is longer than `limit`."""
    half = (limit - 3) // 2
    return repr(text if len(text) <= limit else text[:half] + "..." + text[-half:])


def nouns() -> list:
    """The shipped list of common concrete nouns (data/nouns.txt): the labels when none are given."""
    from importlib.resources import files

    text = files("clipdraw").joinpath("data/nouns.txt").read_text(encoding="utf-8")
    return [line.strip() for line in text.splitlines() if line.strip() and not line.startswith("#")]


def top_labels(clip: Clip, image: torch.Tensor, labels: Sequence[str] = (),
               template: Optional[str] = None) -> list[tuple[str, float]]:
    """label_probabilities with the defaults of `clipdraw score` and the plugin: no labels means
    the shipped nouns, as "a drawing of a {}"; given labels are used as they are ("{}")."""
    template = template or ("{}" if labels else "a drawing of a {}")
    return label_probabilities(clip, image, list(labels) or nouns(), template)
