"""The optional diffvg backend (BachiLi/diffvg, imported as `pydiffvg`), behind the same call.

Conversions happen here and only here:
- the scene's stroke_width is the full SVG width; diffvg's is the half-width;
- a shape with both a fill and a stroke becomes two diffvg shape groups, the fill then the
  stroke, so the stroke lies over the fill as in SVG (one diffvg group paints fill over stroke);
- a subpath of one point (a dot) becomes one zero-length cubic segment.
diffvg renders with 2x2 jittered samples per pixel (as CLIPDraw does) and returns straight
(un-premultiplied) RGBA over a transparent background.
"""
from __future__ import annotations

import torch

from ..scene import Scene

INSTALL_HINT = (
    "the diffvg backend needs the `pydiffvg` module, which is built from source: "
    "git clone --recursive https://github.com/BachiLi/diffvg && cd diffvg && "
    "python setup.py install (needs CMake and a C++ compiler; see its README). "
    "The default backend=\"native\" needs nothing extra."
)

NUM_SAMPLES = 2  # per axis, as CLIPDraw renders
_calls = 0


def load_pydiffvg():
    """Import pydiffvg or raise DiffvgUnavailableError saying how to install it."""
    from . import DiffvgUnavailableError

    try:
        import pydiffvg  # type: ignore
    except Exception as e:  # ImportError, or a broken build failing at import time
        raise DiffvgUnavailableError(f"{INSTALL_HINT} (import failed: {e})") from e
    return pydiffvg


def scene_to_diffvg(scene: Scene, width: int, height: int, pydiffvg):
    """diffvg shapes and shape groups for the scene scaled to width x height (autograd kept)."""
    sx = width / scene.width
    sy = height / scene.height
    ws = 0.5 * (sx + sy)
    device = scene.device
    scale = torch.tensor([sx, sy], dtype=torch.float32, device=device)
    shapes, groups = [], []
    for shape in scene.shapes:
        ids = []
        half_width = shape.stroke_width * (0.5 * ws)  # diffvg takes the half-width
        for sp in shape.subpaths:
            pts = sp.points * scale
            k = pts.shape[0]
            if k == 0:
                continue
            if k == 1:  # a dot: one zero-length cubic
                pts = pts.expand(4, 2)
                nseg = 1
                closed = False
            else:
                nseg = k // 3 if sp.closed else (k - 1) // 3
                closed = sp.closed
            ncp = torch.full((nseg,), 2, dtype=torch.int32)
            ids.append(len(shapes))
            shapes.append(pydiffvg.Path(num_control_points=ncp, points=pts.contiguous(),
                                        stroke_width=half_width, is_closed=closed))
        if not ids:
            continue
        shape_ids = torch.tensor(ids, dtype=torch.int32)
        evenodd = shape.fill_rule == "evenodd"
        if shape.fill is not None:
            groups.append(pydiffvg.ShapeGroup(shape_ids=shape_ids, fill_color=shape.fill,
                                              stroke_color=None, use_even_odd_rule=evenodd))
        if shape.stroke is not None:
            groups.append(pydiffvg.ShapeGroup(shape_ids=shape_ids, fill_color=None,
                                              stroke_color=shape.stroke, use_even_odd_rule=evenodd))
    return shapes, groups


def render_diffvg(scene: Scene, width: int, height: int, seed=None) -> torch.Tensor:
    """Straight-alpha RGBA [H, W, 4] from diffvg, on the scene's device."""
    global _calls
    pydiffvg = load_pydiffvg()
    device = scene.device
    pydiffvg.set_use_gpu(device.type == "cuda")
    if device.type == "cuda" and hasattr(pydiffvg, "set_device"):
        pydiffvg.set_device(device)
    shapes, groups = scene_to_diffvg(scene, width, height, pydiffvg)
    if not groups:
        return torch.zeros(height, width, 4, dtype=torch.float32, device=device)
    if seed is None:
        seed = _calls
        _calls += 1
    args = pydiffvg.RenderFunction.serialize_scene(width, height, shapes, groups)
    img = pydiffvg.RenderFunction.apply(width, height, NUM_SAMPLES, NUM_SAMPLES, seed, None, *args)
    return img.to(device=device, dtype=torch.float32)
