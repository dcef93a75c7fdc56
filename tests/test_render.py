"""The rasterizer: API, antialiasing by area coverage, fill rules, paint order, edge cases,
autograd against finite differences of the renderer itself, the diffvg backend, and the CLI."""
from __future__ import annotations

import importlib.util
import math
import sys
import types
from pathlib import Path

import numpy as np
import pytest
import torch

from clipdraw.render import DiffvgUnavailableError, render, render_rgba
from clipdraw.scene import Scene, Subpath, make_shape

REFERENCE = Path(__file__).resolve().parent / "data" / "diffvg"
BLACK = [0.0, 0.0, 0.0, 1.0]


def pts(values) -> torch.Tensor:
    return torch.tensor(values, dtype=torch.float32)


def line(x0, y0, x1, y1):
    """An open one-segment subpath along a straight line."""
    return Subpath(pts([[x0, y0], [x0 + (x1 - x0) / 3, y0 + (y1 - y0) / 3],
                        [x0 + 2 * (x1 - x0) / 3, y0 + 2 * (y1 - y0) / 3], [x1, y1]]))


def polygon(corners, closed=True):
    """A subpath of straight cubic segments through the corners."""
    out = []
    n = len(corners) if closed else len(corners) - 1
    for i in range(n):
        (ax, ay), (bx, by) = corners[i], corners[(i + 1) % len(corners)]
        out += [[ax, ay], [ax + (bx - ax) / 3, ay + (by - ay) / 3], [ax + 2 * (bx - ax) / 3, ay + 2 * (by - ay) / 3]]
    if not closed:
        out.append(list(corners[-1]))
    return Subpath(pts(out), closed=closed)


def rect(x0, y0, x1, y1, reverse=False):
    corners = [(x0, y0), (x1, y0), (x1, y1), (x0, y1)]
    return polygon(corners[::-1] if reverse else corners)


def coverage(scene, **kw) -> torch.Tensor:
    """Alpha of the scene over a transparent background [H, W]."""
    with torch.no_grad():
        return render_rgba(scene, **kw)[..., 3]


def scene_of(*shapes, width=64, height=64, background=(1.0, 1.0, 1.0, 1.0)):
    return Scene(width, height, list(shapes), background)


def curvy_scene():
    """A filled, stroked closed curve, an open stroke and a dot: everything there is to draw."""
    blob = Subpath(pts([[20, 12], [34, 6], [50, 14], [52, 28], [54, 42], [36, 52], [22, 46],
                        [10, 40], [6, 22]]), closed=True)
    return scene_of(
        make_shape([blob], stroke=[0.1, 0.2, 0.8, 0.8], stroke_width=3.0, fill=[0.9, 0.5, 0.1, 0.7],
                   fill_rule="nonzero"),
        make_shape([Subpath(pts([[8, 56], [20, 30], [40, 70], [58, 34], [60, 30], [62, 20], [50, 8]]))],
                   stroke=[0.2, 0.7, 0.3, 0.9], stroke_width=2.0),
        make_shape([Subpath(pts([[44.3, 50.6]]))], stroke=[0.5, 0.1, 0.5, 1.0], stroke_width=5.0),
    )


def leaves(scene):
    out = []
    for shape in scene.shapes:
        out += [sp.points for sp in shape.subpaths] + [shape.stroke_width]
        out += [c for c in (shape.stroke, shape.fill) if c is not None]
    return out


def require_grad(scene):
    for t in leaves(scene):
        t.requires_grad_(True)
    return scene


# ---- API ----------------------------------------------------------------------------------


def test_shape_dtype_device_and_default_size():
    scene = curvy_scene()
    img = render(scene)
    assert img.shape == (64, 64, 3) and img.dtype == torch.float32 and img.device == scene.device
    rgba = render_rgba(scene)
    assert rgba.shape == (64, 64, 4) and rgba.dtype == torch.float32
    assert float(img.min()) >= 0 and float(img.max()) <= 1
    assert float(rgba.min()) >= 0 and float(rgba.max()) <= 1


