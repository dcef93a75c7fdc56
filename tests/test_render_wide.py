"""Wide strokes and big canvases against supersampled truth: the rasterizer's rim-and-interior
stroke pass and its bands of rows must give the area-coverage image and its gradients."""
from __future__ import annotations

import math

import numpy as np
import pytest
import torch

import threading

from clipdraw.render import native, render, render_rgba
from clipdraw.render.native import BAND_PIXELS
from clipdraw.scene import Scene, Subpath, make_shape
from test_render import leaves, polygon, require_grad

BLACK = [0.0, 0.0, 0.0, 1.0]


def straight(x0, y0, x1, y1):
    return Subpath(torch.tensor([[x0 + (x1 - x0) * k / 3, y0 + (y1 - y0) * k / 3] for k in range(4)]))


def cubic_polyline(points, n=200):
    """Points of the cubic chain on a fine polyline [n * segments + 1, 2] (float64)."""
    p = np.asarray(points, dtype=np.float64)
    t = np.linspace(0, 1, n + 1)[:, None]
    out = []
    for i in range(0, len(p) - 1, 3):
        p0, p1, p2, p3 = p[i:i + 4]
        out.append((1 - t) ** 3 * p0 + 3 * (1 - t) ** 2 * t * p1 + 3 * (1 - t) * t ** 2 * p2 + t ** 3 * p3)
    return np.concatenate(out)


def supersampled_stroke(poly, half_width, width, height, k=8, rows=None):
    """Fraction of k x k sample points per pixel within half_width of the polyline [H, W]: the
    area coverage of a round-capped, round-joined stroke as k grows (independent of the renderer)."""
    rows = range(height) if rows is None else rows
    a, b = poly[:-1], poly[1:]
    d = b - a
    ll = np.maximum((d * d).sum(1), 1e-300)
    offsets = (np.arange(k) + 0.5) / k
    out = np.zeros((height, width))
    xs = (np.arange(width)[:, None] + offsets[None, :]).reshape(-1)  # [W * k]
    for i in rows:
        # only the pieces of the polyline near this row
        near = (np.minimum(a[:, 1], b[:, 1]) <= i + 1 + half_width) & (np.maximum(a[:, 1], b[:, 1]) >= i - half_width)
        if not near.any():
            continue
        an, dn, ln = a[near], d[near], ll[near]
        for oy in offsets:
            q = np.stack([xs, np.full_like(xs, i + oy)], 1)  # [W * k, 2]
            rel = q[:, None, :] - an[None]  # [W * k, S, 2]
            t = np.clip((rel * dn[None]).sum(2) / ln[None], 0, 1)
            dist2 = ((rel - t[..., None] * dn[None]) ** 2).sum(2).min(1)
            out[i] += (dist2 <= half_width ** 2).reshape(width, k).sum(1)
    return out / (k * k)


def coverage(scene, **kw):
    return render_rgba(scene, **kw)[..., 3]


@pytest.mark.parametrize("width", [20.0, 60.0, 100.0])
def test_wide_straight_stroke_area_and_width_gradient(width):
    # a capsule: area L w + pi w^2 / 4, and d(area)/d(width) = L + pi w / 2
    scene = Scene(224, 224, [make_shape([straight(60.3, 100.7, 150.2, 130.1)], stroke=BLACK, stroke_width=width)])
    w = scene.shapes[0].stroke_width.requires_grad_(True)
    area = coverage(scene).sum()
    area.backward()
    area = area.detach()
    length = math.hypot(150.2 - 60.3, 130.1 - 100.7)
    assert float(area) == pytest.approx(length * width + math.pi * width ** 2 / 4, rel=2e-3)
    assert float(w.grad) == pytest.approx(length + math.pi * width / 2, rel=5e-3)


@pytest.mark.parametrize("width", [30.0, 80.0])
def test_wide_curved_stroke_matches_supersampled_truth(width):
    points = [[30.2, 60.1], [90.0, -10.0], [150.0, 200.0], [190.4, 90.3]]
    scene = Scene(224, 224, [make_shape([Subpath(torch.tensor(points))], stroke=BLACK, stroke_width=width)])
    rows = list(range(0, 224, 3))
    ours = coverage(scene).numpy()[rows]
    truth = supersampled_stroke(cubic_polyline(points), width / 2, 224, 224, k=4, rows=rows)[rows]
    err = np.abs(ours - truth)
    # 4x4 samples see a boundary pixel's coverage to about 1/16; the rim is a thin band
    assert err.mean() < 2e-3
    assert err.max() < 0.2
    deep = supersampled_stroke(cubic_polyline(points), width / 2 - 0.75, 224, 224, k=1, rows=rows)[rows] == 1
    assert deep.sum() > 1000 and np.all(ours[deep] == 1)
    assert float(ours.sum()) == pytest.approx(float(truth.sum()), rel=4e-3)


