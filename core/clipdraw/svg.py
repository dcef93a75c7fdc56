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
    r, g, b, a = (float(c) for c in rgba.detach().cpu().tolist())
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
                  "stroke-linecap:round", "stroke-linejoin:round"]
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
        r, g, b, a = scene.background
        colour = "#{:02x}{:02x}{:02x}".format(*(max(0, min(255, round(c * 255))) for c in (r, g, b)))
        lines.append(f'  <rect width="{scene.width}" height="{scene.height}" fill="{colour}" '
                     f'fill-opacity="{_num(a)}"/>')
    for i, shape in enumerate(scene.shapes):
        attrs = f'id={quoteattr(shape.id)} ' if shape.id else ""
        lines.append(f'  <path {attrs}d="{path_data(shape)}" style="{shape_style(shape)}"/>')
    lines.append("</svg>")
    return "\n".join(lines) + "\n"