def test_non_square_and_resized_render_scales_the_scene():
    shape = make_shape([Subpath(pts([[20.0, 10.0]]))], stroke=BLACK, stroke_width=6.0)
    scene = scene_of(shape, width=40, height=20)
    a = coverage(scene)
    assert a.shape == (20, 40)
    assert float(a.sum()) == pytest.approx(math.pi * 9, rel=0.01)
    b = coverage(scene, width=80, height=40)  # 2x: radius 6
    assert b.shape == (40, 80)
    assert float(b.sum()) == pytest.approx(math.pi * 36, rel=0.01)
    ys, xs = torch.nonzero(b > 0.5, as_tuple=True)
    assert float(xs.float().mean() + 0.5) == pytest.approx(40, abs=0.05)
    assert float(ys.float().mean() + 0.5) == pytest.approx(20, abs=0.05)
    # the scene itself is not modified
    assert scene.shapes[0].subpaths[0].points.tolist() == [[20.0, 10.0]]


def test_backgrounds():
    scene = scene_of(make_shape([rect(0, 0, 32, 64)], fill=[1, 0, 0, 1]), background=(0, 0, 1, 1))
    with torch.no_grad():
        white = render(scene)
        assert white[5, 50].tolist() == [1, 1, 1] and white[5, 5].tolist() == [1, 0, 0]
        assert render(scene, background=(0, 1, 0))[5, 50].tolist() == [0, 1, 0]
        assert render(scene, background=torch.tensor([0.0, 0.5, 0.0]))[5, 50].tolist() == [0, 0.5, 0]
        assert render(scene, background=[0, 0, 0, 0.5])[5, 50].tolist() == [0.5, 0.5, 0.5]
        assert render(scene, background=None)[5, 50].tolist() == [0, 0, 1]  # the scene's
        scene.background = None
        assert render(scene, background=None)[5, 50].tolist() == [1, 1, 1]  # transparent: white


def test_background_tensor_gets_gradients():
    scene = curvy_scene()
    bg = torch.tensor([0.2, 0.3, 0.4], requires_grad=True)
    render(scene, background=bg).sum().backward()
    assert bg.grad is not None and float(bg.grad.min()) > 0


def test_rgba_is_straight_alpha_and_matches_render():
    scene = scene_of(make_shape([rect(10.5, 10.25, 30.5, 30.75)], fill=[0.2, 0.4, 0.6, 0.5]))
    with torch.no_grad():
        rgba = render_rgba(scene)
        img = render(scene)
    assert rgba[0, 0].tolist() == [0, 0, 0, 0]
    edge = rgba[10, 10]  # a quarter of this pixel is covered (0.5 x 0.75 ... of half alpha)
    assert float(edge[3]) == pytest.approx(0.5 * 0.5 * 0.75, abs=1e-5)
    assert edge[:3].tolist() == pytest.approx([0.2, 0.4, 0.6], abs=1e-5)  # not premultiplied
    over_white = rgba[..., :3] * rgba[..., 3:] + (1 - rgba[..., 3:])
    assert torch.allclose(over_white, img, atol=1e-5)


def test_unknown_backend_and_bad_background():
    with pytest.raises(ValueError, match="backend"):
        render(curvy_scene(), backend="cairo")
    with pytest.raises(ValueError, match="background"):
        render(curvy_scene(), background=(1, 1))


def test_deterministic():
    a = render(curvy_scene())
    b = render(curvy_scene())
    assert torch.equal(a, b)


# ---- antialiasing by area coverage --------------------------------------------------------


def test_fill_edges_are_area_coverage():
    a = coverage(scene_of(make_shape([rect(10.25, 20.0, 40.0, 30.6)], fill=BLACK)))
    assert float(a[25, 10]) == pytest.approx(0.75, abs=1e-5)
    assert float(a[30, 25]) == pytest.approx(0.6, abs=1e-5)
    assert float(a[30, 10]) == pytest.approx(0.75 * 0.6, abs=1e-5)
    assert float(a[25, 25]) == pytest.approx(1.0, abs=1e-6)
    assert float(a[19, 25]) == 0 and float(a[25, 40]) == 0
    assert float(a.sum()) == pytest.approx(29.75 * 10.6, rel=1e-5)


