"""The Inkscape plugin in-process, under the inkex Inkscape ships: its .inx files, reading the
selection into a scene, the mapping into the canvas and back, and writing replies back."""
import copy
import math
import os
import shutil
import struct
import sys
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parents[1]
INKEX = Path(os.environ.get("CLIPDRAW_TEST_INKEX", "/usr/share/inkscape/extensions"))  # Inkscape's own inkex: the one the plugin runs under
sys.path[:0] = [str(ROOT / "inkscape_ext")] + ([str(INKEX)] if INKEX.is_dir() else [])
if not (INKEX / "inkex").is_dir():
    pytest.skip("Inkscape's inkex is not installed (apt-get install inkscape)", allow_module_level=True)
import inkex  # noqa: E402  (needs lxml and cssselect in this Python: they are test requirements)
from lxml import etree  # noqa: E402

import clipdraw_scene as cs  # noqa: E402

SVG = ('<svg xmlns="http://www.w3.org/2000/svg" xmlns:inkscape="http://www.inkscape.org/namespaces/inkscape" '
       'xmlns:xlink="http://www.w3.org/1999/xlink" {attrs}>{body}</svg>')


def load(body, attrs='width="200" height="200" viewBox="0 0 200 200"'):
    return inkex.load_svg(SVG.format(attrs=attrs, body=body).encode()).getroot()


def read(svg, ids, size=224):
    """The plugin's reading and mapping: (items, scene, canvas)."""
    selected = [svg.getElementById(i) for i in ids]
    items, skipped, unlinked = cs.collect(svg, selected)
    canvas = cs.Canvas(cs.union(i.visual_box() for i in items) or cs.page_box(svg), size)
    scene, items = cs.scene_of(items, canvas)
    return items, scene, canvas


def on_curve(subpath):
    pts = subpath["points"]
    return pts[0::3]


def bezier_samples(subpath, n=16):
    """Points along a scene subpath (canvas px)."""
    pts = subpath["points"] + ([subpath["points"][0]] if subpath["closed"] else [])
    out = []
    for i in range(0, len(pts) - 3, 3):
        p0, p1, p2, p3 = pts[i:i + 4]
        for k in range(n):
            t = k / n
            w = ((1 - t) ** 3, 3 * t * (1 - t) ** 2, 3 * t * t * (1 - t), t ** 3)
            out.append([sum(wi * p[j] for wi, p in zip(w, (p0, p1, p2, p3))) for j in (0, 1)])
    return out


def to_doc(canvas, p):
    q = canvas.to_document.apply_to_point(p)
    return q.x, q.y


def float32(x):
    """What the engine's float32 tensors give back."""
    if isinstance(x, float):
        return struct.unpack("f", struct.pack("f", x))[0]
    if isinstance(x, list):
        return [float32(v) for v in x]
    if isinstance(x, dict):
        return {k: float32(v) for k, v in x.items()}
    return x


# ---- the .inx files ---------------------------------------------------------------------------

INX = [ROOT / "clipdraw.inx", ROOT / "inkscape_ext" / "clipdraw_see.inx"]


@pytest.mark.parametrize("inx", INX, ids=lambda p: p.name)
def test_inx_passes_inkex_check_and_schema(inx, monkeypatch):
    from inkex.tester.inx import InxMixin

    monkeypatch.chdir(inx.parent)  # InxFile finds the script relative to the working directory

    class Check(InxMixin):
        def assertTrue(self, x, msg=None):
            assert x, msg

        def assertFalse(self, x, msg=None):
            assert not x, msg

        def assertEqual(self, a, b, msg=None):
            assert a == b, msg

    Check().assertInxIsGood(str(inx))
    from inkex.inx import InxFile

    parsed = InxFile(str(inx))
    assert parsed.extension_class is not None  # the check above silently passes without a class
    assert "_" not in parsed.ident  # an id with "_" cannot be called as an Inkscape action
    rng = next(p for p in (INKEX / "inkscape.extension.rng", Path(inkex.__file__).parent / "tester" / "inkscape.extension.rng")
               if p.exists())  # Inkscape ships it beside inkex; the inkex package inside its tester
    schema = etree.RelaxNG(etree.parse(str(rng)))
    doc = etree.parse(str(inx))
    assert schema.validate(doc), schema.error_log.last_error
    effect = doc.getroot().find("{http://www.inkscape.org/namespace/inkscape/extension}effect")
    assert effect.get("needs-live-preview") == "false"


def test_draw_inx_defaults_and_tabs():
    from inkex.inx import InxFile

    inx = InxFile(str(ROOT / "clipdraw.inx"))
    pages = [p.get("name") for p in inx.xml.xpath("//*[local-name()='page']")]
    assert pages == ["prompt", "strokes", "run", "output", "help"]
    params = {p.name: p for p in inx.params}
    assert params["mode"].options[0] == "auto" and params["output_mode"].options[0] == "inplace"
    assert (params["iterations"].text, params["time_limit"].text, params["resolution"].text,
            params["augmentations"].text, params["strokes"].text) == ("1000", "60", "224", "4", "256")


