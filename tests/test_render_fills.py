"""Exact nonzero and evenodd fill coverage where a pixel holds regions of different winding
numbers: subpaths of opposite orientation sharing an edge, overlapping subpaths, self-crossing
outlines; and the gradients there against finite differences.

The truth is the area of {w != 0} (nonzero) or {w odd} (evenodd) in each pixel of the polygon,
computed independently and exactly (float64): the canvas is cut into horizontal slabs at every
integer, every vertex's y, every crossing of two edges and every y where an edge crosses a
pixel's side; inside a slab no edge starts, ends, crosses another or leaves a pixel, so the
length covered in each pixel is linear in y and its value on the slab's middle line (from that
line's exact crossings with the edges, sorted, and the winding between them) times the slab's
height is the slab's exact share. The renderer works in float32 on coordinates < 64: about 1e-5
per pixel. Hence the tolerance of 1e-4 per pixel (2e-3 would do as well: every coverage case
below errs by 0.08 to 1 per pixel with the integral of w in place of the rule, as before).
"""
from __future__ import annotations

import numpy as np
import pytest
import torch

from clipdraw.render import render_rgba
from clipdraw.scene import Scene, Subpath, make_shape
from test_render import polygon

SIZE = 64
TOL = 1e-4
BLACK = [0.0, 0.0, 0.0, 1.0]


def truth(polys, rule: str) -> np.ndarray:
    """Coverage [SIZE, SIZE] of the rule's region of the polygons (lists of corners)."""
    edges = []
    for corners in polys:
        c = np.asarray(corners, dtype=np.float64)
        edges.append(np.concatenate((c, np.roll(c, -1, 0)), 1))
    e = np.concatenate(edges)  # [E, 4]: ax, ay, bx, by
    ax, ay, bx, by = (e[:, k] for k in range(4))
    # crossings of every pair of edges: a + s (b - a) = c + t (d - c), 0 < s, t < 1
    i, j = np.triu_indices(len(e), 1)
    rx, ry, qx, qy = bx - ax, by - ay, bx - ax, by - ay
    den = rx[i] * qy[j] - ry[i] * qx[j]
    ok = np.abs(den) > 1e-12
    den = np.where(ok, den, 1.0)
    wx, wy = ax[j] - ax[i], ay[j] - ay[i]
    s_ = (wx * qy[j] - wy * qx[j]) / den
    t_ = (wx * ry[i] - wy * rx[i]) / den
    hit = ok & (s_ > 0) & (s_ < 1) & (t_ > 0) & (t_ < 1)
    # and where an edge crosses a pixel column's side x = k (the covered length of the pixel
    # has a kink there)
    side = [ay[n] + (np.arange(np.ceil(min(ax[n], bx[n])), np.floor(max(ax[n], bx[n])) + 1) - ax[n]) * ry[n] / rx[n]
            for n in range(len(e)) if rx[n] != 0]
    cuts = np.concatenate([np.arange(SIZE + 1.0), ay, (ay[i] + s_ * ry[i])[hit]] + side)
    cuts = np.unique(np.clip(cuts, 0, SIZE))
    y = (0.5 * (cuts[:-1] + cuts[1:]))[:, None]  # [NL, 1] middle lines of the slabs
    height = np.diff(cuts)
    lo, hi = np.minimum(ay, by), np.maximum(ay, by)
    hit = (y >= lo) & (y < hi)  # [NL, E]
    t = np.where(hit, (y - ay) / np.where(hi > lo, by - ay, 1.0), 0.0)
    x = np.where(hit, ax + t * (bx - ax), np.inf)
    d = np.where(hit, np.sign(by - ay), 0.0)
    o = np.argsort(x, 1)
    x = np.take_along_axis(x, o, 1)
    w = np.cumsum(np.take_along_axis(d, o, 1), 1)  # winding right of each crossing
    inside = (w != 0) if rule == "nonzero" else (np.remainder(w, 2) != 0)
    a, b = x[:, :-1], x[:, 1:]
    keep = inside[:, :-1] & np.isfinite(b)
    a, b = np.where(keep, a, 0.0), np.where(keep, b, 0.0)
    cols = np.arange(SIZE + 1, dtype=np.float64)
    # covered length left of each column
    f = np.clip(cols[None, None, :] - a[:, :, None], 0, (b - a)[:, :, None]).sum(1)
    per_line = np.diff(f, axis=1) * height[:, None]  # [NL, SIZE]
    out = np.zeros((SIZE, SIZE))
    np.add.at(out, np.floor(y[:, 0]).astype(int), per_line)
    return out