def test_overlapping_wide_strokes_paint_each_pixel_once_per_stroke():
    # a stroke that doubles back on itself covers its pixels once: opaque alpha 0.5 stays 0.5
    points = [[40.0, 100.0], [180.0, 100.0], [180.0, 130.0], [40.0, 120.0]]
    scene = Scene(224, 224, [make_shape([Subpath(torch.tensor(points))], stroke=[0, 0, 0, 0.5], stroke_width=70.0)])
    alpha = coverage(scene)
    assert float(alpha.max()) == pytest.approx(0.5, abs=1e-6)


def check_stroke_gradients(points, width, weights, eps, directions, rel, abs=0.0, width_rel=None):
    """Autograd's derivatives of sum(coverage * weights) of one stroke along random point
    directions and along its width against central finite differences (steps eps, width / 1000)."""
    size = weights.shape[0]

    def loss(p, w):
        scene = Scene(size, size, [make_shape([Subpath(p)], stroke=BLACK)])
        scene.shapes[0].stroke_width = w
        return (coverage(scene) * weights).sum()

    p = points.clone().requires_grad_(True)
    w = torch.tensor(width, requires_grad=True)
    loss(p, w).backward()
    g = torch.Generator().manual_seed(1)
    for _ in range(directions):
        direction = torch.randn(*points.shape, generator=g)
        w0 = torch.tensor(width)
        fd = (loss(points + eps * direction, w0) - loss(points - eps * direction, w0)) / (2 * eps)
        assert float((p.grad * direction).sum()) == pytest.approx(float(fd), rel=rel, abs=abs)
    dw = width * 1e-3
    fd = (loss(points, torch.tensor(width + dw)) - loss(points, torch.tensor(width - dw))) / (2 * dw)
    assert float(w.grad) == pytest.approx(float(fd), rel=width_rel or rel)


def test_wide_stroke_gradients_match_finite_differences():
    points = torch.tensor([[30.2, 60.1], [90.0, 10.0], [150.0, 200.0], [190.4, 90.3]])
    weights = torch.rand(224, 224, generator=torch.Generator().manual_seed(0))
    check_stroke_gradients(points, 50.0, weights, eps=0.05, directions=3, rel=0.02, width_rel=0.01)


def test_big_canvas_in_bands_matches_truth(monkeypatch):
    # a canvas of several bands of rows: a filled polygon and a wide stroke across band edges
    monkeypatch.setattr(native, "_workers", lambda device: 1)  # the bands BAND_PIXELS makes
    width, height = 1024, 700
    edges = native._band_edges(None, width, height, 1)
    assert len(edges) > 2 and max(b - a for a, b in zip(edges, edges[1:])) * width <= BAND_PIXELS
    corners = [(100.3, 80.6), (900.2, 150.1), (800.7, 640.4), (60.1, 500.9)]
    outline = []
    for i in range(4):
        (ax, ay), (bx, by) = corners[i], corners[(i + 1) % 4]
        outline += [[ax + (bx - ax) * k / 3, ay + (by - ay) * k / 3] for k in range(3)]
    polygon = make_shape([Subpath(torch.tensor(outline), closed=True)], fill=BLACK)
    stroke_points = [[200.4, 30.2], [500.0, 900.0], [700.0, -200.0], [980.6, 660.3]]
    stroke = make_shape([Subpath(torch.tensor(stroke_points))], stroke=BLACK, stroke_width=90.0)
    x = np.array([c[0] for c in corners])
    y = np.array([c[1] for c in corners])
    polygon_area = 0.5 * abs(np.dot(x, np.roll(y, -1)) - np.dot(y, np.roll(x, -1)))
    alpha = coverage(Scene(width, height, [polygon])).numpy()
    assert float(alpha.sum()) == pytest.approx(polygon_area, rel=1e-4)
    ours = coverage(Scene(width, height, [stroke])).numpy()
    rows = sorted({r for b in edges[1:-1] for r in (b - 1, b)} | {100, 350})
    truth = supersampled_stroke(cubic_polyline(stroke_points), 45.0, width, height, k=4, rows=rows)
    err = np.abs(ours[rows] - truth[rows])
    assert err.mean() < 3e-3 and err.max() < 0.2
    # no seam between bands: pixels deep inside are fully covered on both sides of each band edge
    deep = supersampled_stroke(cubic_polyline(stroke_points), 45.0 - 0.75, width, height, k=1, rows=rows)
    assert deep[rows].sum() > 500 and np.all(ours[rows][deep[rows] == 1] == 1)


