"""The bridge between an Inkscape document and a CLIPDraw scene (DESIGN.md, "The scene").

Reading: the selected shapes, also inside selected groups and layers, become cubic subpaths in
canvas pixels with straight RGBA colours (every opacity folded into alpha, the groups' opacity
as the alpha's cap; a gradient or pattern as its mean colour, fixed), full stroke widths, and
their caps, joins and dashes.
Mapping: one uniform scale and translation takes the selection's visual bounding box as Inkscape
measures it (or the page) into the square canvas with a margin, and its inverse takes the
engine's reply back.
Writing: reply shapes go back to the elements they came from, changing only what the engine
changed; new strokes go into a new group clipped to the canvas.

inkex and the standard library only: this runs under Inkscape's own Python.
"""
import colorsys
import math
import os
import re
import tempfile

import inkex
import inkex.command
from lxml import etree
from inkex import Transform
from inkex.paths import Curve, Line, Move, ZoneClose

MARGIN = 0.05  # fraction of the canvas left empty on each side of the drawing
SHAPES = (
    inkex.PathElement, inkex.Rectangle, inkex.Circle, inkex.Ellipse,
    inkex.Line, inkex.Polyline, inkex.Polygon,
)
SKIPPED = {inkex.TextElement: "text", inkex.FlowRoot: "text", inkex.Image: "image", inkex.Use: "clone"}
# attributes that hold a basic shape's geometry: gone once the shape becomes a <path>
GEOMETRY = ("x", "y", "width", "height", "rx", "ry", "cx", "cy", "r", "x1", "y1", "x2", "y2", "points")
SAME = 1e-4  # canvas px / colour units: a reply value this close to what was sent is unchanged
# the scene's optional stroke keys and their defaults (the engine's scene.py; not importable here)
STROKE_DEFAULTS = {"stroke_linecap": "round", "stroke_linejoin": "round", "stroke_miterlimit": 4.0,
                   "stroke_dasharray": None, "stroke_dashoffset": 0.0}


class Item:
    """One drawable element: its geometry in document user units and its folded-in paint."""

    def __init__(self, element):
        self.element = element
        self.transform = element.composed_transform()  # element -> document user units
        style = element.specified_style()
        opacity = group_opacity(element)
        self.opacity = opacity  # what the element and its ancestors multiply every alpha by
        self.stroke_paint = style("stroke")
        self.fill_paint = style("fill")
        # name -> RGBA the engine sees; paints that are no flat colour keep their reference
        self.rgba, self.fixed, self.colour_alpha = {}, [], {}
        for name in ("stroke", "fill"):
            paint, raw = style(name), str(style.get(name) or "").strip()
            if isinstance(paint, inkex.Color) and raw.lower() != "currentcolor":
                paint, self.colour_alpha[name] = css_colour(raw, paint)
            else:
                self.colour_alpha[name] = 1.0
                if paint is not None and not isinstance(paint, str):
                    self.fixed.append(name)  # gradient, pattern, swatch, currentColor
            alpha = self.colour_alpha[name] * style(name + "-opacity") * opacity
            self.rgba[name] = paint_rgba(paint, alpha)
        self.stroke, self.fill = self.rgba["stroke"], self.rgba["fill"]
        self.fill_rule = style("fill-rule") or "nonzero"
        # a stroke is as wide as the transform scales areas: sqrt|det| (exact for similarities)
        self.scale = math.sqrt(abs(self.transform.a * self.transform.d - self.transform.b * self.transform.c))
        self.width_local = inkex.units.convert_unit(str(style.get("stroke-width", "1")), "px") or 0.0
        self.width = self.width_local * self.scale  # document user units
        self.stroke_style = stroke_style(style)  # lengths in the element's units
        self.path = element.path.to_absolute()

    def visual_box(self):
        """Bounding box in document user units, widened by half the stroke."""
        box = self.path.transform(self.transform).bounding_box()
        if box is None:
            return None
        half = self.width / 2 if self.stroke is not None else 0.0
        return inkex.BoundingBox((box.left - half, box.right + half), (box.top - half, box.bottom + half))


