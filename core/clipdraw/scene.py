"""The scene: the one data structure that crosses every boundary (see DESIGN.md).

JSON (version 1) on the outside, torch tensors on the inside. Coordinates are canvas pixels,
x right, y down. A subpath is a chain of cubic Bezier segments: open with n segments has 3n+1
points, closed has 3n points and its last segment ends at points[0].
"""
from __future__ import annotations

import json
import math
from dataclasses import dataclass, field
from pathlib import Path
from typing import Optional, Sequence

import torch

FORMAT = "clipdraw-scene"
VERSION = 1
FILL_RULES = ("nonzero", "evenodd")
LINECAPS = ("round", "butt", "square")
LINEJOINS = ("round", "miter", "bevel")
# Optional stroke keys, SVG's names and meanings; absent means CLIPDraw's round caps and joins,
# solid. to_dict writes them only where they differ, so version-1 scenes round-trip unchanged.
STROKE_STYLE_DEFAULTS = {"stroke_linecap": "round", "stroke_linejoin": "round",
                         "stroke_miterlimit": 4.0, "stroke_dasharray": None, "stroke_dashoffset": 0.0}
# Optional limits on what the optimizer may do to a shape's paints, for shapes from a document:
# alpha_max caps both paints' alpha (the opacity of the element and its groups, which the
# document multiplies in); fixed_paints ("stroke", "fill") keep their colour (a gradient, a
# pattern or currentColor stands there, which a flat colour must not replace).
PAINT_LIMIT_DEFAULTS = {"alpha_max": 1.0, "fixed_paints": []}
PAINTS = ("stroke", "fill")


# float32 spaces its values 2 px apart beyond 2^24: a point farther out cannot be placed to the
# pixel, so a scene refuses it (and the renderer clamps what is built in Python without checks)
MAX_COORDINATE = float(2**24)


class SceneError(ValueError):
    """A scene that does not follow the format; the message names the shape and the field."""


@dataclass
class Subpath:
    points: torch.Tensor  # float32 [K, 2]
    closed: bool = False

    @property
    def num_segments(self) -> int:
        k = self.points.shape[0]
        return k // 3 if self.closed else (k - 1) // 3


@dataclass
class Shape:
    subpaths: list[Subpath]
    stroke_width: torch.Tensor  # float32 0-d, full SVG width in canvas pixels
    stroke: Optional[torch.Tensor] = None  # float32 [4], straight RGBA in 0..1
    fill: Optional[torch.Tensor] = None  # float32 [4]
    fill_rule: str = "nonzero"
    id: Optional[str] = None
    stroke_linecap: str = "round"
    stroke_linejoin: str = "round"
    stroke_miterlimit: float = 4.0  # SVG's: a miter longer than this x the width becomes a bevel
    stroke_dasharray: Optional[list[float]] = None  # canvas pixels, on/off lengths; None = solid
    stroke_dashoffset: float = 0.0
    alpha_max: float = 1.0
    fixed_paints: list[str] = field(default_factory=list)


@dataclass
class Scene:
    width: int
    height: int
    shapes: list[Shape] = field(default_factory=list)
    background: Optional[tuple[float, float, float, float]] = (1.0, 1.0, 1.0, 1.0)

    # ---- dict / JSON ----------------------------------------------------------------------

    @classmethod
    def from_dict(cls, d: dict, device=None) -> "Scene":
        """Validate a scene dict and turn it into tensors (float32, on `device`)."""
        if not isinstance(d, dict):
            raise SceneError(f"a scene must be a JSON object, got {type(d).__name__}")
        if d.get("format") != FORMAT:
            raise SceneError(f"format: expected {FORMAT!r}, got {d.get('format')!r}")
        if d.get("version") != VERSION:
            raise SceneError(f"version: this engine reads version {VERSION}, got {d.get('version')!r}")
        width = _size(d, "width")
        height = _size(d, "height")
        background = d.get("background", (1, 1, 1, 1))
        if background is not None:
            background = tuple(float(v) for v in _colour(background, "background"))
        if "shapes" not in d:
            raise SceneError("shapes: missing")
        if not isinstance(d["shapes"], list):
            raise SceneError("shapes: must be a list")
        shapes = [_shape_from_dict(s, i, device) for i, s in enumerate(d["shapes"])]
        return cls(width=width, height=height, shapes=shapes, background=background)

    def to_dict(self) -> dict:
        return {
            "format": FORMAT,
            "version": VERSION,
            "width": self.width,
            "height": self.height,
            "background": None if self.background is None else [float(v) for v in self.background],
            "shapes": [_shape_to_dict(s) for s in self.shapes],
        }

    @classmethod
    def from_json(cls, text: str, device=None) -> "Scene":
        try:
            d = json.loads(text)
        except json.JSONDecodeError as e:
            raise SceneError(f"not valid JSON: {e}") from None
        return cls.from_dict(d, device=device)

    def to_json(self, indent: Optional[int] = None) -> str:
        return json.dumps(self.to_dict(), indent=indent)

    @classmethod
    def load(cls, path, device=None) -> "Scene":
        try:
            text = Path(path).read_text(encoding="utf-8")
        except OSError as e:
            raise SceneError(f"cannot read scene file {path}: {e.strerror or e}") from None
        try:
            return cls.from_json(text, device=device)
        except SceneError as e:
            raise SceneError(f"{path}: {e}") from None

    def save(self, path) -> None:
        Path(path).write_text(self.to_json(indent=1), encoding="utf-8")

    # ---- tensors --------------------------------------------------------------------------

    @property
    def device(self) -> torch.device:
        for shape in self.shapes:
            return shape.stroke_width.device
        return torch.device("cpu")

    def to(self, device) -> "Scene":
        """A copy of the scene with every tensor on `device` (detached)."""
        return Scene.from_dict(self.to_dict(), device=device)

    def clone(self) -> "Scene":
        return self.to(self.device)


