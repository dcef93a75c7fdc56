"""The scene format: round trips, tensors, and refusal of malformed scenes with a precise message."""
import copy
import math
from pathlib import Path

import pytest
import torch

from clipdraw.scene import Scene, SceneError


def scene_dict():
    return {
        "format": "clipdraw-scene", "version": 1, "width": 224, "height": 200,
        "background": [1, 1, 1, 1],
        "shapes": [
            {
                "id": "path12",
                "subpaths": [{"points": [[10, 20], [30, 40], [50, 60], [70, 80]], "closed": False}],
                "stroke": [0.1, 0.2, 0.3, 0.5], "stroke_width": 2.0, "fill": None, "fill_rule": "nonzero",
            },
            {
                "id": None,
                "subpaths": [
                    {"points": [[0, 0], [10, 0], [10, 10], [5, 10], [0, 10], [0, 5]], "closed": True},
                    {"points": [[100, 100]], "closed": False},
                ],
                "stroke": None, "stroke_width": 0.0, "fill": [1, 0, 0, 1], "fill_rule": "evenodd",
            },
        ],
    }


def test_round_trip_is_exact_and_tensors_have_the_documented_shapes():
    d = scene_dict()
    scene = Scene.from_dict(d)
    assert (scene.width, scene.height) == (224, 200)
    pts = scene.shapes[0].subpaths[0].points
    assert pts.dtype == torch.float32 and pts.shape == (4, 2)
    assert scene.shapes[0].stroke_width.shape == () and scene.shapes[0].stroke.shape == (4,)
    assert scene.shapes[1].stroke is None and scene.shapes[1].fill.tolist() == [1, 0, 0, 1]
    assert scene.shapes[1].subpaths[0].num_segments == 2 and scene.shapes[1].subpaths[1].num_segments == 0
    out = scene.to_dict()
    assert out["shapes"][0]["id"] == "path12"
    assert Scene.from_dict(out).to_dict() == out
    # float32 values survive exactly
    assert out["shapes"][0]["stroke"] == pytest.approx([0.1, 0.2, 0.3, 0.5], abs=1e-7)
    assert out["shapes"][1]["subpaths"][0]["points"] == d["shapes"][1]["subpaths"][0]["points"]


def test_save_and_load(tmp_path):
    scene = Scene.from_dict(scene_dict())
    scene.save(tmp_path / "s.json")
    again = Scene.load(tmp_path / "s.json")
    assert again.to_dict() == scene.to_dict()


def test_to_dict_works_on_tensors_that_require_grad():
    scene = Scene.from_dict(scene_dict())
    scene.shapes[0].subpaths[0].points.requires_grad_(True)
    scene.shapes[0].stroke_width.requires_grad_(True)
    assert scene.to_dict()["shapes"][0]["stroke_width"] == 2.0


def broken(path, value):
    """scene_dict() with the item at `path` (a tuple of keys) replaced, or deleted when value is DELETE."""
    d = copy.deepcopy(scene_dict())
    target = d
    for key in path[:-1]:
        target = target[key]
    if value is DELETE:
        del target[path[-1]]
    else:
        target[path[-1]] = value
    return d


DELETE = object()


@pytest.mark.parametrize("path, value, words", [
    (("format",), "svg", ["format"]),
    (("version",), 2, ["version"]),
    (("width",), DELETE, ["width", "missing"]),
    (("height",), -3, ["height"]),
    (("shapes",), DELETE, ["shapes", "missing"]),
    (("shapes", 0, "subpaths", 0, "points"), [[0, 0], [1, 1], [2, 2]], ["shape 0", "path12", "subpaths[0]", "3n+1"]),
    (("shapes", 1, "subpaths", 0, "points"), [[0, 0], [1, 1], [2, 2], [3, 3]], ["shape 1", "subpaths[0]", "3n points"]),
    (("shapes", 0, "subpaths", 0, "points", 2), [float("nan"), 1], ["shape 0", "points", "nan"]),
    (("shapes", 0, "subpaths", 0, "points", 1), [math.inf, 1], ["shape 0", "points", "inf"]),
    (("shapes", 0, "subpaths", 0, "points", 1), ["a", 1], ["shape 0", "points"]),
    (("shapes", 0, "subpaths", 0, "points", 1), [1e20, 1], ["shape 0", "points", "1e+20", "too far"]),
    (("shapes", 0, "stroke_width"), -1.0, ["shape 0", "stroke_width", "negative"]),
    (("shapes", 0, "stroke_width"), 1e20, ["shape 0", "stroke_width", "16777216"]),
    (("shapes", 0, "stroke_width"), float("nan"), ["shape 0", "stroke_width"]),
    (("shapes", 0, "stroke"), [0, 0, 1.5, 1], ["shape 0", "stroke", "0..1"]),
    (("shapes", 1, "fill"), [0, 0, 1], ["shape 1", "fill"]),
    (("shapes", 1, "fill"), [0, -0.1, 1, 1], ["shape 1", "fill"]),
    (("shapes", 1, "fill_rule"), "winding", ["shape 1", "fill_rule"]),
    (("shapes", 1, "stroke"), DELETE, ["shape 1", "stroke", "missing"]),
    (("shapes", 0, "subpaths"), DELETE, ["shape 0", "subpaths", "missing"]),
    (("shapes", 0, "subpaths", 0, "closed"), "yes", ["shape 0", "closed"]),
    (("background",), [1, 1, 1], ["background"]),
])
def test_malformed_scenes_are_refused_naming_shape_and_field(path, value, words):
    with pytest.raises(SceneError) as info:
        Scene.from_dict(broken(path, value))
    message = str(info.value)
    for word in words:
        assert word.lower() in message.lower(), message


