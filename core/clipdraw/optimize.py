"""The CLIPDraw loop: random strokes or a given scene, rendered, scored, and moved by Adam.

`optimize` is the loop itself and takes any loss of the rendered image; `draw` wires it to CLIP
(CLIPDraw, and refinement of a user's sketch) and `trace` to an L2 distance to a target image.
"""
from __future__ import annotations

import time
from dataclasses import dataclass
from typing import Callable, Optional, Sequence

import torch

from .scene import Scene, Shape, Subpath

LOCKABLE = ("points", "widths", "colors")
# CLIPDraw's numbers in this project's units: lengths are px of a 224 px canvas (they scale with
# the canvas) and widths are full SVG widths, twice diffvg's half widths (CLIPDraw: lr 0.1, start
# and floor 1.0, max_width 50).
CLIPDRAW_LR = {"points": 1.0, "widths": 0.2, "colors": 0.01}
START_WIDTH = 2.0  # new strokes' width
MIN_WIDTH = 2.0  # the floor of the widths' clamp (a given thinner stroke may stay as drawn)
MAX_WIDTH = 100.0  # CLIPDraw's max_width (not scaled: the user's number, in canvas px)
REFERENCE_SIZE = 224
MAX_SEED = 2**63 - 1  # torch.Generator.manual_seed takes no more
FIDELITY_SCALE = 0.1  # moving every point by this fraction of the canvas costs `fidelity`


@dataclass
class Progress:
    """What a progress callback gets after each iteration."""

    iteration: int  # iterations done, 1..iterations
    iterations: int
    loss: float  # this iteration's loss (of the parameters before its step)
    elapsed: float  # seconds since the loop started
    time_limit: Optional[float]
    image: torch.Tensor  # [H, W, 3] this iteration's render, detached
    scene: Scene  # the live scene being optimised (its tensors change in place)


@dataclass
class Result:
    scene: Scene  # the final iterate, detached
    loss: float  # the last iteration's loss (of the parameters before the last step); nan if none
    iterations: int
    elapsed: float
    stopped: bool = False  # the callback asked to stop before `iters` (e.g. Ctrl+C)
    # draw's fair measure, CLIP's similarity on fixed augmentations: {"start": s0, "end": s1,
    # "negatives": [{"prompt": text, "start": n0, "end": n1}, ...]}
    similarity: Optional[dict] = None


# ---- initialisation ---------------------------------------------------------------------------


def random_strokes(n: int, width: int, height: int, generator: Optional[torch.Generator] = None,
                   stroke_width: Optional[float] = None, colours: Optional[torch.Tensor] = None,
                   device=None) -> list[Shape]:
    """CLIPDraw's random strokes: 1-3 cubic segments; the start uniform on the canvas, each next
    control point the previous plus a uniform offset of +-0.05 of the canvas per axis; random RGBA;
    `stroke_width` px wide (default: CLIPDraw's START_WIDTH, scaled to the canvas).
    `colours` (float [H, W, 3]) instead picks each stroke's colour at its start, opaque (tracing)."""
    size = torch.tensor([width, height], dtype=torch.float32)
    if stroke_width is None:
        stroke_width = START_WIDTH * max(width, height) / REFERENCE_SIZE
    shapes = []
    for _ in range(n):
        segments = int(torch.randint(1, 4, (), generator=generator))
        start = torch.rand(1, 2, generator=generator) * size
        steps = (torch.rand(3 * segments, 2, generator=generator) * 2 - 1) * 0.05 * size
        points = torch.cat([start, start + steps.cumsum(0)])  # [3 * segments + 1, 2]
        if colours is None:
            rgba = torch.rand(4, generator=generator)
        else:
            x, y = (start[0].long() % size.long()).tolist()
            rgba = torch.cat([colours[y, x].float().cpu(), torch.ones(1)])
        shapes.append(Shape(subpaths=[Subpath(points.to(device))],
                            stroke_width=torch.tensor(float(stroke_width), device=device),
                            stroke=rgba.to(device)))
    return shapes