def css_colour(raw, parsed):
    """(inkex.Color, alpha) of a CSS colour that inkex parsed as `parsed`.

    inkex (1.2 and 1.4) reads 8-digit hex as another colour and converts hsl()/hsla() wrongly,
    so those two forms are taken apart here; rgb()/rgba()/names stay inkex's.
    """
    hex8 = re.fullmatch(r"#([0-9a-fA-F]{6})([0-9a-fA-F]{2})", raw)
    if hex8:
        return inkex.Color("#" + hex8.group(1)), int(hex8.group(2), 16) / 255
    hsl = re.fullmatch(r"hsla?\(\s*([-\d.]+)(?:deg)?[\s,]+([\d.]+)%[\s,]+([\d.]+)%(?:[\s,/]+([\d.]+)(%?))?\s*\)", raw)
    if hsl:
        h, s, lightness, a, percent = hsl.groups()
        rgb = colorsys.hls_to_rgb(float(h) / 360 % 1, float(lightness) / 100, float(s) / 100)
        alpha = 1.0 if a is None else float(a) / (100 if percent else 1)
        return inkex.Color([int(round(c * 255)) for c in rgb]), min(1.0, alpha)
    return inkex.Color(list(parsed.to_rgb())), float(getattr(parsed, "alpha", 1.0))


def stroke_style(style):
    """SVG's caps, joins, miter limit and dashes (lengths in the element's units) as the scene's
    optional keys, only those that differ from the scene's defaults (CLIPDraw's round, solid)."""
    cap = style("stroke-linecap")
    join = {"miter-clip": "miter", "arcs": "miter"}.get(style("stroke-linejoin"), style("stroke-linejoin"))
    keys = {"stroke_linecap": cap if cap in ("butt", "square", "round") else "butt",
            "stroke_linejoin": join if join in ("miter", "bevel", "round") else "miter",
            "stroke_miterlimit": max(1.0, float(style("stroke-miterlimit") or 4))}
    dashes = [float(d) for d in (style("stroke-dasharray") or [])]
    if dashes and all(d >= 0 for d in dashes) and any(d > 0 for d in dashes):
        keys["stroke_dasharray"] = dashes
        keys["stroke_dashoffset"] = inkex.units.convert_unit(str(style("stroke-dashoffset") or 0), "px") or 0.0
    return {k: v for k, v in keys.items() if STROKE_DEFAULTS.get(k) != v}


def group_opacity(element):
    """Product of `opacity` over the element and its ancestors (opacity is not inherited)."""
    value = 1.0
    node = element
    while isinstance(node, inkex.BaseElement):
        value *= node.cascaded_style()("opacity")
        node = node.getparent()
    return value


def paint_rgba(paint, alpha):
    """An inkex paint (Color, gradient or pattern element, or None) as straight RGBA in 0..1, or None."""
    if paint is None or isinstance(paint, str):  # none, context-fill, context-stroke
        return None
    if isinstance(paint, inkex.Color):
        rgb = [c / 255.0 for c in list(paint.to_rgb())[:3]]
        return rgb + [alpha]
    # a gradient or pattern: its mean stop (or pattern content) colour stands in for it
    if isinstance(paint, inkex.Pattern):
        colours = [Item(e).rgba[name] for e in gradient_stops(paint) for name in ("fill", "stroke")]
    else:
        colours = [paint_rgba(s.specified_style()("stop-color"), s.specified_style()("stop-opacity"))
                   for s in gradient_stops(paint)]
    colours = [c for c in colours if c is not None] or [[0.5, 0.5, 0.5, 1.0]]
    mean = [sum(c[i] for c in colours) / len(colours) for i in range(4)]
    return mean[:3] + [mean[3] * alpha]


def gradient_stops(paint):
    """The <stop>s of a gradient, or the shapes of a pattern, following xlink:href chains
    (Inkscape's habit: the content lives in the element referred to)."""
    wanted = SHAPES if isinstance(paint, inkex.Pattern) else (inkex.Stop,)
    for _ in range(8):
        found = [node for node in paint.iterdescendants() if isinstance(node, wanted)]
        if found:
            return found
        paint = paint.href if hasattr(paint, "href") else None
        if paint is None:
            return []
    return []