# ---- reading ----------------------------------------------------------------------------------

SHAPES = """
<g id="layer1" inkscape:groupmode="layer">
  <rect id="rect" x="10" y="20" width="40" height="30" rx="5" style="stroke:#000;fill:none"/>
  <circle id="circle" cx="100" cy="50" r="20" style="stroke:#000;fill:none"/>
  <ellipse id="ellipse" cx="150" cy="50" rx="30" ry="10" style="stroke:#000;fill:none"/>
  <line id="line" x1="10" y1="100" x2="60" y2="150" style="stroke:#000"/>
  <polyline id="polyline" points="70,100 90,150 110,100" style="stroke:#000;fill:none"/>
  <polygon id="polygon" points="120,100 160,100 140,140" style="stroke:#000;fill:red"/>
  <path id="arcs" d="M 10 170 Q 30 150 50 170 T 90 170 A 25 20 30 1 1 120 180 a 5 5 0 0 0 10 0"
        style="stroke:#000;fill:none"/>
</g>"""


def test_every_shape_kind_becomes_cubics_on_the_shape():
    svg = load(SHAPES)
    items, scene, canvas = read(svg, ["layer1"])
    shapes = {s["id"]: s for s in scene["shapes"]}
    assert list(shapes) == ["rect", "circle", "ellipse", "line", "polyline", "polygon", "arcs"]
    for s in scene["shapes"]:
        for sub in s["subpaths"]:
            n = len(sub["points"])
            assert (n % 3 == 0) if sub["closed"] else (n % 3 == 1), (s["id"], n)
    assert [sub["closed"] for sub in shapes["rect"]["subpaths"]] == [True]
    assert [sub["closed"] for sub in shapes["polyline"]["subpaths"]] == [False]
    assert [sub["closed"] for sub in shapes["polygon"]["subpaths"]] == [True]

    def samples(name):
        return [to_doc(canvas, p) for sub in shapes[name]["subpaths"] for p in bezier_samples(sub)]

    for x, y in samples("circle"):  # cubic arcs are within 3e-4 of the radius
        assert abs(math.hypot(x - 100, y - 50) - 20) < 0.02
    for x, y in samples("ellipse"):
        assert abs(((x - 150) / 30) ** 2 + ((y - 50) / 10) ** 2 - 1) < 0.003
    for x, y in samples("line"):
        assert abs((x - 10) - (y - 100)) < 1e-6 and 10 - 1e-6 <= x <= 60 + 1e-6
    for x, y in samples("rect"):  # inside the rect, on its outline (rounded corners stay within)
        assert 10 - 1e-6 <= x <= 50 + 1e-6 and 20 - 1e-6 <= y <= 50 + 1e-6
        assert min(x - 10, 50 - x, y - 20, 50 - y) < 1.5 + 1e-6
    corners = {tuple(round(v, 6) for v in to_doc(canvas, p)) for p in on_curve(shapes["polygon"]["subpaths"][0])}
    assert corners == {(120, 100), (160, 100), (140, 140)}
    arc = samples("arcs")
    assert max(x for x, _ in arc) > 120 and abs(arc[0][0] - 10) < 1e-6 and abs(arc[0][1] - 170) < 1e-6
    end = to_doc(canvas, shapes["arcs"]["subpaths"][0]["points"][-1])
    assert abs(end[0] - 130) < 1e-6 and abs(end[1] - 180) < 1e-6


def test_nested_transforms_viewbox_units_and_stroke_width():
    # 1 user unit = 1 mm on paper; the plugin works in user units, so the mm size does not matter
    body = """
    <g id="a" transform="translate(30,40)">
      <g id="b" transform="rotate(30) scale(2)">
        <path id="p" d="M 0 0 L 10 0 L 10 5" transform="matrix(1.5,0,0,1.5,5,-5)" style="stroke:#000;stroke-width:0.5;fill:none"/>
      </g>
    </g>"""
    svg = load(body, 'width="210mm" height="297mm" viewBox="0 0 210 297"')
    items, scene, canvas = read(svg, ["a"])
    c, s = math.cos(math.radians(30)), math.sin(math.radians(30))

    def expected(x, y):  # composed by hand: translate . rotate . scale(2) . matrix
        x, y = 1.5 * x + 5, 1.5 * y - 5
        x, y = 2 * x, 2 * y
        x, y = c * x - s * y, s * x + c * y
        return x + 30, y + 40

    got = [to_doc(canvas, p) for p in on_curve(scene["shapes"][0]["subpaths"][0])]
    for g, e in zip(got, [expected(0, 0), expected(10, 0), expected(10, 5)]):
        assert math.dist(g, e) < 1e-9
    assert scene["shapes"][0]["stroke_width"] == pytest.approx(0.5 * 1.5 * 2 * canvas.scale)