def random_blobs(n: int, width: int, height: int, colours: torch.Tensor,
                 generator: Optional[torch.Generator] = None, radius: float = 0.05,
                 device=None) -> list[Shape]:
    """Filled closed shapes for tracing: 3 cubic segments around a random centre, with radius
    `radius` of the canvas, coloured as the target at the centre (colours float [H, W, 3])."""
    size = torch.tensor([width, height], dtype=torch.float32)
    shapes = []
    for _ in range(n):
        centre = torch.rand(2, generator=generator) * size
        angles = torch.linspace(0, 2 * torch.pi, 10)[:9] + torch.rand((), generator=generator)
        r = radius * size * (0.5 + torch.rand(9, 1, generator=generator))
        points = centre + r * torch.stack([angles.cos(), angles.sin()], -1)  # [9, 2]
        x, y = (centre.long() % size.long()).tolist()
        rgba = torch.cat([colours[y, x].float().cpu(), torch.ones(1)])
        shapes.append(Shape(subpaths=[Subpath(points.to(device), closed=True)],
                            stroke_width=torch.tensor(0.0, device=device), fill=rgba.to(device)))
    return shapes


# ---- the loop -----------------------------------------------------------------------------------


class Packed:
    """A scene's parameters as three tensors: points [P, 2] (every subpath's, in order), widths [S]
    (every stroked shape's) and colors [C, 4] (every stroke and fill paint). Adam and the clamps
    work on these, not on hundreds of small tensors (that per-tensor overhead cost more than the
    augmentations, and a backward into hundreds of leaves costs more than the render's own);
    bind() makes the scene's tensors views of them: one split/unbind whose backward is one cat."""

    def __init__(self, scene: Scene):
        self.subpaths = [sp for sh in scene.shapes for sp in sh.subpaths]
        self.stroked = [sh for sh in scene.shapes if sh.stroke is not None]
        self.paints = [(sh, attr) for sh in scene.shapes for attr in ("stroke", "fill")
                       if getattr(sh, attr) is not None]
        self.sizes = [sp.points.shape[0] for sp in self.subpaths]
        device = scene.device
        self.tensors = {
            "points": torch.cat([sp.points.detach() for sp in self.subpaths]) if self.subpaths
            else torch.zeros(0, 2, device=device),  # [P, 2]
            "widths": torch.stack([sh.stroke_width.detach() for sh in self.stroked]) if self.stroked
            else torch.zeros(0, device=device),  # [S]
            "colors": torch.stack([getattr(sh, attr).detach() for sh, attr in self.paints]) if self.paints
            else torch.zeros(0, 4, device=device),  # [C, 4]
        }

    def _assign(self, points, widths, colors) -> None:
        for sp, p in zip(self.subpaths, points):
            sp.points = p
        for sh, w in zip(self.stroked, widths):
            sh.stroke_width = w
        for (sh, attr), c in zip(self.paints, colors):
            setattr(sh, attr, c)

    def bind(self) -> None:
        """The scene's tensors become views of the packed ones (autograd flows to those)."""
        t = self.tensors
        self._assign(t["points"].split(self.sizes), t["widths"].unbind(0), t["colors"].unbind(0))

    def release(self) -> None:
        """The scene gets plain tensors of its own again (clones: nothing aliases the packs)."""
        t = {k: v.detach() for k, v in self.tensors.items()}
        self._assign([p.clone() for p in t["points"].split(self.sizes)], [w.clone() for w in t["widths"].unbind(0)],
                     [c.clone() for c in t["colors"].unbind(0)])


def background_rgb(scene: Scene) -> tuple:
    """The scene's background as opaque RGB: CLIP sees a transparent canvas as white paper."""
    if scene.background is None:
        return (1.0, 1.0, 1.0)
    r, g, b, a = scene.background
    return tuple(c * a + (1 - a) for c in (r, g, b))


@torch.no_grad()
def picture(scene: Scene) -> torch.Tensor:
    """The scene's image [H, W, 3] at its own size, as CLIP sees it (background over white)."""
    from .render import render

    return render(scene, scene.width, scene.height, background=background_rgb(scene))