def is_hidden(element):
    """display:none on the element or an ancestor, or visibility hidden/collapse."""
    if element.specified_style()("visibility") in ("hidden", "collapse"):
        return True
    node = element
    while isinstance(node, inkex.BaseElement):
        if node.cascaded_style().get("display") == "none":
            return True
        node = node.getparent()
    return False


def collect(svg, selected):
    """Drawable elements among `selected` and their descendants, in document (paint) order.

    Returns (items, skipped, unlinked): skipped counts what could not be read, by kind
    ("text": 2). Clones are unlinked into copies (inkex can), so they are drawable like the rest;
    `unlinked` lists the (clone, copy) pairs so that `relink` can put back those left unchanged.
    """
    found = {}
    skipped = {}
    unlinked = []
    for element in selected:
        for node in list(rendered(element)):
            if isinstance(node, inkex.Use) and node.href is not None and node.getparent() is not None:
                use, node = node, unlink(node)
                unlinked.append((use, node))
                for sub in node.descendants():
                    if isinstance(sub, SHAPES):
                        found[sub] = None
                continue
            if isinstance(node, SHAPES):
                found[node] = None
            else:
                for kind, name in SKIPPED.items():
                    if isinstance(node, kind):
                        skipped[name] = skipped.get(name, 0) + 1
    order = {node: i for i, node in enumerate(svg.iter())}
    elements = sorted((e for e in found if e in order and not is_hidden(e)), key=order.get)
    return [Item(e) for e in elements], skipped, unlinked


class Snapshot:
    """Every element's attributes as they were read, to put back what was not meant to change.

    inkex normalises an attribute when it is merely read (`.transform`, `.style`) and gives
    ids to elements whose style it looks up; restoring undoes all that, so content outside the
    selection, and attributes the engine did not change, stay byte for byte as they were.
    """

    def __init__(self, svg):
        self.attrib = {node: dict(node.attrib) for node in svg.iter() if isinstance(node, inkex.BaseElement)}

    def original(self, element):
        return self.attrib.get(element, dict(element.attrib))

    def restore(self, written=None):
        """Put every attribute back, except the (element -> names) in `written`."""
        written = written or {}
        for node, attrib in self.attrib.items():
            keep = written.get(node, ())
            for key in [k for k in node.attrib if k not in attrib and k not in keep]:
                del node.attrib[key]
            for key, value in attrib.items():  # raw lxml access: inkex's get/set normalise too
                if key not in keep and node.attrib.get(key) != value:
                    node.attrib[key] = value


def relink(unlinked, changed):
    """Put back the clones whose copies hold no element in `changed` (document unchanged)."""
    for use, copy in unlinked:
        if copy.getparent() is not None and not any(node in changed for node in copy.descendants()):
            copy.getparent().replace(copy, use)


UNRENDERED = (inkex.Defs, inkex.ClipPath, inkex.Mask, inkex.Marker, inkex.Symbol, inkex.Pattern,
              inkex.Metadata, inkex.NamedView)


def rendered(element):
    """The element and its descendants, in document order, leaving out what is never drawn
    directly (defs, clip paths, masks, markers, symbols, patterns)."""
    if isinstance(element, UNRENDERED):
        return
    yield element
    for child in element:
        if isinstance(child, inkex.BaseElement):
            yield from rendered(child)


def unlink(use):
    """Replace a clone by a copy of what it shows, keeping the clone's id, place and transform."""
    copy = use.href.copy()
    if isinstance(copy, inkex.Symbol):
        group = inkex.Group()
        group.extend(list(copy))
        copy = group
    x = inkex.units.convert_unit(use.get("x", "0"), "px")
    y = inkex.units.convert_unit(use.get("y", "0"), "px")
    copy.transform = use.transform @ Transform(translate=(x, y)) @ copy.transform
    style = inkex.Style(use.attrib.get("style", ""))
    style.update(inkex.Style(copy.attrib.get("style", "")))
    copy.attrib["style"] = str(style)
    copy.attrib["id"] = use.get("id")
    use.getparent().replace(use, copy)
    for node in list(copy.descendants())[1:]:  # ids must stay unique in the document
        node.attrib.pop("id", None)
        node.set_random_id(prefix=copy.get("id") + "-")
    return copy