def test_stroke_width_units_and_non_uniform_scale():
    body = """<path id="p" d="M 0 0 L 10 10" transform="scale(4,1)" style="stroke:#000;stroke-width:1mm"/>"""
    svg = load(body)
    items, scene, canvas = read(svg, ["p"])
    # 1mm = 96/25.4 user units; a stroke under scale(4,1) is as wide as sqrt(4*1)
    assert scene["shapes"][0]["stroke_width"] == pytest.approx(96 / 25.4 * 2 * canvas.scale)


def test_colours_and_every_opacity_fold_into_alpha():
    body = """
    <style>.blue { fill: #0000ff; }</style>
    <g id="g" style="opacity:0.5;stroke:#ff0000">
      <g style="opacity:0.5">
        <path id="p" class="blue" d="M 0 0 L 10 10 L 0 10 Z" style="opacity:0.8;stroke-opacity:0.5;fill-opacity:0.25"/>
      </g>
      <path id="q" d="M 20 20 L 30 30" fill="none" stroke="currentColor" color="#00ff00" stroke-width="3"/>
      <path id="r" d="M 0 0 L 10 0 L 10 10 L 0 10 Z M 2 2 L 8 2 L 8 8 L 2 8 Z" style="fill-rule:evenodd;stroke:none"/>
    </g>"""
    svg = load(body)
    items, scene, canvas = read(svg, ["g"])
    p, q, r = scene["shapes"]
    assert p["stroke"] == pytest.approx([1, 0, 0, 0.5 * 0.5 * 0.8 * 0.5])
    assert p["fill"] == pytest.approx([0, 0, 1, 0.5 * 0.5 * 0.8 * 0.25])
    assert q["stroke"] == pytest.approx([0, 1, 0, 0.5]) and q["fill"] is None
    assert r["fill_rule"] == "evenodd" and r["stroke"] is None and r["fill"] == pytest.approx([0, 0, 0, 0.5])
    assert p["fill_rule"] == "nonzero" and len(r["subpaths"]) == 2


def test_gradient_paint_becomes_its_mean_colour():
    body = """
    <defs><linearGradient id="base"><stop offset="0" style="stop-color:#ff0000"/><stop offset="1" style="stop-color:#0000ff;stop-opacity:0.5"/></linearGradient>
          <linearGradient id="grad" xlink:href="#base"/></defs>
    <path id="p" d="M 0 0 L 10 10" style="stroke:url(#grad);fill:none"/>"""
    items, scene, canvas = read(load(body), ["p"])
    assert scene["shapes"][0]["stroke"] == pytest.approx([0.5, 0, 0.5, 0.75])


def test_texts_images_skipped_and_counted_clones_unlinked_and_put_back():
    body = """
    <defs><path id="hidden-def" d="M 0 0 L 1 1"/></defs>
    <g id="g">
      <path id="src" d="M 0 0 L 10 0" style="stroke:#000"/>
      <use id="clone" xlink:href="#src" x="5" y="7" transform="scale(2)"/>
      <text id="t" x="0" y="20">hi</text><text id="t2" x="0" y="30">there</text>
      <image id="img" x="0" y="0" width="5" height="5"/>
      <path id="gone" d="M 0 0 L 5 5" style="display:none;stroke:#000"/>
    </g>"""
    svg = load(body)
    before = etree.tostring(svg)
    snapshot = cs.Snapshot(svg)
    items, skipped, unlinked = cs.collect(svg, [svg.getElementById("g")])
    assert skipped == {"text": 2, "image": 1}
    assert [i.element.get("id") for i in items] == ["src", "clone"]
    clone = items[1]
    canvas = cs.Canvas(cs.page_box(svg), 224)
    pts = [to_doc(canvas, p) for p in on_curve(cs.item_to_shape(clone, canvas)["subpaths"][0])]
    assert pts == [pytest.approx((10, 14)), pytest.approx((30, 14))]  # scale(2) . translate(5,7)
    assert svg.getElementById("clone").TAG == "path"  # unlinked while it is read
    cs.relink(unlinked, {})
    snapshot.restore()
    assert etree.tostring(svg) == before


def test_mapping_centres_the_visual_box_with_a_margin():
    body = """<path id="p" d="M 100 50 L 300 50 L 300 150" style="stroke:#000;stroke-width:10;fill:none"/>"""
    svg = load(body, 'width="1000" height="1000" viewBox="0 0 1000 1000"')
    items, scene, canvas = read(svg, ["p"], size=200)
    xs = [p[0] for p in scene["shapes"][0]["subpaths"][0]["points"]]
    ys = [p[1] for p in scene["shapes"][0]["subpaths"][0]["points"]]
    half = scene["shapes"][0]["stroke_width"] / 2
    assert min(xs) - half == pytest.approx(200 * cs.MARGIN) and max(xs) + half == pytest.approx(200 * (1 - cs.MARGIN))
    assert (min(ys) - half + max(ys) + half) / 2 == pytest.approx(100)  # the short side is centred
    assert canvas.scale == pytest.approx(200 * (1 - 2 * cs.MARGIN) / 210)


