"""The native rasterizer: plain PyTorch, area-coverage antialiasing, analytic gradients.

Everything is vectorized over all shapes of the scene at once; the work is proportional to the
pixels each shape really touches, never to (shapes x canvas). The pipeline:

1. Flatten every cubic segment into chords (adaptive count per segment, from a bound on the
   curve's deviation from its chords).
2. Strokes: each chord enumerates the pixels of its bounding box grown by the stroke's reach.
   Without autograd, the nearest chord of the shape is chosen per (shape, pixel) with one
   ``scatter_reduce`` over a per-shape bounding-box buffer (key = distance bits, chord index).
   For those winners only, the closest point on the real cubic is refined by Newton steps and
   the distance is recomputed *with* autograd. Coverage is the exact box-filter coverage of a
   straight band of the stroke's width at that distance (the pixel square projected on the
   band's normal has a trapezoidal profile). Distance to the union of the shape's curves gives
   round joins and caps.
3. Fills: exact signed area of the flattened outline inside every pixel, by the accumulation
   method of font rasterizers (each chord adds, per row strip and pixel cell it crosses, the
   area to its right in that cell; a running sum along the row gives the integral of the
   winding number over each pixel). Fully differentiable; nonzero = min(|w|, 1), evenodd = a
   triangle wave of |w|. Open subpaths are closed implicitly.
4. Compositing: all (pixel, layer, alpha, colour) entries are sorted by pixel and layer (top
   first), laid out per pixel in a padded [P, K] array, and composited with source-over via an
   exclusive cumulative product of (1 - alpha) (no logs or divisions: opaque layers are fine).

Pixel (row i, column j) covers [j, j+1) x [i, i+1); its centre is (j + 0.5, i + 0.5).
"""
from __future__ import annotations

from dataclasses import dataclass
from typing import Optional

import torch

from ..scene import Scene

# Flattening tolerances (pixels): the largest distance between a segment and its chords.
STROKE_TOLERANCE = 0.25  # strokes only use chords to find the nearest piece; Newton refines
FILL_TOLERANCE = 0.01  # fills integrate the chords' polygon exactly, so this is the area error
MAX_CHORDS_STROKE = 64
MAX_CHORDS_FILL = 256
NEWTON_STEPS = 2
HALF_DIAGONAL = 0.7072  # the farthest a pixel's area reaches from its centre along any normal

_BIG = 1e9


@dataclass
class Raster:
    """Per touched pixel: flat pixel index, premultiplied colour, and transmittance."""

    pixels: torch.Tensor  # long [P], row * width + column
    premultiplied: torch.Tensor  # float [P, 3]: sum of alpha * colour, attenuated by layers above
    transmittance: torch.Tensor  # float [P]: product of (1 - alpha) over every layer
    width: int
    height: int


# ---- scene gathering ----------------------------------------------------------------------


@dataclass
class _Gathered:
    points: torch.Tensor  # float [Np, 2], scaled to the output size, autograd-connected
    seg_ctrl: list  # rows of 4 point indices per segment
    seg_shape: list
    stroke_shapes: list  # shape index per shape that has a stroke
    close_pairs: list  # (last, first, shape) point indices for implicit closing of open fills
    fill_segs: list  # segment indices that belong to filled shapes
    stroke_segs: list  # segment indices that belong to stroked shapes
    widths: Optional[torch.Tensor]  # float [S] full stroke widths (scaled); None when no stroke
    colours: torch.Tensor  # float [2S, 4]: layer 2s = fill of shape s, 2s+1 = stroke
    fill_rule_evenodd: list  # bool per shape