def test_diagonal_fill_edge_is_exact():
    # the triangle below the diagonal of a 16x16 square: pixels on the diagonal are half covered
    a = coverage(scene_of(make_shape([polygon([(8, 8), (24, 8), (24, 24)])], fill=BLACK)))
    for i in range(8, 24):
        assert float(a[i, i]) == pytest.approx(0.5, abs=1e-5)
    assert float(a.sum()) == pytest.approx(128, rel=1e-5)


def test_curved_fill_area():
    # a circle of radius 20 from 4 cubic arcs (the usual kappa); area within 0.05%
    k = 0.5522847498 * 20
    cx, cy = 32.3, 31.8
    circle = Subpath(pts([
        [cx + 20, cy], [cx + 20, cy + k], [cx + k, cy + 20], [cx, cy + 20], [cx - k, cy + 20],
        [cx - 20, cy + k], [cx - 20, cy], [cx - 20, cy - k], [cx - k, cy - 20], [cx, cy - 20],
        [cx + k, cy - 20], [cx + 20, cy - k]]), closed=True)
    a = coverage(scene_of(make_shape([circle], fill=BLACK)))
    assert float(a.sum()) == pytest.approx(math.pi * 400, rel=1e-3)  # the cubic circle is 0.03% off
    # against 32x32 point sampling of the true circle, on the pixels of its edge
    n = 32
    s = (torch.arange(64 * n, dtype=torch.float64) + 0.5) / n
    yy, xx = torch.meshgrid(s, s, indexing="ij")
    truth = (((xx - cx) ** 2 + (yy - cy) ** 2) < 400).double().reshape(64, n, 64, n).mean((1, 3))
    edge = (truth > 0) & (truth < 1)
    err = (a.double() - truth).abs()[edge]
    assert float(err.mean()) < 0.003 and float(err.max()) < 0.03


def test_stroke_coverage_of_straight_line_and_caps():
    # horizontal stroke: exact band coverage, round caps
    a = coverage(scene_of(make_shape([line(10, 30.5, 50, 30.5)], stroke=BLACK, stroke_width=3.0)))
    assert float(a[30, 30]) == pytest.approx(1.0, abs=1e-5)
    assert float(a[29, 30]) == pytest.approx(1.0, abs=1e-5)  # [29, 30) fully inside [29, 32]
    assert float(a[28, 30]) == pytest.approx(0.0, abs=1e-5)
    a = coverage(scene_of(make_shape([line(10, 30.25, 50, 30.25)], stroke=BLACK, stroke_width=2.0)))
    assert float(a[29, 30]) == pytest.approx(0.75, abs=1e-5)
    assert float(a[31, 30]) == pytest.approx(0.25, abs=1e-5)
    assert float(a.sum()) == pytest.approx(40 * 2 + math.pi, rel=0.005)


def test_diagonal_stroke_matches_supersampling():
    scene = scene_of(make_shape([line(9.3, 50.1, 52.7, 12.4)], stroke=BLACK, stroke_width=2.0))
    a = coverage(scene)
    ref = _supersampled_capsule((9.3, 50.1), (52.7, 12.4), 1.0, n=32)
    err = (a.double() - ref).abs()
    s = torch.arange(64, dtype=torch.float64) + 0.5
    yy, xx = torch.meshgrid(s, s, indexing="ij")
    near_caps = ((xx - 9.3) ** 2 + (yy - 50.1) ** 2 < 9) | ((xx - 52.7) ** 2 + (yy - 12.4) ** 2 < 9)
    assert float(err[~near_caps].max()) < 0.01  # along the band: exact up to the sampling
    assert float(err[near_caps].max()) < 0.08  # round caps: the straight-band approximation
    assert float(err.mean()) < 0.001


def _supersampled_capsule(p, q, r, size=64, n=16):
    s = (torch.arange(size * n, dtype=torch.float64) + 0.5) / n
    yy, xx = torch.meshgrid(s, s, indexing="ij")
    px, py = p
    dx, dy = q[0] - px, q[1] - py
    u = (((xx - px) * dx + (yy - py) * dy) / (dx * dx + dy * dy)).clamp(0, 1)
    d2 = (xx - px - u * dx) ** 2 + (yy - py - u * dy) ** 2
    return (d2 < r * r).double().reshape(size, n, size, n).mean((1, 3))


