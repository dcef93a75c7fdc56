"""Semantic tests: with a model that really knows a few concepts, CLIPDraw draws them.

The concept model (tests/data/concept, made by `python -m clipdraw.concepts.train`) is a toy CLIP
trained on stroke drawings of 5 shapes in 5 colours; it is loaded like any user model, through
--model CONFIG.json --pretrained FILE. The judge, a small CNN trained apart from it, names the
shape and colour of what CLIPDraw drew. Random strokes are the baseline: the judge gets a fixed
prompt right for them by chance only.
"""
import shutil
from pathlib import Path

import pytest
import torch
from lxml import etree

from clipdraw.cli import read_image
from clipdraw.concepts import caption
from clipdraw.concepts.judge import Judge
from clipdraw.concepts.synth import drawing
from clipdraw.optimize import picture, random_strokes
from clipdraw.scene import Scene
from clipdraw.svg import scene_to_svg, svg_to_scene
from test_cli import clipdraw
from test_inkscape_e2e import TOOLS, by_id, display, profile, run_inkscape  # noqa: F401 (fixtures)

DATA = Path(__file__).parent / "data" / "concept"
MODEL = ["--model", DATA / "clipdraw-concept.json", "--pretrained", DATA / "clipdraw-concept.safetensors"]
PROMPTS = [("circle", "red"), ("square", "green"), ("triangle", "blue"), ("star", "yellow"), ("cross", "black")]
pytestmark = pytest.mark.slow
ITERS = 100  # iterations per drawing
SEEDS = (0, 1)  # two drawings per prompt
# Of the 10 drawings, recognised entirely (shape and colour); random strokes: at most 1. A drawing's
# fate is chaotic: a change of the last float bits of a gradient (another summation order, another
# thread count) turns some drawings from right to wrong and others back. Measured over seeds 0-3
# (20 drawings, 2026-11-30): 13 to 15 right (the star never, the cross always, the other three in
# 3 of 4), so 5 of 10 fails by chance about one time in 25, where the former 3 of 5 (one drawing
# per prompt) did about one time in 6.
DRAWN_AT_LEAST = 5


@pytest.fixture(scope="module")
def judge():
    return Judge.load(DATA / "judge.safetensors")


def confidence(judge, image, shape, colour) -> float:
    """The judge's probability that image [H, W, 3] is a `colour` `shape`."""
    from clipdraw.concepts import COLOURS, SHAPES

    p_shape, p_colour = judge.grade(image)
    return float(p_shape[0, SHAPES.index(shape)] * p_colour[0, COLOURS.index(colour)])


def test_the_judge_knows_the_concepts(judge):
    """The judge is right on drawings it never saw (else the tests below measure nothing)."""
    g = torch.Generator().manual_seed(123)
    right = sum(judge.verdict(picture(drawing(s, c, g))) == (s, c) for s, c in PROMPTS * 4)
    assert right >= 18, f"{right}/20"


def test_draw_with_the_concept_model_draws_the_prompt(judge, tmp_path):
    """`clipdraw draw` for each prompt: the judge recognises the drawing, far above random strokes."""
    drawn, chance = [], []
    for shape, colour in PROMPTS:
        for seed in SEEDS:
            png = tmp_path / f"{colour}-{shape}-{seed}.png"
            r = clipdraw("draw", caption(shape, colour), "-o", tmp_path / "out.svg", "--png", png,
                         "--iters", ITERS, "--seed", seed, *MODEL)
            assert r.returncode == 0, r.stderr
            drawn.append(judge.verdict(read_image(png)) == (shape, colour))
            strokes = Scene(224, 224, random_strokes(256, 224, 224, torch.Generator().manual_seed(seed)))
            chance.append(judge.verdict(picture(strokes)) == (shape, colour))
    print(f"recognised: concept model {sum(drawn)}/{len(drawn)}, random strokes {sum(chance)}/{len(chance)}")
    assert sum(drawn) >= DRAWN_AT_LEAST and sum(chance) <= 1, (drawn, chance)


def test_refining_a_sketch_makes_the_judge_surer_and_keeps_the_strokes_near(judge, tmp_path):
    """A rough black triangle in pieces, refined toward "a drawing of a red triangle": the judge's
    confidence in a red triangle rises, and the strokes stay close to where they were drawn."""
    sketch = drawing("triangle", "black", torch.Generator().manual_seed(7), style="pieces")
    sketch.shapes = sketch.shapes[:6]  # no leftover scribbles: a sketch of the shape only
    sketch.save(tmp_path / "sketch.json")
    r = clipdraw("draw", caption("triangle", "red"), "-o", tmp_path / "out.svg", "--init", tmp_path / "sketch.json",
                 "--scene", tmp_path / "out.json", "--iters", 100, *MODEL)
    assert r.returncode == 0, r.stderr
    refined = Scene.load(tmp_path / "out.json")
    before = confidence(judge, picture(sketch), "triangle", "red")
    after = confidence(judge, picture(refined), "triangle", "red")
    print(f"judge's confidence in a red triangle: sketch {before:.3f}, refined {after:.3f}")
    assert after > max(0.5, 2 * before), (before, after)
    drift = torch.cat([(b.points - a.points).norm(dim=-1) for s, t in zip(sketch.shapes, refined.shapes)
                       for a, b in zip(s.subpaths, t.subpaths)])
    print(f"points moved {drift.mean():.1f} px on average, at most {drift.max():.1f} px")
    assert drift.mean() < 6.0, f"strokes moved {drift.mean():.1f} px on average (224 px canvas)"


@pytest.mark.inkscape
@pytest.mark.timeout(600)
@pytest.mark.skipif(any(shutil.which(t) is None for t in TOOLS), reason="needs Inkscape, Xvfb, xdotool and ImageMagick")
def test_inkscape_refines_the_selection_toward_the_prompt(judge, display, profile, tmp_path):  # noqa: F811
    """Real Inkscape runs the plugin on a selected rough sketch, the concept model named in the
    dialog's model and weights fields: the judge is surer of the prompt after than before."""
    sketch = drawing("star", "black", torch.Generator().manual_seed(3), style="pieces")
    sketch.shapes = sketch.shapes[:6]
    sketch.background = None
    ids = [f"s{i}" for i in range(len(sketch.shapes))]
    for shape, i in zip(sketch.shapes, ids):
        shape.id = i
    doc = scene_to_svg(sketch)
    prefs = {"prompt": caption("star", "red"), "model": MODEL[1], "pretrained": MODEL[3], "iterations": 100,
             "time_limit": 0, "summary": "false"}
    tree, shots = run_inkscape(display, profile, tmp_path, f"select-by-id:{','.join(ids)};org.clipdraw.draw.noprefs",
                               prefs, doc=doc, limit=400)
    assert tree is not None and shots == []
    assert all(by_id(tree, i) is not None for i in ids)  # the same paths, refined in place
    (tmp_path / "after.svg").write_bytes(etree.tostring(tree))
    after = svg_to_scene(str(tmp_path / "after.svg"))
    assert len(after.shapes) == len(ids)
    before_p = confidence(judge, picture(svg_to_scene(str(tmp_path / "in.svg"))), "star", "red")
    after_p = confidence(judge, picture(after), "star", "red")
    print(f"judge's confidence in a red star: selection {before_p:.3f}, refined {after_p:.3f}")
    assert after_p > max(0.5, 2 * before_p), (before_p, after_p)