def page_box(svg):
    """The page in document user units (the viewBox)."""
    x, y, w, h = svg.get_viewbox()
    if not w or not h:
        w = svg.unittouu(svg.get("width", "100")) or 100.0
        h = svg.unittouu(svg.get("height", "100")) or 100.0
    return inkex.BoundingBox((x, x + w), (y, y + h))


def inkscape_boxes(svg, ids):
    """{id: visual bounding box in document user units} of the elements `ids`, as Inkscape itself
    draws them (text measured, clip paths applied): `inkscape --query-all` on a copy of the
    document. Works inside a running Inkscape and headless; {} when Inkscape cannot be asked."""
    with tempfile.TemporaryDirectory(prefix="clipdraw") as folder:
        copy = os.path.join(folder, "document.svg")
        with open(copy, "wb") as f:
            f.write(etree.tostring(svg.getroottree()))
        try:
            out = inkex.command.inkscape(copy, "--query-all")
        except Exception:  # no inkscape on PATH, or it failed: the caller falls back to inkex's boxes
            return {}
    x0, y0 = svg.get_viewbox()[:2]
    scale = svg.scale or 1.0  # px per user unit: Inkscape answers in px from the page's corner
    boxes = {}
    for line in str(out).splitlines():
        fields = line.strip().split(",")
        if len(fields) == 5 and fields[0] in ids:
            try:
                x, y, w, h = (float(v) / scale for v in fields[1:])
            except ValueError:
                continue
            boxes[fields[0]] = inkex.BoundingBox((x0 + x, x0 + x + w), (y0 + y, y0 + y + h))
    return boxes


def selection_box(svg, selected, items):
    """The selection's visual bounding box as Inkscape draws it; inkex's estimate (the items'
    boxes, else the selection's) where Inkscape cannot be asked. None without a selection."""
    ids = {element.get("id") for element in selected if element.get("id")}
    boxes = inkscape_boxes(svg, ids) if ids else {}
    box = union(boxes.values()) or union(item.visual_box() for item in items)
    return box or (svg.selection.bounding_box() if selected else None)


def clip_to_canvas(group, canvas, svg):
    """Clip `group` to the canvas square, so that the document shows what CLIP saw."""
    to_local = -group.composed_transform() @ canvas.to_document
    corners = [to_local.apply_to_point(p) for p in ((0, 0), (canvas.size, 0), (canvas.size, canvas.size), (0, canvas.size))]
    square = inkex.PathElement()
    square.set("d", path_data(inkex.Path([Move(corners[0].x, corners[0].y)] +
                                         [Line(p.x, p.y) for p in corners[1:]] + [ZoneClose()])))
    clip = inkex.ClipPath()
    clip.set("id", svg.get_unique_id("clipdraw-canvas"))
    clip.append(square)
    svg.defs.append(clip)
    group.set("clip-path", clip.get_id(as_url=2))


def union(boxes):
    box = None
    for b in boxes:
        if b is not None:
            box = b if box is None else box + b
    return box


class Canvas:
    """document user units -> square canvas pixels: the box centred, with a margin, uniformly."""

    def __init__(self, box, size, margin=MARGIN):
        self.size = int(size)
        extent = max(box.width, box.height)
        if not extent > 0:
            extent = 1.0
        self.scale = size * (1 - 2 * margin) / extent  # canvas px per user unit
        cx, cy = box.center
        self.to_canvas = Transform(translate=(size / 2, size / 2)) @ Transform(scale=self.scale) @ \
            Transform(translate=(-cx, -cy))
        self.to_document = -self.to_canvas


# ---- document -> scene ----------------------------------------------------------------------


def closed_flags(path):
    """Which subpaths of an inkex.Path end in Z, in order (one per moveto)."""
    flags = []
    for cmd in path:
        if cmd.letter in "Mm" or not flags:
            flags.append(False)
        if cmd.letter in "Zz":
            flags[-1] = True
    return flags