def test_thin_stroke_coverage_scales_with_width():
    for w in (0.5, 0.1, 1e-3):
        a = coverage(scene_of(make_shape([line(4, 30.3, 60, 30.3)], stroke=BLACK, stroke_width=w)))
        # the caps of a thin stroke count ~0.3 w each (their true area is pi w^2 / 8)
        assert float(a.sum()) == pytest.approx(56 * w + math.pi * w * w / 4, rel=0.015)


# ---- fill rules, paint order, compositing -------------------------------------------------


@pytest.mark.parametrize("rule,reverse,expected", [
    ("nonzero", False, 1600), ("evenodd", False, 1200), ("nonzero", True, 1200), ("evenodd", True, 1200)])
def test_fill_rules(rule, reverse, expected):
    shape = make_shape([rect(10, 10, 50, 50), rect(20, 20, 40, 40, reverse=reverse)], fill=BLACK, fill_rule=rule)
    assert float(coverage(scene_of(shape)).sum()) == pytest.approx(expected, rel=1e-5)


def test_open_subpath_is_filled_as_if_closed():
    open_ = polygon([(10, 10), (40, 10), (40, 40)], closed=False)
    closed = polygon([(10, 10), (40, 10), (40, 40)])
    a = coverage(scene_of(make_shape([open_], fill=BLACK)))
    b = coverage(scene_of(make_shape([closed], fill=BLACK)))
    assert torch.allclose(a, b, atol=1e-5)
    assert float(a.sum()) == pytest.approx(450, rel=1e-5)


def test_stroke_is_painted_over_the_fill_and_later_shapes_on_top():
    red, blue, green = [1, 0, 0, 1], [0, 0, 1, 1], [0, 1, 0, 1]
    scene = scene_of(make_shape([rect(10, 10, 50, 50)], fill=red, stroke=blue, stroke_width=4.0))
    with torch.no_grad():
        img = render(scene)
    assert img[30, 30].tolist() == [1, 0, 0]
    assert img[10, 30].tolist() == pytest.approx([0, 0, 1], abs=1e-6)  # the stroke over the fill
    assert img[11, 30].tolist() == pytest.approx([0, 0, 1], abs=1e-6)
    scene.shapes.append(make_shape([rect(0, 28, 64, 32)], fill=green))
    with torch.no_grad():
        img = render(scene)
    assert img[30, 30].tolist() == [0, 1, 0] and img[30, 10].tolist() == [0, 1, 0]


def test_source_over_with_translucent_colours():
    scene = scene_of(make_shape([rect(0, 0, 64, 64)], fill=[1, 0, 0, 0.5]),
                     make_shape([rect(0, 0, 32, 64)], fill=[0, 0, 1, 0.5]),
                     background=None)
    with torch.no_grad():
        img = render(scene, background=(0, 1, 0))
        rgba = render_rgba(scene)
    assert img[5, 5].tolist() == pytest.approx([0.25, 0.25, 0.5])
    assert img[5, 50].tolist() == pytest.approx([0.5, 0.5, 0])
    # over transparent: alpha 0.75, straight colour = premultiplied (0.25, 0, 0.5) / 0.75
    assert rgba[5, 5].tolist() == pytest.approx([1 / 3, 0, 2 / 3, 0.75])


# ---- edge cases ---------------------------------------------------------------------------


def _check_finite_gradients(scene):
    require_grad(scene)
    img = render(scene)
    assert torch.isfinite(img).all()
    weights = torch.rand(img.shape, generator=torch.Generator().manual_seed(1))
    (img * weights).mean().backward()
    for shape in scene.shapes:
        for t in [sp.points for sp in shape.subpaths] + [c for c in (shape.stroke, shape.fill) if c is not None]:
            assert t.grad is not None and torch.isfinite(t.grad).all()
        assert shape.stroke_width.grad is None or torch.isfinite(shape.stroke_width.grad).all()
    return img.detach()


