"""The judge: a small CNN, trained apart from the concept model, that names a drawing's shape and
colour. It grades what CLIPDraw draws with the concept model, whose own scores are near 1 for
almost anything once it has been optimised against (that is what the optimisation does).
"""
from __future__ import annotations

import torch
import torch.nn.functional as F
from torch import nn

from . import COLOURS, SHAPES

INPUT = 64  # the judge looks at drawings resized to 64 x 64


class Judge(nn.Module):
    def __init__(self):
        super().__init__()
        widths = (16, 32, 64, 64)
        self.stem = nn.Conv2d(3, widths[0], 5, stride=2, padding=2)  # 64 -> 32
        self.convs = nn.ModuleList(nn.Conv2d(a, b, 3, padding=1) for a, b in zip(widths, widths[1:]))
        self.head = nn.Linear(2 * widths[-1], len(SHAPES) + len(COLOURS))

    def forward(self, x: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
        """x [B, 3, 64, 64] in 0..1 -> shape logits [B, len(SHAPES)], colour logits [B, len(COLOURS)]."""
        x = F.relu(self.stem(x - 0.5))  # [B, 16, 32, 32]
        for conv in self.convs:
            x = F.max_pool2d(F.relu(conv(x)), 2)  # 32 -> 16 -> 8 -> 4
        x = torch.cat([x.mean((2, 3)), x.amax((2, 3))], 1)  # [B, 128]: wherever the shape is
        logits = self.head(x)
        return logits[:, :len(SHAPES)], logits[:, len(SHAPES):]

    @staticmethod
    def load(path) -> "Judge":
        from safetensors.torch import load_file

        judge = Judge()
        judge.load_state_dict({k: v.float() for k, v in load_file(str(path)).items()})
        return judge.eval().requires_grad_(False)

    @torch.no_grad()
    def grade(self, images: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
        """Drawings [B, H, W, 3] (or one [H, W, 3]) in 0..1 -> probabilities of each shape [B, 5]
        and of each colour [B, 5]."""
        x = images if images.dim() == 4 else images[None]
        x = F.interpolate(x.permute(0, 3, 1, 2).float().cpu(), size=(INPUT, INPUT), mode="bilinear",
                          antialias=True, align_corners=False)
        shape, colour = self(x)
        return shape.softmax(-1), colour.softmax(-1)

    def verdict(self, image: torch.Tensor) -> tuple[str, str]:
        """The judge's (shape, colour) for one drawing [H, W, 3]."""
        shape, colour = self.grade(image)
        return SHAPES[int(shape[0].argmax())], COLOURS[int(colour[0].argmax())]