def _mixed_scene():
    """Wide random strokes, an evenodd fill among them, and a dashed butt-capped stroke (an outline)."""
    from clipdraw.optimize import random_strokes

    shapes = random_strokes(30, 96, 96, torch.Generator().manual_seed(0))
    for shape, w in zip(shapes, 2 + torch.rand(30, generator=torch.Generator().manual_seed(1)) * 20):
        shape.stroke_width = w
    outline = [[10.0, 10.0], [90.0, 0.0], [100.0, 90.0], [50.0, 100.0], [0.0, 80.0], [-5.0, 30.0]]
    fill = make_shape([Subpath(torch.tensor(outline), closed=True)], fill=[0.2, 0.6, 0.9, 0.7], fill_rule="evenodd")
    dashed = make_shape([straight(5.0, 90.0, 90.0, 10.0)], stroke=[0.8, 0.1, 0.1, 0.9], stroke_width=6.0,
                        stroke_linecap="butt", stroke_dasharray=[10.0, 5.0])
    return Scene(96, 96, shapes[:15] + [fill] + shapes[15:] + [dashed])


@pytest.mark.parametrize("workers", [2, 3])
def test_bands_on_threads_give_the_image_and_gradients_of_one_thread(monkeypatch, workers):
    scene = require_grad(_mixed_scene())
    tensors = leaves(scene)
    weights = torch.rand(96, 96, 3, generator=torch.Generator().manual_seed(2))
    results = []
    for n in (1, workers):
        monkeypatch.setattr(native, "_workers", lambda device, n=n: n)
        for t in tensors:
            t.grad = None
        image = render(scene)
        (image * weights).sum().backward()
        with torch.no_grad():
            plain = render(scene)
        results.append((image.detach(), plain, [t.grad.clone() for t in tensors]))
    (image1, plain1, grads1), (image2, plain2, grads2) = results
    assert len(native._band_edges(native._stroke_chords(native._gather(scene, 96, 96, "cpu", torch.float32)),
                                  96, 96, workers)) == workers + 1
    assert torch.allclose(image1, image2, atol=1e-6) and torch.allclose(plain1, plain2, atol=1e-6)
    assert torch.allclose(image1, plain1, atol=1e-6)
    for a, b in zip(grads1, grads2):
        assert torch.allclose(a, b, rtol=1e-4, atol=1e-5 * float(a.abs().max()) + 1e-9)
    assert sum(float(g.abs().sum()) for g in grads2) > 0


def test_band_edges_share_the_strokes_work():
    # every stroke in the top 20 rows: the cut between two bands falls there, not at row 112
    strokes = [make_shape([straight(10.0 + 5 * i, 4.0, 60.0 + 5 * i, 16.0)], stroke=BLACK, stroke_width=3.0)
               for i in range(20)]
    scene = Scene(224, 224, strokes)
    chords = native._stroke_chords(native._gather(scene, 224, 224, "cpu", torch.float32))
    edges = native._band_edges(chords, 224, 224, 2)
    assert edges[0] == 0 and edges[-1] == 224 and len(edges) == 3 and 4 < edges[1] < 24
    # one row per band at least, however the work lies; never more bands than rows
    assert native._band_edges(chords, 224, 3, 4) == [0, 1, 2, 3]
    assert native._band_edges(chords, 224, 224, 4) == sorted(set(native._band_edges(chords, 224, 224, 4)))