def render_alpha(polys, rule: str, grad=False):
    scene = Scene(SIZE, SIZE, [make_shape([polygon(p) for p in polys], fill=BLACK, fill_rule=rule)])
    if not grad:
        with torch.no_grad():
            return render_rgba(scene)[..., 3].double().numpy()
    return scene


def check(polys, rule):
    ours = render_alpha(polys, rule)
    ref = truth(polys, rule)
    err = np.abs(ours - ref)
    assert err.max() < TOL, (err.max(), np.unravel_index(err.argmax(), err.shape))
    return ours, ref


def reverse(corners):
    return corners[::-1]


# two triangles splitting a quad along its diagonal, one clockwise and one counter-clockwise,
# and two rectangles sharing the vertical edge x = 47.37, likewise
TRI_A = [(6.3, 8.6), (38.45, 8.6), (6.3, 55.2)]
TRI_B = reverse([(38.45, 8.6), (38.45, 55.2), (6.3, 55.2)])  # same turn as A once reversed: opposite
RECT_L = [(42.2, 10.3), (47.37, 10.3), (47.37, 50.8), (42.2, 50.8)]
RECT_R = reverse([(47.37, 10.3), (58.6, 10.3), (58.6, 50.8), (47.37, 50.8)])


@pytest.mark.parametrize("rule", ["nonzero", "evenodd"])
def test_opposite_subpaths_sharing_edges_leave_no_seam(rule):
    polys = [TRI_A, TRI_B, RECT_L, RECT_R]
    ours, _ = check(polys, rule)
    # inside the quad and the rectangles pair: everything covered, the shared edges included
    assert ours[9:55, 7:38].min() > 1 - 1e-5
    assert ours[11:50, 43:58].min() > 1 - 1e-5


def test_same_orientation_overlaps_nonzero():
    square = [(10.3, 12.7), (40.6, 12.7), (40.6, 44.1), (10.3, 44.1)]
    other = [(25.45, 30.2), (55.8, 20.9), (50.1, 58.35), (22.7, 52.6)]
    tri = [(5.2, 47.1), (30.6, 60.3), (8.9, 62.4)]
    polys = [square, other, tri, tri]  # the triangle twice: w = 2 all over it
    ours, _ = check(polys, "nonzero")
    assert ours.max() < 1 + 1e-5
    # the same polygon twice is the polygon once
    once, _ = check([tri], "nonzero")
    twice, _ = check([tri, tri], "nonzero")
    assert np.abs(once - twice).max() < 1e-5
    # and under evenodd, nothing
    assert np.abs(render_alpha([tri, tri], "evenodd")).max() < 1e-5


@pytest.mark.parametrize("rule", ["nonzero", "evenodd"])
def test_overlaps_with_windings_one_two_three(rule):
    a = [(8.3, 9.1), (44.7, 9.1), (44.7, 40.6), (8.3, 40.6)]
    b = [(20.15, 18.4), (57.2, 25.3), (40.9, 56.65)]
    c = [(14.6, 30.3), (36.1, 12.25), (50.4, 47.9), (18.8, 53.3)]
    d = reverse([(30.5, 28.5), (34.7, 28.5), (34.7, 33.3), (30.5, 33.3)])  # a hole turning the other way
    ours, ref = check([a, b, c, d], rule)
    assert ((ref > 0.2) & (ref < 0.8)).sum() > 50  # plenty of pixels mixing regions


@pytest.mark.parametrize("rule", ["nonzero", "evenodd"])
def test_self_crossing_star_and_bow_tie(rule):
    k = np.arange(5)
    ang = -np.pi / 2 + 4 * np.pi * k / 5 + 0.05
    star = [(22.3 + 20.6 * np.cos(t), 24.1 + 20.6 * np.sin(t)) for t in ang]  # a pentagram: w = 2 inside
    bow = [(36.3, 40.1), (61.7, 62.4), (60.2, 39.6), (35.1, 61.3)]  # w = +1 and -1 meeting inside a pixel
    ours, ref = check([star, bow], rule)
    centre = ref[22:27, 20:25]
    assert np.allclose(centre, 1.0 if rule == "nonzero" else 0.0)