def test_nothing_selected_maps_the_page():
    svg = load("", 'width="100mm" height="50mm" viewBox="10 20 100 50"')
    canvas = cs.Canvas(cs.page_box(svg), 224)
    assert to_doc(canvas, (224 * cs.MARGIN, 112)) == pytest.approx((10, 45))
    assert to_doc(canvas, (224 * (1 - cs.MARGIN), 112)) == pytest.approx((110, 45))


def test_empty_and_huge_selections():
    svg = load('<g id="empty"/>')
    items, scene, canvas = read(svg, ["empty"])
    assert items == [] and scene["shapes"] == []
    body = "<g id='many'>" + "".join(
        f'<path id="p{i}" d="M {i % 50} {i // 50} l 0.5 0.5" style="stroke:#000;stroke-width:0.1"/>' for i in range(3000)) + "</g>"
    items, scene, canvas = read(load(body), ["many"])
    assert len(scene["shapes"]) == 3000 and scene["shapes"][-1]["id"] == "p2999"


# ---- writing back -----------------------------------------------------------------------------

DOC = """
<g id="layer1" inkscape:groupmode="layer" transform="translate(12.5,-3)">
  <path id="before" d="M 0 0 L 1 1" style="stroke:#000"/>
  <g id="g" transform="rotate(17) scale(1.7,1.7)" style="opacity:0.6">
    <title>kept</title>
    <rect id="r" class="c" data-x="1" x="1000.25" y="2000.5" width="40" height="30" rx="4" inkscape:label="box"
          transform="matrix(0.9,0.1,-0.1,0.9,3,4)" style="fill:#336699;stroke:#aa0000;stroke-width:2;stroke-dasharray:4,2"><title>t</title></rect>
    <path id="arc" d="M 1010 2010 A 20 10 15 0 1 1040 2030 Q 1050 2040 1060 2010" style="fill:none;stroke:blue;stroke-width:1.5"/>
    <circle id="c" cx="1030" cy="2020" r="7" fill="green"/>
  </g>
  <path id="after" d="M 0 0 L 2 2" style="stroke:#000"/>
</g>
<path id="outside" d="M 5 5 L 9 9" transform="rotate(3)" style="stroke:#000"/>"""


def doc_points(element):
    """An element's cubic control points in document user units, straight from inkex."""
    csp = element.path.to_superpath().transform(element.composed_transform())
    return [p for sub in csp for node in sub for p in node]


def test_unchanged_reply_leaves_the_document_byte_for_byte():
    svg = load(DOC, 'width="297mm" height="210mm" viewBox="0 0 2970 2100"')
    original = etree.tostring(svg)
    snapshot = cs.Snapshot(svg)
    items, scene, canvas = read(svg, ["g"])
    written = {}
    for item, shape in zip(items, scene["shapes"]):
        element, names = cs.write_in_place(item, shape, float32(copy.deepcopy(shape)), canvas, snapshot)
        assert element is None
    snapshot.restore(written)
    assert etree.tostring(svg) == original


def test_written_geometry_maps_back_within_1e3_user_units():
    """A reply moving one point: read back, every other point is where it was, within 1e-3 user
    units, although coordinates are in the thousands and the transforms nested and skewed."""
    svg = load(DOC, 'width="297mm" height="210mm" viewBox="0 0 2970 2100"')
    snapshot = cs.Snapshot(svg)
    items, scene, canvas = read(svg, ["g"])
    written = {}
    for item, shape in zip(items, scene["shapes"]):
        got = float32(copy.deepcopy(shape))
        got["subpaths"][0]["points"][1][0] += 0.5  # a control point moves half a canvas pixel
        element, names = cs.write_in_place(item, shape, got, canvas, snapshot)
        written[element] = names
    snapshot.restore(written)
    again, _, _ = cs.collect(svg, [svg.getElementById("g")])
    assert [i.element.get("id") for i in again] == ["r", "arc", "c"]
    assert all(isinstance(i.element, inkex.PathElement) for i in again)
    for item, sent in zip(again, scene["shapes"]):
        now = cs.item_to_shape(item, canvas)
        assert [len(s["points"]) for s in now["subpaths"]] == [len(s["points"]) for s in sent["subpaths"]]
        a = [to_doc(canvas, p) for s in now["subpaths"] for p in s["points"]]
        b = [to_doc(canvas, p) for s in sent["subpaths"] for p in s["points"]]
        far = [k for k, (p, q) in enumerate(zip(a, b)) if math.dist(p, q) > 1e-3]
        assert far == [1], (sent["id"], far)  # only the point that moved
        assert now["stroke_width"] == pytest.approx(sent["stroke_width"], rel=1e-5)