def test_render_leaves_the_callers_thread_count(monkeypatch):
    monkeypatch.setattr(native, "_workers", lambda device: 2)
    monkeypatch.setattr(native, "_POOL", None)  # a pool of its own, started here
    before = torch.get_num_threads()
    scene = _mixed_scene()
    scene.shapes[0].stroke.requires_grad_(True)
    render(scene).sum().backward()
    native._POOL[1].shutdown()
    later = []
    thread = threading.Thread(target=lambda: later.append(torch.get_num_threads()))
    thread.start()
    thread.join(timeout=60)
    # the workers run torch on their share of the threads; this thread and threads started later keep the count
    assert torch.get_num_threads() == before and later == [before]


def test_render_without_autograd_paints_the_same_image():
    # without autograd the layers are painted in order onto the band (no sort): same image
    from clipdraw.optimize import random_strokes

    shapes = random_strokes(40, 224, 224, torch.Generator().manual_seed(0))
    for shape, w in zip(shapes, torch.rand(40, generator=torch.Generator().manual_seed(1)) * 60):
        shape.stroke_width = w
    outline = [[20.0, 20.0], [200.0, 0.0], [240.0, 200.0], [120.0, 230.0], [0.0, 180.0], [-10.0, 60.0]]
    fill = make_shape([Subpath(torch.tensor(outline), closed=True)], fill=[0.2, 0.6, 0.9, 0.7], fill_rule="evenodd")
    scene = Scene(224, 224, shapes[:20] + [fill] + shapes[20:])
    shapes[0].stroke.requires_grad_(True)
    with_grad = render_rgba(scene, 600, 600)
    with torch.no_grad():
        without = render_rgba(scene, 600, 600)
    assert torch.allclose(with_grad.detach(), without, atol=2e-6)


# ---- one stroke whose own parts meet inside a pixel: the union of both, not the nearest alone ----


def _lines(points):
    """A polyline as a chain of straight cubic segments (their points, a list)."""
    return polygon(points, closed=False).points.tolist()


def _turn(points, angle, centre=(32.0, 32.0)):
    c, s = math.cos(angle), math.sin(angle)
    return [[centre[0] + (x - centre[0]) * c - (y - centre[1]) * s,
             centre[1] + (x - centre[0]) * s + (y - centre[1]) * c] for x, y in points]


def _hairpin(width, gap, angle):
    """Two straight arms, their edges `gap` apart, joined by a cubic U turn, turned by `angle`."""
    y0 = 30.3
    y1 = y0 + width + gap
    r = (y1 - y0) / 2
    arm = _lines([[10.4, y0], [40.7, y0]])[:-1]
    back = _lines([[40.7, y1], [10.4, y1]])[1:]
    return _turn(arm + [[40.7, y0], [40.7 + 1.33 * r, y0], [40.7 + 1.33 * r, y1], [40.7, y1]] + back, angle)


def _corner(degrees):
    """Two straight segments meeting at `degrees`."""
    c = np.array([20.3, 30.6])
    a = np.array([math.cos(0.1), math.sin(0.1)])
    b = np.array([math.cos(0.1 + math.radians(degrees)), math.sin(0.1 + math.radians(degrees))])
    return _lines([c + 28 * a, c, c + 28 * b])


SELF_OVERLAPS = {
    "hairpin, 2 px, gap 0.3 px, turned": (_hairpin(2.0, 0.3, 0.45), 2.0),
    "hairpin, 2 px, gap 0.6 px": (_hairpin(2.0, 0.6, 0.0), 2.0),
    "hairpin, 6 px, gap 0.6 px, turned": (_hairpin(6.0, 0.6, 0.45), 6.0),
    "X, 2 px": (_lines([[10.3, 10.6], [50.2, 50.1], [50.2, 10.6], [10.3, 50.1]]), 2.0),
    "X, 6 px": (_lines([[10.3, 10.6], [50.2, 50.1], [50.2, 10.6], [10.3, 50.1]]), 6.0),
    "corner 30 degrees, 2 px": (_corner(30), 2.0),
    "corner 45 degrees, 6 px": (_corner(45), 6.0),
    "corner 60 degrees, 2 px": (_corner(60), 2.0),
    "loop of one cubic, 2 px": ([[10.3, 30.6], [70.0, 60.0], [70.0, 0.0], [10.3, 40.1]], 2.0),
    "cap near its own body, 3 px": (_lines([[10.3, 30.6], [50.0, 30.6], [50.0, 40.0], [40.0, 40.0]])[:-3]
                                    + [[36.7, 38.0], [33.4, 36.0], [30.2, 34.1]], 3.0),
}