def superpath_to_subpaths(csp, closed):
    """inkex CubicSuperPath ([[c_in, p, c_out], ...] per subpath) -> scene subpaths.

    inkex closes a subpath with a last node back on its first; the scene's closed subpath has
    3n points and its last segment ends at points[0], so that node is dropped and its incoming
    control point (the closing segment's c1) kept.
    """
    subpaths = []
    for nodes, is_closed in zip(csp, list(closed) + [False] * len(csp)):
        nodes = [list(map(list, node)) for node in nodes]
        if not nodes:
            continue
        if is_closed:  # a Z after a segment that already ended at the start adds a zero-length one
            while len(nodes) > 2 and all(close(p, nodes[0][1]) for p in (nodes[-1][0], nodes[-1][1], nodes[-2][1], nodes[-2][2])):
                nodes.pop()
        is_closed = is_closed and len(nodes) > 2 and close(nodes[-1][1], nodes[0][1])
        if is_closed:
            last = nodes.pop()
            nodes[0][0] = last[0]
        points = [nodes[0][1]]
        for prev, node in zip(nodes, nodes[1:]):
            points += [prev[2], node[0], node[1]]
        if is_closed:
            points += [nodes[-1][2], nodes[0][0]]
        if len(points) == 1:  # a lone moveto: a zero-length segment keeps round caps visible
            points = points * 4
        subpaths.append({"points": points, "closed": is_closed})
    return subpaths


def close(a, b, tol=1e-9):
    return abs(a[0] - b[0]) <= tol and abs(a[1] - b[1]) <= tol


def item_to_shape(item, canvas):
    """One element as a scene shape (canvas pixels)."""
    to_canvas = canvas.to_canvas @ item.transform
    csp = item.path.to_superpath().transform(to_canvas)
    shape = {
        "id": item.element.get("id"),
        "subpaths": superpath_to_subpaths(csp, closed_flags(item.path)),
        "stroke": item.stroke,
        "stroke_width": item.width * canvas.scale,
        "fill": item.fill,
        "fill_rule": item.fill_rule if item.fill_rule in ("nonzero", "evenodd") else "nonzero",
        **item.stroke_style,
    }
    scale = item.scale * canvas.scale  # element units -> canvas px
    if "stroke_dasharray" in shape:
        shape["stroke_dasharray"] = [d * scale for d in shape["stroke_dasharray"]]
        shape["stroke_dashoffset"] = shape.get("stroke_dashoffset", 0.0) * scale
    if item.opacity < 1:
        shape["alpha_max"] = item.opacity  # the groups' opacity stays: what is written back is what was optimized
    if item.fixed:
        shape["fixed_paints"] = list(item.fixed)
    return shape


def scene_of(items, canvas, background=(1, 1, 1, 1)):
    """The scene of `items` (those with any geometry), and those items, in the same order."""
    pairs = [(item, item_to_shape(item, canvas)) for item in items]
    pairs = [(item, shape) for item, shape in pairs if shape["subpaths"]]
    scene = {"format": "clipdraw-scene", "version": 1, "width": canvas.size, "height": canvas.size,
             "background": list(background), "shapes": [shape for _, shape in pairs]}
    return scene, [item for item, _ in pairs]


# ---- scene -> document ----------------------------------------------------------------------


def subpaths_to_path(subpaths, transform):
    """Scene subpaths (canvas px) -> inkex.Path through `transform` (canvas -> element units)."""
    commands = []
    for sub in subpaths:
        pts = [transform.apply_to_point(p) for p in sub["points"]]
        if not pts:
            continue
        commands.append(Move(pts[0].x, pts[0].y))
        ends = pts[3::3] + ([pts[0]] if sub.get("closed") else [])
        for i, end in enumerate(ends):
            c0, c1 = pts[3 * i + 1], pts[3 * i + 2]
            commands.append(Curve(c0.x, c0.y, c1.x, c1.y, end.x, end.y))
        if sub.get("closed"):
            commands.append(ZoneClose())
    return inkex.Path(commands)