def test_in_place_keeps_id_attributes_place_and_everything_else():
    svg = load(DOC, 'width="297mm" height="210mm" viewBox="0 0 2970 2100"')
    untouched = {i: etree.tostring(svg.getElementById(i)) for i in ("before", "after", "outside", "arc", "c")}
    layer_attrs = dict(svg.getElementById("layer1").attrib)
    group_attrs = dict(svg.getElementById("g").attrib)
    snapshot = cs.Snapshot(svg)
    items, scene, canvas = read(svg, ["r"])
    shape = scene["shapes"][0]
    got = float32(copy.deepcopy(shape))
    got["subpaths"][0]["points"][0][1] += 2.0
    got["stroke"] = [0.0, 1.0, 0.0, 0.3]
    got["stroke_width"] = shape["stroke_width"] * 2
    element, names = cs.write_in_place(items[0], shape, got, canvas, snapshot)
    snapshot.restore({element: names})

    r = svg.getElementById("r")
    assert r.TAG == "path" and r.getparent().get("id") == "g" and r.getparent().index(r) == 1
    assert r.get("class") == "c" and r.get("data-x") == "1" and r.get("inkscape:label") == "box"
    assert r.attrib["transform"] == "matrix(0.9,0.1,-0.1,0.9,3,4)"  # untouched, not even reformatted
    assert all(r.get(a) is None for a in ("x", "y", "width", "height", "rx"))
    assert r[0].TAG == "title" and r[0].text == "t"
    style = inkex.Style(r.attrib["style"])
    assert style["fill"] == "#336699" and style["stroke-dasharray"] == "4,2"  # what the engine kept
    assert style["stroke"] == "#00ff00" and float(style["stroke-opacity"]) == pytest.approx(0.3 / 0.6, abs=1e-5)
    assert float(style["stroke-width"]) == pytest.approx(4, rel=1e-5)
    assert "stroke-linecap" not in style and "stroke-linejoin" not in style  # SVG's butt and miter stay
    for i, xml in untouched.items():
        assert etree.tostring(svg.getElementById(i)) == xml, i
    assert dict(svg.getElementById("layer1").attrib) == layer_attrs
    assert dict(svg.getElementById("g").attrib) == group_attrs


def test_new_path_lands_where_the_scene_says_in_its_parent():
    svg = load(DOC, 'width="297mm" height="210mm" viewBox="0 0 2970 2100"')
    items, scene, canvas = read(svg, ["g"])
    layer = svg.getElementById("layer1")
    shape = {"id": None, "subpaths": [{"points": [[10, 20], [30, 40], [50, 60], [70, 80]], "closed": False}],
             "stroke": [1, 0, 0, 0.5], "stroke_width": 3.0, "fill": None, "fill_rule": "nonzero"}
    path = cs.new_path(shape, canvas, layer.composed_transform(), svg)
    layer.append(path)
    pts = [p for sub in path.path.to_superpath().transform(path.composed_transform()) for node in sub for p in node]
    assert math.dist(pts[1], to_doc(canvas, (10, 20))) < 1e-6 and math.dist(pts[-2], to_doc(canvas, (70, 80))) < 1e-6
    style = inkex.Style(path.get("style"))
    assert float(style["stroke-width"]) == pytest.approx(3 / canvas.scale, rel=1e-5)
    assert style["stroke"] == "#ff0000" and float(style["stroke-opacity"]) == 0.5 and style["fill"] == "none"


# ---- the document keeps what the user made (issue 7) -----------------------------------------

def reply_moving(shape, dx=1.0, **changes):
    """What the engine might send back for `shape`: its first point moved by dx canvas px, and
    the given keys changed."""
    got = float32(copy.deepcopy(shape))
    got["subpaths"][0]["points"][0][0] += dx
    got.update(changes)
    return got


def write_back(svg, ids, change):
    """Read `ids`, write replies made by change(shape) back; returns (scene sent, {id: written names})."""
    snapshot = cs.Snapshot(svg)
    items, scene, canvas = read(svg, ids)
    written = {}
    for item, shape in zip(items, scene["shapes"]):
        element, names = cs.write_in_place(item, shape, change(shape), canvas, snapshot)
        if element is not None:
            written[element] = names
    snapshot.restore(written)
    return scene, written