def _alpha(points, width, second_part=True, size=64):
    from clipdraw.render import native

    old = native.SECOND_PART
    native.SECOND_PART = second_part
    try:
        scene = Scene(size, size, [make_shape([Subpath(torch.tensor(points, dtype=torch.float32))], stroke=BLACK,
                                              stroke_width=width)])
        return coverage(scene).numpy()
    finally:
        native.SECOND_PART = old


@pytest.mark.parametrize("name", list(SELF_OVERLAPS))
def test_stroke_parts_meeting_in_a_pixel_take_their_union(name):
    points, width = SELF_OVERLAPS[name]
    truth = supersampled_stroke(cubic_polyline(points, n=100), width / 2, 64, 64, k=16)
    union = _alpha(points, width)
    nearest = _alpha(points, width, second_part=False)  # the nearest part alone
    changed = np.abs(union - nearest) > 1e-6
    assert changed.sum() >= 2
    err = np.abs(union - truth)
    before = np.abs(nearest - truth)
    # where two parts meet, the nearest alone misses the other's share; 16 x 16 samples see
    # coverage to about 1/256 per edge crossing the pixel
    assert err[changed].mean() < 0.045 and err[changed].mean() < 0.35 * before[changed].mean()
    assert err.max() <= before.max() + 1e-6 and err.sum() < before.sum()


PLAIN_CURVE = [[5.2, 20.1], [20.0, 10.0], [45.0, 50.0], [60.4, 30.3]]
PLAIN_CHAIN = [[5.2, 40.1], [15.0, 20.0], [25.0, 20.0], [32.3, 35.6], [39.6, 51.2], [50.0, 50.0], [60.1, 30.2]]


@pytest.mark.parametrize("points, width", [(PLAIN_CURVE, 2.0), (PLAIN_CURVE, 10.0),
                                           (PLAIN_CHAIN, 2.0), (PLAIN_CHAIN, 6.0)])
def test_strokes_without_self_overlap_are_unchanged_by_the_union(points, width):
    # a gentle curve, and a smooth chain of two, have no second part: the same image to 1e-6.
    # (Where a bend's radius nears the half width, the inner side's pixels see two tangent
    # bands of one valley; their union is nearer the truth there, and changes such pixels.)
    assert np.abs(_alpha(points, width) - _alpha(points, width, second_part=False)).max() <= 1e-6


def test_hairpin_gradients_match_finite_differences():
    # the union's gradient (both parts' motion, and their overlap's) where the arms meet
    points = torch.tensor(_hairpin(2.0, 0.4, 0.45))
    gap = np.abs(_alpha(points.tolist(), 2.0) - _alpha(points.tolist(), 2.0, second_part=False)) > 1e-6
    weights = torch.rand(64, 64, generator=torch.Generator().manual_seed(0)) * torch.from_numpy(gap)
    check_stroke_gradients(points, 2.0, weights, eps=0.01, directions=4, rel=0.03, abs=1e-3)


@pytest.mark.parametrize("bound", [50, 1 << 16, (1 << 16) + 1, 1 << 20])
@pytest.mark.parametrize("from_end", [False, True])
def test_stable_order_is_a_stable_sort(bound, from_end):
    # NumPy's radix sort for keys below 2^16, torch's above: the same order as Python's stable sort
    key = torch.randint(0, bound, (5000,), generator=torch.Generator().manual_seed(bound))
    key[:100] = bound - 1  # the largest key, many times over: ties in order
    step = -1 if from_end else 1
    expected = sorted(range(len(key)), key=lambda i: (int(key[i]), step * i))
    assert native._stable_order(key, bound, from_end).tolist() == expected


def test_composite_with_one_list_or_several_gives_the_same_image():
    # strokes alone take the radix sort by pixel; with a fill (a second list) the sort by pixel
    # and layer: a fill of alpha 0 changes no pixel, so both must give the same image
    from clipdraw.optimize import random_strokes

    shapes = random_strokes(60, 96, 96, torch.Generator().manual_seed(3))
    for s, w in zip(shapes, 2 + 30 * torch.rand(60, generator=torch.Generator().manual_seed(4))):
        s.stroke_width = w
    alone = render(Scene(96, 96, shapes))
    clear = make_shape([polygon([(5, 5), (90, 10), (50, 92)])], stroke=None, fill=[0.2, 0.4, 0.6, 0.0])
    together = render(Scene(96, 96, [clear] + shapes))
    assert torch.equal(alone, together)


