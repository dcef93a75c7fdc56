"""SVG's caps, joins and dashes (scene keys stroke_linecap, stroke_linejoin, stroke_miterlimit,
stroke_dasharray, stroke_dashoffset) against their truth: the same region as a filled polygon,
whose fill is exact area coverage (tests/test_render.py checks fills against analytic areas)."""
from __future__ import annotations

import math

import numpy as np
import pytest
import torch

from clipdraw.render import render_rgba
from clipdraw.scene import Scene, Subpath, make_shape

BLACK = [0.0, 0.0, 0.0, 1.0]


def polyline(*corners, closed=False):
    """A subpath of straight cubic segments through the corners."""
    out = []
    n = len(corners) if closed else len(corners) - 1
    for i in range(n):
        (ax, ay), (bx, by) = corners[i], corners[(i + 1) % len(corners)]
        out += [[ax + (bx - ax) * k / 3, ay + (by - ay) * k / 3] for k in range(3)]
    if not closed:
        out.append(list(corners[-1]))
    return Subpath(torch.tensor(out, dtype=torch.float32), closed=closed)


def alpha(*shapes, size=64):
    with torch.no_grad():
        return render_rgba(Scene(size, size, list(shapes)))[..., 3].numpy()


def filled(*polygons, size=64):
    """Coverage of the polygons (numpy corner lists) filled: the truth."""
    return alpha(make_shape([polyline(*map(tuple, p), closed=True) for p in polygons], fill=BLACK), size=size)


def offsets(a, b, hw):
    a, b = np.asarray(a, float), np.asarray(b, float)
    u = (b - a) / np.linalg.norm(b - a)
    return u, np.array([-u[1], u[0]]) * hw


def test_butt_and_square_caps_are_rectangles():
    a, b, w = (10.3, 20.6), (50.2, 41.1), 6.0
    u, n = offsets(a, b, w / 2)
    for cap, ext in (("butt", 0.0), ("square", w / 2)):
        ours = alpha(make_shape([polyline(a, b)], stroke=BLACK, stroke_width=w, stroke_linecap=cap))
        p, q = np.asarray(a) - ext * u, np.asarray(b) + ext * u
        truth = filled([p + n, q + n, q - n, p - n])
        assert np.abs(ours - truth).max() < 1e-4, cap


def test_round_caps_match_the_distance_stroker():
    # round caps drawn as an outline (a dash pattern that never breaks sends the stroke there)
    # against the default stroker, an independent piece of code
    path = [(10.3, 20.6), (30.0, 50.0), (52.2, 14.1)]
    ours = alpha(make_shape([polyline(*path)], stroke=BLACK, stroke_width=7.0, stroke_dasharray=[1000.0, 0.0]))
    default = alpha(make_shape([polyline(*path)], stroke=BLACK, stroke_width=7.0))
    assert np.abs(ours - default).mean() < 2e-3
    assert float(ours.sum()) == pytest.approx(float(default.sum()), rel=2e-3)


@pytest.mark.parametrize("join", ["miter", "bevel"])
def test_miter_and_bevel_joins_are_the_outline_polygon(join):
    a, v, b, w = (8.3, 50.2), (31.6, 12.4), (55.1, 47.7), 8.0
    u0, n0 = offsets(a, v, w / 2)
    u1, n1 = offsets(v, b, w / 2)
    av, vv, bv = map(np.asarray, (a, v, b))
    # the path turns towards +n: the outer side is -n, where the offset lines meet at the tip
    inner = vv + (n0 + n1) / (1 + n0 @ n1 / (w / 2) ** 2)
    tip = vv - (n0 + n1) / (1 + n0 @ n1 / (w / 2) ** 2)
    outer = [vv - n0, tip, vv - n1] if join == "miter" else [vv - n0, vv - n1]
    truth = filled([av - n0, *outer, bv - n1, bv + n1, inner, av + n0])
    ours = alpha(make_shape([polyline(a, v, b)], stroke=BLACK, stroke_width=w, stroke_linecap="butt",
                            stroke_linejoin=join, stroke_miterlimit=10.0))
    assert np.abs(ours - truth).max() < 1e-4