PAINTS = """
<defs id="defs">
  <linearGradient id="stops"><stop offset="0" style="stop-color:#ff0000"/><stop offset="1" style="stop-color:#0000ff;stop-opacity:0.5"/></linearGradient>
  <linearGradient id="grad" xlink:href="#stops" x1="0" y1="0" x2="50" y2="0" gradientUnits="userSpaceOnUse"/>
  <linearGradient id="swatch" inkscape:swatch="solid"><stop offset="0" style="stop-color:#00ff00;stop-opacity:0.8"/></linearGradient>
  <pattern id="tiles" width="4" height="4" patternUnits="userSpaceOnUse"><rect width="2" height="2" style="fill:#000000"/><rect x="2" width="2" height="2" style="fill:#ffffff"/></pattern>
  <pattern id="tiles2" xlink:href="#tiles" patternTransform="rotate(10)"/>
</defs>
<g id="g">
  <path id="gradient" d="M 0 0 L 50 10" style="fill:none;stroke:url(#grad);stroke-width:4"/>
  <path id="swatched" d="M 0 20 L 50 30 L 20 40 Z" style="fill:url(#swatch);stroke:#000000"/>
  <path id="patterned" d="M 60 0 L 90 0 L 90 30 Z" style="fill:url(#tiles2);stroke:none"/>
  <path id="current" d="M 60 40 L 90 50" style="stroke:currentColor;color:#0000ff;fill:none;stroke-width:2"/>
</g>"""


def test_paints_that_are_not_flat_colours_keep_their_reference():
    svg = load(PAINTS)
    defs = etree.tostring(svg.getElementById("defs"))
    scene, written = write_back(svg, ["g"], lambda s: reply_moving(
        s, stroke=None if s["stroke"] is None else [0.2, 0.6, 0.8, 0.7], fill=None if s["fill"] is None else [0.9, 0.6, 0.3, 0.7],
        stroke_width=s["stroke_width"] * 1.5))
    shapes = {s["id"]: s for s in scene["shapes"]}
    # what the engine saw: the mean colour of the stops (or of the pattern's content), with their opacity
    assert shapes["gradient"]["stroke"] == pytest.approx([0.5, 0, 0.5, 0.75])
    assert shapes["swatched"]["fill"] == pytest.approx([0, 1, 0, 0.8])
    assert shapes["patterned"]["fill"] == pytest.approx([0.5, 0.5, 0.5, 1.0])
    assert shapes["current"]["stroke"] == pytest.approx([0, 0, 1, 1])
    assert [shapes[i].get("fixed_paints") for i in ("gradient", "swatched", "patterned", "current")] == \
        [["stroke"], ["fill"], ["fill"], ["stroke"]]
    assert etree.tostring(svg.getElementById("defs")) == defs  # nothing written into or removed from <defs>
    style = {i: inkex.Style(svg.getElementById(i).attrib["style"]) for i in shapes}
    assert (style["gradient"]["stroke"], style["swatched"]["fill"], style["patterned"]["fill"], style["current"]["stroke"]) == \
        ("url(#grad)", "url(#swatch)", "url(#tiles2)", "currentColor")
    assert style["swatched"]["stroke"] == "#3399cc"  # a flat colour still changes
    assert float(style["gradient"]["stroke-width"]) == pytest.approx(6, rel=1e-5)  # geometry and width refined
    assert len(written) == 4 and all("d" in names for names in written.values())



def test_new_layer_copies_reference_the_same_paints():
    """The new-layer output: a copy of a gradient-, pattern- or currentColor-painted path uses the
    same reference (with the opacity of the original's groups in its paint opacity), not a flat
    colour; a flat colour is written as the engine left it."""
    svg = load(PAINTS.replace('<g id="g">', '<g id="g" style="opacity:0.5">'))
    items, scene, canvas = read(svg, ["g"])
    layer = svg.getElementById("g").getparent()
    copies = {item.element.get("id"): inkex.Style(cs.new_path(
        reply_moving(shape, stroke=None if shape["stroke"] is None else [0.2, 0.6, 0.8, 0.7]),
        canvas, layer.composed_transform(), svg, source=item).get("style"))
        for item, shape in zip(items, scene["shapes"])}
    assert (copies["gradient"]["stroke"], copies["swatched"]["fill"], copies["patterned"]["fill"],
            copies["current"]["stroke"]) == ("url(#grad)", "url(#swatch)", "url(#tiles2)", "currentColor")
    assert float(copies["gradient"]["stroke-opacity"]) == pytest.approx(0.5)
    assert copies["current"]["color"] == "#0000ff"
    assert copies["swatched"]["stroke"] == "#3399cc"  # a flat colour is the engine's


ALPHAS = """
<g id="g" style="opacity:0.5">
  <path id="rgba" d="M 0 0 L 50 10" style="fill:none;stroke:rgba(255,0,0,0.5);stroke-opacity:0.8"/>
  <path id="hsla" d="M 0 20 L 50 30 L 20 40 Z" style="fill:hsla(120,100%,50%,0.25);stroke:none"/>
  <path id="hex8" d="M 60 0 L 90 0 L 90 30 Z" style="fill:#0000ff80;stroke:hsl(240, 100%, 25%)"/>
</g>"""