def test_load_reports_bad_json_and_missing_file(tmp_path):
    bad = tmp_path / "bad.json"
    bad.write_text("{not json")
    with pytest.raises(SceneError, match="JSON"):
        Scene.load(bad)
    with pytest.raises(SceneError, match="cannot read"):
        Scene.load(tmp_path / "absent.json")


def test_reference_scenes_load():
    reference_dir = Path(__file__).resolve().parent / "data" / "diffvg"
    paths = sorted(reference_dir.glob("*.scene.json"))
    assert paths
    for path in paths:
        scene = Scene.load(path)
        assert scene.width == 224 and len(scene.shapes) > 0


def test_stroke_style_keys_are_optional_validated_and_round_trip():
    base = {"format": "clipdraw-scene", "version": 1, "width": 10, "height": 10, "shapes": [
        {"subpaths": [{"points": [[0, 0], [1, 1], [2, 2], [3, 3]], "closed": False}],
         "stroke": [0, 0, 0, 1], "stroke_width": 2, "fill": None}]}
    plain = Scene.from_dict(base)
    assert plain.shapes[0].stroke_linecap == "round" and plain.shapes[0].stroke_dasharray is None
    assert plain.to_dict()["shapes"][0].keys() == {"id", "subpaths", "stroke", "stroke_width", "fill", "fill_rule"}
    styled = dict(base["shapes"][0], stroke_linecap="butt", stroke_linejoin="miter", stroke_miterlimit=10,
                  stroke_dasharray=[4, 2, 1], stroke_dashoffset=1.5)
    shape = Scene.from_dict(dict(base, shapes=[styled])).shapes[0]
    assert shape.stroke_dasharray == [4.0, 2.0, 1.0, 4.0, 2.0, 1.0]  # an odd list repeats, as in SVG
    again = Scene.from_dict(Scene.from_dict(dict(base, shapes=[styled])).to_dict()).shapes[0]
    assert (again.stroke_linecap, again.stroke_linejoin, again.stroke_miterlimit, again.stroke_dashoffset) == \
        ("butt", "miter", 10.0, 1.5)
    for key, bad in [("stroke_linecap", "flat"), ("stroke_linejoin", "arcs"), ("stroke_miterlimit", 0.5),
                     ("stroke_dasharray", [0, 0]), ("stroke_dasharray", [-1, 2]), ("stroke_dashoffset", float("nan"))]:
        with pytest.raises(SceneError, match=key):
            Scene.from_dict(dict(base, shapes=[dict(base["shapes"][0], **{key: bad})]))


def test_paint_limits_are_optional_validated_and_round_trip():
    base = {"format": "clipdraw-scene", "version": 1, "width": 10, "height": 10, "shapes": [
        {"subpaths": [{"points": [[0, 0], [1, 1], [2, 2], [3, 3]], "closed": False}],
         "stroke": [0, 0, 0, 0.5], "stroke_width": 2, "fill": None}]}
    plain = Scene.from_dict(base).shapes[0]
    assert plain.alpha_max == 1.0 and plain.fixed_paints == []
    limited = dict(base["shapes"][0], alpha_max=0.5, fixed_paints=["stroke"])
    again = Scene.from_dict(Scene.from_dict(dict(base, shapes=[limited])).to_dict()).shapes[0]
    assert (again.alpha_max, again.fixed_paints) == (0.5, ["stroke"])
    for key, bad in [("alpha_max", 1.5), ("alpha_max", "x"), ("fixed_paints", ["outline"]), ("fixed_paints", "fill")]:
        with pytest.raises(SceneError, match=key):
            Scene.from_dict(dict(base, shapes=[dict(base["shapes"][0], **{key: bad})]))
