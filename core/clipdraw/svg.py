"""Scenes as SVG documents (the engine's own output; the plugin writes into Inkscape with inkex)."""
from __future__ import annotations

from xml.sax.saxutils import quoteattr

from .scene import Scene, Shape


def _num(v: float) -> str:
    return f"{v:.3f}".rstrip("0").rstrip(".") if v == v else "0"


def path_data(shape: Shape) -> str:
    """SVG path data for the shape's subpaths: M, then one C per cubic segment, Z if closed."""
    parts = []
    for sp in shape.subpaths:
        pts = sp.points.detach().cpu().tolist()
        if not pts:
            continue
        cmds = [f"M {_num(pts[0][0])} {_num(pts[0][1])}"]
        ring = pts + [pts[0]] if sp.closed else pts
        for i in range(1, len(ring) - 2, 3):
            (x1, y1), (x2, y2), (x3, y3) = ring[i], ring[i + 1], ring[i + 2]
            cmds.append(f"C {_num(x1)} {_num(y1)} {_num(x2)} {_num(y2)} {_num(x3)} {_num(y3)}")
        if len(pts) == 1:  # a dot: a zero-length segment draws a round cap
            cmds.append(f"L {_num(pts[0][0])} {_num(pts[0][1])}")
        if sp.closed:
            cmds.append("Z")
        parts.append(" ".join(cmds))
    return " ".join(parts)


def _paint(rgba) -> tuple[str, str]:
    """(#rrggbb, opacity) of a straight RGBA colour: a tensor [4] or a sequence of 4 floats."""
    r, g, b, a = (float(c) for c in (rgba.detach().cpu().tolist() if hasattr(rgba, "detach") else rgba))
    to8 = lambda c: max(0, min(255, round(c * 255)))  # noqa: E731
    return f"#{to8(r):02x}{to8(g):02x}{to8(b):02x}", _num(a)


def shape_style(shape: Shape) -> str:
    props = []
    if shape.fill is not None:
        colour, opacity = _paint(shape.fill)
        props += [f"fill:{colour}", f"fill-opacity:{opacity}", f"fill-rule:{shape.fill_rule}"]
    else:
        props.append("fill:none")
    if shape.stroke is not None:
        colour, opacity = _paint(shape.stroke)
        props += [f"stroke:{colour}", f"stroke-opacity:{opacity}",
                  f"stroke-width:{_num(float(shape.stroke_width.detach()))}",
                  f"stroke-linecap:{shape.stroke_linecap}", f"stroke-linejoin:{shape.stroke_linejoin}"]
        if shape.stroke_linejoin == "miter":
            props.append(f"stroke-miterlimit:{_num(shape.stroke_miterlimit)}")
        if shape.stroke_dasharray:
            props += [f"stroke-dasharray:{','.join(_num(d) for d in shape.stroke_dasharray)}",
                      f"stroke-dashoffset:{_num(shape.stroke_dashoffset)}"]
    else:
        props.append("stroke:none")
    return ";".join(props)


def scene_to_svg(scene: Scene, width=None, height=None) -> str:
    """An SVG whose paths reproduce the scene: viewBox in canvas pixels, one path per shape."""
    width = width or scene.width
    height = height or scene.height
    lines = [
        '<?xml version="1.0" encoding="UTF-8"?>',
        f'<svg xmlns="http://www.w3.org/2000/svg" width="{width}" height="{height}" '
        f'viewBox="0 0 {scene.width} {scene.height}">',
    ]
    if scene.background is not None and scene.background[3] > 0:
        colour, opacity = _paint(scene.background)
        lines.append(f'  <rect width="{scene.width}" height="{scene.height}" fill="{colour}" '
                     f'fill-opacity="{opacity}"/>')
    for shape in scene.shapes:
        attrs = f'id={quoteattr(shape.id)} ' if shape.id else ""
        lines.append(f'  <path {attrs}d="{path_data(shape)}" style="{shape_style(shape)}"/>')
    lines.append("</svg>")
    return "\n".join(lines) + "\n"


# ---- reading: SVG -> scene (for `--init` and `score`) --------------------------------------


def svg_to_scene(source) -> Scene:
    """A scene from an SVG file path or file object, through svgelements: transforms applied,
    every segment (lines, quadratics, arcs) turned into cubics, units in px of the document's
    width and height (the canvas). As the plugin reads a document: the opacity of a shape and
    its groups folds into its colours' alpha, hidden shapes (display, visibility) are left out,
    caps, joins and dashes are kept. Shapes with neither stroke nor fill are skipped, and a first
    rectangle that covers the whole canvas with no stroke becomes the background (as scene_to_svg
    writes it)."""
    import svgelements as se
    import torch

    from .scene import SceneError, Subpath

    try:
        svg = se.SVG.parse(source, ppi=96.0)
    except Exception as e:  # svgelements raises XML and value errors of many kinds
        raise SceneError(f"cannot read SVG {source}: {type(e).__name__}: {e}") from None
    width, height = max(1, round(svg.width)), max(1, round(svg.height))
    scene = Scene(width=width, height=height, shapes=[], background=None)

    def rgba(colour, opacity):
        if colour is None or colour.value is None:
            return None
        return torch.tensor([colour.red / 255, colour.green / 255, colour.blue / 255,
                             colour.alpha / 255 * opacity], dtype=torch.float32)

    for element, opacity in _visible_shapes(svg, 1.0):
        stroke, fill = rgba(element.stroke, opacity), rgba(element.fill, opacity)
        if stroke is None and fill is None:
            continue
        if (not scene.shapes and scene.background is None and isinstance(element, se.Rect)
                and stroke is None and element.bbox() is not None):
            x0, y0, x1, y1 = element.bbox()
            if x0 <= 0.5 and y0 <= 0.5 and x1 >= width - 0.5 and y1 >= height - 0.5:
                scene.background = tuple(float(c) for c in fill)
                continue
        subpaths = _cubic_subpaths(element if isinstance(element, se.Path) else se.Path(element))
        if not subpaths:
            continue
        scene.shapes.append(Shape(
            subpaths=[Subpath(torch.tensor(pts, dtype=torch.float32), closed) for pts, closed in subpaths],
            stroke_width=torch.tensor(float(element.implicit_stroke_width or 0.0) if stroke is not None else 0.0),
            stroke=stroke,
            fill=fill,
            fill_rule="evenodd" if element.values.get("fill-rule") == "evenodd" else "nonzero",
            id=element.id,
            **_stroke_style(element),
        ))
    return scene