def _gather(scene: Scene, width: int, height: int, device, dtype) -> _Gathered:
    sx = width / scene.width
    sy = height / scene.height
    pts, seg_ctrl, seg_shape = [], [], []
    close_pairs, fill_segs, stroke_segs, stroke_shapes = [], [], [], []
    widths, colours, evenodd = [], [], []
    zero4 = torch.zeros(4, device=device, dtype=dtype)
    base = 0
    for si, shape in enumerate(scene.shapes):
        has_fill = shape.fill is not None
        has_stroke = shape.stroke is not None
        colours.append(shape.fill if has_fill else zero4)
        colours.append(shape.stroke if has_stroke else zero4)
        widths.append(shape.stroke_width)
        evenodd.append(shape.fill_rule == "evenodd")
        if has_stroke:
            stroke_shapes.append(si)
        for sp in shape.subpaths:
            k = int(sp.points.shape[0])
            if k == 0:
                continue
            pts.append(sp.points)
            first = len(seg_ctrl)
            if k == 1:  # a dot: one zero-length segment (draws a round cap when stroked)
                seg_ctrl.append((base, base, base, base))
                seg_shape.append(si)
                if has_stroke:
                    stroke_segs.append(first)
            else:
                if sp.closed:
                    n = k // 3
                    seg_ctrl.extend((base + 3 * i, base + 3 * i + 1, base + 3 * i + 2,
                                     base + (3 * i + 3) % k) for i in range(n))
                else:
                    n = (k - 1) // 3
                    seg_ctrl.extend((base + 3 * i, base + 3 * i + 1, base + 3 * i + 2,
                                     base + 3 * i + 3) for i in range(n))
                seg_shape.extend([si] * n)
                if has_fill:
                    fill_segs.extend(range(first, first + n))
                    if not sp.closed:
                        close_pairs.append((base + k - 1, base, si))
                if has_stroke:
                    stroke_segs.extend(range(first, first + n))
            base += k
    if pts:
        points = torch.cat(pts).to(dtype)
        scale = torch.tensor([sx, sy], device=points.device, dtype=dtype)
        points = points * scale
    else:
        points = torch.zeros(0, 2, device=device, dtype=dtype)
    wscale = 0.5 * (sx + sy)
    widths_t = torch.stack(widths).to(dtype) * wscale if widths else None
    colours_t = torch.stack(colours).to(dtype) if colours else torch.zeros(0, 4, device=device)
    return _Gathered(points, seg_ctrl, seg_shape, stroke_shapes, close_pairs, fill_segs,
                     stroke_segs, widths_t, colours_t, evenodd)


# ---- Bezier helpers -----------------------------------------------------------------------


def _bezier(c: torch.Tensor, t: torch.Tensor) -> torch.Tensor:
    """Points of cubics c [N, 4, 2] at parameters t [N]."""
    mt = 1 - t
    w = torch.stack((mt * mt * mt, 3 * mt * mt * t, 3 * mt * t * t, t * t * t), dim=1)
    return (w.unsqueeze(2) * c).sum(1)


def _bezier_d1_d2(c: torch.Tensor, t: torch.Tensor):
    mt = (1 - t).unsqueeze(1)
    tt = t.unsqueeze(1)
    d0 = c[:, 1] - c[:, 0]
    d1 = c[:, 2] - c[:, 1]
    d2 = c[:, 3] - c[:, 2]
    first = 3 * (mt * mt * d0 + 2 * mt * tt * d1 + tt * tt * d2)
    second = 6 * (mt * (d1 - d0) + tt * (d2 - d1))
    return first, second


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


def _edge_cdf(u: torch.Tensor, a: torch.Tensor, b: torch.Tensor) -> torch.Tensor:
    """Fraction of the unit pixel square whose points lie at signed distance < u from its centre
    along a unit normal with absolute components a >= b (the CDF of a trapezoidal profile)."""
    h = 0.5 * (a + b)
    g = 0.5 * (a - b)
    v = torch.minimum(torch.maximum(u, -h), h)
    ab2 = 2 * a * b.clamp_min(1e-6)
    lo = (v + h).square() / ab2
    hi = 1 - (h - v).square() / ab2
    mid = 0.5 + v / a
    return torch.where(v < -g, lo, torch.where(v > g, hi, mid))


def band_coverage(d: torch.Tensor, half_width: torch.Tensor, nx: torch.Tensor, ny: torch.Tensor):
    """Area of the unit pixel covered by a straight band |s| < half_width, the pixel centre at
    s = d, the band's normal (nx, ny) a unit vector."""
    ax, ay = nx.abs(), ny.abs()
    a = torch.maximum(ax, ay)
    b = torch.minimum(ax, ay)
    u = torch.cat((half_width - d, -half_width - d))
    cdf = _edge_cdf(u, torch.cat((a, a)), torch.cat((b, b)))
    m = d.shape[0]
    return cdf[:m] - cdf[m:]


# ---- strokes ------------------------------------------------------------------------------


