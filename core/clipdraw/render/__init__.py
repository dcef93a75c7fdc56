"""Differentiable rasterizers for scenes (see DESIGN.md, "Rendering").

    render(scene, width=None, height=None, background=(1, 1, 1), backend="native")
        -> float32 [H, W, 3], the scene composited over the background
    render_rgba(scene, width=None, height=None, backend="native")
        -> float32 [H, W, 4], straight (un-premultiplied) alpha over a transparent background

Both are differentiable with respect to every points tensor, stroke width and colour of the
scene, and run on the device of the scene's tensors. When width/height differ from the scene's
size, x is scaled by W / scene.width, y by H / scene.height and stroke widths by the mean of the
two. Backends: "native" (plain PyTorch, the default) and "diffvg" (needs `pydiffvg`).
"""
from __future__ import annotations

from typing import Optional

import torch

from ..scene import Scene

__all__ = ["render", "render_rgba", "to_pil", "DiffvgUnavailableError", "BACKENDS"]

BACKENDS = ("native", "diffvg")


class DiffvgUnavailableError(ImportError):
    """backend="diffvg" was asked for but `pydiffvg` cannot be imported."""


def _size(scene: Scene, width, height) -> tuple[int, int]:
    w = scene.width if width is None else int(width)
    h = scene.height if height is None else int(height)
    if w < 1 or h < 1:
        raise ValueError(f"render size must be at least 1x1, got {w}x{h}")
    return w, h


def _background_rgb(background, scene: Scene, device) -> torch.Tensor:
    """The background as an opaque RGB tensor [3]: RGBA is flattened onto white, None means the
    scene's background, and a scene without one (transparent) shows white."""
    if background is None:
        background = scene.background if scene.background is not None else (1.0, 1.0, 1.0)
    bg = torch.as_tensor(background, dtype=torch.float32, device=device)
    if bg.dim() != 1 or bg.shape[0] not in (3, 4):
        raise ValueError(f"background must be RGB or RGBA, got shape {tuple(bg.shape)}")
    if bg.shape[0] == 4:
        bg = bg[:3] * bg[3] + (1 - bg[3])
    return bg


def _check_backend(backend: str) -> None:
    if backend not in BACKENDS:
        raise ValueError(f"unknown render backend {backend!r}; choose one of {BACKENDS}")


def render(scene: Scene, width: Optional[int] = None, height: Optional[int] = None,
           background=(1, 1, 1), backend: str = "native") -> torch.Tensor:
    """The scene over `background`: float32 [H, W, 3] on the scene's device, differentiable."""
    _check_backend(backend)
    w, h = _size(scene, width, height)
    device = scene.device
    bg = _background_rgb(background, scene, device)
    if backend == "diffvg":
        from .diffvg_backend import render_diffvg

        rgba = render_diffvg(scene, w, h)  # straight alpha
        a = rgba[..., 3:4]
        return rgba[..., :3] * a + bg * (1 - a)
    from .native import rasterize

    r = rasterize(scene, w, h)
    image = bg.expand(h * w, 3)
    if r.pixels.numel():
        colour = r.premultiplied + bg * r.transmittance.unsqueeze(1)
        if r.dense:  # every pixel, in order
            return colour.reshape(h, w, 3)
        image = image.index_put((r.pixels,), colour)
    else:
        image = image + (0 if r.zero is None else r.zero)  # fresh, connected to the scene
    return image.reshape(h, w, 3)


def render_rgba(scene: Scene, width: Optional[int] = None, height: Optional[int] = None,
                backend: str = "native") -> torch.Tensor:
    """The scene over a transparent background: float32 [H, W, 4], straight alpha."""
    _check_backend(backend)
    w, h = _size(scene, width, height)
    if backend == "diffvg":
        from .diffvg_backend import render_diffvg

        return render_diffvg(scene, w, h)
    from .native import rasterize

    r = rasterize(scene, w, h)
    straight = None
    if r.pixels.numel():
        alpha = 1 - r.transmittance
        safe = alpha > 0
        rgb = torch.where(safe.unsqueeze(1), r.premultiplied / torch.where(safe, alpha, 1.0).unsqueeze(1), 0.0)
        straight = torch.cat((rgb.clamp(0, 1), alpha.unsqueeze(1)), 1)
        if r.dense:  # every pixel, in order
            return straight.reshape(h, w, 4)
    out = torch.zeros(h * w, 4, device=scene.device, dtype=torch.float32)
    if straight is not None:
        out = out.index_put((r.pixels,), straight)
    elif r.zero is not None:
        out = out + r.zero
    return out.reshape(h, w, 4)


def to_pil(image: torch.Tensor):
    """A float [H, W, 3] (RGB) or [H, W, 4] (straight RGBA) image in 0..1 as an 8-bit PIL image."""
    from PIL import Image

    array = (image.detach().clamp(0, 1).cpu().numpy() * 255 + 0.5).astype("uint8")
    return Image.fromarray(array, "RGBA" if array.shape[2] == 4 else "RGB")
