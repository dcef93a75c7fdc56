"""Synthetic concept drawings: a shape in a colour, drawn the ways CLIPDraw's strokes draw it.

A drawing is a clipdraw Scene (rendered by clipdraw.render, so its pixels are what the CLIPDraw
loop draws): one shape (see SHAPES) in one colour (COLOURS, jittered), in one of four styles:
- outline: the whole outline in one closed stroke, 2-14 px wide;
- filled: the shape filled, sometimes with an outline of the same colour;
- pieces: the outline in 2-6 open strokes that overlap and wobble, as a hand or CLIPDraw would;
- scribble: 15-40 short strokes (1-3 cubic segments) laid along the outline;
and, in half the drawings, 1-25 thin random strokes of any colour on top (CLIPDraw's leftovers).
Position, size, rotation, point jitter and widths are random. Lengths are for a 224 canvas.
"""
from __future__ import annotations

import math
from typing import Optional

import torch

from ..scene import Scene, Shape, Subpath
from . import COLOURS, SHAPES

RGB = {  # the colours' centres; each drawing jitters them by up to +-0.08 per channel
    "red": (0.88, 0.12, 0.10), "green": (0.12, 0.66, 0.18), "blue": (0.12, 0.22, 0.88),
    "yellow": (0.96, 0.84, 0.10), "black": (0.08, 0.08, 0.08),
}
STYLES = ("outline", "filled", "pieces", "scribble")


def outline(shape: str, cross_arms: float = 0.28) -> torch.Tensor:
    """The shape's outline as a closed polygon [N, 2] around 0 with radius ~1 (circle: 48 points)."""
    if shape == "circle":
        a = torch.arange(48) * (2 * math.pi / 48)
    elif shape == "square":
        a = torch.tensor([0.25, 0.75, 1.25, 1.75]) * math.pi
    elif shape == "triangle":
        a = torch.tensor([-0.5, 1 / 6, 5 / 6]) * math.pi
    elif shape == "star":
        a = torch.arange(10) * (math.pi / 5) - math.pi / 2
        r = torch.tensor([1.0, 0.42] * 5)
        return torch.stack([a.cos(), a.sin()], -1) * r[:, None]
    elif shape == "cross":  # a plus sign: 12 corners
        w = cross_arms
        xy = [(w, -1), (w, -w), (1, -w), (1, w), (w, w), (w, 1), (-w, 1), (-w, w), (-1, w), (-1, -w),
              (-w, -w), (-w, -1)]
        return torch.tensor(xy, dtype=torch.float32)
    else:
        raise ValueError(f"unknown shape {shape!r}")
    return torch.stack([a.cos(), a.sin()], -1)


def resample(polygon: torch.Tensor, n: int, closed: bool = True) -> torch.Tensor:
    """n points [n, 2] evenly spaced by arc length along a polygon [K, 2]."""
    pts = torch.cat([polygon, polygon[:1]]) if closed else polygon
    seg = (pts[1:] - pts[:-1]).norm(dim=-1)  # [K]
    cum = torch.cat([torch.zeros(1), seg.cumsum(0)])
    s = torch.arange(n) * (cum[-1] / n if closed else cum[-1] / max(n - 1, 1))
    i = (torch.searchsorted(cum, s, right=True) - 1).clamp(0, len(seg) - 1)
    t = ((s - cum[i]) / seg[i].clamp(min=1e-9))[:, None]
    return pts[i] + t * (pts[i + 1] - pts[i])


def cubic_chain(knots: torch.Tensor, closed: bool) -> torch.Tensor:
    """Straight cubic segments through knots [K, 2]: [3K, 2] closed, [3K - 2, 2] open."""
    ends = torch.cat([knots[1:], knots[:1]]) if closed else knots[1:]
    starts = knots if closed else knots[:-1]
    seg = torch.stack([starts, starts + (ends - starts) / 3, starts + 2 * (ends - starts) / 3], 1)
    points = seg.reshape(-1, 2)  # [3 * segments, 2]
    return points if closed else torch.cat([points, knots[-1:]])