# ---- validation helpers -------------------------------------------------------------------


MAX_SIZE = 16384  # the widest and tallest canvas, in px


def _size(d: dict, key: str) -> int:
    if key not in d:
        raise SceneError(f"{key}: missing")
    v = d[key]
    if isinstance(v, bool) or not isinstance(v, (int, float)) or v != int(v) or not 1 <= v <= MAX_SIZE:
        raise SceneError(f"{key}: must be a whole number of pixels from 1 to {MAX_SIZE}, got {v!r}")
    return int(v)


def _finite_numbers(values, where: str) -> list:
    out = []
    for v in values:
        if isinstance(v, bool) or not isinstance(v, (int, float)):
            raise SceneError(f"{where}: expected numbers, got {v!r}")
        if not math.isfinite(v):
            raise SceneError(f"{where}: {v!r} is not a finite number")
        out.append(float(v))
    return out


def _colour(value, where: str) -> list:
    if not isinstance(value, (list, tuple)) or len(value) != 4:
        raise SceneError(f"{where}: a colour is [r, g, b, a] in 0..1 or null, got {value!r}")
    rgba = _finite_numbers(value, where)
    if any(not 0.0 <= c <= 1.0 for c in rgba):
        raise SceneError(f"{where}: colour channels must lie in 0..1, got {value!r}")
    return rgba


def _shape_from_dict(s, i: int, device) -> Shape:
    if not isinstance(s, dict):
        raise SceneError(f"shape {i}: must be an object")
    sid = s.get("id")
    name = f"shape {i}" + (f" (id {sid!r})" if sid is not None else "")
    for key in ("subpaths", "stroke", "stroke_width", "fill"):
        if key not in s:
            raise SceneError(f"{name}: {key}: missing")
    if sid is not None and not isinstance(sid, str):
        raise SceneError(f"{name}: id: must be a string or null")
    if not isinstance(s["subpaths"], list):
        raise SceneError(f"{name}: subpaths: must be a list")
    subpaths = [_subpath_from_dict(sp, f"{name}: subpaths[{j}]", device)
                for j, sp in enumerate(s["subpaths"])]
    width = s["stroke_width"]
    if isinstance(width, bool) or not isinstance(width, (int, float)) or not math.isfinite(width):
        raise SceneError(f"{name}: stroke_width: must be a finite number, got {width!r}")
    if width < 0:
        raise SceneError(f"{name}: stroke_width: must not be negative, got {width!r}")
    if width > MAX_COORDINATE:
        raise SceneError(f"{name}: stroke_width: at most {MAX_COORDINATE:.0f} px, got {width!r}")
    stroke = None if s["stroke"] is None else _colour(s["stroke"], f"{name}: stroke")
    fill = None if s["fill"] is None else _colour(s["fill"], f"{name}: fill")
    fill_rule = s.get("fill_rule", "nonzero")
    if fill_rule not in FILL_RULES:
        raise SceneError(f"{name}: fill_rule: must be one of {FILL_RULES}, got {fill_rule!r}")
    f32 = dict(dtype=torch.float32, device=device)
    return Shape(
        subpaths=subpaths,
        stroke_width=torch.tensor(float(width), **f32),
        stroke=None if stroke is None else torch.tensor(stroke, **f32),
        fill=None if fill is None else torch.tensor(fill, **f32),
        fill_rule=fill_rule,
        id=sid,
        **_stroke_style_from_dict(s, name),
        **_paint_limits_from_dict(s, name),
    )


def _paint_limits_from_dict(s: dict, name: str) -> dict:
    (alpha_max,) = _finite_numbers([s.get("alpha_max", 1.0)], f"{name}: alpha_max")
    if not 0.0 <= alpha_max <= 1.0:
        raise SceneError(f"{name}: alpha_max: must lie in 0..1, got {alpha_max!r}")
    fixed = s.get("fixed_paints", [])
    if not isinstance(fixed, list) or any(p not in PAINTS for p in fixed):
        raise SceneError(f"{name}: fixed_paints: a list of {PAINTS}, got {fixed!r}")
    return dict(alpha_max=alpha_max, fixed_paints=list(fixed))