def test_colour_alpha_is_read_and_written_back_exactly():
    svg = load(ALPHAS)
    items, scene, canvas = read(svg, ["g"])
    shapes = {s["id"]: s for s in scene["shapes"]}
    assert shapes["rgba"]["stroke"] == pytest.approx([1, 0, 0, 0.5 * 0.8 * 0.5])
    assert shapes["hsla"]["fill"] == pytest.approx([0, 1, 0, 0.25 * 0.5])
    assert shapes["hex8"]["fill"] == pytest.approx([0, 0, 1, 128 / 255 * 0.5])
    assert shapes["hex8"]["stroke"] == pytest.approx([0, 0, 128 / 255, 0.5], abs=1 / 255)
    assert all(s["alpha_max"] == 0.5 for s in scene["shapes"])  # the group's opacity caps the engine

    replies = {"rgba": {"stroke": [1, 0, 0, 0.45]},  # only alpha changes
               "hsla": {"fill": [0.2, 0.4, 0.6, 0.125]},  # only the colour changes
               "hex8": {"fill": [0, 0, 1, 0.1]}}
    write_back(svg, ["g"], lambda s: dict(float32(copy.deepcopy(s)), **replies[s["id"]]))
    again, scene2, _ = read(svg, ["g"])
    for s in scene2["shapes"]:
        for name, rgba in replies[s["id"]].items():
            assert s[name][3] == pytest.approx(rgba[3], abs=1e-5), (s["id"], name)
            assert s[name][:3] == pytest.approx(rgba[:3], abs=0.5 / 255), (s["id"], name)
    style = inkex.Style(svg.getElementById("rgba").attrib["style"])
    assert style["stroke"] == "#ff0000" and float(style["stroke-opacity"]) == pytest.approx(0.9)


CAPS = """
<g id="g" transform="scale(2)">
  <path id="dashed" d="M 0 0 L 50 10 L 60 40" style="fill:none;stroke:#000;stroke-width:1mm;stroke-linecap:butt;stroke-linejoin:miter;stroke-miterlimit:7;stroke-dasharray:2mm,1mm;stroke-dashoffset:1"/>
  <path id="plain" d="M 0 20 L 50 30" style="fill:none;stroke:#000"/>
  <path id="rounded" d="M 0 40 L 50 50" style="fill:none;stroke:#000;stroke-linecap:round;stroke-linejoin:bevel"/>
</g>"""


def test_caps_joins_and_dashes_are_read_and_kept():
    svg = load(CAPS)
    items, scene, canvas = read(svg, ["g"])
    dashed, plain, rounded = scene["shapes"]
    mm = 96 / 25.4
    px = 2 * canvas.scale  # element units -> canvas px
    assert (dashed["stroke_linecap"], dashed["stroke_linejoin"], dashed["stroke_miterlimit"]) == ("butt", "miter", 7)
    assert dashed["stroke_dasharray"] == pytest.approx([2 * mm * px, mm * px]) and dashed["stroke_dashoffset"] == pytest.approx(px)
    assert (plain["stroke_linecap"], plain["stroke_linejoin"]) == ("butt", "miter")  # SVG's defaults
    assert "stroke_dasharray" not in plain
    assert rounded["stroke_linejoin"] == "bevel" and "stroke_linecap" not in rounded  # round: the scene's default
    styles = {i: svg.getElementById(i).attrib["style"] for i in ("dashed", "plain", "rounded")}
    write_back(svg, ["g"], lambda s: reply_moving(s, stroke_width=s["stroke_width"] * 2))
    for i, before in styles.items():
        after = inkex.Style(svg.getElementById(i).attrib["style"])
        for key, value in inkex.Style(before).items():
            if key != "stroke-width":
                assert after[key] == value, (i, key)
        assert "stroke-linecap" in after or "stroke-linecap" not in before  # nothing forced
        assert after.get("stroke-linecap") == inkex.Style(before).get("stroke-linecap")
    # a copy (the new-layer output) writes the same caps and dashes
    layer = svg.getElementById("g")
    copy_ = cs.new_path(dashed, canvas, layer.composed_transform(), svg)
    style = inkex.Style(copy_.get("style"))
    assert (style["stroke-linecap"], style["stroke-linejoin"], float(style["stroke-miterlimit"])) == ("butt", "miter", 7)
    assert [float(v) for v in style["stroke-dasharray"].split(",")] == pytest.approx([2 * mm, mm], rel=1e-5)


LPE = """
<defs><inkscape:path-effect id="effect1" effect="bspline" weight="33.333333"/></defs>
<path id="lpe" d="M 10 10 C 20 20 30 20 40 10" inkscape:path-effect="#effect1" inkscape:original-d="M 10 10 L 25 25 L 40 10"
      style="fill:none;stroke:#000"/>
<path id="arc" sodipodi:type="arc" sodipodi:cx="60" sodipodi:cy="60" sodipodi:rx="10" sodipodi:ry="10"
      d="M 70 60 A 10 10 0 0 1 60 70 A 10 10 0 0 1 50 60 A 10 10 0 0 1 60 50 A 10 10 0 0 1 70 60 Z" style="fill:none;stroke:#000"/>
<path id="still" d="M 10 80 L 40 80" inkscape:path-effect="#effect1" inkscape:original-d="M 10 80 L 40 80" style="fill:none;stroke:#000"/>"""