def _visible_shapes(group, opacity: float):
    """(svgelements shape, product of its and its groups' opacity) in paint order, leaving out
    what display or visibility hides (svgelements reads both but draws regardless)."""
    import svgelements as se

    for element in group:
        if element.values.get("display") == "none":
            continue
        own = element.values.get("attributes", {}).get("opacity")  # not inherited: the element's own
        alpha = opacity * _clamped_float(own, 1.0)
        if isinstance(element, se.Group):
            yield from _visible_shapes(element, alpha)
        elif isinstance(element, se.Shape) and element.values.get("visibility") not in ("hidden", "collapse"):
            yield element, alpha


def _clamped_float(text, default: float) -> float:
    try:
        return min(1.0, max(0.0, float(text)))
    except (TypeError, ValueError):
        return default


def _stroke_style(element) -> dict:
    """The scene's optional stroke keys from an svgelements shape (SVG's defaults where unset),
    lengths scaled as its width was by the transforms."""
    import svgelements as se

    from .scene import LINECAPS, LINEJOINS

    v = element.values
    join = {"miter-clip": "miter", "arcs": "miter"}.get(v.get("stroke-linejoin"), v.get("stroke-linejoin"))
    style = {"stroke_linecap": v.get("stroke-linecap") if v.get("stroke-linecap") in LINECAPS else "butt",
             "stroke_linejoin": join if join in LINEJOINS else "miter",
             "stroke_miterlimit": max(1.0, _float(v.get("stroke-miterlimit"), 4.0))}
    try:  # svgelements scaled the width by the transforms (its attribute is the width as written)
        written = se.Length(v.get("stroke-width", "1")).value(ppi=96.0)
        scale = element.implicit_stroke_width / written if isinstance(written, float) and written > 0 else 1.0
        dashes = [se.Length(d).value(ppi=96.0) * scale
                  for d in str(v.get("stroke-dasharray") or "none").replace(",", " ").split() if d != "none"]
    except (ValueError, TypeError):
        dashes = []
    if dashes and all(isinstance(d, float) and d >= 0 for d in dashes) and any(d > 0 for d in dashes):
        style["stroke_dasharray"] = dashes * (len(dashes) % 2 + 1)
        style["stroke_dashoffset"] = _float(v.get("stroke-dashoffset"), 0.0) * scale
    return style


def _float(text, default: float) -> float:
    try:
        return float(text)
    except (TypeError, ValueError):
        return default


def _cubic_subpaths(path) -> list:
    """[(points [[x, y], ...], closed)] of cubic chains for an svgelements Path."""
    import svgelements as se

    out, pts = [], None

    def finish(closed):
        if pts is not None and len(pts) > 1:
            if closed:
                if pts[-1] != pts[0]:  # close with a straight segment
                    pts.extend(_line(pts[-1], pts[0]))
                out.append((pts[:-1], True))
            else:
                out.append((pts, False))

    for seg in path.segments():
        if isinstance(seg, se.Move):
            finish(False)
            pts = [[seg.end.x, seg.end.y]]
            continue
        if pts is None:
            pts = [[seg.start.x, seg.start.y]]
        if isinstance(seg, se.Close):
            finish(True)
            pts = None
        elif isinstance(seg, se.CubicBezier):
            pts += [[seg.control1.x, seg.control1.y], [seg.control2.x, seg.control2.y], [seg.end.x, seg.end.y]]
        elif isinstance(seg, se.QuadraticBezier):
            p0, c, p1 = pts[-1], [seg.control.x, seg.control.y], [seg.end.x, seg.end.y]
            pts += [_lerp(p0, c, 2 / 3), _lerp(p1, c, 2 / 3), p1]
        elif isinstance(seg, se.Arc):
            for cubic in seg.as_cubic_curves():
                pts += [[cubic.control1.x, cubic.control1.y], [cubic.control2.x, cubic.control2.y],
                        [cubic.end.x, cubic.end.y]]
        elif isinstance(seg, se.Line):  # Line (and svgelements' lines of other kinds)
            pts += _line(pts[-1], [seg.end.x, seg.end.y])
    finish(False)
    return [(p, c) for p, c in out if (len(p) % 3 == 0 if c else (len(p) - 1) % 3 == 0)]


def _lerp(a, b, t: float) -> list:
    return [a[0] + (b[0] - a[0]) * t, a[1] + (b[1] - a[1]) * t]


def _line(a, b) -> list:
    """The three points that continue a cubic chain from a with a straight segment to b."""
    return [_lerp(a, b, 1 / 3), _lerp(a, b, 2 / 3), list(b)]