def _stroke_style_from_dict(s: dict, name: str) -> dict:
    style = {k: s.get(k, v) for k, v in STROKE_STYLE_DEFAULTS.items()}
    if style["stroke_linecap"] not in LINECAPS:
        raise SceneError(f"{name}: stroke_linecap: must be one of {LINECAPS}, got {style['stroke_linecap']!r}")
    if style["stroke_linejoin"] not in LINEJOINS:
        raise SceneError(f"{name}: stroke_linejoin: must be one of {LINEJOINS}, got {style['stroke_linejoin']!r}")
    (limit,) = _finite_numbers([style["stroke_miterlimit"]], f"{name}: stroke_miterlimit")
    if limit < 1:
        raise SceneError(f"{name}: stroke_miterlimit: must be at least 1 (as in SVG), got {limit!r}")
    (offset,) = _finite_numbers([style["stroke_dashoffset"]], f"{name}: stroke_dashoffset")
    dash = style["stroke_dasharray"]
    if dash is not None:
        if not isinstance(dash, (list, tuple)):
            raise SceneError(f"{name}: stroke_dasharray: a list of lengths or null, got {dash!r}")
        dash = _finite_numbers(dash, f"{name}: stroke_dasharray")
        if any(d < 0 for d in dash) or not any(d > 0 for d in dash):
            raise SceneError(f"{name}: stroke_dasharray: lengths must not be negative and not all 0, got {dash!r}")
        if len(dash) % 2:  # SVG repeats an odd list to make it even
            dash = dash * 2
    return dict(stroke_linecap=style["stroke_linecap"], stroke_linejoin=style["stroke_linejoin"],
                stroke_miterlimit=limit, stroke_dasharray=dash, stroke_dashoffset=offset)


def _subpath_from_dict(sp, where: str, device) -> Subpath:
    if not isinstance(sp, dict):
        raise SceneError(f"{where}: must be an object with points and closed")
    if "points" not in sp:
        raise SceneError(f"{where}: points: missing")
    closed = sp.get("closed", False)
    if not isinstance(closed, bool):
        raise SceneError(f"{where}: closed: must be true or false, got {closed!r}")
    pts = sp["points"]
    if not isinstance(pts, list) or any(not isinstance(p, (list, tuple)) or len(p) != 2 for p in pts):
        raise SceneError(f"{where}: points: must be a list of [x, y] pairs")
    k = len(pts)
    if closed and (k < 3 or k % 3 != 0):
        raise SceneError(f"{where}: points: a closed subpath with n segments has 3n points (n >= 1), got {k}")
    if not closed and (k < 1 or (k - 1) % 3 != 0):
        raise SceneError(f"{where}: points: an open subpath with n segments has 3n+1 points, got {k}")
    flat = _finite_numbers((c for p in pts for c in p), f"{where}: points")
    far = next((c for c in flat if abs(c) > MAX_COORDINATE), None)
    if far is not None:
        raise SceneError(f"{where}: points: {far!r} is too far from the canvas (at most {MAX_COORDINATE:.0f} px "
                         "either way)")
    points = torch.tensor(flat, dtype=torch.float32, device=device).reshape(k, 2)
    return Subpath(points=points, closed=closed)


def _floats(t: Optional[torch.Tensor]) -> Optional[list]:
    return None if t is None else t.detach().cpu().tolist()


def _shape_to_dict(shape: Shape) -> dict:
    return {
        "id": shape.id,
        "subpaths": [{"points": _floats(sp.points), "closed": sp.closed} for sp in shape.subpaths],
        "stroke": _floats(shape.stroke),
        "stroke_width": float(shape.stroke_width.detach()),
        "fill": _floats(shape.fill),
        "fill_rule": shape.fill_rule,
        **{k: getattr(shape, k) for k, v in {**STROKE_STYLE_DEFAULTS, **PAINT_LIMIT_DEFAULTS}.items()
           if getattr(shape, k) != v},
    }


def make_shape(subpaths: Sequence[Subpath], stroke=None, stroke_width=2.0, fill=None,
               fill_rule="nonzero", id=None, device=None, **stroke_style) -> Shape:
    """A shape from plain numbers (convenience for code that builds scenes); stroke_style takes
    the optional keys of STROKE_STYLE_DEFAULTS (stroke_linecap="butt", ...)."""
    f32 = dict(dtype=torch.float32, device=device)
    return Shape(
        subpaths=list(subpaths),
        stroke_width=torch.tensor(float(stroke_width), **f32),
        stroke=None if stroke is None else torch.as_tensor(stroke, **f32),
        fill=None if fill is None else torch.as_tensor(fill, **f32),
        fill_rule=fill_rule,
        id=id,
        **stroke_style,
    )
