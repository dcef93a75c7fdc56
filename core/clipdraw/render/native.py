"""The native rasterizer: plain PyTorch, area-coverage antialiasing, analytic gradients.

Everything is vectorized over all shapes of the scene at once; the work is proportional to the
pixels each shape really touches, never to (shapes x canvas). The pipeline:

1. Flatten every cubic segment into chords (adaptive count per segment, from a bound on the
   curve's deviation from its chords).
2. Strokes: each chord gives, per pixel row its capsule (the chord grown by the stroke's reach)
   crosses, the span of columns whose pixel centres it may cover, and the span of those it
   covers entirely (the chord's inner capsule, shrunk by the pixel's half diagonal and the
   flattening error). Per stroke, running sums of +1/-1 at the spans' ends over a per-shape box
   mark every covered pixel once, and the interior ones: those get coverage 1, whose geometry
   gradient is 0, at the cost of an index. Only the rim (covered, not interior) is exact work:
   each chord enumerates its outer span minus its inner span, and the nearest chord of the
   shape is chosen per (shape, pixel) with one ``scatter_reduce`` (key = distance bits, chord
   index). For those winners only, the closest point on the real cubic is refined by Newton
   steps, and the distance is recomputed *with* autograd (the closest parameter's own motion
   enters through implicit differentiation). Coverage is the exact box-filter coverage of a
   straight band of the stroke's width at that distance: the pixel square projected on the
   band's normal has a trapezoidal profile, whose orientation is differentiated too. Distance to
   the union of the shape's curves gives round joins and caps (where the straight-band model
   overestimates a little: about 0.15 px^2 per cap of a 2 px stroke). Where another part of the
   same stroke reaches the pixel too (a hairpin's other arm, an X, the inside of a sharp corner),
   the nearest chord that is a separate local minimum (projection strictly inside it or at a
   cap, not the winner's neighbour along a smooth run of segments) is refined the same way, and
   the pixel takes the union of both bands: c1 + c2 minus the exact area of the pixel inside both
   (the square clipped by the bands' four half-planes, Green's theorem, analytic gradient). The
   work is proportional to the pixels each stroke covers plus its rows, however wide it is.
3. Fills: exact area of the flattened outline's {w != 0} (nonzero) or {w odd} (evenodd) inside
   every pixel, by the accumulation method of font rasterizers (each chord adds, per row strip
   and pixel cell it crosses, the area to its right in that cell; a running sum along the row
   gives the integral of the winding number w over each pixel). That integral is the area only
   where w takes one nonzero value in the strip: the common cases, a strip holding two pieces
   of opposite directions that do not cross, or sides (chains of pieces) apart in x alternating
   in direction, are left so. Every other strip of a shape (overlaps, opposite turns sharing an
   edge, self-crossings) is cut at the heights where its pieces start, end or cross (crossings
   computed with autograd); in each sub-strip the pieces, ordered by x, get the weight
   [rule(w right of it)] - [rule(w left of it)] in {-1, 0, 1} (horizontal chords likewise, split
   where pieces cross them), so that the running sum integrates the rule itself. Fully
   differentiable (exact almost everywhere). Open subpaths are closed implicitly. A point
   exactly on a pixel edge belongs to the pixel after it, and its derivative is taken
   one-sidedly to match (in a cut strip, from above).
4. Compositing: all (pixel, layer, alpha, colour) entries are sorted by pixel and layer (top
   first; a list that runs by layer needs only a stable sort by pixel, a radix sort), laid out
   in padded [pixels, 1 + depth] arrays, one per depth class (how many layers the pixel has,
   rounded up to a power of two), and composited with source-over via an exclusive cumulative
   product of (1 - alpha) (no logs or divisions: opaque layers are fine). Without
   autograd (a plain render: `score`, PNGs, big canvases) there are no per-pixel entries at all:
   steps 2 and 3 hand over each shape's coverage over its box in the band, and the boxes are
   painted in order onto the band's dense colour and transmittance: no sort, no index.

5. Strokes with SVG's butt or square caps, miter or bevel joins, or dashes (the scene's optional
   stroke keys; CLIPDraw's round caps and joins take step 2) become polygons: the path flattened,
   cut into dashes by arc length, a quad per piece, a wedge per join, a cap per end, and the two
   quads' overlap inside each turn taken away once, so that the winding number is exactly 1 on
   the stroke. Step 3 fills them (nonzero): exact area coverage, gradients through the polygon.

Steps 2-5 run per band of rows (BAND_PIXELS pixels), so memory stays bounded on big canvases.
On a CPU with several threads the bands run at once on worker threads, forward and backward
(_band_pool, _BandsOnThreads): most of the work here is gathers, scatters, scans and sorts that
torch runs on one thread, so bands in parallel use the cores better than operations in parallel.

Pixel (row i, column j) covers [j, j+1) x [i, i+1); its centre is (j + 0.5, i + 0.5).
"""
from __future__ import annotations

import dataclasses
import math
import threading
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass
from typing import NamedTuple, Optional

import numpy as np
import torch

from ..scene import MAX_COORDINATE, Scene

# Flattening tolerances (pixels): the largest distance between a segment and its chords.
STROKE_TOLERANCE = 0.25  # strokes only use chords to find the nearest piece; Newton refines
FILL_TOLERANCE = 0.01  # fills integrate the chords' polygon exactly, so this is the area error
MAX_CHORDS_STROKE = 64
MAX_CHORDS_FILL = 256
NEWTON_STEPS = 2
HALF_DIAGONAL = 0.7072  # the farthest a pixel's area reaches from its centre along any normal
BAND_PIXELS = 1 << 18  # pixels per band of rows rendered at once (bounds memory on big canvases)
MAX_WORKERS = 4  # bands rendered at once on a CPU at most (see _band_pool; measured on 2 cores only)
INNER_MIN = 1.0  # narrower inner capsules hold too few pixel centres to be worth finding
SECOND_PART = True  # rim pixels that two separate parts of one stroke reach get their union
SMOOTH_JOIN = 10.0  # degrees: segments whose tangents meet within this are one part of a stroke

_BIG = 1e9


@dataclass
class Raster:
    """Per pixel (every pixel, or those touched): flat pixel index, premultiplied colour, and
    transmittance."""

    pixels: torch.Tensor  # long [P], row * width + column
    premultiplied: torch.Tensor  # float [P, 3]: sum of alpha * colour, attenuated by layers above
    transmittance: torch.Tensor  # float [P]: product of (1 - alpha) over every layer
    width: int
    height: int
    zero: Optional[torch.Tensor] = None  # set when nothing is drawn: 0, connected to the inputs
    dense: bool = False  # pixels are every pixel in order (every band gave all its own)


@dataclass
class _Boxes:
    """Coverage of each shape over a box of rows of the band, for painting without autograd (no
    per-pixel entries): shape s covers rows y0[s]..y0[s]+h[s]-1 and columns x0[s]..x0[s]+w[s]-1,
    its row r at coverage[off[s] + r * stride[s]:][:w[s]]."""

    coverage: torch.Tensor  # float [total]
    table: torch.Tensor  # long [6, num_shapes]: off, stride, x0, y0, w, h (h = 0: nothing)


# ---- scene gathering ----------------------------------------------------------------------


@dataclass
class _Gathered:
    points: torch.Tensor  # float [Np, 2], scaled to the output size, autograd-connected
    stroke_ctrl: torch.Tensor  # long [Ss, 4]: point indices of the segments of stroked shapes
    stroke_seg_shape: torch.Tensor  # long [Ss]
    stroke_seg_sub: torch.Tensor  # long [Ss]: subpath of each stroked segment
    stroke_seg_end: torch.Tensor  # long [Ss]: 1 if its start ends an open subpath, + 2 if its end does
    fill_ctrl: torch.Tensor  # long [Sf, 4]: the same for filled shapes
    fill_seg_shape: torch.Tensor  # long [Sf]
    close_pairs: torch.Tensor  # long [C, 3]: (last, first, shape) closing chords of open fills
    widths: torch.Tensor  # float [S] full stroke widths (scaled), autograd
    colours: torch.Tensor  # float [2S, 4]: layer 2s = fill of shape s, 2s+1 = stroke
    evenodd: torch.Tensor  # bool [S]
    num_shapes: int