@pytest.mark.parametrize("rule", ["nonzero", "evenodd"])
def test_wavy_outlines_many_vertices(rule):
    # two star-shaped wavy outlines of many short edges: rows where one side is a chain of
    # several pieces, tips (a local top or bottom) inside rows, and their overlap
    polys = []
    for cx, cy, r0, k, turn in ((27.3, 30.1, 17.0, 5, 1), (38.6, 35.2, 14.0, 3, -1)):
        ang = np.linspace(0, 2 * np.pi, 73)[:-1][::turn] + 0.1
        r = r0 * (1 + 0.35 * np.sin(k * ang))
        polys.append(list(zip(cx + r * np.cos(ang), cy + r * np.sin(ang))))
    check(polys, rule)
    check(polys[:1], rule)


@pytest.mark.parametrize("rule", ["nonzero", "evenodd"])
def test_vertices_on_pixel_corners_and_edges(rule):
    # integer and half-integer coordinates: vertices and horizontal edges on pixel sides, shared
    # vertices, crossings on row boundaries; still exact, gradients finite
    a = [(8, 8), (40, 8), (40, 40), (8, 40)]
    b = reverse([(24, 20), (56, 20), (56, 52), (24, 52)])
    c = [(4.5, 30), (60, 6.5), (44, 60), (20, 2)]
    d = [(16, 48), (40, 40), (32, 60)]  # a vertex shared with a
    ours, _ = check([a, b, c, d], rule)
    corners = [torch.tensor(p, dtype=torch.float32, requires_grad=True) for p in (a, b, c, d)]
    _loss(corners, rule, torch.rand(SIZE, SIZE, generator=torch.Generator().manual_seed(2))).backward()
    assert all(bool(torch.isfinite(p.grad).all()) for p in corners)


def _loss(corner_sets, rule, weights):
    """Weighted sum of the alpha of polygons through corner tensors [V, 2] (straight segments:
    the control points follow the corners, so that the flattening stays exact under motion)."""
    subpaths = []
    for c in corner_sets:
        n = c.roll(-1, 0)
        pts = torch.stack((c, c + (n - c) / 3, c + 2 * (n - c) / 3), 1).reshape(-1, 2)
        subpaths.append(Subpath(pts, closed=True))
    scene = Scene(SIZE, SIZE, [make_shape(subpaths, fill=BLACK, fill_rule=rule)])
    return (render_rgba(scene)[..., 3] * weights).sum()


@pytest.mark.parametrize("rule", ["nonzero", "evenodd"])
def test_gradients_in_seams_and_overlaps_match_finite_differences(rule):
    # a seam (opposite turns sharing an edge) and an overlap (a triangle over both, and its
    # crossings with them and with a horizontal edge). A seam is a kink of the image where its
    # two sides part (a gap, or an overlap of w = 0), so the shared corners move together: each
    # distinct corner gets one random motion; elsewhere the positions are general, the image is
    # smooth in them
    a = [(8.3, 9.1), (30.27, 9.1), (30.27, 50.6), (8.3, 50.6)]
    b = reverse([(30.27, 9.1), (52.4, 14.3), (47.9, 50.6), (30.27, 50.6)])
    c = [(14.6, 30.3), (29.1, 4.25), (56.4, 47.9)]  # crosses a's top edge
    polys = [a, b, c]
    corners = [torch.tensor(p, dtype=torch.float32, requires_grad=True) for p in polys]
    weights = torch.rand(SIZE, SIZE, generator=torch.Generator().manual_seed(5))
    _loss(corners, rule, weights).backward()
    g = torch.Generator().manual_seed(7)
    eps = 0.02
    distinct = sorted({q for p in polys for q in p})
    ours, fd = [], []
    for trial in range(8):
        motion = dict(zip(distinct, torch.randn(len(distinct), 2, generator=g)))
        directions = [torch.stack([motion[q] for q in p]) for p in polys]
        if trial % 2:  # the triangle alone
            directions = [dv * float(i == 2) for i, dv in enumerate(directions)]
        ours.append(float(sum((c.grad * dv).sum() for c, dv in zip(corners, directions))))
        with torch.no_grad():
            plus = _loss([c + eps * dv for c, dv in zip(corners, directions)], rule, weights)
            minus = _loss([c - eps * dv for c, dv in zip(corners, directions)], rule, weights)
        fd.append(float(plus - minus) / (2 * eps))
    ours, fd = np.array(ours), np.array(fd)
    assert np.allclose(ours, fd, rtol=0.02, atol=0.01 * np.abs(fd).max()), (ours, fd)