def test_miter_over_the_limit_becomes_a_bevel():
    path = [(8.3, 50.2), (31.6, 12.4), (55.1, 47.7)]
    kw = dict(stroke=BLACK, stroke_width=8.0, stroke_linecap="butt")
    # the angle at the corner is about 64 degrees: miter ratio 1 / sin(32 deg) = 1.9
    low = alpha(make_shape([polyline(*path)], stroke_linejoin="miter", stroke_miterlimit=1.5, **kw))
    bevel = alpha(make_shape([polyline(*path)], stroke_linejoin="bevel", **kw))
    high = alpha(make_shape([polyline(*path)], stroke_linejoin="miter", stroke_miterlimit=2.0, **kw))
    assert np.abs(low - bevel).max() < 1e-6
    assert float(high.sum()) > float(bevel.sum()) + 3


def test_closed_path_joins_all_around():
    square = [(15.2, 15.2), (48.8, 15.2), (48.8, 48.8), (15.2, 48.8)]
    ours = alpha(make_shape([polyline(*square, closed=True)], stroke=BLACK, stroke_width=6.0,
                            stroke_linejoin="miter", stroke_linecap="butt"))
    truth = filled([(12.2, 12.2), (51.8, 12.2), (51.8, 51.8), (12.2, 51.8)]) - filled(
        [(18.2, 18.2), (45.8, 18.2), (45.8, 45.8), (18.2, 45.8)])
    assert np.abs(ours - truth).max() < 1e-4


@pytest.mark.parametrize("offset", [0.0, 3.0])
def test_dashes_are_rectangles_along_the_path(offset):
    a, b, w = (6.3, 30.6), (58.2, 30.6), 4.0
    dash = [5.0, 3.0, 2.0, 4.0]  # canvas px along the path
    ours = alpha(make_shape([polyline(a, b)], stroke=BLACK, stroke_width=w, stroke_linecap="butt",
                            stroke_dasharray=dash, stroke_dashoffset=offset))
    rects, s, i = [], -offset, 0
    length = b[0] - a[0]
    while s < length:
        lo, hi = max(s, 0.0), min(s + dash[i], length)
        if hi > lo:
            rects.append([(a[0] + lo, 28.6), (a[0] + hi, 28.6), (a[0] + hi, 32.6), (a[0] + lo, 32.6)])
        s += dash[i] + dash[i + 1]
        i = (i + 2) % 4
    assert np.abs(ours - filled(*rects)).max() < 1e-4


def test_dashes_follow_curves_and_scale_with_the_render():
    # a dashed curve at twice the size is the same drawing: dash lengths are canvas px
    curve = Subpath(torch.tensor([[8.0, 50.0], [20.0, 0.0], [45.0, 70.0], [56.0, 12.0]]))
    shape = make_shape([curve], stroke=BLACK, stroke_width=3.0, stroke_dasharray=[6.0, 4.0], stroke_dashoffset=1.0)
    with torch.no_grad():
        small = render_rgba(Scene(64, 64, [shape]))[..., 3]
        big = render_rgba(Scene(64, 64, [shape]), 128, 128)[..., 3]
    assert float(big.sum()) == pytest.approx(4 * float(small.sum()), rel=2e-3)
    butt = make_shape([curve], stroke=BLACK, stroke_width=3.0, stroke_dasharray=[6.0, 4.0], stroke_linecap="butt")
    solid = make_shape([curve], stroke=BLACK, stroke_width=3.0, stroke_linecap="butt")
    assert float(alpha(butt).sum()) / float(alpha(solid).sum()) == pytest.approx(0.6, abs=0.03)  # 6 of every 10 px


def test_styled_stroke_gradients():
    # d(area)/d(width) of a butt-capped straight stroke is its length; points move the outline
    a, b = (10.3, 20.6), (50.2, 41.1)
    shape = make_shape([polyline(a, b)], stroke=BLACK, stroke_width=6.0, stroke_linecap="butt", stroke_linejoin="bevel")
    shape.stroke_width.requires_grad_(True)
    shape.subpaths[0].points.requires_grad_(True)
    shape.stroke.requires_grad_(True)
    area = render_rgba(Scene(64, 64, [shape]))[..., 3].sum()
    area.backward()
    assert float(shape.stroke_width.grad) == pytest.approx(math.hypot(b[0] - a[0], b[1] - a[1]), rel=1e-3)
    # moving the whole stroke keeps its area
    assert float(shape.subpaths[0].points.grad.sum(0).norm()) < 1e-2 * float(shape.stroke_width.grad)
    assert float(shape.stroke.grad[3]) == pytest.approx(float(area.detach()), rel=1e-4)