def _segment_table(sizes: np.ndarray, closed: np.ndarray, bases: np.ndarray):
    """Point indices [S, 4] of the cubic segments of subpaths with `sizes` points starting at
    `bases`, and the subpath of each segment. A one-point subpath is a zero-length segment."""
    nseg = np.where(sizes == 1, 1, np.where(closed, sizes // 3, (sizes - 1) // 3))
    sub = np.repeat(np.arange(len(sizes)), nseg)
    first = np.cumsum(nseg) - nseg
    i = np.arange(len(sub)) - first[sub]
    k = sizes[sub]
    base = bases[sub]
    local = 3 * i[:, None] + np.arange(4)[None, :]
    local = np.where(k[:, None] == 1, 0, local)
    local = np.where(closed[sub][:, None], local % np.maximum(k, 1)[:, None], local)
    return base[:, None] + local, sub


def _gather(scene: Scene, width: int, height: int, device, dtype) -> _Gathered:
    sx = width / scene.width
    sy = height / scene.height
    pts, sizes, closed, sub_shape = [], [], [], []
    stroked, filled, widths, evenodd = [], [], [], []
    for si, shape in enumerate(scene.shapes):
        stroked.append(shape.stroke is not None and not _styled(shape))
        filled.append(shape.fill is not None)
        widths.append(shape.stroke_width)
        evenodd.append(shape.fill_rule == "evenodd")
        for sp in shape.subpaths:
            k = sp.points.shape[0]
            if k:
                pts.append(sp.points)
                sizes.append(k)
                closed.append(sp.closed)
                sub_shape.append(si)
    ns = len(scene.shapes)
    long = dict(device=device, dtype=torch.long)
    if pts:
        # beyond MAX_COORDINATE float32 cannot place a point to the pixel (Scene.from_dict refuses
        # such scenes); clamped, a scene built in Python still renders without inf or NaN
        points = (torch.cat(pts) if len(pts) > 1 else pts[0]).to(dtype).clamp(-MAX_COORDINATE, MAX_COORDINATE)
        points = points * torch.tensor([sx, sy], device=points.device, dtype=dtype)
    else:
        points = torch.zeros(0, 2, device=device, dtype=dtype)
    sizes_a = np.asarray(sizes, dtype=np.int64)
    closed_a = np.asarray(closed, dtype=bool)
    bases = np.cumsum(sizes_a) - sizes_a
    ctrl, sub = _segment_table(sizes_a, closed_a, bases)
    # the segments that start or end an open subpath (where a stroke has a cap)
    new_sub = np.diff(sub, prepend=-1, append=len(sizes_a)) != 0 if len(sub) else np.zeros(1, dtype=bool)
    seg_end = ((new_sub[:-1] * 1 + new_sub[1:] * 2) * ~closed_a[sub]) if len(sub) else np.zeros(0, dtype=np.int64)
    seg_shape = np.asarray(sub_shape, dtype=np.int64)[sub]
    stroked_a = np.asarray(stroked, dtype=bool)
    filled_a = np.asarray(filled, dtype=bool)
    s_sel = stroked_a[seg_shape] if len(seg_shape) else np.zeros(0, dtype=bool)
    # fills: zero-length segments (dots) enclose nothing
    f_sel = (filled_a[seg_shape] & (sizes_a[sub] > 1)) if len(seg_shape) else np.zeros(0, dtype=bool)
    sub_shape_a = np.asarray(sub_shape, dtype=np.int64)
    open_fill = (~closed_a) & (sizes_a > 1) & (filled_a[sub_shape_a] if len(sub_shape_a) else False)
    close_pairs = np.stack([bases + sizes_a - 1, bases, sub_shape_a], 1)[open_fill] if len(sizes_a) else \
        np.zeros((0, 3), dtype=np.int64)

    wscale = 0.5 * (sx + sy)
    widths_t = (torch.stack(widths).to(dtype).clamp(max=MAX_COORDINATE) * wscale if widths
                else torch.zeros(0, device=device, dtype=dtype))
    colours = torch.zeros(2 * ns, 4, device=device, dtype=dtype)
    idx = [2 * i + 1 for i in range(ns) if scene.shapes[i].stroke is not None]
    if idx:
        colours = colours.index_put((torch.tensor(idx, **long),),
                                    torch.stack([s.stroke for s in scene.shapes if s.stroke is not None]).to(dtype))
    idx = [2 * i for i in range(ns) if filled[i]]
    if idx:
        colours = colours.index_put((torch.tensor(idx, **long),),
                                    torch.stack([s.fill for s in scene.shapes if s.fill is not None]).to(dtype))
    t = lambda a: torch.from_numpy(np.ascontiguousarray(a, dtype=np.int64)).to(device)  # noqa: E731
    return _Gathered(
        points=points,
        stroke_ctrl=t(ctrl[s_sel]).reshape(-1, 4), stroke_seg_shape=t(seg_shape[s_sel]),
        stroke_seg_sub=t(sub[s_sel]), stroke_seg_end=t(seg_end[s_sel]),
        fill_ctrl=t(ctrl[f_sel]).reshape(-1, 4), fill_seg_shape=t(seg_shape[f_sel]),
        close_pairs=t(close_pairs).reshape(-1, 3),
        widths=widths_t, colours=colours,
        evenodd=torch.tensor(evenodd, device=device, dtype=torch.bool), num_shapes=ns)


# ---- Bezier helpers -----------------------------------------------------------------------


def _bezier(c: torch.Tensor, t: torch.Tensor) -> torch.Tensor:
    """Points of cubics c [N, 4, 2] at parameters t [N]."""
    mt = 1 - t
    w = torch.stack((mt * mt * mt, 3 * mt * mt * t, 3 * mt * t * t, t * t * t), dim=1)
    return (w.unsqueeze(2) * c).sum(1)


def _chord_counts(ctrl: torch.Tensor, tol: float, max_n: int) -> torch.Tensor:
    """Chords per segment so that the chords stay within `tol` of the curve (no autograd).

    For a cubic, |B''| <= 6 max(|p0 - 2p1 + p2|, |p1 - 2p2 + p3|), and a chord over a parameter
    interval h deviates at most h^2 max|B''| / 8 from the curve.
    """
    a = (ctrl[:, 0] - 2 * ctrl[:, 1] + ctrl[:, 2]).norm(dim=1)
    b = (ctrl[:, 1] - 2 * ctrl[:, 2] + ctrl[:, 3]).norm(dim=1)
    m = torch.maximum(a, b)
    n = torch.ceil(torch.sqrt(0.75 * m / tol))
    return n.clamp(1, max_n).long()


def _flatten(ctrl: torch.Tensor, tol: float, max_n: int, with_grad_ctrl=None):
    """Chords of segments ctrl [S, 4, 2]: (segment of chord, t0, t1, start point, end point).

    Points are evaluated on `with_grad_ctrl` when given (autograd), else on ctrl.
    """
    n = _chord_counts(ctrl, tol, max_n)
    s = ctrl.shape[0]
    dev = ctrl.device
    seg = torch.repeat_interleave(torch.arange(s, device=dev), n)
    starts = torch.cumsum(n, 0) - n
    k = torch.arange(seg.shape[0], device=dev) - starts[seg]
    nf = n[seg].to(ctrl.dtype)
    t0 = k.to(ctrl.dtype) / nf
    t1 = (k + 1).to(ctrl.dtype) / nf
    src = ctrl if with_grad_ctrl is None else with_grad_ctrl
    c = src[seg]
    both = _bezier(torch.cat((c, c)), torch.cat((t0, t1)))
    m = seg.shape[0]
    return seg, t0, t1, both[:m], both[m:]


# ---- coverage of a straight edge by a box-filtered pixel ----------------------------------


def _positive(x: torch.Tensor) -> torch.Tensor:
    """1 where x > 0, else 0, in x's dtype, computed in place on x (pass a fresh tensor). The hot
    paths choose with such 0/1 factors: on a CPU, torch.where and reading a boolean mask as
    numbers are many times slower (torch 2.14, x86: where took 300 us for 60k floats, an add 9)."""
    return x.sign_().clamp_min_(0)


def _edge_cdf(u: torch.Tensor, a: torch.Tensor, b: torch.Tensor) -> torch.Tensor:
    """Fraction of the unit pixel square whose points lie at signed distance < u from its centre
    along a unit normal with absolute components a >= b (the CDF of a trapezoidal profile)."""
    h = 0.5 * (a + b)
    g = 0.5 * (a - b)
    # clamp(u, -h, h) and max(b, 1e-6) through relu: with tensor bounds, clamp's backward is
    # several times slower on a CPU (its masks)
    v = u - torch.relu(u - h) + torch.relu(-h - u)
    ab2 = 2 * a * (b + torch.relu(1e-6 - b))
    lo = (v + h).square() / ab2
    hi = 1 - (h - v).square() / ab2
    mid = 0.5 + v / a
    # the pieces chosen by 0/1 factors
    with torch.no_grad():
        below = _positive(-g - v)  # 1 where v < -g
        above = _positive(v - g)  # 1 where v > g
    return mid + below * (lo - mid) + above * (hi - mid)


def band_coverage(d: torch.Tensor, half_width: torch.Tensor, nx: torch.Tensor, ny: torch.Tensor):
    """Area of the unit pixel covered by a straight band |s| < half_width, the pixel centre at
    s = d, the band's normal (nx, ny) a unit vector."""
    ax, ay = nx.abs(), ny.abs()
    # max and min of the two, through abs (torch.maximum's backward is several times slower here)
    s, d_ = ax + ay, (ax - ay).abs()
    a = 0.5 * (s + d_)
    b = 0.5 * (s - d_)
    # the far edge (s = -half_width) cuts the pixel only where half_width + d is below the pixel's
    # half extent along the normal (at most HALF_DIAGONAL): elsewhere its CDF is exactly 0, and its
    # gradient too (for CLIPDraw's strokes, 2 px wide and more, everywhere)
    with torch.no_grad():
        far = _nonzero((half_width + d).detach() < HALF_DIAGONAL)
    if far.numel() == 0:
        return _edge_cdf(half_width - d, a, b)
    u = torch.cat((half_width - d, (-half_width - d).index_select(0, far)))
    cdf = _edge_cdf(u, torch.cat((a, a.index_select(0, far))), torch.cat((b, b.index_select(0, far))))
    m = d.shape[0]
    return cdf[:m].index_add(0, far, -cdf[m:])


# ---- strokes ------------------------------------------------------------------------------


def _bez_cols(c, t):
    """Point of cubics given as 8 coordinate rows c = (x0, y0, ..., x3, y3) [8, N] at t [N]."""
    mt = 1 - t
    b0 = mt * mt * mt
    b1 = 3 * mt * mt * t
    b2 = 3 * mt * t * t
    b3 = t * t * t
    x = b0 * c[0] + b1 * c[2] + b2 * c[4] + b3 * c[6]
    y = b0 * c[1] + b1 * c[3] + b2 * c[5] + b3 * c[7]
    return x, y


@dataclass
class _Chords:
    """The chords of every stroked segment (no autograd), and what the per-band passes share."""

    ctrl_t: torch.Tensor  # float [8, S]: control points of the stroked segments, autograd
    cd: torch.Tensor  # the same, detached
    half_w: torch.Tensor  # float [num_shapes] half stroke widths, autograd
    cseg: torch.Tensor  # long [N]: segment of each chord
    cshape: torch.Tensor  # long [N]: shape of each chord
    ends: torch.Tensor  # float [11, N]: ax, ay, dx, dy, 1 / |d|^2, t0, t1, bx, by, and two for _capsule_spans
    # (rows in the order of use: the rim's candidates read the first 5, its winners the first 7)
    reach: torch.Tensor  # float [N]: a pixel centre farther than this from the chord is not covered
    inner: torch.Tensor  # float [N]: a pixel centre nearer than this is covered entirely (<= 0: none)
    cap: torch.Tensor  # float [N]: 1 for the chords that end an open subpath (a cap), else 0
    pos: torch.Tensor  # long [N]: chords numbered along smooth runs of segments (see _stroke_chords)
    seg_end: torch.Tensor  # long [S]: 1 if the segment starts an open subpath, + 2 if it ends one
    power: torch.Tensor  # float [14, S]: (x, y) of k0..k3 of B(t) = k0 + k1 t + k2 t^2 + k3 t^3, 2 k2, 3 k3, 6 k3


def _stroke_chords(g: _Gathered) -> _Chords:
    dev = g.points.device
    dt = g.points.dtype
    nseg = g.stroke_ctrl.shape[0]
    ctrl_t = g.points.index_select(0, g.stroke_ctrl.reshape(-1)).reshape(nseg, 8).t()
    half_w = 0.5 * g.widths
    with torch.no_grad():
        cd = ctrl_t.detach().contiguous()
        # chords per segment from the bound on the curve's deviation (see _chord_counts)
        ax_ = (cd[0] - 2 * cd[2] + cd[4]).square() + (cd[1] - 2 * cd[3] + cd[5]).square()
        bx_ = (cd[2] - 2 * cd[4] + cd[6]).square() + (cd[3] - 2 * cd[5] + cd[7]).square()
        m = torch.maximum(ax_, bx_).sqrt()
        n = torch.ceil(torch.sqrt(m * (0.75 / STROKE_TOLERANCE))).clamp(1, MAX_CHORDS_STROKE).long()
        deviation = 0.75 * m / n.to(dt).square()  # the bound itself, also where n was capped
        cseg = torch.repeat_interleave(torch.arange(nseg, device=dev), n)
        k = (torch.arange(cseg.shape[0], device=dev) - (torch.cumsum(n, 0) - n).index_select(0, cseg)).to(dt)
        nf = n.to(dt).index_select(0, cseg)
        t0 = k / nf
        t1 = (k + 1) / nf
        cc = cd.index_select(1, cseg)
        ax, ay = _bez_cols(cc, t0)
        bx, by = _bez_cols(cc, t1)
        dx = bx - ax
        dy = by - ay
        inv_ll = 1.0 / (dx * dx + dy * dy).clamp_min(1e-12)
        cshape = g.stroke_seg_shape.index_select(0, cseg)
        hw = half_w.detach().clamp_min(0).index_select(0, cshape)
        reach = hw + (HALF_DIAGONAL + STROKE_TOLERANCE + 1e-3)
        # every point of the pixel within half_w of the curve: its coverage is 1, its gradient 0
        inner = hw - (HALF_DIAGONAL + 1e-3) - deviation.index_select(0, cseg)
        # for _capsule_spans: the sign of dy times dx / |d|, and 1 / dy (a level chord: dy = +1e-9)
        level = dy.abs() < 1e-9
        sdx = torch.where(level | (dy > 0), dx, -dx) * inv_ll.sqrt()
        inv_dy = 1 / torch.where(level, 1e-9, dy)
        cend = g.stroke_seg_end.index_select(0, cseg)
        cap = (((k == 0) & (cend & 1 > 0)) | ((k == nf - 1) & (cend & 2 > 0))).to(dt)
        # runs of segments joined smoothly (tangents within SMOOTH_JOIN): chords are numbered along
        # them, with a gap of 2 at a corner or a new subpath, so that the neighbours of a chord
        # along the curve (across a smooth join too) are those 1 apart
        p0, p1, p2, p3 = cd[0:2], cd[2:4], cd[4:6], cd[6:8]
        d0, d1, d2 = p1 - p0, p2 - p0, p3 - p0
        tin = torch.where(d0.abs().sum(0) > 0, d0, torch.where(d1.abs().sum(0) > 0, d1, d2))  # [2, S]
        e0, e1 = p3 - p2, p3 - p1
        tout = torch.where(e0.abs().sum(0) > 0, e0, torch.where(e1.abs().sum(0) > 0, e1, d2))
        a, b = tout[:, :-1], tin[:, 1:]
        cos = (a * b).sum(0) * torch.rsqrt(((a * a).sum(0) * (b * b).sum(0)).clamp_min(1e-30))
        sub = g.stroke_seg_sub
        smooth = (cos > math.cos(math.radians(SMOOTH_JOIN))) & (sub[1:] == sub[:-1])
        run = torch.cumsum(torch.cat((torch.ones(1, device=dev, dtype=torch.long), (~smooth).long())), 0)
        pos = torch.arange(cseg.shape[0], device=dev) + 2 * run.index_select(0, cseg)
        # the power basis, for _closest's Newton steps (from differences: exact for a point far out)
        k1 = 3 * d0
        k2 = 3 * (p2 - 2 * p1 + p0)
        k3 = p3 - p0 + 3 * (p1 - p2)
        power = torch.cat((p0, k1, k2, k3, 2 * k2, 3 * k3, 6 * k3))
    return _Chords(ctrl_t, cd, half_w, cseg, cshape,
                   torch.stack((ax, ay, dx, dy, inv_ll, t0, t1, bx, by, sdx, inv_dy)), reach, inner,
                   cap, pos, g.stroke_seg_end, power)


def _capsule_spans(e: torch.Tensor, r: torch.Tensor, yc: torch.Tensor):
    """x-interval (lo, hi) of the horizontal line y = yc inside the capsule of radius r around the
    chord of e (rows ax, ay, dx, dy, sdx, inv_dy of _Chords.ends, each [P]; r [P] or [k, P]: k
    radii at once); lo > hi where they miss. Along
    the chord p(t) = a + t d, x(t) +- sqrt(r^2 - (y(t) - yc)^2) is concave (convex) in t: its
    extreme over the t where the disk reaches the line is the unconstrained one, t* (where the
    disk's edge is parallel to d), clamped."""
    ax, ay, dx, dy, sdx, inv_dy = e
    ey = yc - ay
    f0 = (ey - r) * inv_dy
    f1 = (ey + r) * inv_dy
    tl = torch.minimum(f0, f1).clamp_min(0)
    th = torch.maximum(f0, f1).clamp_max(1)
    rs = r * sdx
    t_hi = torch.minimum(torch.maximum((ey + rs) * inv_dy, tl), th)
    t_lo = torch.minimum(torch.maximum((ey - rs) * inv_dy, tl), th)
    r2 = r * r
    hi = ax + t_hi * dx + (r2 - (t_hi * dy - ey).square()).clamp_min(0).sqrt()
    lo = ax + t_lo * dx - (r2 - (t_lo * dy - ey).square()).clamp_min(0).sqrt()
    # where the disk misses the line (tl > th) the span is pushed off the canvas: lo right, hi left
    miss = _positive(tl - th).mul_(_BIG)
    return lo + miss, hi - miss


def _columns(lo: torch.Tensor, hi: torch.Tensor, width: int):
    """Columns c0..c1 of the pixels whose centre lies in [lo, hi], within the canvas (long)."""
    c0 = torch.ceil((lo - 0.5).clamp(-1, width)).long().clamp_min(0)
    c1 = torch.floor((hi - 0.5).clamp(-1, width)).long().clamp_max(width - 1)
    return c0, c1


def _strokes(ch: _Chords, width: int, y0: int, y1: int, dense: bool = False):
    """(flat pixel, shape, coverage) entries of every stroke in the rows y0..y1-1, once per stroke
    per pixel, ordered by shape, then pixel. Pixels deep inside a stroke get coverage 1 straight
    from its chords' inner capsules (gradient 0); only the antialiased rim looks for its nearest
    chord and point. dense (no autograd): the coverage of each stroke's box, _Boxes."""
    cd = ch.cd
    dev = cd.device
    dt = cd.dtype
    e = ch.ends
    nch = e.shape[1]
    ns = ch.half_w.shape[0]
    with torch.no_grad():
        # -- (chord, row) pairs: every row the chord's outer capsule reaches in the band
        ylo = torch.minimum(e[1], e[8])
        yhi = torch.maximum(e[1], e[8])
        r0 = torch.ceil((ylo - ch.reach - 0.5).clamp(y0 - 1, y1)).long().clamp_min(y0)
        r1 = torch.floor((yhi + ch.reach - 0.5).clamp(y0 - 1, y1)).long().clamp_max(y1 - 1)
        nrow = (r1 - r0 + 1).clamp_min(0)
        pch = torch.repeat_interleave(torch.arange(nch, device=dev), nrow)
        if pch.numel() == 0:
            return None
        prow = r0.index_select(0, pch) + torch.arange(pch.shape[0], device=dev) - (
            torch.cumsum(nrow, 0) - nrow).index_select(0, pch)
        ep = e[(0, 1, 2, 3, 9, 10), :].index_select(1, pch)
        yc = prow.to(dt) + 0.5
        reach = ch.reach.index_select(0, pch)
        # inner spans only where the stroke is wide enough to have pixels entirely inside; the outer
        # and inner capsules' spans in one pass (radii [2, pairs]) where there are any
        rin = ch.inner.index_select(0, pch)
        wide = rin > INNER_MIN
        if bool(wide.any()):
            lo, hi = _capsule_spans(ep, torch.stack((reach, rin)), yc)
            hi[1] -= (1 - _positive(rin - INNER_MIN)).mul_(_BIG)  # not wide: no inner span
            (o0, i0), (o1, i1) = _columns(lo, hi, width)
        else:
            o0, o1 = _columns(*_capsule_spans(ep, reach, yc), width)
            i0 = torch.ones_like(o0)
            i1 = torch.zeros_like(o1)
        live = _nonzero(o0 <= o1)
        pch, prow, o0, o1, i0, i1 = (x.index_select(0, live) for x in (pch, prow, o0, o1, i0, i1))
        if pch.numel() == 0:
            return None
        pshape = ch.cshape.index_select(0, pch)
        # -- per shape: a box over its rows in the band, one slot per pixel plus a spill column
        big = torch.iinfo(torch.long).max
        bx0 = torch.full((ns,), big, device=dev).scatter_reduce(0, pshape, o0, "amin")
        by0 = torch.full((ns,), big, device=dev).scatter_reduce(0, pshape, prow, "amin")
        bx1 = torch.full((ns,), -1, device=dev).scatter_reduce(0, pshape, o1, "amax")
        by1 = torch.full((ns,), -1, device=dev).scatter_reduce(0, pshape, prow, "amax")
        some = bx1 >= 0
        bx0 = torch.where(some, bx0, 0)
        by0 = torch.where(some, by0, 0)
        stride = torch.where(some, bx1 - bx0 + 2, 0)
        area = stride * torch.where(some, by1 - by0 + 1, 0)
        off = torch.cumsum(area, 0) - area
        total = int(area.sum())
        # slot of column 0 of each pair's row (columns are added to it)
        pbase = (off.index_select(0, pshape) + (prow - by0.index_select(0, pshape)) * stride.index_select(0, pshape)
                 - bx0.index_select(0, pshape))
        # -- how many of its chords' capsules cover each pixel centre: +1/-1 at each span's ends,
        # a running sum along the buffer (every span ends inside its row, the spill column
        # included, so the sum needs no reset between rows)
        ones = torch.ones_like(pch, dtype=torch.int32)
        edges = torch.zeros(total, device=dev, dtype=torch.int32)
        has_in = (i1 - i0 + 1).clamp_(0, 1)  # 1 where the pair has an inner span (i0 <= i1)
        pin = _nonzero(has_in)
        edges.index_add_(0, torch.cat((pbase + o0, pbase + o1 + 1)), torch.cat((ones, -ones)))
        covered = torch.cumsum(edges, 0, dtype=torch.int32) > 0
        if pin.numel():
            edges.zero_()
            bi = pbase.index_select(0, pin)
            oi = ones.index_select(0, pin)
            edges.index_add_(0, torch.cat((bi + i0.index_select(0, pin), bi + i1.index_select(0, pin) + 1)),
                             torch.cat((oi, -oi)))
            interior = torch.cumsum(edges, 0, dtype=torch.int32) > 0
            rim = covered & ~interior
        else:
            interior = None
            rim = covered
        del edges, covered

        # -- the rim: each chord's outer span minus its inner span, pixels inside another chord's
        # inner capsule dropped; per pixel the nearest chord wins (key = distance bits, chord)
        a1 = o1 + has_in * (torch.minimum(o1, i0 - 1) - o1)  # left part: o0..a1
        sb = o1 + 1 + has_in * (torch.maximum(o0, i1 + 1) - o1 - 1)  # right part: sb..o1
        sa = o0
        if interior is not None:
            # a wide stroke's chords are short next to its width: most of each chord's rim span
            # lies inside its neighbours' inner capsules. Trim the interior off both ends of each
            # part before enumerating it (the next / previous non-interior slot of each slot).
            # From the non-interior slots, in order, and their running count (before[i]: how many
            # lie before slot i): the previous of slot i is the (before[i + 1])-th, the next the
            # (before[i] + 1)-th, counting from 1 in [-1, slots..., total].
            outside = ~interior
            before = torch.zeros(total + 1, device=dev, dtype=torch.int32)
            torch.cumsum(outside, 0, dtype=torch.int32, out=before[1:])
            ordinal = torch.cat((before.new_full((1,), -1, dtype=torch.long), _nonzero(outside),
                                 before.new_full((1,), total, dtype=torch.long)))
            last = total - 1

            def nxt(i):
                return ordinal.index_select(0, before.index_select(0, (pbase + i).clamp(0, last)) + 1) - pbase

            def prv(i):
                return ordinal.index_select(0, before.index_select(0, (pbase + i).clamp(0, last) + 1)) - pbase

            sa, a1, b1, sb = nxt(o0), prv(a1), prv(o1), nxt(sb)
            del outside, before, ordinal
        else:
            b1 = o1
        na = (a1 - sa + 1).clamp_min(0)
        nb = (b1 - sb + 1).clamp_min(0)
        cnt = na + nb
        q = torch.repeat_interleave(torch.arange(cnt.shape[0], device=dev), cnt)
        k = torch.arange(q.shape[0], device=dev) - (torch.cumsum(cnt, 0) - cnt).index_select(0, q)
        nq = na.index_select(0, q)
        sq = sa.index_select(0, q)
        col = sq + k + (k - nq + 1).clamp_(0, 1) * (sb.index_select(0, q) - sq - nq)  # k < na: left part, else right
        slot = pbase.index_select(0, q) + col
        if interior is not None:
            keep = _nonzero(rim.index_select(0, slot))
            q = q.index_select(0, keep)
            col = col.index_select(0, keep)
            slot = slot.index_select(0, keep)
        qc = pch.index_select(0, q)
        eq = e[:5].index_select(1, qc)
        qx = col.to(dt) + 0.5 - eq[0]
        qy = prow.index_select(0, q).to(dt) + 0.5 - eq[1]
        u = ((qx * eq[2] + qy * eq[3]) * eq[4]).clamp(0, 1)
        rx = qx - u * eq[2]
        ry = qy - u * eq[3]
        d2 = rx * rx + ry * ry
        key = (d2.view(torch.int32).long() << 32) | qc
        buf = torch.full((total,), big, device=dev, dtype=torch.long)
        buf.scatter_reduce_(0, slot, key, "amin")

        # each box row: its shape, its row on the canvas, the pixel of its first slot (minus that
        # slot), and the row of every slot: slots map to pixels by one lookup, no search
        bh = torch.where(some, by1 - by0 + 1, 0)
        rshape = torch.repeat_interleave(torch.arange(ns, device=dev), bh)  # [R]
        rloc = torch.arange(rshape.shape[0], device=dev) - (torch.cumsum(bh, 0) - bh).index_select(0, rshape)
        rstart = off.index_select(0, rshape) + rloc * stride.index_select(0, rshape)
        rowy = by0.index_select(0, rshape) + rloc
        rpix = rowy * width + bx0.index_select(0, rshape) - rstart
        # (every row has slots: a running count of the rows' starts, not a repeat_interleave, 3x slower)
        slot_row = torch.zeros(total, device=dev, dtype=torch.int32).index_fill_(0, rstart[1:], 1).cumsum_(0)  # [total]

        # -- winners: the nearest chord of the shape for each rim pixel
        won = buf != big
        wslot = _nonzero(won)
        wchord = buf.index_select(0, wslot) & 0xFFFFFFFF
        wshape = ch.cshape.index_select(0, wchord)
        wrid = slot_row.index_select(0, wslot)
        wpix = rpix.index_select(0, wrid) + wslot
        wpy = rowy.index_select(0, wrid)
        wpx = wpix - wpy * width
        px = wpx.to(dt) + 0.5
        py = wpy.to(dt) + 0.5
        # -- second parts: where another part of the same stroke also reaches the pixel (a hairpin's
        # other arm, the other stroke of an X, the other side of a sharp corner), the nearest
        # chord among those whose projection is a local minimum of the distance to the polyline
        # (strictly inside the chord, or on a chord with a cap), other than the winner and its
        # neighbours along a smooth run of segments (the polyline's corners between them are not
        # separate parts). Arithmetic and nonzero rather than comparisons: those cost more here.
        second = None
        if SECOND_PART:
            cand = _nonzero(u * (1 - u) + ch.cap.index_select(0, qc))
            # each candidate's winner: buf now holds the winners' indices
            buf.index_put_((wslot,), torch.arange(wslot.shape[0], device=dev))
            wi = buf.index_select(0, slot.index_select(0, cand))
            apart = (ch.pos.index_select(0, qc.index_select(0, cand))
                     - ch.pos.index_select(0, wchord.index_select(0, wi)))
            far = _nonzero(apart.abs_().sub_(1).clamp_min_(0))
            if far.numel():
                b2 = torch.full(wslot.shape, big, device=dev, dtype=torch.long)
                b2.scatter_reduce_(0, wi.index_select(0, far), key.index_select(0, cand.index_select(0, far)), "amin")
                sw = _nonzero(b2 != big)  # winners with a second candidate
                second = (sw, b2.index_select(0, sw) & 0xFFFFFFFF)
        del buf
        # -- the deep inside: coverage 1
        if dense:
            cover = interior.to(dt) if interior is not None else torch.zeros(total, device=dev, dtype=dt)
            bw = torch.where(some, bx1 - bx0 + 1, 0)
        else:  # every covered pixel, rim and interior, in slot order (by shape, then pixel)
            eslot = _nonzero(won | interior) if interior is not None else wslot
            rim_at = _nonzero(won.index_select(0, eslot)) if interior is not None else None
            rid = slot_row.index_select(0, eslot)
            eshape = rshape.index_select(0, rid)
            epix = rpix.index_select(0, rid) + eslot
        del interior, rim, slot_row, won

        # -- the closest point on the curve, for the winners and the second candidates at once
        nw = wchord.shape[0]
        if second is not None:
            sw, c2 = second
            px = torch.cat((px, px.index_select(0, sw)))
            py = torch.cat((py, py.index_select(0, sw)))
            wshape = torch.cat((wshape, wshape.index_select(0, sw)))
            near = _closest(ch, torch.cat((wchord, c2)), px, py)
            # keep the second part where it really is one: its point a local minimum on the curve
            # (inside its segment or at a cap: not stopped at a join, the winner's own valley or a
            # smooth continuation of it), another point than the winner's, and where it matters:
            # the winner's band does not cover the pixel and its own reaches it. (A candidate that
            # Newton left short of its valley's bottom only underestimates its own band: the band
            # is placed as if the pixel were on its normal.)
            i2 = torch.arange(nw, nw + sw.shape[0], device=dev)
            seg2, t2 = near.seg.index_select(0, i2), near.t.index_select(0, i2)
            end2 = ch.seg_end.index_select(0, seg2)
            local = ((t2 > 0) & (t2 < 1)) | ((t2 <= 0) & (end2 & 1 > 0)) | ((t2 >= 1) & (end2 & 2 > 0))
            ns2 = sw.shape[0]
            dist, h, qx2, qy2 = _reach(near, px, py, torch.cat((sw, i2)))  # [2 ns2]: winners', seconds'
            hw_sw = ch.half_w.detach().index_select(0, wshape.index_select(0, i2))
            apart = (qx2[:ns2] - qx2[ns2:]).square() + (qy2[:ns2] - qy2[ns2:]).square()
            keep = _nonzero(local & (apart > 1e-6) & (dist[:ns2] + h[:ns2] > hw_sw)
                                 & (dist[ns2:] - h[ns2:] < hw_sw))
            if keep.numel() == 0:
                second = None
        else:
            near = _closest(ch, wchord, px, py)

    dg, nx, ny = _band(ch, near, px, py)
    hw = ch.half_w.index_select(0, wshape)
    cov = band_coverage(dg, hw, nx, ny)
    if second is not None:
        # the union of the two parts inside the pixel: c1 + c2 - area(pixel, band 1, band 2); where
        # one covers the pixel or the other misses it, simply the larger
        i1 = sw.index_select(0, keep)
        nk = keep.shape[0]
        c1, c2 = cov.index_select(0, torch.cat((i1, keep + nw))).split(nk)
        union = torch.maximum(c1, c2)
        with torch.no_grad():
            part = _nonzero((c1 < 1) & (c2 > 0) & (c2 < 1))
        if part.numel():
            # per band: normal, the centre's offset along it, half width [4, 2 P], read at once
            j = torch.cat((i1.index_select(0, part), keep.index_select(0, part) + nw))
            rows = torch.stack((nx, ny, dg * near.side, hw)).index_select(1, j)
            n1x, n2x, n1y, n2y, s1, s2, hw1, _ = rows.view(8, -1)
            both = _band_overlap(n1x, n1y, s1, n2x, n2y, s2, hw1)
            union = union.index_put((part,), (c1.index_select(0, part) + c2.index_select(0, part) - both).clamp(0, 1))
        cov = cov[:nw].index_put((i1,), union)
    else:
        cov = cov[:nw]
    wshape = wshape[:nw]
    if dense:
        return _Boxes(cover.index_put_((wslot,), cov), torch.stack((off, stride, bx0, by0, bw, bh)))
    if rim_at is None:
        return epix, eshape, cov
    # the interior: coverage 1 and gradient 0; where there is no rim, connected to the geometry (a
    # stroke wider than the canvas has none, and its points and width get a zero gradient, not none)
    inside = torch.ones(eslot.shape[0], device=dev, dtype=dt)
    return epix, eshape, inside.index_put_((rim_at,), cov) if nw else inside + (ch.ctrl_t.sum() + ch.half_w.sum()) * 0


class _Near(NamedTuple):
    """The closest points on the curves (no autograd), from _closest; [M] each, or [2, M] (x, y)."""

    seg: torch.Tensor  # long: the segment
    t: torch.Tensor  # its parameter
    best: torch.Tensor  # the squared distance
    side: torch.Tensor  # +-1: the pixel centre's side along the band's normal
    d1: torch.Tensor  # [2, M] B'(t)
    d2: torch.Tensor  # [2, M] B''(t)
    radial: torch.Tensor  # bool: the normal points from the point to the centre (an end, a corner)
    inv_f2: torch.Tensor  # 1 / f''(t) where the point moves with the curve (else 0)
    tl2: torch.Tensor  # |B'(t)|^2
    q: torch.Tensor  # [2, M] the point


def _closest(ch: _Chords, chord: torch.Tensor, px: torch.Tensor, py: torch.Tensor) -> _Near:
    """Closest point on the real cubic to the pixel centres (px, py) [M], from their chords' own
    closest points, without autograd."""
    wt = ch.ends[:7].index_select(1, chord)
    uu = (((px - wt[0]) * wt[2] + (py - wt[1]) * wt[3]) * wt[4]).clamp(0, 1)
    t = wt[5] + uu * (wt[6] - wt[5])
    wseg = ch.cseg.index_select(0, chord)
    k0, k1, k2, k3, k2d, k3d, k3s = ch.power.index_select(1, wseg).view(7, 2, -1).unbind(0)  # [2, M] each
    p = torch.stack((px, py))  # [2, M]

    def r_at(t):  # B(t) - p, Horner
        return torch.addcmul(k1, torch.addcmul(k2, k3, t), t).mul_(t).add_(k0).sub_(p)

    def d1_at(t):  # B'(t)
        return torch.addcmul(k1, torch.addcmul(k2d, k3d, t), t)

    # -- Newton steps on the real cubic for the closest point (kept only where they help; chosen
    # by 0/1 factors)
    r = r_at(t)
    best = r.square().sum(0)
    for _ in range(NEWTON_STEPS):
        d1 = d1_at(t)
        f1 = (r * d1).sum(0)
        f2 = torch.addcmul(d1.square(), r, torch.addcmul(k2d, k3s, t)).sum(0)
        ok = _positive(f2 - 1e-9)
        tn = (t - f1 / (f2 * ok + (1 - ok))).clamp(0, 1)
        rn = r_at(tn)
        dn = rn.square().sum(0)
        better = _positive(best - dn).mul_(ok)  # 1 where it is nearer
        t = torch.lerp(t, tn, better)
        r = torch.lerp(r, rn, better)
        best = torch.lerp(best, dn, better)
    # -- where the nearest point is inside the curve (the pixel square to it) the band's normal
    # is the curve's; at an end or a corner (a cap, a round join, a dot) it points from there
    # to the pixel
    d1 = d1_at(t)
    d2 = torch.addcmul(k2d, k3s, t)
    tl2 = d1.square().sum(0)
    dist = best.sqrt()
    along = (r * d1).sum(0).abs()
    at_end = (t <= 0) | (t >= 1)
    radial = (tl2 <= 1e-18) | (at_end & (along > 1e-3 * dist * tl2.sqrt()))
    radial = radial & (dist > 1e-3)
    f2 = tl2 + (r * d2).sum(0)
    inner = (~radial & (t > 0) & (t < 1) & (f2 > 1e-9)).to(t.dtype)
    inv_f2 = inner / (f2 * inner + (1 - inner))  # 1 / f2 where inner, else 0
    # the centre's side of the curve along the normal (-fy, fx) (radial normals point to it)
    side = (radial | (r[1] * d1[0] - r[0] * d1[1] <= 0)).to(t.dtype).mul_(2).sub_(1)
    return _Near(wseg, t, best, side, d1, d2, radial, inv_f2, tl2, r + p)


def _reach(near, px: torch.Tensor, py: torch.Tensor, idx: torch.Tensor):
    """Without autograd, from _closest, at the entries idx: the distance from the pixel centre to its
    closest point, the half extent of the pixel along the band's normal there (the band covers
    the pixel where distance + extent <= half width, and misses it where distance - extent >=
    half width), and the point."""
    best, radial, px, py = (x.index_select(0, idx) for x in (near.best, near.radial, px, py))
    (fx, fy), (qx, qy) = near.d1.index_select(1, idx), near.q.index_select(1, idx)
    nx = torch.where(radial, px - qx, fy)
    ny = torch.where(radial, py - qy, fx)
    h = 0.5 * (nx.abs() + ny.abs()) * torch.rsqrt((nx * nx + ny * ny).clamp_min(1e-30))
    return best.sqrt(), h, qx, qy


def _band(ch: _Chords, near: _Near, px: torch.Tensor, py: torch.Tensor):
    """With autograd: the distance from the pixel centres to their closest points (from _closest)
    and the band's unit normal there (nx, ny), each [M]."""
    t, radial = near.t, near.radial
    (fx, fy), (sx, sy) = near.d1, near.d2
    # Bernstein weights of B and B' at t
    mt = 1 - t
    wb = (mt * mt * mt, 3 * mt * mt * t, 3 * mt * t * t, t * t * t)
    wd = (-3 * mt * mt, 3 * mt * (1 - 3 * t), 3 * t * (2 - 3 * t), 3 * t * t)
    # The closest parameter t* moves with the curve: implicit differentiation of
    # f'(t) = (B(t) - p) . B'(t) = 0 gives dt* = -df' / f''. `dt` is that (value 0, gradient dt*);
    # to first order B(t* + dt) = B(t) + B'(t) dt, likewise B'.
    # (the rows unbound at once: indexing them one by one would make the backward pass fill a
    # whole [8, M] gradient per use)
    cg = ch.ctrl_t.index_select(1, near.seg).unbind(0)
    qx = wb[0] * cg[0] + wb[1] * cg[2] + wb[2] * cg[4] + wb[3] * cg[6]
    qy = wb[0] * cg[1] + wb[1] * cg[3] + wb[2] * cg[5] + wb[3] * cg[7]
    gx = wd[0] * cg[0] + wd[1] * cg[2] + wd[2] * cg[4] + wd[3] * cg[6]
    gy = wd[0] * cg[1] + wd[1] * cg[3] + wd[2] * cg[5] + wd[3] * cg[7]
    f1 = (qx - px) * gx + (qy - py) * gy
    dt_ = (f1.detach() - f1) * near.inv_f2
    qx = qx + fx * dt_
    qy = qy + fy * dt_
    gx = gx + sx * dt_
    gy = gy + sy * dt_
    ddx = px - qx
    ddy = py - qy
    dg = torch.sqrt(ddx * ddx + ddy * ddy + 1e-12)
    # the band's orientation moves with the geometry too: it shapes the pixel's profile. (0/1
    # factors rather than torch.where, see _positive: every value here is finite)
    rf = radial.to(dg.dtype)
    inv_d = 1 / (dg * rf + (1 - rf))
    tl = (gx * gx + gy * gy) * (1 - rf) + rf
    inv_t = torch.rsqrt(tl + torch.relu(1e-24 - tl))  # at least 1e-24 (clamp_min's backward is slower)
    nx = torch.lerp(-gy * inv_t, ddx * inv_d, rf)
    ny = torch.lerp(gx * inv_t, ddy * inv_d, rf)
    # a zero-length segment with the pixel centre on it: any direction will do
    flat = ~radial & (near.tl2 <= 1e-18)
    if bool(flat.any()):
        nx = torch.where(flat, 1.0, nx)
        ny = torch.where(flat, 0.0, ny)
    return dg, nx, ny


def _clipped(num, den, hi: float):
    """Liang-Barsky: the parameter interval (t0, t1) of lines o + t d, t in [0, hi] (|d| = 1),
    inside the half-planes a . v <= c (|a| = 1) given as num = c - a . o and den = a . d
    ([C, L, M]: C half-planes, L lines); empty where t1 <= t0. Arithmetic only (no comparisons:
    they cost more than the rest here): a parallel line (den = 0) gets 1 / 1e-30, so it is cut
    entirely where num < 0 and not at all where num >= 0."""
    inv = 1 / (den + 1e-30)
    back = inv.clamp_max(0)  # 1 / den where it enters the half-plane (den < 0), else 0
    t0 = (num.clamp_max(0) * back).amax(0)  # max(0, num / den) over the entering half-planes
    # the leaving ones bound t1 by num / den; the others by 4 / |den| >= 4 (inactive: |den| <= 1)
    t1 = (num * inv.clamp_min(0) - 4 * back).amin(0).clamp_max(hi)
    return t0, t1


def _band_overlap(n1x, n1y, s1, n2x, n2y, s2, hw):
    """Area of the unit pixel inside both bands |s - s_i| < hw, s the offset along the unit normal
    (n_ix, n_iy) from the pixel centre, whose own offset is s_i [M].

    By Green's theorem the area of a convex region is half the sum over its edges of
    cross(start, end); its edges are the parts of the pixel's 4 sides and of the bands' 4 lines
    inside all the other half-planes (Liang-Barsky clipping: fixed-size arrays, no sorting). A
    pixel side gives 1/4 of its clipped length; a band line a . v = c, directed with the region
    on its left, c / 2 times its own. Where two of these edges coincide (an axis-aligned band's
    edge on the pixel's side, two identical bands), a 1e-6 shift of the half-planes keeps one:
    outwards, or inwards where another edge facing the same way counts instead (the pixel's side
    rather than a band line, band 1's line rather than band 2's). The gradient is analytic:
    moving a half-plane a . v <= c changes the area by the integral over its edge of the edge's
    motion, so d area / dc is the edge's length and d area / da is minus its length times its
    midpoint."""
    dev = s1.device
    # the bands' half-planes a . v <= c (pixel-centred coordinates) [4, M], with autograd
    ag = torch.stack((n1x, -n1x, n2x, -n2x, n1y, -n1y, n2y, -n2y))
    cg = torch.stack((hw - s1, hw + s1, hw - s2, hw + s2))
    with torch.no_grad():
        a = ag.detach()
        ax, ay = a[:4], a[4:]
        c = cg.detach()
        # the pixel's sides, counter-clockwise from (-1/2, -1/2), directions (1, 0), (0, 1), (-1, 0),
        # (0, -1): den = a . direction, num = c - a . corner [4 bands, 4 sides, M]
        p = 0.5 * (ax + ay)
        q = 0.5 * (ax - ay)
        den = torch.stack((ax, ay, -ax, -ay), 1)
        num = (c + 1e-6).unsqueeze(1) + torch.stack((p, -q, -p, q), 1)
        t0, t1 = _clipped(num, den, 1.0)
        sides = (t1 - t0).clamp_min(0).sum(0)  # [M]
        # the band lines, directed d = (-a_y, a_x), from a c - d (t in [0, 2] covers the pixel),
        # inside the pixel's half-planes (x <= 1/2, -x <= 1/2, y <= 1/2, -y <= 1/2) and the other
        # band's two: [6, 4 lines, M]
        ox = ax * c + ay
        oy = ay * c - ax
        other = torch.tensor([2, 2, 0, 0, 3, 3, 1, 1], device=dev)
        bx = ax.index_select(0, other).view(2, 4, -1)  # the other band's normals, per line
        by = ay.index_select(0, other).view(2, 4, -1)
        bc = c.index_select(0, other).view(2, 4, -1)
        dot = bx * ax + by * ay  # +-1 where parallel: facing the same way or not
        den = torch.cat((torch.stack((-ay, ay, ax, -ax)), bx * -ay + by * ax), 0)
        num = torch.cat((torch.stack((0.5 - ox, 0.5 + ox, 0.5 - oy, 0.5 + oy)), bc - (bx * ox + by * oy)), 0)
        # the shift: +1e-6, or -1e-6 on an edge that another, facing the same way, takes over
        same = torch.cat((torch.stack((ax, -ax, ay, -ay)), dot * torch.tensor(
            [0.0, 0.0, 1.0, 1.0], device=dev, dtype=dot.dtype).view(4, 1)), 0).clamp_min(0)
        t0, t1 = _clipped(num + 1e-6 - 2e-6 * same, den, 2.0)
        length = (t1 - t0).clamp_min(0)  # [4, M]
        mid = 0.5 * (t0 + t1) - 1
        mx = ax * c - ay * mid  # the midpoints of the band lines' edges
        my = ay * c + ax * mid
        area = (0.25 * sides + 0.5 * (c * length).sum(0)).clamp(0, 1)
    # value `area`, gradient the edges' motion (see above)
    da = ag - a
    motion = (cg - c) - mx * da[:4] - my * da[4:]
    return area + (length * motion).sum(0)

def _clip(x: torch.Tensor, lo, hi) -> torch.Tensor:
    """x limited to the pixel span [lo, hi), with the one-sided derivative of that convention
    exactly on the bounds: a value on `lo` is inside (moves with x), one on `hi` belongs to the
    next span (stays). torch.clamp and max/min halve or drop the gradient there, and points on
    pixel edges (integer coordinates, as an editor draws them) are common."""
    return torch.where(x < lo, lo, torch.where(x >= hi, hi, x))


# ---- fills --------------------------------------------------------------------------------


def _fill_chords(g: _Gathered):
    """The outline chords of every fill: starts a [C, 2], ends b [C, 2] (autograd), shape [C]."""
    parts_a, parts_b, parts_s = [], [], []
    if g.fill_ctrl.shape[0]:
        ctrl = g.points.index_select(0, g.fill_ctrl.reshape(-1)).reshape(-1, 4, 2)
        cseg, _, _, a, b = _flatten(ctrl.detach(), FILL_TOLERANCE, MAX_CHORDS_FILL, with_grad_ctrl=ctrl)
        parts_a.append(a)
        parts_b.append(b)
        parts_s.append(g.fill_seg_shape.index_select(0, cseg))
    if g.close_pairs.shape[0]:
        cp = g.close_pairs
        parts_a.append(g.points.index_select(0, cp[:, 0]))
        parts_b.append(g.points.index_select(0, cp[:, 1]))
        parts_s.append(cp[:, 2])
    if not parts_a:
        return None
    return torch.cat(parts_a), torch.cat(parts_b), torch.cat(parts_s)


def _fills(chords, g: _Gathered, width: int, height: int, y0: int, y1: int, evenodd=None, dense: bool = False):
    """(flat pixel, shape, coverage) entries of every fill in the rows y0..y1-1, ordered by shape;
    dense (no autograd): the coverage of each fill's box, _Boxes."""
    a, b, cshape = chords
    dev = a.device
    dt = a.dtype
    ns = g.num_shapes
    with torch.no_grad():
        ad, bd = a.detach(), b.detach()
        mn = torch.minimum(ad, bd)
        mx = torch.maximum(ad, bd)
        big = float("inf")
        smin = torch.full((ns, 2), big, device=dev, dtype=dt)
        smax = torch.full((ns, 2), -big, device=dev, dtype=dt)
        smin.scatter_reduce_(0, cshape.unsqueeze(1).expand(-1, 2), mn, "amin")
        smax.scatter_reduce_(0, cshape.unsqueeze(1).expand(-1, 2), mx, "amax")
        lim = torch.tensor([width - 1, height - 1], device=dev, dtype=dt)
        finite = torch.isfinite(smin).all(1)
        smin = torch.where(finite.unsqueeze(1), smin, torch.zeros_like(smin))
        smax = torch.where(finite.unsqueeze(1), smax, torch.full_like(smax, -1))
        # pixel (column, row) j covers [j, j+1): the box spans floor(min) .. floor(max); a point
        # exactly on a pixel edge belongs to the pixel after it (that is how its one-sided
        # derivative is taken, consistently, in the pieces below)
        b0 = torch.floor(smin).clamp(min=torch.zeros_like(lim), max=lim)
        b1 = torch.floor(smax).clamp(max=lim)
        b0[:, 1] = b0[:, 1].clamp_min(y0)  # the band's rows only
        b1[:, 1] = b1[:, 1].clamp_max(y1 - 1)
        ext = (b1 - b0 + 1).clamp_min(0).long()
        ext = torch.where((smax < 0).any(1, keepdim=True) | (smin > lim + 1).any(1, keepdim=True),
                          torch.zeros_like(ext), ext)
        b0 = b0.long()
        bw = ext[:, 0]
        bh = ext[:, 1]
        accw = bw + 1  # one spill column on the right
        area = accw * bh
        off = torch.cumsum(area, 0) - area
        total = int(area.sum())
        if total == 0:
            return None

        # (chord, row) pieces
        cy0, cy1 = ad[:, 1], bd[:, 1]
        ylo = torch.minimum(cy0, cy1)
        yhi = torch.maximum(cy0, cy1)
        sy0 = b0[cshape, 1]
        sy1 = sy0 + bh[cshape] - 1
        r0 = torch.maximum(torch.floor(ylo).long(), sy0)
        r1 = torch.minimum(torch.floor(yhi).long(), sy1)
        nrow = (r1 - r0 + 1).clamp_min(0)
        pch = torch.repeat_interleave(torch.arange(nrow.shape[0], device=dev), nrow)
        if pch.numel() == 0:
            return None
        row = r0[pch] + torch.arange(pch.shape[0], device=dev) - (torch.cumsum(nrow, 0) - nrow)[pch]
        rowf = row.to(dt)

    # piece of chord inside the row strip [row, row + 1] (autograd)
    ax_, ay_ = a[pch, 0], a[pch, 1]
    bx_, by_ = b[pch, 0], b[pch, 1]
    ys = _clip(ay_, rowf, rowf + 1)
    ye = _clip(by_, rowf, rowf + 1)
    dyc = by_ - ay_
    with torch.no_grad():
        steep = dyc.abs() > 1e-12
        down = dyc > 0
    # x along the chord from its top end, so that a chord and its reverse (an outline drawn back
    # over itself) give the same floats, compared in _exact_pieces
    tx, ty = torch.where(down, ax_, bx_), torch.where(down, ay_, by_)
    bot_x, bot_y = torch.where(down, bx_, ax_), torch.where(down, by_, ay_)
    slope = (bot_x - tx) / torch.where(steep, bot_y - ty, 1.0)
    with torch.no_grad():
        # the chord's bottom end inside the strip: exactly that end (the next chord's start); on
        # the strip's bottom it belongs to the next strip (_clip), and x there follows the chord
        s_end = (ys == bot_y) & (bot_y < rowf + 1)
        e_end = (ye == bot_y) & (bot_y < rowf + 1)
    xs = torch.where(steep & ~s_end, tx + (ys - ty) * slope, torch.where(steep, bot_x, ax_))
    xe = torch.where(steep & ~e_end, tx + (ye - ty) * slope, torch.where(steep, bot_x, bx_))

    with torch.no_grad():
        psh = cshape[pch]
        rowbase = torch.cumsum(bh, 0) - bh  # the first row of each shape's box in the buffer
        nrows_total = int(bh.sum())
        grp = rowbase[psh] + row - b0[psh, 1]  # the (shape, row) strip of each piece [Pc]
        evenodd = g.evenodd if evenodd is None else evenodd
    # strips where the winding number takes more than one nonzero value: effective pieces there
    exact = _exact_pieces(xs, ys, xe, ye, slope, steep, grp, rowf, evenodd[psh], nrows_total)
    wgt = None
    if exact is not None:
        keep, (xs2, ys2, xe2, ye2, wgt2, sel2) = exact
        xs, ys, xe, ye = (torch.cat((t[keep], t2)) for t, t2 in ((xs, xs2), (ys, ys2), (xe, xe2), (ye, ye2)))
        with torch.no_grad():
            wgt = torch.cat((torch.ones(keep.shape[0], device=dev, dtype=dt), wgt2))
            psh = torch.cat((psh[keep], psh[sel2]))
            row = torch.cat((row[keep], row[sel2]))

    # ... and of that piece inside each pixel cell [col, col + 1] it crosses. Cell X0 - 1 stands
    # for everything left of the box (all of it lies left of every pixel: its whole cover goes
    # to the first column); what lies right of the box is dropped.
    with torch.no_grad():
        X0 = b0[psh, 0]
        X1 = X0 + bw[psh] - 1
        xs_d, xe_d = xs.detach(), xe.detach()
        c0 = torch.floor(torch.minimum(xs_d, xe_d)).long().clamp(min=X0 - 1, max=X1)
        c1 = torch.floor(torch.maximum(xs_d, xe_d)).long().clamp(min=X0 - 1, max=X1)
        ncell = c1 - c0 + 1
        pp = torch.repeat_interleave(torch.arange(ncell.shape[0], device=dev), ncell)
        col = c0[pp] + torch.arange(pp.shape[0], device=dev) - (torch.cumsum(ncell, 0) - ncell)[pp]
        X0p = X0[pp]
        left = col < X0p
        colf = col.to(dt)
        lo_x = torch.where(left, -_BIG, colf)
        hi_x = colf + 1
        jeff = torch.maximum(col, X0p)
        jf = jeff.to(dt)

    sx_, ex_ = xs[pp], xe[pp]
    sy_, ey_ = ys[pp], ye[pp]
    ddx = ex_ - sx_
    with torch.no_grad():
        vertical = ddx.abs() < 1e-12
    k = (ey_ - sy_) / torch.where(vertical, 1.0, ddx)
    xa = _clip(sx_, lo_x, hi_x)
    xb = _clip(ex_, lo_x, hi_x)
    ya = torch.where(vertical, sy_, sy_ + (xa - sx_) * k)
    yb = torch.where(vertical, ey_, sy_ + (xb - sx_) * k)
    dy = yb - ya if wgt is None else (yb - ya) * wgt[pp]
    frac = torch.where(left, 0.0, 0.5 * (xa + xb) - jf)  # in [0, 1]
    right = dy * (1 - frac)  # into cell jeff
    spill = dy * frac  # into cell jeff + 1 (and, by the running sum, all cells to its right)

    # running sum along each row of each shape's box (rows lie end to end in the buffer): one
    # cumsum over the whole buffer, each row's total (the sum of its pieces' dy) taken off at the
    # start of the next row, so that every row starts from 0. float64 for the running sum where the
    # device has it (MPS has none): the rows' totals cancel exactly only then.
    with torch.no_grad():
        csh = psh[pp]
        brow = row[pp] - b0[csh, 1]  # row of the box
        base = off[csh] + brow * accw[csh] + (jeff - b0[csh, 0])
        rid = rowbase[csh] + brow  # row of the buffer
        rshape = torch.repeat_interleave(torch.arange(ns, device=dev), bh)
        rloc = torch.arange(nrows_total, device=dev) - rowbase[rshape]
        row_start = off[rshape] + rloc * accw[rshape]  # [R]
        row_end = row_start + accw[rshape]
    fdt = torch.float32 if dev.type == "mps" else torch.float64
    vals = torch.cat((right, spill)).to(fdt)
    # in place on fresh buffers (index_add's backward needs neither): no copies of the buffer
    acc = torch.zeros(total, device=dev, dtype=fdt).index_add_(0, torch.cat((base, base + 1)), vals)
    total_of_row = torch.zeros(nrows_total, device=dev, dtype=fdt).index_add_(0, torch.cat((rid, rid)), vals)
    wind = torch.cumsum(acc.index_add_(0, row_start[1:], -total_of_row[:-1]), 0).to(dt)
    with torch.no_grad():
        if dense:
            cov_d = wind.abs_().clamp_(max=1)
            cov_d[row_end - 1] = 0  # the spill column
            # rounding leaves ~1e-8 outside the shape: no entry in the sparse path, none here
            return _Boxes(cov_d.mul_(cov_d > 1e-7), torch.stack((off, accw, b0[:, 0], b0[:, 1], bw, bh)))
        cov_d = wind.detach().abs()
        cov_d[row_end - 1] = 0  # the spill column
        sel = _nonzero(cov_d > 1e-7)
        rid = torch.searchsorted(row_start, sel, right=True) - 1
        sshape = rshape[rid]
        pix = (b0[sshape, 1] + rloc[rid]) * width + b0[sshape, 0] + sel - row_start[rid]
    # every strip's winding is 0 and one sign s, or the pieces there were made effective: |wind|
    # is the area where the rule holds (clamped: rounding)
    cov = wind[sel].abs().clamp(max=1)
    return pix, sshape, cov


def _rule(w: torch.Tensor, evenodd: torch.Tensor) -> torch.Tensor:
    """1 where the fill rule holds for winding number w (evenodd: w odd, else w != 0), else 0."""
    return torch.where(evenodd, torch.remainder(w, 2) != 0, w != 0).long()


def _strip_key(grp: torch.Tensor, x: torch.Tensor) -> torch.Tensor:
    """int64 keys ordered by strip grp, then by the float32 x exactly (its bits made monotonic),
    on every device (MPS has no float64)."""
    b = (x.float() + 0.0).contiguous().view(torch.int32).long()  # + 0.0: -0.0 is +0.0
    return grp * (1 << 32) + torch.where(b < 0, b ^ 0x7FFFFFFF, b) + (1 << 31)


def _exact_pieces(xs, ys, xe, ye, slope, steep, grp, rowf, eo, nstrips: int):
    """Effective pieces for the strips (shape, row) whose winding number takes more than one
    nonzero value (overlaps, opposite turns, self-intersections), so that the accumulation
    integrates [w != 0] (nonzero) or [w odd] (evenodd) there instead of w.

    Pieces [Pc]: from (xs, ys) to (xe, ye) inside the row strip (autograd), slope dx/dy of their
    chord, steep (their chord is not horizontal), grp their strip (< nstrips), rowf its top, eo
    their shape's rule. None when no strip needs it; else (keep, (xs, ys, xe, ye, weight, src)):
    the indices of the pieces kept as they are, and the new pieces (each to be counted weight in
    {-1, 1} times) with the index of the piece each comes from.

    A strip needs nothing when it holds no piece of positive height, or exactly two of opposite
    directions that do not cross (a closed outline crosses every line of the strip an even
    number of times: two pieces span the same heights), or chains of pieces apart in x
    (_chains): the common cases, left untouched. Elsewhere the strip is cut at every height
    where one of its pieces starts or ends or two cross, a horizontal chord included (the
    crossing's height from both, autograd: it moves the cut). Inside each sub-strip no two
    pieces cross, so their order by x at mid height is their order at every height; the winding
    number right of a piece is the running sum of the directions, and the piece's weight is
    [rule(after)] - [rule(before)] (a horizontal chord's, split where pieces cross it, is that
    change over the change of w across it: _flat_segments). Only pairs whose x ranges overlap
    are tested. A sub-piece's bounds are its own cuts where they are (its ends, its crossings
    with horizontal chords: cuts of one height, as the chord's ends, that move differently),
    else the level's; cuts on the strip's top or bottom are the constant bound, and pieces of
    zero height are dropped: at such degenerate positions the derivative is the one-sided one
    from above."""
    dev = xs.device
    with torch.no_grad():
        ysd, yed = ys.detach(), ye.detach()
        xsd, xed = xs.detach(), xe.detach()
        down = yed > ysd
        lo = torch.where(down, ysd, yed)
        hi = torch.where(down, yed, ysd)
        xtop = torch.where(down, xsd, xed)
        xbot = torch.where(down, xed, xsd)
        active = steep & (hi > lo)
        d = torch.where(down, 1, -1)
        ia = _nonzero(active)
        na = ia.shape[0]
        if na == 0:
            return None
        ga = grp[ia]
        # the pieces of positive height: lo, hi, x at lo, x at hi, direction [A, 5]
        feat = torch.stack((lo, hi, xtop, xbot, d.to(lo.dtype)), 1)[ia]
        cnt = torch.bincount(ga, minlength=nstrips)
        ar = torch.arange(na, device=dev)
        first = torch.full((nstrips,), na, device=dev, dtype=torch.long).scatter_reduce(0, ga, ar, "amin")
        last = torch.full((nstrips,), -1, device=dev, dtype=torch.long).scatter_reduce(0, ga, ar, "amax")
        ff, fl = feat[first.clamp(max=max(na - 1, 0))], feat[last.clamp(min=0)]
        plain = (cnt == 2) & (ff[:, 4] != fl[:, 4]) & (ff[:, 0] == fl[:, 0]) & (ff[:, 1] == fl[:, 1]) & \
            ((ff[:, 2] - fl[:, 2]) * (ff[:, 3] - fl[:, 3]) >= 0)
        split = (cnt > 0) & ~plain  # [nstrips]
        if bool(split.any()):
            split = split & ~_chains(feat, ga, nstrips)
        if not bool(split.any()):
            return None
        in_split = split[grp]
        keep = _nonzero(~in_split)
        # the pieces of positive height in the strips to cut, and their horizontal chords (they
        # cut the pieces they cross), grouped by strip
        flat = ~steep & (xsd != xed)
        cp = _nonzero(in_split & (active | flat))
        cp = cp[torch.argsort(grp[cp], stable=True)]
        cg = grp[cp]
        m = cp.shape[0]
        _, n_g = torch.unique_consecutive(cg, return_counts=True)
        gl = torch.repeat_interleave(torch.arange(n_g.shape[0], device=dev), n_g)  # local strip [m]
        st = torch.cumsum(n_g, 0) - n_g
        lo_c, hi_c, d_c, act_c = lo[cp], hi[cp], d[cp], active[cp]
        xlo_c = torch.minimum(xsd[cp], xed[cp])
        xhi_c = torch.maximum(xsd[cp], xed[cp])
        # the pairs of pieces of one strip that may cross: x ranges overlapping, found by one
        # search on the pieces sorted by strip and left end
        ac = _nonzero(act_c)
        kmin = _strip_key(gl[ac], xlo_c[ac])
        kmax = _strip_key(gl[ac], xhi_c[ac])
        o = torch.argsort(kmin)
        kmin_s = kmin[o]
        na = ac.shape[0]
        npair = torch.searchsorted(kmin_s, kmax[o], right=True) - torch.arange(1, na + 1, device=dev)
        q = torch.repeat_interleave(torch.arange(na, device=dev), npair)
        r = q + 1 + torch.arange(q.shape[0], device=dev) - (torch.cumsum(npair, 0) - npair)[q]
        pi, pj = ac[o[q]], ac[o[r]]
    x0c, y0c, kc = xs[cp], ys[cp], slope[cp]
    down_c = down[cp]
    lo_a = torch.where(down_c, y0c, ye[cp])  # autograd ends of the pieces
    hi_a = torch.where(down_c, ye[cp], y0c)

    def x_at(i, y):  # x of piece i (indices into the cut pieces) at height y
        return x0c[i] + (y - y0c[i]) * kc[i]

    with torch.no_grad():
        xtop_c, xbot_c = xtop[cp], xbot[cp]

    def x_at_d(i, y):  # the same, no autograd, exact at the piece's ends (shared with others)
        return torch.where(y == lo_c[i], xtop_c[i], torch.where(y == hi_c[i], xbot_c[i], x_at(i, y).detach()))

    with torch.no_grad():
        has_flat = not bool(act_c.all())
        # two pieces: a sign change of their distance over their common heights
        L = torch.maximum(lo_c[pi], lo_c[pj])
        H = torch.minimum(hi_c[pi], hi_c[pj])
        fL = x_at_d(pi, L) - x_at_d(pj, L)
        fH = x_at_d(pi, H) - x_at_d(pj, H)
        cross = (L < H) & (fL * fH < 0)
        c2 = _nonzero(cross)
        qi, qj = pi[c2], pj[c2]
        li = lo_c[qi] >= lo_c[qj]
        hi_i = hi_c[qi] <= hi_c[qj]
    La = torch.where(li, lo_a[qi], lo_a[qj])
    Ha = torch.where(hi_i, hi_a[qi], hi_a[qj])
    fLa = x_at(qi, La) - x_at(qj, La)
    fHa = x_at(qi, Ha) - x_at(qj, Ha)
    with torch.no_grad():  # the signs differ (fL, fH): never 0, unless rounding disagrees
        den_d = (fL - fH)[c2]
        den_ok = (fLa - fHa).detach() * den_d > 0
    tc = fLa / torch.where(den_ok, fLa - fHa, den_d)
    ycross = La + (Ha - La) * torch.where(den_ok, tc, (fL / (fL - fH))[c2]).clamp(0, 1)
    if has_flat:
        with torch.no_grad():  # every horizontal chord against every piece of its strip
            fc = _nonzero(~act_c)
            nf = n_g[gl[fc]]
            ph = torch.repeat_interleave(fc, nf)
            pa = st[gl[ph]] + torch.arange(ph.shape[0], device=dev) - (torch.cumsum(nf, 0) - nf).repeat_interleave(nf)
            live = act_c[pa]
            pa, ph = pa[live], ph[live]
        pa, yflat, flat_parts = _flat_crossings(pa, ph, act_c, lo_c, hi_c, d_c, xlo_c, xhi_c, x_at, x_at_d, x0c, y0c,
                                                xe[cp], ye[cp], eo[cp])
    else:
        pa, yflat, flat_parts = qi[:0], ycross[:0], None

    # the cuts of each strip, sorted: distinct heights are its levels
    cut = torch.cat((lo_a, hi_a, ycross, yflat))
    with torch.no_grad():
        ar = torch.arange(m, device=dev)
        cut_g = torch.cat((gl, gl, gl[qi], gl[pa]))
        cd = cut.detach()
        top_g = rowf[cp][st]  # [strips] top of each cut strip
        if dev.type == "mps":  # no float64: by height, then (stable) by strip
            o = torch.argsort(cd, stable=True)
            o = o[torch.argsort(cut_g[o], stable=True)]
        else:  # one key: every cut lies in its strip [top, top + 1]
            o = torch.argsort(cut_g.double() * 4 + (cd - top_g[cut_g]).double())
        sv, sg = cd[o], cut_g[o]
        new = torch.ones_like(sg, dtype=torch.bool)
        new[1:] = (sg[1:] != sg[:-1]) | (sv[1:] > sv[:-1])
        lev_sorted = torch.cumsum(new.long(), 0) - 1
        lev = torch.empty_like(lev_sorted)
        lev[o] = lev_sorted  # level of each cut
        lev_lo, lev_hi = lev[:m], lev[m:2 * m]
        top = top_g[sg[new]]  # [levels] top of each level's strip

        # one sub-piece per (piece, level it spans)
        nsub = torch.where(act_c, lev_hi - lev_lo, 0)
        sp = torch.repeat_interleave(ar, nsub)
        lv = lev_lo[sp] + torch.arange(sp.shape[0], device=dev) - (torch.cumsum(nsub, 0) - nsub)[sp]
        # its bounds: the piece's own cuts where they are (its ends; where it crosses a horizontal
        # chord, that crossing: of the chord's height, as the chord's ends, but moving otherwise),
        # else the level's
        rep = o[new]  # one cut of each level
        b0 = torch.where(lv == lev_lo[sp], sp, rep[lv])
        b1 = torch.where(lv + 1 == lev_hi[sp], m + sp, rep[lv + 1])
        if pa.shape[0]:
            own_cut = 2 * m + qi.shape[0] + torch.arange(pa.shape[0], device=dev)
            own_key = lev[own_cut] * m + pa
            ko = torch.argsort(own_key)
            own_key, own_cut = own_key[ko], own_cut[ko]
            for b, level in ((b0, lv), (b1, lv + 1)):
                q = level * m + sp
                at = torch.searchsorted(own_key, q).clamp(max=own_key.shape[0] - 1)
                hit = own_key[at] == q
                b[hit] = own_cut[at[hit]]
        t0 = top[lv]
        # the order inside each sub-strip, by x at mid height
        xm = x0c.detach()[sp] + (0.5 * (cd[b0] + cd[b1]) - y0c.detach()[sp]) * kc.detach()[sp]
        if xm.shape[0] and dev.type != "mps":
            lo_x = float(xm.min())
            span = float(xm.max()) - lo_x + 1
        if xm.shape[0] and dev.type != "mps" and (float(lv[-1]) + 1) * span < 2 ** 29:
            # one key, by sub-strip then x (ulp < 1e-7: a closer pair may swap, erring by less)
            o = torch.argsort(lv.double() * span + (xm.double() - lo_x))
        else:
            o = torch.argsort(xm, stable=True)
            o = o[torch.argsort(lv[o], stable=True)]  # by sub-strip, then x
        ds = d_c[sp[o]]
        cum = torch.cumsum(ds, 0)
        lvo = lv[o]
        start = torch.ones_like(lvo, dtype=torch.bool)
        start[1:] = lvo[1:] != lvo[:-1]
        base = (cum - ds)[start]  # running sum before each sub-strip
        after = cum - torch.repeat_interleave(base, torch.bincount(torch.cumsum(start.long(), 0) - 1))
        before = after - ds
        e = eo[cp[sp[o]]]
        weight = _rule(after, e) - _rule(before, e)
        nz = weight != 0
        take = o[nz]  # the sub-pieces that count
        wt = weight[nz].to(xs.dtype)
        sp, b0, b1, t0 = sp[take], b0[take], b1[take], t0[take]
    y0, y1 = cut[b0], cut[b1]
    # the strip's bounds: constant
    y0 = torch.where(y0.detach() <= t0, t0, torch.where(y0.detach() >= t0 + 1, t0 + 1, y0))
    y1 = torch.where(y1.detach() <= t0, t0, torch.where(y1.detach() >= t0 + 1, t0 + 1, y1))
    xs_p, ys_p, k_p = x0c[sp], y0c[sp], kc[sp]
    x0, x1 = xs_p + (y0 - ys_p) * k_p, xs_p + (y1 - ys_p) * k_p
    if flat_parts is None:
        return keep, (x0, y0, x1, y1, wt, cp[sp])
    fx0, fy0, fx1, fy1, fw, fsrc = flat_parts
    return keep, (torch.cat((x0, fx0)), torch.cat((y0, fy0)), torch.cat((x1, fx1)),
                  torch.cat((y1, fy1)), torch.cat((wt, fw)), cp[torch.cat((sp, fsrc))])


def _flat_crossings(pa, ph, act, lo, hi, d, xlo, xhi, x_at, x_at_d, xa, ya, xb, yb, eo):
    """The horizontal chords among the cut pieces (act false) against the pieces (act true) of
    their strip, over the pairs (piece pa, chord ph): the pieces crossing a chord, the crossings' heights
    (cuts of those pieces, autograd: on the chord, its ends' heights interpolated, equal but
    moving differently), and the chords as weighted pieces (_flat_segments)."""
    dev = pa.device
    with torch.no_grad():
        # the chord's height inside the piece's, the piece's x there inside the chord's
        yh = lo[ph]
        xa_h = x_at_d(pa, yh)
        flat_cross = (lo[pa] < yh) & (yh < hi[pa]) & (xlo[ph] < xa_h) & (xa_h < xhi[ph])
        c1 = _nonzero(flat_cross)
        # a horizontal chord counts, as the pieces' accumulation does, the motion of its ends
        # (of zero height, its own area is 0): times the change of the rule across it over the
        # change of w, which changes along it where a piece crosses it. The winding just above and
        # just below its left end: the pieces reaching there left of it
        ma, mh = pa, ph
        left_of = xa_h <= xlo[mh]
        ya_m = yh
        dm = d[ma]
        above = torch.where(left_of & (lo[ma] < ya_m) & (ya_m <= hi[ma]), dm, 0)
        below = torch.where(left_of & (lo[ma] <= ya_m) & (ya_m < hi[ma]), dm, 0)
        m = act.shape[0]
        w_above = torch.zeros(m, device=dev, dtype=torch.long).index_add(0, mh, above)
        w_below = torch.zeros(m, device=dev, dtype=torch.long).index_add(0, mh, below)
        pa, ph = pa[c1], ph[c1]
        xcr = xa_h[c1]
    # on the chord from (xa, ya) to (xb, yb) where the piece meets it
    ya_h, yb_h = ya[ph], yb[ph]
    t = (x_at(pa, ya_h) - xa[ph]) / (xb[ph] - xa[ph])
    yflat = ya_h + t * (yb_h - ya_h)
    parts = _flat_segments(ph, xcr, d[pa], w_above, w_below, _nonzero(~act),
                           xlo, xhi, xa, ya, xb, yb, eo)
    return pa, yflat, parts


def _chains(feat, grp, nstrips: int):
    """Strips [nstrips] (bool) whose winding number is 0 and one sign everywhere, found cheaply:
    their pieces (feat [A, 5]: lo, hi, x at lo, x at hi, direction; strip grp; no autograd) fall
    into clusters of overlapping or touching x ranges (touching pieces of opposite directions
    apart: a tip), each cluster a chain of one direction without overlap or gap (a side of the
    outline with vertices inside the strip), spanning all the strip's heights or paired with its
    neighbour of the same span (a tip), and the clusters, ordered by x, alternate in direction.
    Then their order is the same at every height, and at every height w alternates between 0 and
    one sign, the same."""
    dev = feat.device
    if feat.shape[0] == 0:
        return torch.ones(nstrips, device=dev, dtype=torch.bool)
    kmin = _strip_key(grp, torch.minimum(feat[:, 2], feat[:, 3]))
    kmax = _strip_key(grp, torch.maximum(feat[:, 2], feat[:, 3]))
    o = torch.argsort(kmin)
    kmin, kmax, g = kmin[o], kmax[o], grp[o]
    run = torch.cummax(kmax, 0).values
    fo = feat[o]
    do, lo_o, hi_o = fo[:, 4].long(), fo[:, 0], fo[:, 1]
    # a new cluster past the running right end; where a piece only touches it, if it turns the
    # other way (the two sides of a tip meet there, in one point: they never swap)
    new = torch.ones_like(g, dtype=torch.bool)
    new[1:] = (kmin[1:] > run[:-1]) | ((kmin[1:] == run[:-1]) & (do[1:] != do[:-1])) | (g[1:] != g[:-1])
    cl = torch.cumsum(new.long(), 0) - 1  # cluster of each piece (sorted)
    ncl = int(cl[-1]) + 1 if cl.shape[0] else 0
    dmin = torch.full((ncl,), 2, device=dev, dtype=torch.long).scatter_reduce(0, cl, do, "amin")
    dmax = torch.full((ncl,), -2, device=dev, dtype=torch.long).scatter_reduce(0, cl, do, "amax")
    clo = torch.full((ncl,), float("inf"), device=dev, dtype=feat.dtype).scatter_reduce(0, cl, lo_o, "amin")
    chi = torch.full((ncl,), -float("inf"), device=dev, dtype=feat.dtype).scatter_reduce(0, cl, hi_o, "amax")
    height = torch.zeros(ncl, device=dev, dtype=feat.dtype).index_add(0, cl, hi_o - lo_o)
    cg = g[new]  # strip of each cluster (clusters are in strip order)
    ok = (dmin == dmax) & ((height - (chi - clo)).abs() <= 1e-5 * (chi - clo))  # no overlap, no gap
    # clusters not spanning all the strip's heights: in adjacent pairs of the same heights (a
    # tip), so that where they end the others still alternate
    slo = torch.full((nstrips,), float("inf"), device=dev, dtype=feat.dtype).scatter_reduce(0, cg, clo, "amin")
    shi = torch.full((nstrips,), -float("inf"), device=dev, dtype=feat.dtype).scatter_reduce(0, cg, chi, "amax")
    partial = (clo != slo[cg]) | (chi != shi[cg])
    same = cg[1:] == cg[:-1]
    twin = same & (clo[1:] == clo[:-1]) & (chi[1:] == chi[:-1])  # cluster k and k + 1
    paired = torch.zeros_like(partial)
    paired[1:] |= twin
    paired[:-1] |= twin
    ok = ok & (~partial | paired)
    # consecutive clusters of a strip: opposite directions
    bad_pair = same & (dmin[1:] == dmin[:-1])
    bad = torch.zeros(nstrips, device=dev, dtype=torch.long)
    bad.index_add_(0, cg, (~ok).long())
    bad.index_add_(0, cg[1:], bad_pair.long())
    return bad == 0


def _flat_segments(ph, xcr, dcr, w_above, w_below, flat, xlo, xhi, xa, ya, xb, yb, eo):
    """The horizontal chords `flat` of the cut strips, split where pieces cross them (chord ph
    crossed at x = xcr by a piece of direction dcr), as pieces (autograd heights along the chord)
    weighted by (rule(below) - rule(above)) / (below - above) on each part: (x0, y0, x1, y1,
    weight, chord). w_above / w_below [chords]: the winding just above / below the chord's left
    end; xlo, xhi its x range; (xa, ya) -> (xb, yb) the chord."""
    dev = xcr.device
    with torch.no_grad():
        o = torch.argsort(xcr, stable=True)
        o = o[torch.argsort(ph[o], stable=True)]  # by chord, then x
        ph, xcr, dcr = ph[o], xcr[o], dcr[o]
        ncr = torch.bincount(ph, minlength=xlo.shape[0])[flat]  # [F]
        nseg = ncr + 1
        seg_start = torch.cumsum(nseg, 0) - nseg
        total = int(nseg.sum())
        chord = torch.repeat_interleave(flat, nseg)  # [total]
        # crossing r of chord f ends segment r and starts r + 1
        slot = torch.full((xlo.shape[0],), -1, device=dev, dtype=torch.long)
        slot[flat] = torch.arange(flat.shape[0], device=dev)
        fpos = slot[ph]
        rank = torch.arange(ph.shape[0], device=dev) - (torch.cumsum(ncr, 0) - ncr)[fpos]
        at = seg_start[fpos] + rank
        left = xlo[flat].repeat_interleave(nseg).clone()
        right = xhi[flat].repeat_interleave(nseg).clone()
        left[at + 1] = xcr
        right[at] = xcr
        step = torch.zeros(total, device=dev, dtype=torch.long)
        step[at + 1] = dcr
        run = torch.cumsum(step, 0)
        run = run - (run - step)[seg_start].repeat_interleave(nseg)
        wa, wb = w_above[chord] + run, w_below[chord] + run
        e = eo[chord]
        dw = wb - wa
        weight = torch.where(dw != 0, (_rule(wb, e) - _rule(wa, e)) / torch.where(dw != 0, dw, 1), 0.0)
        keep = _nonzero(weight != 0)
        chord, left, right, weight = chord[keep], left[keep], right[keep], weight[keep]
        rev = xb[chord].detach() < xa[chord].detach()  # along the chord's direction
        sx = torch.where(rev, right, left)
        ex = torch.where(rev, left, right)
    xa_, ya_, xb_, yb_ = xa[chord], ya[chord], xb[chord], yb[chord]
    k = (yb_ - ya_) / (xb_ - xa_)

    def y_at(x):
        return ya_ + (x - xa_) * k

    return sx, y_at(sx), ex, y_at(ex), weight.to(ya.dtype), chord


# ---- strokes with SVG's caps, joins and dashes ----------------------------------------------

ARC_STEPS = 32  # chords of a round cap or join's arc
OUTLINE_TOLERANCE = 0.05  # flattening of the path an outline follows (pixels)


def _styled(shape) -> bool:
    """A stroke the distance stroker cannot draw: butt or square caps, miter or bevel joins, dashes."""
    return (shape.stroke is not None and (shape.stroke_linecap != "round" or shape.stroke_linejoin != "round"
                                          or shape.stroke_dasharray is not None))


def _polyline(points: torch.Tensor, closed: bool) -> torch.Tensor:
    """The subpath's cubics flattened to a polyline [n + 1, 2] (autograd; closed: last = first)."""
    k = points.shape[0]
    if k == 1:
        return points
    idx, _ = _segment_table(np.array([k]), np.array([closed]), np.array([0]))
    ctrl = points[torch.from_numpy(idx).to(points.device)]  # [S, 4, 2]
    _, _, _, a, b = _flatten(ctrl.detach(), OUTLINE_TOLERANCE, MAX_CHORDS_FILL, with_grad_ctrl=ctrl)
    return torch.cat((a, b[-1:]))


def _dashes(line: torch.Tensor, dash: list, offset: float) -> list:
    """The pieces of the polyline [n, 2] that SVG's dash pattern (lengths along it) keeps."""
    with torch.no_grad():
        seg = (line[1:] - line[:-1]).norm(dim=1)
        cum = torch.cat((torch.zeros(1, dtype=line.dtype, device=line.device), torch.cumsum(seg, 0)))
    total = float(cum[-1])
    period = sum(dash)
    start = -(offset % period)
    spans = []
    while start < total:
        for i in range(0, len(dash), 2):
            lo, hi = start, start + dash[i]
            if hi > 0 and lo < total and hi > lo:
                spans.append((max(lo, 0.0), min(hi, total)))
            start += dash[i] + dash[i + 1]
            if start >= total:
                break
    pieces = []
    for lo, hi in spans:
        # the points at arc lengths lo and hi (interpolated, autograd) and the vertices between
        i0 = int(torch.searchsorted(cum, torch.tensor(lo, dtype=cum.dtype), right=True)) - 1
        i1 = int(torch.searchsorted(cum, torch.tensor(hi, dtype=cum.dtype), right=False))
        i0 = min(max(i0, 0), len(seg) - 1)
        i1 = min(max(i1, 1), len(seg))
        f0 = (lo - float(cum[i0])) / max(float(seg[i0]), 1e-12)
        f1 = (hi - float(cum[i1 - 1])) / max(float(seg[i1 - 1]), 1e-12)
        p0 = line[i0] + f0 * (line[i0 + 1] - line[i0])
        p1 = line[i1 - 1] + f1 * (line[i1] - line[i1 - 1])
        pieces.append(torch.cat((p0[None], line[i0 + 1:i1], p1[None])))
    return pieces


def _arc(centre, r0: torch.Tensor, r1: torch.Tensor, through: Optional[torch.Tensor] = None):
    """ARC_STEPS + 1 points from centre + r0 to centre + r1 around centre (radius |r0|), the short
    way, or through the direction `through` (a half turn: a round cap)."""
    a0 = torch.atan2(r0[1], r0[0])
    a1 = torch.atan2(r1[1], r1[0])
    with torch.no_grad():
        sweep = torch.remainder(a1 - a0 + math.pi, 2 * math.pi) - math.pi
        if through is not None:
            mid = torch.atan2(through[1], through[0])
            sweep = torch.where(torch.remainder(mid - a0, 2 * math.pi) < math.pi, torch.tensor(math.pi), -math.pi)
    angles = a0 + sweep * torch.linspace(0, 1, ARC_STEPS + 1, dtype=r0.dtype, device=r0.device)
    radius = r0.norm()
    return centre + radius * torch.stack((torch.cos(angles), torch.sin(angles)), 1)


def _piece_polygons(line: torch.Tensor, closed: bool, hw: torch.Tensor, cap: str, join: str, limit: float):
    """Polygons ([V, 2], or [k, V, 2] for k alike) whose union is the stroke of one polyline (a quad
    per segment, a wedge per join on its outer side, a cap at each end of an open line), and the
    overlaps of adjacent quads inside the turns, to be taken away once."""
    with torch.no_grad():
        keep = torch.cat((torch.ones(1, dtype=torch.bool, device=line.device),
                          (line[1:] - line[:-1]).norm(dim=1) > 1e-6))
    line = line[keep]
    polys, holes = [], []
    if line.shape[0] < 2:  # a zero-length piece: SVG draws a square or round cap around it, or nothing
        p = line[0]
        r = torch.stack((hw, hw * 0))
        up = torch.stack((hw * 0, hw))
        if cap == "square":
            polys.append(torch.stack((p - r - up, p + r - up, p + r + up, p - r + up)))
        elif cap == "round":
            polys.append(torch.cat((_arc(p, r, -r, up), _arc(p, -r, r, -up)[1:-1])))
        return polys, holes
    d = line[1:] - line[:-1]
    u = d / d.norm(dim=1, keepdim=True)  # [m, 2]
    n = torch.stack((-u[:, 1], u[:, 0]), 1) * hw
    a, b = line[:-1], line[1:]
    polys.append(torch.stack((a + n, b + n, b - n, a - n), 1))  # [m, 4, 2]
    corners = list(range(1, d.shape[0])) + ([0] if closed else [])
    for i in corners:
        v, u0, u1, n0, n1 = line[i], u[i - 1], u[i], n[i - 1], n[i]
        with torch.no_grad():
            turn = float(u0[0] * u1[1] - u0[1] * u1[0])
            cos_phi = float((u0 * u1).sum())
        if abs(turn) < 1e-9 and cos_phi > 0:
            continue  # straight on: the quads abut
        side = -1.0 if turn > 0 else 1.0  # the outer side of the turn
        o0, o1 = side * n0, side * n1
        # inside the turn the two quads overlap in the kite (v, v - o0, c, v - o1): taken once
        # more with the opposite orientation, the winding there is 1 and the union exact (where
        # c, the inner corner, lies on both segments)
        with torch.no_grad():
            reach = float(hw) * math.sqrt(max(1 - cos_phi, 0) / max(1 + cos_phi, 1e-12))
            fits = cos_phi > -0.99 and reach <= min(float(d[i - 1].norm()), float(d[i].norm()))
        if fits:
            c = v - (o0 + o1) / (1 + (o0 * o1).sum() / (hw * hw))
            holes.append(torch.stack((v, v - o0, c, v - o1)))
        if join == "round":
            polys.append(torch.cat((v[None], _arc(v, o0, o1))))
        elif join == "miter" and 1 / max(math.sqrt((1 + cos_phi) / 2), 1e-12) <= limit:
            tip = v + (o0 + o1) / (1 + (o0 * o1).sum() / (hw * hw))
            polys.append(torch.stack((v, v + o0, tip, v + o1)))
        else:  # bevel, and a miter over the limit
            polys.append(torch.stack((v, v + o0, v + o1)))
    if not closed and cap != "butt":
        for p, t, nn in ((line[0], -u[0], n[0]), (line[-1], u[-1], n[-1])):
            if cap == "square":
                polys.append(torch.stack((p + nn, p + nn + t * hw, p - nn + t * hw, p - nn)))
            else:
                polys.append(_arc(p, nn, -nn, t))
    return polys, holes


def _outline_chords(scene: Scene, width: int, height: int, device, dtype):
    """Chords (a [C, 2], b [C, 2], shape [C]) of the outlines of the strokes with SVG's caps, joins
    or dashes: every polygon turned one way and every overlap the other, so that the winding
    number is 1 on the stroke and 0 off it, and their nonzero fill is the stroke."""
    sx, sy = width / scene.width, height / scene.height
    scale = torch.tensor([sx, sy], device=device, dtype=dtype)
    wscale = 0.5 * (sx + sy)
    parts_a, parts_b, parts_s = [], [], []
    for si, shape in enumerate(scene.shapes):
        if not _styled(shape):
            continue
        hw = 0.5 * shape.stroke_width.to(dtype).clamp(0, MAX_COORDINATE) * wscale
        for sp in shape.subpaths:
            if sp.points.shape[0] == 0:
                continue
            line = _polyline(sp.points.to(dtype).clamp(-MAX_COORDINATE, MAX_COORDINATE) * scale, sp.closed)
            if shape.stroke_dasharray is not None and line.shape[0] > 1:
                dash = [v * wscale for v in shape.stroke_dasharray]
                pieces = [(piece, False) for piece in _dashes(line, dash, shape.stroke_dashoffset * wscale)]
            else:
                pieces = [(line, sp.closed)]
            for piece, closed in pieces:
                polys, holes = _piece_polygons(piece, closed, hw, shape.stroke_linecap, shape.stroke_linejoin,
                                               shape.stroke_miterlimit)
                for poly, sign in [(q, 1.0) for q in polys] + [(q, -1.0) for q in holes]:
                    poly = poly if poly.dim() == 3 else poly.unsqueeze(0)  # [k, V, 2]
                    with torch.no_grad():
                        x, y = poly[..., 0], poly[..., 1]
                        flip = (x * y.roll(-1, 1) - x.roll(-1, 1) * y).sum(1) * sign < 0
                    poly = torch.where(flip[:, None, None], poly.flip(1), poly)
                    parts_a.append(poly.reshape(-1, 2))
                    parts_b.append(poly.roll(-1, 1).reshape(-1, 2))
                    parts_s.append(torch.full((poly.shape[0] * poly.shape[1],), si, device=device, dtype=torch.long))
    if not parts_a:
        return None
    return torch.cat(parts_a), torch.cat(parts_b), torch.cat(parts_s)


# ---- compositing --------------------------------------------------------------------------


def rasterize(scene: Scene, width: int, height: int) -> Raster:
    dev = scene.device
    dt = torch.float32
    g = _gather(scene, width, height, dev, dt)
    strokes = _stroke_chords(g) if g.stroke_ctrl.shape[0] else None
    fills = _fill_chords(g) if (g.fill_ctrl.shape[0] or g.close_pairs.shape[0]) else None
    outlines = _outline_chords(scene, width, height, dev, dt)
    # a plain render (no gradient wanted) paints every band densely (_paint)
    plain = not (torch.is_grad_enabled() and any(t.requires_grad for t in (g.points, g.widths, g.colours)))
    # bands of rows bound the memory of big canvases (every buffer below spans one band); on a CPU
    # with several threads, the bands are rendered on as many worker threads (_band_pool)
    workers = _workers(dev)
    edges = _band_edges(strokes, width, height, workers)
    bands = list(zip(edges[:-1], edges[1:]))  # (first row, row after the last)

    def band(g, strokes, fills, outlines, rows):
        return _composite(g, strokes, fills, outlines, width, height, *rows, plain)

    if len(bands) == 1 or workers == 1:
        parts = [band(g, strokes, fills, outlines, rows) for rows in bands]
    elif plain:
        def plain_band(rows):
            with torch.no_grad():  # grad mode is per thread
                return band(g, strokes, fills, outlines, rows)
        parts = list(_band_pool(workers).map(plain_band, bands))
    else:
        inputs, swap = _autograd_inputs(g, strokes, fills, outlines)
        parts = [_BandsOnThreads.apply(lambda leaves, rows: band(*swap(leaves), rows), bands, _band_pool(workers),
                                       *inputs)]
    parts = [p for p in parts if p is not None and p[0].shape[0]]
    if not parts:  # nothing on the canvas: a zero result, still connected to the scene's tensors
        z = torch.zeros(0, device=dev, dtype=torch.long)
        zero = g.points.sum() * 0 + g.widths.sum() * 0 + g.colours.sum() * 0
        return Raster(z, torch.zeros(0, 3, device=dev, dtype=dt) + zero,
                      torch.ones(0, device=dev, dtype=dt), width, height, zero)
    pix, premult, trans = parts[0] if len(parts) == 1 else (torch.cat(x) for x in zip(*parts))
    # every band gives all its pixels in order, or nothing (its rows are blank)
    return Raster(pix, premult, trans, width, height, dense=pix.shape[0] == width * height)


# ---- bands on threads ---------------------------------------------------------------------

_POOL: Optional[tuple] = None  # ((workers, the caller's thread count), ThreadPoolExecutor)


def _workers(device) -> int:
    """How many bands are rendered at once: torch's thread count on a CPU (see _band_pool), else 1.
    Only with OpenMP, whose thread count is per thread (torch's native pool has one count for all)."""
    if torch.device(device).type != "cpu" or not torch.backends.openmp.is_available():
        return 1
    return min(MAX_WORKERS, torch.get_num_threads())


def _band_pool(workers: int) -> ThreadPoolExecutor:
    """Worker threads for bands, each running torch on its share of the caller's threads. Most of
    a band's time goes to gathers, scatters, scans and sorts that torch runs on one thread
    however many it has, and to many small operations: on two cores, two bands at once took 0.7-0.8
    of the time of one band on two threads per operation for strokes 2 to 50 px wide (about even
    for 2 px). The Python between operations holds the GIL, hence MAX_WORKERS. The calling thread
    keeps its own count (OpenMP's is per thread)."""
    global _POOL
    n = torch.get_num_threads()
    if _POOL is None or _POOL[0] != (workers, n):
        if _POOL is not None:
            _POOL[1].shutdown(wait=False)
        pool = ThreadPoolExecutor(workers, thread_name_prefix="clipdraw-band",
                                  initializer=torch.set_num_threads, initargs=(max(1, n // workers),))
        # every worker started (a barrier holds each until all are) before the default for threads
        # started later, which set_num_threads also sets, is put back
        barrier = threading.Barrier(workers, timeout=10)

        def started(_):
            try:
                barrier.wait()
            except threading.BrokenBarrierError:  # a very busy machine: go on, the default may stay lower
                pass

        list(pool.map(started, range(workers)))
        torch.set_num_threads(n)
        _POOL = ((workers, n), pool)
    return _POOL[1]


def _band_edges(strokes: Optional[_Chords], width: int, height: int, workers: int) -> list:
    """Rows 0 = e0 < e1 < ... < en = height of the bands: at most BAND_PIXELS each, and at least one
    per worker; one per worker where that is enough, cut where each gets about as much of the
    strokes' work (per row, the widths of the chords' capsules that reach it)."""
    n = min(height, max(-(-width * height // BAND_PIXELS), workers))
    if n != workers or n == 1 or strokes is None:
        return list(range(0, height, -(-height // n))) + [height]
    with torch.no_grad():
        e = strokes.ends
        r0 = torch.minimum(e[1], e[8]).sub(strokes.reach).floor().clamp(0, height).long()
        r1 = torch.maximum(e[1], e[8]).add(strokes.reach).ceil().clamp(0, height).long()
        span = 2 * strokes.reach + 1
        work = torch.zeros(height + 1, dtype=span.dtype, device=span.device)
        work.index_add_(0, r0, span).index_add_(0, r1, -span)
        total = torch.cumsum(torch.cumsum(work[:height], 0).clamp_min(0) + 1, 0)  # + 1: every row costs a little
        cuts = torch.searchsorted(total, total[-1] * torch.arange(1, n, device=total.device, dtype=total.dtype) / n)
    edges = [0]
    for c in cuts.tolist():  # after the row where the work reaches k / n, leaving a row for each band after
        edges.append(min(max(c + 1, edges[-1] + 1), height - (n - len(edges))))
    return edges + [height]


def _autograd_inputs(g: _Gathered, strokes: Optional[_Chords], fills, outlines):
    """The tensors with autograd that a band reads, and a function that puts others in their place."""
    inputs = ([strokes.ctrl_t, strokes.half_w] if strokes is not None else []) + (
        list(fills[:2]) if fills is not None else []) + (list(outlines[:2]) if outlines is not None else [])

    def swap(tensors):
        it = iter(tensors)
        s = dataclasses.replace(strokes, ctrl_t=next(it), half_w=next(it)) if strokes is not None else None
        f = (next(it), next(it), fills[2]) if fills is not None else None
        o = (next(it), next(it), outlines[2]) if outlines is not None else None
        return dataclasses.replace(g, colours=next(it)), s, f, o

    return inputs + [g.colours], swap


class _BandsOnThreads(torch.autograd.Function):
    """Bands rendered with autograd on the pool's threads, the backward pass too: autograd runs a
    backward on the thread that asks for it, so each band's graph ends at leaves of its own
    standing for the inputs, and each band's backward is asked for on a worker. Returns the
    bands' (pixels, premultiplied colour, transmittance), concatenated."""

    @staticmethod
    def forward(ctx, band, bands, pool, *inputs):
        leaves = [x.detach().requires_grad_(x.requires_grad) for x in inputs]

        def forward_band(rows):
            with torch.enable_grad():  # grad mode is per thread (and off in a Function's forward)
                return band(leaves, rows)

        outs = [o for o in pool.map(forward_band, bands) if o is not None]
        ctx.outs, ctx.leaves, ctx.pool = outs, leaves, pool
        if not outs:
            pix = torch.zeros(0, device=inputs[0].device, dtype=torch.long)
            ctx.mark_non_differentiable(pix)
            return pix, inputs[0].new_zeros(0, 3), inputs[0].new_ones(0)
        pix = torch.cat([o[0] for o in outs])
        ctx.mark_non_differentiable(pix)
        return pix, torch.cat([o[1] for o in outs]), torch.cat([o[2] for o in outs])

    @staticmethod
    @torch.autograd.function.once_differentiable
    def backward(ctx, _, d_premult, d_trans):
        wanted = [x for x in ctx.leaves if x.requires_grad]
        sizes = [o[0].shape[0] for o in ctx.outs]

        def backward_band(job):
            (_, premult, trans), dp, dtr = job
            outputs = [(y, dy) for y, dy in ((premult, dp), (trans, dtr)) if y.requires_grad]
            if not outputs:
                return [None] * len(wanted)
            ys, dys = zip(*outputs)
            return torch.autograd.grad(ys, wanted, dys, allow_unused=True)

        per_band = list(ctx.pool.map(backward_band, zip(ctx.outs, d_premult.split(sizes), d_trans.split(sizes))))
        ctx.outs = None
        sums = iter([sum(d for d in ds if d is not None) if any(d is not None for d in ds) else None
                     for ds in zip(*per_band)])
        return (None, None, None, *[next(sums) if x.requires_grad else None for x in ctx.leaves])


def _composite(g: _Gathered, strokes: Optional[_Chords], fills, outlines, width: int, height: int,
               y0: int, y1: int, plain: bool):
    """Every pixel of the rows y0..y1-1, in order, its premultiplied colour and transmittance; None
    where nothing is drawn there (with autograd)."""
    dev = g.points.device
    dt = g.points.dtype
    if plain:  # each shape's coverage over its box, painted layer by layer
        boxes = [_strokes(strokes, width, y0, y1, dense=True) if strokes is not None else None,
                 _fills(fills, g, width, height, y0, y1, dense=True) if fills is not None else None,
                 _fills(outlines, g, width, height, y0, y1, evenodd=torch.zeros_like(g.evenodd), dense=True)
                 if outlines is not None else None]
        return _paint(boxes, g, width, y0, y1)
    parts = []  # (flat pixel, layer, coverage), each ordered by layer, then pixel
    if strokes is not None:
        st = _strokes(strokes, width, y0, y1)
        if st is not None:
            pix, sh, cov = st
            parts.append((pix, 2 * sh + 1, cov))
    if fills is not None:
        fl = _fills(fills, g, width, height, y0, y1)
        if fl is not None:
            pix, sh, cov = fl
            parts.append((pix, 2 * sh, cov))
    if outlines is not None:  # strokes with SVG caps, joins or dashes: their outline filled, nonzero
        ol = _fills(outlines, g, width, height, y0, y1, evenodd=torch.zeros_like(g.evenodd))
        if ol is not None:
            pix, sh, cov = ol
            parts.append((pix, 2 * sh + 1, cov))
    parts = [p for p in parts if p[0].shape[0]]
    if not parts:
        return None
    pix, layer, cov = (torch.cat(x) for x in zip(*parts)) if len(parts) > 1 else parts[0]
    nl = 2 * g.num_shapes
    npix = (y1 - y0) * width
    with torch.no_grad():
        # The entries in (pixel, layer from the top) order: one list already runs by layer, so one
        # stable sort by pixel alone (from its end) orders it; several, a sort by pixel and layer.
        local = pix - y0 * width
        if len(parts) == 1:
            order = _stable_order(local, npix, from_end=True)
        else:
            lbits = max(1, (nl - 1).bit_length())
            order = _stable_order((local << lbits) | (nl - 1 - layer), npix << lbits)
        slocal = local.index_select(0, order)
        slayer = layer.index_select(0, order)
        count = torch.bincount(local, minlength=npix)  # [npix] layers per pixel
        start = torch.cumsum(count, 0) - count
        erank = torch.arange(order.shape[0], device=dev) - start.index_select(0, slocal)  # 0: the top layer
        # Each touched pixel gets a row of a padded array [m, 1 + depth] per depth class (1, 2, 4, 8, ...
        # layers: the padding stays below the number of entries however deep the deepest pixel),
        # the classes' arrays end to end in one buffer; a leading column of ones makes the
        # running product along a row exclusive.
        upix = _nonzero(count)
        ucount = count.index_select(0, upix)
        ucls = torch.ceil(torch.log2(ucount.float())).long()
        nclass = int(ucls.max()) + 1
        by_class = _stable_order(ucls, nclass)
        per_class = torch.bincount(ucls, minlength=nclass)  # pixels per class
        cols = (1 << torch.arange(nclass, device=dev)) + 1
        size = per_class * cols
        row = torch.empty_like(upix).index_put_((by_class,), torch.arange(upix.shape[0], device=dev) - (
            torch.cumsum(per_class, 0) - per_class).index_select(0, ucls.index_select(0, by_class)))
        ucols = cols.index_select(0, ucls)
        ubase = (torch.cumsum(size, 0) - size).index_select(0, ucls) + row * ucols  # [U] each row's start
        flat = torch.zeros(npix, device=dev, dtype=torch.long).index_put_((upix,), ubase).index_select(0, slocal)
        flat += erank + 1
        last = ubase + ucols - 1
        size, cols = size.tolist(), cols.tolist()
        del erank, row
    # alpha in the sorted order: the gradient's index_add into the layers is twice as fast with
    # the layers shuffled as with them in runs (its adds to one address wait on each other)
    a = cov.index_select(0, order) * g.colours[:, 3].index_select(0, slayer)
    padded = torch.ones(sum(size), device=dev, dtype=dt).index_copy_(0, flat, 1 - a)
    # split, not sliced: a slice's backward fills a zero gradient of the whole buffer per class
    trans = torch.cat([torch.cumprod(p.view(-1, c), 1).view(-1) for p, c in zip(padded.split(size), cols)])
    excl = trans.index_select(0, flat - 1)
    # every pixel of the band, in order (the image is dense anyway), a channel at a time: gathers
    # and index_adds of single floats (a row gather's gradient, a scatter of rows of three, is
    # several times slower; [3, N] at once, a little)
    weight = a * excl

    def channel(rgb):  # [nl] -> [npix]
        return torch.zeros(npix, device=dev, dtype=dt).index_add_(0, slocal, weight * rgb.index_select(0, slayer))

    premult = torch.stack([channel(rgb) for rgb in g.colours[:, :3].t().unbind(0)], 1)  # [npix, 3]
    transmittance = torch.ones(npix, device=dev, dtype=dt).index_put_((upix,), trans.index_select(0, last))
    return torch.arange(y0 * width, y1 * width, device=dev), premult, transmittance


def _nonzero(x: torch.Tensor) -> torch.Tensor:
    """Indices of the nonzero entries of a 1-D tensor (long [K]), in order. On a CPU NumPy's: torch's
    nonzero took eight times as long here (torch 2.14, x86), and NumPy's runs without the GIL."""
    if x.device.type == "cpu":
        return torch.from_numpy(np.flatnonzero(x.numpy()))
    return torch.nonzero(x).squeeze(1)


def _stable_order(key: torch.Tensor, bound: int, from_end: bool = False) -> torch.Tensor:
    """Indices that sort the integer keys (0 <= key < bound [N]) stably: equal keys in their order,
    or from_end, in the reverse of it. On a CPU, keys below 2^16 go to NumPy's radix sort: a third
    of the time of torch's sort, and without the GIL."""
    last = key.shape[0] - 1
    if key.device.type == "cpu" and bound <= 1 << 16:
        k = key.numpy()
        if from_end:
            return torch.from_numpy(last - np.argsort(k[::-1].astype(np.uint16), kind="stable"))
        return torch.from_numpy(np.argsort(k.astype(np.uint16), kind="stable"))
    if from_end:
        return last - _stable_order(key.flip(0), bound)
    return torch.sort(key.int() if bound < 1 << 31 else key, stable=True)[1]  # int32 sorts faster


def _paint(boxes: list, g: _Gathered, width: int, y0: int, y1: int):
    """_composite without autograd: paint layer after layer, bottom first, onto the band's dense
    premultiplied colour and transmittance, each shape's coverage straight from its box (boxes:
    the _Boxes of the round strokes, the fills and the outlined strokes, or None). No per-pixel
    entries, no sort: the work is the boxes' area."""
    dev = g.points.device
    dt = g.colours.dtype
    rows = y1 - y0
    premult = torch.zeros(3, rows, width, device=dev, dtype=dt)
    trans = torch.ones(rows, width, device=dev, dtype=dt)
    zero = torch.zeros((), device=dev, dtype=dt)
    rgb = list(zip(*(channel.unbind() for channel in g.colours[:, :3].detach().t())))  # [2S] of 3 0-d tensors
    alpha = g.colours[:, 3].tolist()
    tables = [b.table.tolist() if b is not None else None for b in boxes]
    stroke_box = [0 if tables[0] is not None and tables[0][5][s] else 2 for s in range(g.num_shapes)]
    for s in range(g.num_shapes):
        # the fill (layer 2s), then the stroke (2s + 1): round from _strokes, styled from its outline
        for src, layer in ((1, 2 * s), (stroke_box[s], 2 * s + 1)):
            t = tables[src]
            if t is None or not t[5][s] or not t[4][s]:
                continue
            off, stride, x0, by, w, h = (col[s] for col in t)
            a = boxes[src].coverage[off:off + h * stride].view(h, stride)[:, :w] * alpha[layer]
            # source-over: colour * (1 - a) + a * rgb, transmittance * (1 - a), each one pass
            for c in range(3):
                premult[c, by - y0:by - y0 + h, x0:x0 + w].lerp_(rgb[layer][c], a)
            trans[by - y0:by - y0 + h, x0:x0 + w].lerp_(zero, a)
    pixels = torch.arange(y0 * width, y1 * width, device=dev)
    return pixels, premult.view(3, -1).t(), trans.view(-1)