@pytest.mark.parametrize("points", [[[30.3, 30.7]], [[30.3, 30.7]] * 4, [[30.3, 30.7]] * 7])
def test_zero_length_segments_are_round_dots(points):
    scene = scene_of(make_shape([Subpath(pts(points))], stroke=BLACK, stroke_width=10.0))
    a = coverage(scene)
    assert float(a.sum()) == pytest.approx(math.pi * 25, rel=0.01)
    ys, xs = torch.nonzero(a > 0.5, as_tuple=True)
    assert float((xs.float() + 0.5).mean()) == pytest.approx(30.3, abs=0.1)
    _check_finite_gradients(scene)


def test_coincident_control_points():
    # p0 == c0 and c1 == p1: a straight segment; plus a segment that doubles back on itself
    scene = scene_of(
        make_shape([Subpath(pts([[10, 10], [10, 10], [50, 40], [50, 40]]))], stroke=BLACK, stroke_width=4.0),
        make_shape([Subpath(pts([[10, 50], [40, 50], [40, 50], [10, 50]]))], stroke=BLACK, stroke_width=2.0),
    )
    a = coverage(scene_of(scene.shapes[0]))
    assert float(a.sum()) == pytest.approx(50 * 4 + math.pi * 4, rel=0.01)
    _check_finite_gradients(scene)


def test_strokes_and_fills_leaving_the_canvas():
    scene = scene_of(
        make_shape([Subpath(pts([[-20, 10], [30, -40], [90, 100], [100, 30]]))], stroke=BLACK, stroke_width=6.0),
        make_shape([rect(-10, -10, 100, 100)], fill=[0, 1, 0, 0.5]),
        make_shape([rect(-100, -100, -50, -50)], fill=BLACK, stroke=BLACK, stroke_width=3.0),
    )
    img = _check_finite_gradients(scene)
    a = coverage(scene_of(scene.shapes[1]))
    assert float(a.min()) == pytest.approx(0.5) and img.shape == (64, 64, 3)
    assert float(coverage(scene_of(scene.shapes[2])).sum()) == 0


def test_everything_off_canvas_still_differentiable():
    scene = scene_of(make_shape([rect(-100, -100, -50, -50)], fill=BLACK, stroke=BLACK, stroke_width=3.0))
    img = _check_finite_gradients(scene)
    assert float(img.min()) == 1.0


@pytest.mark.parametrize("width", [0.0, 1e-4, 0.3, 50.0, 500.0])
def test_extreme_stroke_widths(width):
    scene = scene_of(make_shape([Subpath(pts([[10, 10], [20, 10], [40, 40], [50, 40]]))],
                                stroke=BLACK, stroke_width=width))
    img = _check_finite_gradients(scene)
    if width >= 500:
        assert float(img.max()) == 0.0  # covers the canvas
    if width == 0:
        assert float(img.min()) == 1.0


def test_fully_transparent_shapes_leave_the_background():
    scene = scene_of(make_shape([rect(10, 10, 50, 50)], fill=[0.3, 0.2, 0.1, 0.0],
                                stroke=[0.5, 0.5, 0.5, 0.0], stroke_width=5.0),
                     background=(0.2, 0.4, 0.6, 1.0))
    require_grad(scene)
    img = render(scene, background=None)
    img.sum().backward()
    assert all(torch.isfinite(t.grad).all() for t in leaves(scene) if t.grad is not None)
    assert torch.equal(img.detach(), torch.tensor([0.2, 0.4, 0.6]).expand(64, 64, 3))
    assert float(render_rgba(scene)[..., 3].detach().max()) == 0


@pytest.mark.parametrize("points", [
    [[10, 10], [20, 20], [30, 30], [40, 40], [50, 50], [60, 60]],  # collinear, diagonal
    [[10, 10], [20, 10], [30, 10]],  # horizontal
    [[10, 10], [10, 10], [10, 10]],  # a point
])
def test_degenerate_fills_paint_nothing(points):
    scene = scene_of(make_shape([Subpath(pts(points), closed=True)], fill=BLACK))
    img = _check_finite_gradients(scene)
    assert float(img.min()) >= 1 - 1e-5  # rounding of the + and - edges that cancel


def test_empty_scene():
    img = render(scene_of())
    assert torch.equal(img, torch.ones(64, 64, 3))
    assert torch.equal(render_rgba(scene_of()), torch.zeros(64, 64, 4))