def drawing(shape: str, colour: str, generator: torch.Generator, size: int = 224,
            style: Optional[str] = None) -> Scene:
    """One random drawing of `colour` `shape` on a white size x size canvas."""
    def u(lo, hi, n=()):
        return lo + (hi - lo) * torch.rand(n, generator=generator)

    def pick(options):
        return options[int(torch.randint(len(options), (), generator=generator))]

    style = style or pick(STYLES)
    k = size / 224
    rgb = (torch.tensor(RGB[colour]) + u(-0.08, 0.08, 3)).clamp(0, 1)
    rgba = torch.cat([rgb, torch.ones(1)])
    radius = float(u(0.16, 0.40)) * size
    centre = u(0.5 - 0.45 + radius / size, 0.5 + 0.45 - radius / size, 2) * size
    angle = float(u(-0.35, 0.35))
    rotation = torch.tensor([[math.cos(angle), -math.sin(angle)], [math.sin(angle), math.cos(angle)]])
    aspect = torch.tensor([1.0, 1.0]) + u(-0.12, 0.12, 2)
    polygon = outline(shape, cross_arms=float(u(0.2, 0.36))) * aspect @ rotation.T  # [N, 2] unit

    def place(p):  # unit coordinates -> canvas, with per-point jitter of ~2% of the radius
        return centre + p * radius + torch.randn(p.shape, generator=generator) * 0.02 * radius

    def width(lo, hi):
        return torch.tensor(float(u(lo, hi)) * k)

    shapes = []
    if style == "filled":
        knots = place(resample(polygon, 48))
        edge = rgba if bool(torch.rand((), generator=generator) < 0.5) else None
        shapes.append(Shape([Subpath(cubic_chain(knots, True), closed=True)], width(2, 6) if edge is not None
                            else torch.tensor(0.0), stroke=edge, fill=rgba.clone()))
    elif style == "outline":
        knots = place(resample(polygon, 48))
        shapes.append(Shape([Subpath(cubic_chain(knots, True), closed=True)], width(2, 14), stroke=rgba))
    elif style == "pieces":
        n = int(torch.randint(2, 7, (), generator=generator))
        loop = resample(polygon, 96)  # [96, 2]
        starts = (torch.arange(n) * 96 / n + u(-4, 4, n)).long()
        w = width(2, 12)
        for i in range(n):
            idx = torch.arange(starts[i], starts[i] + 96 // n + int(torch.randint(2, 10, (), generator=generator))) % 96
            knots = place(loop[idx[:: 4]])
            shapes.append(Shape([Subpath(cubic_chain(knots, False))], w.clone(), stroke=rgba.clone()))
    elif style == "scribble":
        n = int(torch.randint(15, 41, (), generator=generator))
        loop = resample(polygon, 240)
        w = width(2, 8)
        for i in torch.randint(240, (n,), generator=generator).tolist():
            segments = int(torch.randint(1, 4, (), generator=generator))
            knots = place(loop[torch.arange(i, i + 6 * segments + 1, 2) % 240])
            shapes.append(Shape([Subpath(cubic_chain(knots[:: 3], False))], w.clone(), stroke=rgba.clone()))
    else:
        raise ValueError(f"unknown style {style!r}")

    if bool(torch.rand((), generator=generator) < 0.5):  # leftovers: thin random strokes on top
        from ..optimize import random_strokes

        extra = random_strokes(int(torch.randint(1, 26, (), generator=generator)), size, size, generator)
        for s in extra:
            s.stroke_width = width(1, 4)
            s.stroke[3] = s.stroke[3] * 0.8
        shapes += extra
    return Scene(width=size, height=size, shapes=shapes, background=(1.0, 1.0, 1.0, 1.0))


def dataset(n: int, seed: int, size: int = 128, canvas: int = 224) -> tuple[torch.Tensor, torch.Tensor]:
    """n drawings rendered at size x size: images uint8 [n, size, size, 3] and labels int64 [n, 2]
    (shape index, colour index), each concept equally often, from `seed`."""
    from ..render import render

    generator = torch.Generator().manual_seed(seed)
    labels = torch.stack([torch.arange(n) % len(SHAPES), torch.arange(n) // len(SHAPES) % len(COLOURS)], 1)
    images = torch.empty(n, size, size, 3, dtype=torch.uint8)
    with torch.no_grad():
        for i, (s, c) in enumerate(labels.tolist()):
            scene = drawing(SHAPES[s], COLOURS[c], generator, canvas)
            images[i] = (render(scene, size, size) * 255 + 0.5).clamp(0, 255).to(torch.uint8)
    return images, labels