def test_closest_point_is_the_curves_nearest():
    # Newton in the power basis, from the nearest chord: for the pixel centres on a wide stroke's
    # rim (the ones _closest is asked about), the distance to the cubic within 1e-4 px of float64's
    points = np.array([[10.0, 60.0], [30.0, -20.0], [70.0, 120.0], [90.0, 30.0]])
    half = 15.0
    scene = Scene(100, 100, [make_shape([Subpath(torch.tensor(points, dtype=torch.float32))], stroke=BLACK,
                                        stroke_width=2 * half)])
    ch = native._stroke_chords(native._gather(scene, 100, 100, "cpu", torch.float32))
    ys, xs = np.meshgrid(np.arange(100.0) + 0.5, np.arange(100.0) + 0.5, indexing="ij")
    centres = np.stack([xs.reshape(-1), ys.reshape(-1)], 1)  # [N, 2]

    def bezier(t, k=0):  # the cubic (k = 0) or its derivatives at t [M] (float64) -> [M, 2]
        w = {0: [(1 - t) ** 3, 3 * (1 - t) ** 2 * t, 3 * (1 - t) * t ** 2, t ** 3],
             1: [-3 * (1 - t) ** 2, 3 * (1 - t) * (1 - 3 * t), 3 * t * (2 - 3 * t), 3 * t ** 2],
             2: [6 * (1 - t), 6 * (3 * t - 2), 6 * (1 - 3 * t), 6 * t]}[k]
        return sum(wi[:, None] * p for wi, p in zip(w, points))

    # the truth: the best of 2001 samples, then float64 Newton steps
    ts = np.linspace(0, 1, 2001)
    t = ts[((centres[:, None, :] - bezier(ts)[None]) ** 2).sum(2).argmin(1)]
    for _ in range(30):
        r = bezier(t) - centres
        d1, d2 = bezier(t, 1), bezier(t, 2)
        t = np.clip(t - (r * d1).sum(1) / ((d1 * d1).sum(1) + (r * d2).sum(1)), 0, 1)
    truth = np.sqrt(((bezier(t) - centres) ** 2).sum(1))
    rim = np.nonzero(np.abs(truth - half) < 1.0)[0]  # the antialiased rim and a little more
    assert len(rim) > 300
    px, py = (torch.tensor(centres[rim, i], dtype=torch.float32) for i in (0, 1))
    e = ch.ends  # the nearest chord of each pixel centre, as _strokes picks it
    u = (((px[:, None] - e[0]) * e[2] + (py[:, None] - e[1]) * e[3]) * e[4]).clamp(0, 1)
    d2 = (px[:, None] - e[0] - u * e[2]) ** 2 + (py[:, None] - e[1] - u * e[3]) ** 2
    near = native._closest(ch, d2.argmin(1), px, py)
    assert np.abs(near.best.sqrt().double().numpy() - truth[rim]).max() < 1e-4


def test_far_edge_of_a_wide_band_is_left_out_exactly():
    # band_coverage computes the edge at -half_width only where it can cut the pixel: the value
    # and the gradient equal both edges' everywhere, bands narrower and wider than a pixel
    g = torch.Generator().manual_seed(5)
    d = (3 * torch.rand(4000, generator=g)).requires_grad_(True)
    hw = (2 * torch.rand(4000, generator=g)).requires_grad_(True)
    angle = (7 * torch.rand(4000, generator=g)).requires_grad_(True)
    nx, ny = angle.cos(), angle.sin()
    ax, ay = nx.abs(), ny.abs()
    a, b = torch.maximum(ax, ay), torch.minimum(ax, ay)
    both = native._edge_cdf(hw - d, a, b) - native._edge_cdf(-hw - d, a, b)
    fast = native.band_coverage(d, hw, nx, ny)
    assert torch.allclose(fast, both, atol=1e-6)
    w = torch.rand(4000, generator=g)
    grads = [torch.autograd.grad((c * w).sum(), [d, hw, angle], retain_graph=True) for c in (fast, both)]
    for x, y in zip(*grads):
        assert torch.allclose(x, y, atol=1e-5)