def path_data(path):
    """`d` with 10 significant digits: inkex's default 6 loses 1e-3 at coordinates over 1000."""
    return " ".join((cmd.letter + " " + " ".join(f"{a:.10g}" for a in cmd.args)).strip() for cmd in path)


def differs(a, b, tol=SAME):
    if a is None or b is None:
        return (a is None) != (b is None)
    return any(abs(x - y) > tol for x, y in zip(a, b))


def shape_changed(sent, got):
    """Whether the engine changed anything of a shape that write_in_place would write."""
    return (geometry_differs(sent, got) or differs(sent["stroke"], got.get("stroke"))
            or differs(sent["fill"], got.get("fill"))
            or abs(float(got.get("stroke_width", 0)) - sent["stroke_width"]) > SAME)


def geometry_differs(sent, got):
    if len(sent["subpaths"]) != len(got["subpaths"]):
        return True
    for s, g in zip(sent["subpaths"], got["subpaths"]):
        if s.get("closed") != g.get("closed") or len(s["points"]) != len(g["points"]):
            return True
        if any(differs(p, q) for p, q in zip(s["points"], g["points"])):
            return True
    return False


def colour(rgba):
    return str(inkex.Color([int(round(max(0.0, min(1.0, c)) * 255)) for c in rgba[:3]]))


def alpha_value(a):
    return f"{max(0.0, min(1.0, a)):.6g}"


# attributes from which Inkscape rebuilds `d` on reading: a live path effect, a shape tool's
# parameters. A refined path drops them (it is a plain path now), or its refinement snaps back.
REBUILDS_D = ("inkscape:path-effect", "inkscape:original-d", "sodipodi:type")


def write_in_place(item, sent, got, canvas, snapshot):
    """Change only what the engine changed: path data, and stroke/fill/width style properties.

    The element keeps its id, other attributes, transform and place; a basic shape that moved
    becomes a <path> with the same id. A paint that is no flat colour (gradient, pattern,
    currentColor) keeps its reference, caps, joins and dashes stay as they are. Returns
    (element now in the document, names of the attributes written), or (None, ()) when the
    engine changed nothing.
    """
    element = item.element
    original = snapshot.original(element)
    style = inkex.Style(original.get("style", ""))
    written = set()
    if geometry_differs(sent, got):
        to_local = -(canvas.to_canvas @ item.transform)
        d = path_data(subpaths_to_path(got["subpaths"], to_local))
        if not isinstance(element, inkex.PathElement):
            element = as_path_element(element, original)
        element.set("d", d)
        written.add("d")
        for name in REBUILDS_D:
            key = inkex.addNS(*reversed(name.split(":")))
            if key in element.attrib:
                del element.attrib[key]
                written.add(key)
    for name in ("stroke", "fill"):
        sent_rgba, got_rgba = sent[name], got.get(name)
        if name in item.fixed or not differs(sent_rgba, got_rgba):
            continue
        written.add("style")
        if got_rgba is None:
            style[name] = "none"
            continue
        # a colour with its own alpha (rgba(), hsla(), #rrggbbaa) is written as #rrggbb, and its
        # alpha goes into *-opacity with the rest, so that nothing multiplies in twice
        own_alpha = sent_rgba is None or item.colour_alpha[name] != 1.0
        new_rgb = sent_rgba is None or differs(sent_rgba[:3], got_rgba[:3])
        new_alpha = sent_rgba is None or abs(sent_rgba[3] - got_rgba[3]) > SAME
        if new_rgb or (new_alpha and own_alpha):
            style[name] = colour(got_rgba)
        if new_alpha or (new_rgb and own_alpha):
            # the element's and its ancestors' opacity stay; the paint's own opacity takes the rest
            own = got_rgba[3] / item.opacity if item.opacity > 0 else 1.0
            style[name + "-opacity"] = alpha_value(own)
    if abs(float(got.get("stroke_width", 0)) - sent["stroke_width"]) > SAME:
        scale = canvas.scale * item.scale
        if scale > 0:
            style["stroke-width"] = f"{float(got['stroke_width']) / scale:.6g}"
            written.add("style")
    if not written:
        return None, ()
    if "style" in written:
        element.set("style", str(style))
    return element, written