def test_a_refined_live_path_effect_path_becomes_a_plain_path():
    svg = load(LPE, 'width="100" height="100" viewBox="0 0 100 100" '
                    'xmlns:sodipodi="http://sodipodi.sourceforge.net/DTD/sodipodi-0.dtd"')
    before = etree.tostring(svg.getElementById("still"))
    scene, written = write_back(svg, ["lpe", "arc", "still"], lambda s: reply_moving(s, dx=0 if s["id"] == "still" else 1))
    for i in ("lpe", "arc"):
        element = svg.getElementById(i)
        assert not {"inkscape:path-effect", "inkscape:original-d", "sodipodi:type"} & {
            k.replace("{http://www.inkscape.org/namespaces/inkscape}", "inkscape:").replace(
                "{http://sodipodi.sourceforge.net/DTD/sodipodi-0.dtd}", "sodipodi:") for k in element.attrib}
    assert etree.tostring(svg.getElementById("still")) == before  # unchanged: its effect stays
    assert svg.getElementById("effect1") is not None  # the effect's definition stays in <defs>
    assert cs.dropped_effects(written) == ["lpe"]


def test_what_clip_does_not_see_is_named():
    body = """
    <defs><marker id="m"><path d="M 0 0 L 1 1"/></marker><clipPath id="c"><rect width="5" height="5"/></clipPath>
          <mask id="k"><rect width="5" height="5" fill="#fff"/></mask><filter id="f"><feGaussianBlur stdDeviation="1"/></filter></defs>
    <g id="g" style="filter:url(#f)">
      <path id="arrow" d="M 0 0 L 10 10" style="stroke:#000;marker-end:url(#m)"/>
      <path id="clipped" d="M 0 0 L 10 10" clip-path="url(#c)" style="stroke:#000"/>
      <path id="masked" d="M 0 0 L 10 10" style="stroke:#000;mask:url(#k)"/>
    </g>
    <path id="bare" d="M 0 0 L 10 10" style="stroke:#000"/>"""
    svg = load(body)
    items, _, _ = cs.collect(svg, [svg.getElementById("g"), svg.getElementById("bare")])
    assert cs.unseen(items) == {"filter": ["g"], "markers": ["arrow"], "clip path": ["clipped"], "mask": ["masked"]}
    items, _, _ = cs.collect(svg, [svg.getElementById("bare")])
    assert cs.unseen(items) == {}


@pytest.mark.skipif(not shutil.which("inkscape"), reason="needs Inkscape (apt-get install inkscape)")
def test_the_frame_is_the_visual_box_inkscape_measures(tmp_path, query_all):
    """Text (inkex gives it no real box) and a clipped path, in a mm document whose viewBox does
    not start at 0: the selection's box is what `inkscape --query-all` says, in user units."""
    body = """
    <defs><clipPath id="half"><rect x="0" y="0" width="30" height="200"/></clipPath></defs>
    <g id="layer" transform="translate(5,3)">
      <text id="words" x="20" y="50" style="font-size:12px;font-family:sans-serif">Hello CLIP</text>
      <path id="cut" d="M 10 100 L 60 100" clip-path="url(#half)" style="stroke:#000;stroke-width:4"/>
    </g>"""
    attrs = 'width="100mm" height="100mm" viewBox="-10 -20 100 100"'
    svg = load(body, attrs)
    (tmp_path / "doc.svg").write_bytes(etree.tostring(svg))
    px = query_all(tmp_path / "doc.svg")
    per_uu = 96 / 25.4  # px per user unit: 100 user units span 100 mm
    for ids in (["words"], ["words", "cut"]):
        box = cs.selection_box(svg, [svg.getElementById(i) for i in ids], [])
        left = min(px[i][0] for i in ids) / per_uu - 10
        right = max(px[i][0] + px[i][2] for i in ids) / per_uu - 10
        top = min(px[i][1] for i in ids) / per_uu - 20
        bottom = max(px[i][1] + px[i][3] for i in ids) / per_uu - 20
        assert (box.left, box.right, box.top, box.bottom) == pytest.approx((left, right, top, bottom), abs=1e-3)
    words = cs.selection_box(svg, [svg.getElementById("words")], [])
    assert words.width > 30 and 5 < words.height < 20  # a real box around the text, not a point
    cut = cs.selection_box(svg, [svg.getElementById("cut")], [])
    assert cut.right == pytest.approx(35, abs=1e-3)  # the clip path applied: 30 + the layer's 5