def _strokes(g: _Gathered, width: int, height: int):
    """(flat pixel, shape, alpha) entries of every stroke."""
    dev = g.points.device
    dt = g.points.dtype
    seg_ids = torch.tensor(g.stroke_segs, device=dev, dtype=torch.long)
    ctrl_idx = torch.tensor([g.seg_ctrl[i] for i in g.stroke_segs], device=dev, dtype=torch.long)
    seg_shape = torch.tensor([g.seg_shape[i] for i in g.stroke_segs], device=dev, dtype=torch.long)
    ctrl = g.points[ctrl_idx]  # [S, 4, 2] autograd
    ctrl_d = ctrl.detach()
    half_w = 0.5 * g.widths  # [num_shapes]
    half_w_d = half_w.detach().clamp_min(0)

    with torch.no_grad():
        cseg, t0, t1, a, b = _flatten(ctrl_d, STROKE_TOLERANCE, MAX_CHORDS_STROKE)
        cshape = seg_shape[cseg]
        reach = half_w_d[cshape] + (HALF_DIAGONAL + STROKE_TOLERANCE + 1e-3)
        lo = torch.minimum(a, b) - reach.unsqueeze(1) - 0.5
        hi = torch.maximum(a, b) + reach.unsqueeze(1) - 0.5
        lim = torch.tensor([width - 1, height - 1], device=dev, dtype=dt)
        lo_i = torch.ceil(lo).clamp(min=torch.zeros_like(lim), max=lim).long()
        hi_i = torch.floor(hi).clamp(min=torch.full_like(lim, -1.0), max=lim).long()
        empty = (hi < 0).any(1) | (lo > lim).any(1)
        ext = (hi_i - lo_i + 1).clamp_min(0)
        ext = torch.where(empty.unsqueeze(1), torch.zeros_like(ext), ext)
        count = ext[:, 0] * ext[:, 1]

        # per-shape bounding box buffer (union of its chords' boxes)
        ns = len(g.widths)
        big = torch.iinfo(torch.long).max
        has = count > 0
        bx0 = torch.full((ns,), big, device=dev, dtype=torch.long)
        by0 = torch.full((ns,), big, device=dev, dtype=torch.long)
        bx1 = torch.full((ns,), -1, device=dev, dtype=torch.long)
        by1 = torch.full((ns,), -1, device=dev, dtype=torch.long)
        hs = cshape[has]
        bx0.scatter_reduce_(0, hs, lo_i[has, 0], "amin")
        by0.scatter_reduce_(0, hs, lo_i[has, 1], "amin")
        bx1.scatter_reduce_(0, hs, hi_i[has, 0], "amax")
        by1.scatter_reduce_(0, hs, hi_i[has, 1], "amax")
        bw = (bx1 - bx0 + 1).clamp_min(0)
        bh = (by1 - by0 + 1).clamp_min(0)
        area = bw * bh
        off = torch.cumsum(area, 0) - area
        total = int(area.sum())

        # (chord, pixel) pairs
        pc = torch.repeat_interleave(torch.arange(count.shape[0], device=dev), count)
        if pc.numel() == 0 or total == 0:
            return None
        local = torch.arange(pc.shape[0], device=dev) - (torch.cumsum(count, 0) - count)[pc]
        ex = ext[pc, 0]
        px = lo_i[pc, 0] + local % ex
        py = lo_i[pc, 1] + local // ex
        cx = px.to(dt) + 0.5
        cy = py.to(dt) + 0.5
        ax, ay = a[pc, 0], a[pc, 1]
        dx, dy = b[pc, 0] - ax, b[pc, 1] - ay
        qx, qy = cx - ax, cy - ay
        ll = dx * dx + dy * dy
        u = ((qx * dx + qy * dy) / ll.clamp_min(1e-12)).clamp(0, 1)
        ex_ = qx - u * dx
        ey_ = qy - u * dy
        d2 = ex_ * ex_ + ey_ * ey_
        sh = cshape[pc]
        ok = d2 < reach[pc].square()
        pc, px, py, d2, sh, u = pc[ok], px[ok], py[ok], d2[ok], sh[ok], u[ok]
        slot = off[sh] + (py - by0[sh]) * bw[sh] + (px - bx0[sh])
        key = (d2.contiguous().view(torch.int32).long() << 32) | pc
        buf = torch.full((total,), big, device=dev, dtype=torch.long)
        buf.scatter_reduce_(0, slot, key, "amin")
        win_slot = torch.nonzero(buf != big).squeeze(1)
        wkey = buf[win_slot]
        wchord = wkey & 0xFFFFFFFF
        # recover the pair's pixel from the slot
        wshape = cshape[wchord]
        rel = win_slot - off[wshape]
        wpx = bx0[wshape] + rel % bw[wshape]
        wpy = by0[wshape] + rel // bw[wshape]
        p = torch.stack((wpx.to(dt) + 0.5, wpy.to(dt) + 0.5), 1)
        # start parameter: projection on the winning chord
        ca, cb = a[wchord], b[wchord]
        dd = cb - ca
        uu = (((p - ca) * dd).sum(1) / (dd * dd).sum(1).clamp_min(1e-12)).clamp(0, 1)
        t = t0[wchord] + uu * (t1[wchord] - t0[wchord])
        wseg = cseg[wchord]
        cw = ctrl_d[wseg]
        q = _bezier(cw, t)
        best = ((q - p) ** 2).sum(1)
        for _ in range(NEWTON_STEPS):
            d1, dd2 = _bezier_d1_d2(cw, t)
            r = q - p
            f1 = (r * d1).sum(1)
            f2 = (d1 * d1).sum(1) + (r * dd2).sum(1)
            step = torch.where(f2 > 1e-9, f1 / f2.clamp_min(1e-9), torch.zeros_like(f1))
            tn = (t - step).clamp(0, 1)
            qn = _bezier(cw, tn)
            dn = ((qn - p) ** 2).sum(1)
            better = dn < best
            t = torch.where(better, tn, t)
            q = torch.where(better.unsqueeze(1), qn, q)
            best = torch.where(better, dn, best)
        # band normal: from the curve to the pixel centre, or the curve's normal on it
        r = p - q
        dist = best.sqrt()
        tan, _ = _bezier_d1_d2(cw, t)
        tl = tan.norm(dim=1)
        nrm_t = torch.stack((-tan[:, 1], tan[:, 0]), 1) / tl.clamp_min(1e-12).unsqueeze(1)
        far = dist > 1e-4
        nrm = torch.where(far.unsqueeze(1), r / dist.clamp_min(1e-12).unsqueeze(1), nrm_t)
        nrm = torch.where((far | (tl > 1e-9)).unsqueeze(1), nrm, torch.tensor([1.0, 0.0], device=dev, dtype=dt))

    # with autograd, only for the winners
    qg = _bezier(ctrl[wseg], t)
    rg = p - qg
    dg = torch.sqrt((rg * rg).sum(1) + 1e-12)
    cov = band_coverage(dg, half_w[wshape], nrm[:, 0], nrm[:, 1])
    pix = wpy * width + wpx
    return pix, wshape, cov