def dropped_effects(written):
    """Ids of the elements whose live path effect (or shape parameters) writing dropped."""
    keys = {inkex.addNS(*reversed(name.split(":"))) for name in REBUILDS_D[:2]}
    return sorted(element.get("id") for element, names in written.items() if keys & set(names))


UNSEEN = {"marker-start": "markers", "marker-mid": "markers", "marker-end": "markers",
          "clip-path": "clip path", "mask": "mask", "filter": "filter"}


def unseen(items):
    """What CLIP does not see of `items`: {"markers": [ids], "filter": [ids], ...}, naming the
    element (the item or an ancestor group) that carries it."""
    found = {}
    for item in items:
        for prop in ("marker-start", "marker-mid", "marker-end"):  # inherited
            if str(item.element.specified_style().get(prop) or "none").strip() != "none":
                found.setdefault(UNSEEN[prop], {})[item.element.get("id")] = None
        node = item.element
        while isinstance(node, inkex.BaseElement) and not isinstance(node, inkex.SvgDocumentElement):
            for prop in ("clip-path", "mask", "filter"):  # not inherited: on each element itself
                value = node.cascaded_style().get(prop) or node.attrib.get(prop)
                if value and str(value).strip() != "none":
                    found.setdefault(UNSEEN[prop], {})[node.get("id")] = None
            node = node.getparent()
    return {kind: list(ids) for kind, ids in found.items()}


def as_path_element(element, attrib):
    """A <path> with the same id, attributes (`attrib` but geometry) and children, in the same place."""
    path = inkex.PathElement()
    for key, value in attrib.items():
        if key not in GEOMETRY:
            path.attrib[key] = value
    path.extend(list(element))
    element.getparent().replace(element, path)
    return path


def new_path(shape, canvas, parent_transform, svg, label=None, source=None):
    """A fresh <path> for a reply shape, in a parent whose composed transform is given.
    `source` (an Item) is the shape's original: its paints that are no flat colour (gradient,
    pattern, currentColor) are referenced by the copy too, with the opacity they had."""
    to_local = -(canvas.to_canvas @ parent_transform)
    scale = canvas.scale * math.sqrt(abs(parent_transform.a * parent_transform.d - parent_transform.b * parent_transform.c))
    element = inkex.PathElement()
    element.set("id", svg.get_unique_id("clipdraw"))
    element.set("d", path_data(subpaths_to_path(shape["subpaths"], to_local)))
    style = inkex.Style()
    kept = source.element.specified_style() if source is not None else None
    for name in ("stroke", "fill"):
        rgba = shape.get(name)
        if rgba is None:
            style[name] = "none"
        elif source is not None and name in source.fixed:
            # the copy sits outside the original's groups: their opacity moves into the paint's
            style[name] = kept.get(name)
            style[name + "-opacity"] = alpha_value(kept(name + "-opacity") * source.opacity)
            if str(kept.get(name)).strip().lower() == "currentcolor":
                style["color"] = kept.get("color")
        else:
            style[name] = colour(rgba)
            style[name + "-opacity"] = alpha_value(rgba[3])
    style["stroke-width"] = f"{float(shape.get('stroke_width', 1)) / scale:.6g}" if scale > 0 else "1"
    caps = {**STROKE_DEFAULTS, **shape}
    style["stroke-linecap"] = caps["stroke_linecap"]
    style["stroke-linejoin"] = caps["stroke_linejoin"]
    if caps["stroke_linejoin"] == "miter":
        style["stroke-miterlimit"] = f"{float(caps['stroke_miterlimit']):.6g}"
    if caps["stroke_dasharray"] and scale > 0:
        style["stroke-dasharray"] = ",".join(f"{d / scale:.6g}" for d in caps["stroke_dasharray"])
        style["stroke-dashoffset"] = f"{float(caps['stroke_dashoffset']) / scale:.6g}"
    if shape.get("fill_rule") == "evenodd":
        style["fill-rule"] = "evenodd"
    element.style = style
    if label:
        element.label = label
    return element