def optimize(scene: Scene, loss_fn: Callable[[torch.Tensor], torch.Tensor], iters: int = 1000,
             max_width: float = MAX_WIDTH, fidelity: float = 0.0, anchored: Optional[int] = None,
             lock: Sequence[str] = (), time_limit: Optional[float] = None,
             callback: Optional[Callable[[Progress], Optional[bool]]] = None,
             lr: Optional[dict] = None, render_size: Optional[tuple] = None) -> Result:
    """Optimise `scene` in place under loss_fn(render [H, W, 3]); the result is the final iterate,
    as in CLIPDraw (each step's loss is a noisy sample: the lowest one is no better a pick).

    - fidelity: weight of fidelity * mean over the first `anchored` shapes' points (default: all)
      of |p - p0|^2 / (0.1 * canvas)^2, pulling them back to where they started.
    - lock: any of "points", "widths", "colors"; those tensors are not touched at all.
    - time_limit: stop after this many seconds (None or 0 = no limit). The lr schedule runs on
      progress = max(iteration / iters, elapsed / time_limit), so a time-limited run still gets
      CLIPDraw's points-lr drops (x0.4 at 50%, x0.1 at 75%).
    - render_size: (width, height) to render at, if not the scene's own (the renderer scales).
    - callback(Progress) after each iteration; returning True stops the run there.
    - lr: Adam's rates per group, for a 224 px canvas (default CLIPDRAW_LR); the lengths (points,
      widths) scale with the canvas size.
    After each step stroke widths are clamped to [MIN_WIDTH, max_width] (MIN_WIDTH scaled with the
    canvas; a given thinner stroke may stay as thin as drawn) and colours to [0, 1] (alpha to each
    shape's alpha_max; its fixed_paints keep their colour).
    """
    from .render import render

    bad = [k for k in lock if k not in LOCKABLE]
    if bad:
        raise ValueError(f"lock: unknown {bad[0]!r}; choose from {', '.join(LOCKABLE)}")
    lr = {**CLIPDRAW_LR, **(lr or {})}
    size = max(scene.width, scene.height)
    anchored = len(scene.shapes) if anchored is None else anchored
    time_limit = time_limit or None

    pack = Packed(scene)
    packed = pack.tensors
    device = scene.device
    for name, t in packed.items():
        t.requires_grad_(name not in lock and t.numel() > 0)

    # CLIPDraw's lengths are for a 224 canvas: points and widths move in proportion to the canvas.
    scale = size / REFERENCE_SIZE
    base_lr = {"points": lr["points"] * scale, "widths": lr["widths"] * scale, "colors": lr["colors"]}
    param_groups = [{"params": [t], "lr": base_lr[k], "name": k}
                    for k, t in packed.items() if t.requires_grad]
    opt = torch.optim.Adam(param_groups) if param_groups else None

    n_anchor = sum(sp.points.shape[0] for sh in scene.shapes[:anchored] for sp in sh.subpaths)
    pull = fidelity > 0 and packed["points"].requires_grad and n_anchor > 0
    anchor0 = packed["points"][:n_anchor].detach().clone()  # [A, 2]: given shapes come first
    pull_scale = 1.0 / (FIDELITY_SCALE * size) ** 2

    # Widths are clamped to [floor, max_width], except that a given thinner stroke may stay as drawn.
    min_width = packed["widths"].detach().clamp(max=MIN_WIDTH * scale)  # [S]
    # Colours are clamped to [0, 1], alpha to the shape's alpha_max; fixed paints keep their colour.
    color_max = torch.ones_like(packed["colors"])  # [C, 4]
    color_max[:, 3] = torch.tensor([sh.alpha_max for sh, _ in pack.paints], device=device)
    fixed = torch.tensor([attr in sh.fixed_paints for sh, attr in pack.paints], dtype=torch.bool, device=device)  # [C]
    color0 = packed["colors"].detach().clone()  # [C, 4]
    bg = background_rgb(scene)
    rw, rh = render_size or (scene.width, scene.height)
    value = float("nan")
    stopped = False
    start = time.perf_counter()
    done = 0
    for it in range(iters):
        elapsed = time.perf_counter() - start
        progress = max(it / iters, elapsed / time_limit if time_limit else 0.0)
        if time_limit and elapsed >= time_limit:
            break
        for g in param_groups:
            if g["name"] == "points":
                g["lr"] = base_lr["points"] * (1.0 if progress < 0.5 else 0.4 if progress < 0.75 else 0.1)

        pack.bind()
        image = render(scene, rw, rh, background=bg)  # [H, W, 3]
        loss = loss_fn(image)
        total = loss
        if pull:
            drift = packed["points"][:n_anchor] - anchor0  # [A, 2]
            total = total + fidelity * pull_scale * drift.square().sum(-1).mean()
        value = float(total.detach())
        if opt is not None:
            opt.zero_grad(set_to_none=True)
            total.backward()
            opt.step()
            with torch.no_grad():
                if "widths" not in lock:
                    packed["widths"].copy_(torch.maximum(packed["widths"], min_width).clamp_(max=max_width))
                if "colors" not in lock:
                    packed["colors"].clamp_(min=0.0).copy_(torch.minimum(packed["colors"], color_max))
                    packed["colors"][fixed] = color0[fixed]
        done = it + 1
        if callback is not None and callback(Progress(done, iters, value, time.perf_counter() - start,
                                                      time_limit, image.detach(), scene)):
            stopped = done < iters
            break

    elapsed = time.perf_counter() - start
    pack.release()
    return Result(scene=scene, loss=value, iterations=done, elapsed=elapsed, stopped=stopped)