def test_many_overlapping_strokes_gradients_finite():
    g = torch.Generator().manual_seed(3)
    shapes = []
    for _ in range(40):
        p = torch.rand(1, 2, generator=g) * 20 + 22
        steps = (torch.rand(6, 2, generator=g) * 2 - 1) * 8
        shapes.append(make_shape([Subpath(torch.cat([p, p + steps.cumsum(0)]))],
                                 stroke=torch.rand(4, generator=g).tolist(), stroke_width=3.0))
    shapes[5].stroke = torch.tensor([0.1, 0.2, 0.3, 1.0])  # opaque layers in the stack
    _check_finite_gradients(scene_of(*shapes))


# ---- autograd against finite differences of the renderer ---------------------------------


def _loss(scene, weights):
    return (render(scene) * weights).double().mean()


def _perturbed(scene, leaf_index, direction, eps):
    out = Scene(scene.width, scene.height, [], scene.background)
    for shape in scene.shapes:
        out.shapes.append(make_shape([Subpath(sp.points.detach().clone(), sp.closed) for sp in shape.subpaths],
                                     stroke=None if shape.stroke is None else shape.stroke.detach().clone(),
                                     stroke_width=float(shape.stroke_width.detach()), fill_rule=shape.fill_rule,
                                     fill=None if shape.fill is None else shape.fill.detach().clone()))
    leaf = leaves(out)[leaf_index]
    with torch.no_grad():
        leaf += eps * direction
    return out


@pytest.mark.parametrize("seed", [0, 1, 2])
def test_autograd_matches_finite_differences(seed):
    scene = curvy_scene()
    weights = torch.rand(64, 64, 3, generator=torch.Generator().manual_seed(10 + seed))
    require_grad(scene)
    _loss(scene, weights).backward()
    g = torch.Generator().manual_seed(seed)
    ours, fd = [], []
    for i, leaf in enumerate(leaves(scene)):
        direction = torch.randn(leaf.shape, generator=g)
        is_geometry = leaf.dim() == 2
        if not is_geometry and leaf.dim() == 1:  # colour: keep channels inside 0..1
            direction = direction * 0.1
        eps = 0.05 if is_geometry or leaf.dim() == 0 else 0.01
        plus = _loss(_perturbed(scene, i, direction, eps), weights)
        minus = _loss(_perturbed(scene, i, direction, -eps), weights)
        fd.append(float((plus - minus) / (2 * eps)))
        ours.append(float((leaf.grad * direction).sum()))
    ours, fd = np.array(ours), np.array(fd)
    cos = ours @ fd / (np.linalg.norm(ours) * np.linalg.norm(fd))
    assert cos > 0.9999
    assert np.allclose(ours, fd, rtol=0.03, atol=0.01 * np.abs(fd).max())


def test_point_gradient_of_a_straight_edge():
    # moving the right edge of a square right by 1 px adds a column of 20 px
    square = rect(20.3, 20.3, 40.3, 40.3)
    scene = scene_of(make_shape([square], fill=BLACK))
    require_grad(scene)
    render_rgba(scene)[..., 3].sum().backward()
    grad = scene.shapes[0].subpaths[0].points.grad
    right = [i for i, (x, _) in enumerate(square.points.tolist()) if x == pytest.approx(40.3)]
    assert float(sum(grad[i, 0] for i in right)) == pytest.approx(20, rel=1e-3)
    assert float(grad[:, 0].sum()) == pytest.approx(0, abs=1e-3)  # translation keeps the area
    assert float(scene.shapes[0].fill.grad[3]) == pytest.approx(400, rel=1e-4)


def _cubic_area(points: torch.Tensor) -> torch.Tensor:
    """Area of a closed chain of cubics (Green's theorem on a fine polyline), autograd-ready."""
    n = points.shape[0]
    t = torch.linspace(0, 1, 4001, dtype=torch.float64).unsqueeze(1)
    area = 0
    for i in range(0, n, 3):
        p0, p1, p2, p3 = (points[(i + k) % n] for k in range(4))
        b = (1 - t) ** 3 * p0 + 3 * (1 - t) ** 2 * t * p1 + 3 * (1 - t) * t ** 2 * p2 + t ** 3 * p3
        area = area + 0.5 * (b[:-1, 0] * b[1:, 1] - b[1:, 0] * b[:-1, 1]).sum()
    return area