# ---- fills --------------------------------------------------------------------------------


def _fills(g: _Gathered, width: int, height: int):
    """(flat pixel, shape, coverage) entries of every fill."""
    dev = g.points.device
    dt = g.points.dtype
    ctrl_idx = torch.tensor([g.seg_ctrl[i] for i in g.fill_segs], device=dev, dtype=torch.long)
    seg_shape = torch.tensor([g.seg_shape[i] for i in g.fill_segs], device=dev, dtype=torch.long)
    parts_a, parts_b, parts_s = [], [], []
    if len(g.fill_segs):
        ctrl = g.points[ctrl_idx]
        cseg, _, _, a, b = _flatten(ctrl.detach(), FILL_TOLERANCE, MAX_CHORDS_FILL, with_grad_ctrl=ctrl)
        parts_a.append(a)
        parts_b.append(b)
        parts_s.append(seg_shape[cseg])
    if g.close_pairs:
        cp = torch.tensor(g.close_pairs, device=dev, dtype=torch.long)
        parts_a.append(g.points[cp[:, 0]])
        parts_b.append(g.points[cp[:, 1]])
        parts_s.append(cp[:, 2])
    if not parts_a:
        return None
    a = torch.cat(parts_a)
    b = torch.cat(parts_b)
    cshape = torch.cat(parts_s)
    ns = len(g.widths)
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
        b0 = torch.floor(smin).clamp(min=torch.zeros_like(lim), max=lim)
        b1 = (torch.ceil(smax) - 1).clamp(max=lim)
        b1 = torch.maximum(b1, torch.floor(smax).clamp(max=lim))  # zero-height: one row
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
        r1 = torch.minimum(torch.maximum(torch.ceil(yhi).long() - 1, torch.floor(ylo).long()), sy1)
        nrow = (r1 - r0 + 1).clamp_min(0)
        pch = torch.repeat_interleave(torch.arange(nrow.shape[0], device=dev), nrow)
        if pch.numel() == 0:
            return None
        row = r0[pch] + torch.arange(pch.shape[0], device=dev) - (torch.cumsum(nrow, 0) - nrow)[pch]
        rowf = row.to(dt)

    # piece of chord inside the row strip [row, row + 1] (autograd)
    ax_, ay_ = a[pch, 0], a[pch, 1]
    bx_, by_ = b[pch, 0], b[pch, 1]
    ys = torch.minimum(torch.maximum(ay_, rowf), rowf + 1)
    ye = torch.minimum(torch.maximum(by_, rowf), rowf + 1)
    dyc = by_ - ay_
    with torch.no_grad():
        steep = dyc.abs() > 1e-12
    slope = (bx_ - ax_) / torch.where(steep, dyc, torch.ones_like(dyc))
    xs = torch.where(ys == ay_, ax_, ax_ + (ys - ay_) * slope)
    xe = torch.where(ye == by_, bx_, ax_ + (ye - ay_) * slope)

    with torch.no_grad():
        psh = cshape[pch]
        X0 = b0[psh, 0]
        X1 = X0 + bw[psh] - 1
        xs_d, xe_d = xs.detach(), xe.detach()
        xmin = torch.minimum(xs_d, xe_d)
        xmax = torch.maximum(xs_d, xe_d)
        c0 = torch.floor(xmin).long().clamp(min=X0 - 1, max=X1)
        c1 = torch.maximum(torch.ceil(xmax).long() - 1, torch.floor(xmin).long()).clamp(min=X0 - 1, max=X1)
        c1 = torch.maximum(c1, c0)
        ncell = c1 - c0 + 1
        pp = torch.repeat_interleave(torch.arange(ncell.shape[0], device=dev), ncell)
        col = c0[pp] + torch.arange(pp.shape[0], device=dev) - (torch.cumsum(ncell, 0) - ncell)[pp]
        first = col == c0[pp]
        last = col == c1[pp]
        colf = col.to(dt)
        lo_x = torch.where(first, torch.full_like(colf, -_BIG), colf)
        hi_x = torch.where(last, torch.full_like(colf, _BIG), colf + 1)
        jeff = torch.maximum(col, X0[pp])
        jf = jeff.to(dt)
        single = (ncell == 1)[pp]

    sx_, ex_ = xs[pp], xe[pp]
    sy_, ey_ = ys[pp], ye[pp]
    ddx = ex_ - sx_
    with torch.no_grad():
        flat = single | (ddx.detach().abs() < 1e-12)
    den = torch.where(flat, torch.ones_like(ddx), ddx)
    ua = ((lo_x - sx_) / den)
    ub = ((hi_x - sx_) / den)
    u0 = torch.where(flat, torch.zeros_like(ua), torch.minimum(ua, ub).clamp(0, 1))
    u1 = torch.where(flat, torch.ones_like(ub), torch.maximum(ua, ub).clamp(0, 1))
    xa = sx_ + u0 * ddx
    xb = sx_ + u1 * ddx
    ya = sy_ + u0 * (ey_ - sy_)
    yb = sy_ + u1 * (ey_ - sy_)
    xa = torch.minimum(torch.maximum(xa, jf), jf + 1)
    xb = torch.minimum(torch.maximum(xb, jf), jf + 1)
    dy = yb - ya
    frac = 0.5 * (xa + xb) - jf  # in [0, 1]
    right = dy * (1 - frac)  # into cell jeff
    spill = dy * frac  # into cell jeff + 1 (and, by the running sum, all cells to its right)

    with torch.no_grad():
        csh = psh[pp]
        base = off[csh] + (row[pp] - b0[csh, 1]) * accw[csh] + (jeff - b0[csh, 0])
    acc = torch.zeros(total, device=dev, dtype=dt)
    acc = acc.index_add(0, torch.cat((base, base + 1)), torch.cat((right, spill)))

    # running sum along each row of each shape's box: a cumsum over the whole buffer, minus the
    # value just before each row's start
    with torch.no_grad():
        nrows_total = int(bh.sum())
        rshape = torch.repeat_interleave(torch.arange(ns, device=dev), bh)
        rloc = torch.arange(nrows_total, device=dev) - (torch.cumsum(bh, 0) - bh)[rshape]
        row_start = off[rshape] + rloc * accw[rshape]  # [R]
        row_len = accw[rshape]
    cs = torch.cumsum(acc.to(torch.float64), 0)
    before = torch.where(row_start > 0, cs[(row_start - 1).clamp_min(0)], 0.0)
    with torch.no_grad():
        slot_row = torch.repeat_interleave(torch.arange(nrows_total, device=dev), row_len)
    wind = (cs - before[slot_row]).to(dt)
    with torch.no_grad():
        # drop the spill column; pixel coordinates of each slot
        rel = torch.arange(total, device=dev) - row_start[slot_row]
        keep_col = rel < (row_len[slot_row] - 1)
        sshape = rshape[slot_row]
        spx = b0[sshape, 0] + rel
        spy = b0[sshape, 1] + rloc[slot_row]
        eo = torch.tensor(g.fill_rule_evenodd, device=dev, dtype=torch.bool)[sshape]
        wa = wind.detach().abs()
        cov_d = torch.where(eo, 1 - (1 - torch.remainder(wa, 2)).abs(), wa.clamp(max=1))
        sel = torch.nonzero(keep_col & (cov_d > 1e-7)).squeeze(1)
    w = wind[sel].abs()
    e = eo[sel]
    cov = torch.where(e, 1 - (1 - torch.remainder(w, 2)).abs(), w.clamp(max=1))
    pix = spy[sel] * width + spx[sel]
    return pix, sshape[sel], cov