# ---- CLIPDraw and tracing ------------------------------------------------------------------------


def _prepare(scene: Optional[Scene], size: int, device) -> Scene:
    if scene is None:
        return Scene(width=size, height=size, shapes=[], background=(1.0, 1.0, 1.0, 1.0))
    return scene.to(device)


def draw(clip, prompt: str = "", scene: Optional[Scene] = None, *, negatives: Sequence[str] = (),
         negative_weight: float = 0.3, image_prompts: Sequence[torch.Tensor] = (),
         paths: Optional[int] = None, iters: int = 1000, max_width: float = MAX_WIDTH,
         fidelity: float = 1.0, lock: Sequence[str] = (), seed: Optional[int] = 0,
         augmentations: int = 4, time_limit: Optional[float] = None, size: int = 224,
         callback=None) -> Result:
    """CLIPDraw: `paths` new random strokes (default 256 on an empty canvas, 0 when the scene has
    shapes) on top of the scene's shapes, optimised so that CLIP matches `prompt` (and/or image
    prompts, [H, W, 3] in 0..1). The given shapes are pulled toward where they were by `fidelity`.
    `clip` is a guidance.Clip; the scene is copied onto its device. The result's `similarity`
    compares the start and the result on one fixed set of augmented copies."""
    from .guidance import ClipLoss
    from .render import render

    generator = torch.Generator()
    if seed is not None:
        torch.manual_seed(seed)
        generator.manual_seed(seed)
    else:
        generator.seed()
    scene = _prepare(scene, size, clip.device)
    given = len(scene.shapes)
    if paths is None:
        paths = 0 if given else 256
    scene.shapes += random_strokes(paths, scene.width, scene.height, generator, device=clip.device)
    loss = ClipLoss(clip, [prompt] if prompt else [], negatives, negative_weight, augmentations,
                    image_prompts, generator)
    # CLIP sees ~250 px of the canvas (augment shrinks bigger renders), so a big document canvas
    # is rendered at most at twice the model's input size: same picture for CLIP, far less work.
    cap = 2 * clip.image_size
    k = min(1.0, cap / max(scene.width, scene.height))
    render_size = (max(1, round(scene.width * k)), max(1, round(scene.height * k)))

    def measure():
        with torch.no_grad():
            return loss.similarity(render(scene, *render_size, background=background_rgb(scene)))

    start, start_negatives = measure()
    result = optimize(scene, loss, iters, max_width, fidelity, anchored=given, lock=lock,
                      time_limit=time_limit, callback=callback, render_size=render_size)
    end, end_negatives = measure()
    result.similarity = {"start": start, "end": end, "negatives": [
        {"prompt": q, "start": a, "end": b} for q, a, b in zip(negatives, start_negatives, end_negatives)]}
    return result


def l2_loss(target: torch.Tensor) -> Callable[[torch.Tensor], torch.Tensor]:
    """Mean squared error against a target [H, W, 3] in 0..1."""
    return lambda image: (image - target).square().mean()


def trace(target: torch.Tensor, paths: int = 64, fills: int = 16, *, iters: int = 300,
          max_width: float = 10.0, seed: Optional[int] = 0, clip=None, prompt: str = "",
          clip_weight: float = 0.1, time_limit: Optional[float] = None, callback=None,
          device=None) -> Result:
    """Fit `fills` filled blobs (painted first) and `paths` strokes to target [H, W, 3] in 0..1
    under an L2 loss, plus clip_weight x the CLIP loss of `prompt` when a clip is given."""
    generator = torch.Generator()
    if seed is not None:
        torch.manual_seed(seed)
        generator.manual_seed(seed)
    h, w, _ = target.shape
    device = device or (clip.device if clip is not None else target.device)
    target = target.to(device)
    scene = Scene(width=w, height=h, shapes=[], background=(1.0, 1.0, 1.0, 1.0))
    scene.shapes += random_blobs(fills, w, h, target.cpu(), generator, device=device)
    scene.shapes += random_strokes(paths, w, h, generator, stroke_width=3.0, colours=target.cpu(),
                                   device=device)
    loss = l2_loss(target)
    if clip is not None and prompt:
        from .guidance import ClipLoss

        clip_loss = ClipLoss(clip, [prompt], generator=generator)
        l2 = loss
        loss = lambda image: l2(image) + clip_weight * clip_loss(image)  # noqa: E731
    # Colours must travel further than in CLIPDraw (they are the whole error), so a faster lr.
    return optimize(scene, loss, iters, max_width, lock=(), time_limit=time_limit,
                    callback=callback, lr={"colors": 0.02})