@pytest.mark.parametrize("offset", [0.0, 0.37])
def test_fill_area_gradient_is_exact_also_on_pixel_corners(offset):
    # integer coordinates (offset 0) put the anchors on pixel corners: the pieces of the outline
    # must take one-sided derivatives consistently there
    p = pts([[20, 12], [34, 6], [50, 14], [52, 28], [54, 42], [36, 52], [22, 46], [10, 40], [6, 22]]) + offset
    exact = p.double().requires_grad_(True)
    _cubic_area(exact).backward()
    scene = require_grad(scene_of(make_shape([Subpath(p.clone(), closed=True)], fill=BLACK)))
    area = render_rgba(scene)[..., 3].sum()
    area.backward()
    assert float(area.detach()) == pytest.approx(float(_cubic_area(p.double())), rel=1e-3)
    grad = scene.shapes[0].subpaths[0].points.grad
    assert torch.allclose(grad.double(), exact.grad, atol=0.03)


def test_stroke_width_gradient():
    scene = scene_of(make_shape([line(10, 30.3, 50, 30.3)], stroke=BLACK, stroke_width=2.0))
    require_grad(scene)
    render_rgba(scene)[..., 3].sum().backward()
    # d(area)/d(width) = length + pi * w / 2 (round caps)
    assert float(scene.shapes[0].stroke_width.grad) == pytest.approx(40 + math.pi, rel=0.01)


# ---- devices ------------------------------------------------------------------------------


@pytest.mark.skipif(not torch.cuda.is_available(), reason="no CUDA device")
def test_cuda_matches_cpu():
    cpu = curvy_scene()
    gpu = cpu.to("cuda")
    require_grad(cpu)
    require_grad(gpu)
    a = render(cpu)
    b = render(gpu)
    assert b.device.type == "cuda"
    assert torch.allclose(a, b.cpu(), atol=1e-4)
    a.sum().backward()
    b.sum().backward()
    for x, y in zip(leaves(cpu), leaves(gpu)):
        assert y.grad.device.type == "cuda"
        assert torch.allclose(x.grad, y.grad.cpu(), rtol=1e-3, atol=1e-3)


# ---- diffvg backend -----------------------------------------------------------------------


def test_diffvg_missing_gives_a_clear_error(monkeypatch):
    monkeypatch.setitem(sys.modules, "pydiffvg", None)  # import pydiffvg now fails
    with pytest.raises(DiffvgUnavailableError) as e:
        render(curvy_scene(), backend="diffvg")
    assert isinstance(e.value, ImportError)
    assert "github.com/BachiLi/diffvg" in str(e.value) and "setup.py install" in str(e.value)
    with pytest.raises(DiffvgUnavailableError):
        render_rgba(curvy_scene(), backend="diffvg")


def test_diffvg_scene_conversion(monkeypatch):
    """Half widths, fill and stroke as two groups (fill first), dots as one zero-length cubic."""
    fake = types.SimpleNamespace(
        Path=lambda **kw: types.SimpleNamespace(**kw),
        ShapeGroup=lambda **kw: types.SimpleNamespace(**kw),
    )
    from clipdraw.render.diffvg_backend import scene_to_diffvg

    scene = curvy_scene()
    shapes, groups = scene_to_diffvg(scene, 128, 128, fake)
    assert len(shapes) == 3 and len(groups) == 4
    assert float(shapes[0].stroke_width) == pytest.approx(3.0)  # full 3 at 64 -> 6 at 128 -> half 3
    assert shapes[0].is_closed and shapes[0].num_control_points.tolist() == [2, 2, 2]
    assert shapes[0].points.shape == (9, 2) and float(shapes[0].points[0, 0]) == 40
    assert groups[0].fill_color is scene.shapes[0].fill and groups[0].stroke_color is None
    assert groups[1].stroke_color is scene.shapes[0].stroke and groups[1].fill_color is None
    assert groups[0].use_even_odd_rule is False
    assert shapes[2].points.shape == (4, 2) and shapes[2].num_control_points.tolist() == [2]