# ---- compositing --------------------------------------------------------------------------


def rasterize(scene: Scene, width: int, height: int) -> Raster:
    dev = scene.device
    dt = torch.float32
    g = _gather(scene, width, height, dev, dt)
    pix_l, lay_l, alpha_l = [], [], []
    if g.stroke_segs:
        st = _strokes(g, width, height)
        if st is not None:
            pix, sh, cov = st
            pix_l.append(pix)
            lay_l.append(2 * sh + 1)
            alpha_l.append(cov * g.colours[2 * sh + 1, 3])
    if g.fill_segs or g.close_pairs:
        fl = _fills(g, width, height)
        if fl is not None:
            pix, sh, cov = fl
            pix_l.append(pix)
            lay_l.append(2 * sh)
            alpha_l.append(cov * g.colours[2 * sh, 3])
    if not pix_l:
        z = torch.zeros(0, device=dev, dtype=torch.long)
        return Raster(z, torch.zeros(0, 3, device=dev, dtype=dt), torch.zeros(0, device=dev, dtype=dt),
                      width, height)
    pix = torch.cat(pix_l)
    layer = torch.cat(lay_l)
    alpha = torch.cat(alpha_l)
    nl = 2 * len(scene.shapes)
    with torch.no_grad():
        key = pix * nl + (nl - 1 - layer)  # top layer first within a pixel
        order = torch.argsort(key)
        spix = pix[order]
        upix, counts = torch.unique_consecutive(spix, return_counts=True)
        npx = upix.shape[0]
        depth = int(counts.max())
        grp = torch.repeat_interleave(torch.arange(npx, device=dev), counts)
        rank = torch.arange(spix.shape[0], device=dev) - (torch.cumsum(counts, 0) - counts)[grp]
        flat = grp * depth + rank
    a = alpha[order]
    rgb = g.colours[layer[order], :3]
    padded = torch.ones(npx * depth, device=dev, dtype=dt).index_put((flat,), 1 - a)
    trans = torch.cumprod(padded.view(npx, depth), 1)
    excl = torch.cat((torch.ones(npx, 1, device=dev, dtype=dt), trans[:, :-1]), 1).reshape(-1)[flat]
    contrib = (a * excl).unsqueeze(1) * rgb
    premult = torch.zeros(npx, 3, device=dev, dtype=dt).index_add(0, grp, contrib)
    return Raster(upix, premult, trans[:, -1], width, height)