@pytest.mark.skipif(importlib.util.find_spec("pydiffvg") is None,
                    reason="pydiffvg is not installed (built from github.com/BachiLi/diffvg)")
def test_diffvg_backend_matches_native():
    scene = Scene.load(REFERENCE / "filled_and_stroked6.scene.json")
    with torch.no_grad():
        ours = render(scene)
        theirs = render(scene, backend="diffvg")
        rgba = render_rgba(scene, backend="diffvg")
    assert theirs.shape == ours.shape and rgba.shape == (224, 224, 4)
    assert float((ours - theirs).abs().mean()) < 0.01


# ---- the `clipdraw render` command --------------------------------------------------------


def test_cli_render_png_matches_render_rgba(tmp_path):
    from PIL import Image

    from clipdraw.cli import main

    src = tmp_path / "scene.json"
    curvy_scene().save(src)
    out = tmp_path / "out.png"
    assert main(["render", str(src), "-o", str(out), "--width", "96", "--height", "80"]) == 0
    png = np.asarray(Image.open(out).convert("RGBA")).astype(np.float64) / 255
    with torch.no_grad():
        rgba = render_rgba(Scene.load(src), 96, 80).numpy()
    assert png.shape == (80, 96, 4)
    assert np.abs(png[..., 3] - rgba[..., 3]).max() <= 0.5 / 255 + 1e-6
    visible = rgba[..., 3] > 0.05
    assert np.abs(png[..., :3] - rgba[..., :3])[visible].max() <= 0.5 / 255 + 1e-6


def test_cli_render_reference_scene(tmp_path):
    from PIL import Image

    from clipdraw.cli import main

    out = tmp_path / "ref.png"
    assert main(["render", str(REFERENCE / "open_strokes64.scene.json"), "-o", str(out)]) == 0
    png = np.asarray(Image.open(out).convert("RGBA")).astype(np.float64) / 255
    over_white = png[..., :3] * png[..., 3:] + (1 - png[..., 3:])
    truth = np.load(REFERENCE / "open_strokes64.truth.npy")
    assert np.abs(over_white - truth).mean() < 0.005


def test_cli_bad_scene_exits_2(tmp_path, capsys):
    from clipdraw.cli import main

    bad = tmp_path / "bad.json"
    bad.write_text('{"format": "clipdraw-scene", "version": 1, "width": 10}')
    assert main(["render", str(bad), "-o", str(tmp_path / "x.png")]) == 2
    assert "error" in capsys.readouterr().err
    assert main(["render", str(tmp_path / "missing.json"), "-o", str(tmp_path / "x.png")]) == 2


def test_rendering_at_twice_the_size_then_averaging_gives_the_same_image():
    """Area coverage is consistent across scales: a 2x render box-filtered 2x2 is the 1x render."""
    scene = curvy_scene()
    with torch.no_grad():
        small = render(scene)
        big = render(scene, 128, 128)
    pooled = big.reshape(64, 2, 64, 2, 3).mean((1, 3))
    assert float((pooled - small).abs().mean()) < 0.002
    assert float((pooled - small).abs().max()) < 0.1
    fill_only = scene_of(make_shape(scene.shapes[0].subpaths, fill=BLACK))
    a = coverage(fill_only)
    b = coverage(fill_only, width=128, height=128).reshape(64, 2, 64, 2).mean((1, 3))
    assert float((a - b).abs().max()) < 0.01  # fills are exact up to the flattening (0.01 px)


@pytest.mark.parametrize("far", [1e10, 1e20, 3e38, math.inf])
def test_coordinates_far_outside_the_canvas_never_give_nan(far):
    # Scene.from_dict refuses them (test_scene.py); a scene built in Python renders finite
    # images and gradients, the far points clamped to where float32 still places them
    for kind in ("stroke", "fill"):
        p = pts([[10, 10], [far, 20], [30, -far], [40, 50]])
        shape = make_shape([Subpath(p)], stroke=BLACK if kind == "stroke" else None,
                           fill=BLACK if kind == "fill" else None, stroke_width=far if kind == "fill" else 3.0)
        _check_finite_gradients(scene_of(shape))
