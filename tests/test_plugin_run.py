"""The plugin's extensions run whole, with the real engine in a subprocess and a tiny random-weight
CLIP: refine, add, new layer, new drawing, What Does CLIP See, every user error, and Cancel."""
import os
import re
import shlex
import shutil
import signal
import subprocess
import sys
import time
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parents[1]
INKEX = Path(os.environ.get("CLIPDRAW_TEST_INKEX", "/usr/share/inkscape/extensions"))
sys.path[:0] = [str(ROOT / "inkscape_ext")] + ([str(INKEX)] if INKEX.is_dir() else [])
if not (INKEX / "inkex").is_dir():
    pytest.skip("Inkscape's inkex is not installed (apt-get install inkscape)", allow_module_level=True)
import inkex  # noqa: E402  (needs lxml and cssselect in this Python: they are test requirements)
from lxml import etree  # noqa: E402

import clipdraw_draw  # noqa: E402
import clipdraw_engine  # noqa: E402
import clipdraw_scene as cs  # noqa: E402
import clipdraw_see  # noqa: E402

pytestmark = pytest.mark.timeout(300)

DOC = """<svg xmlns="http://www.w3.org/2000/svg" xmlns:inkscape="http://www.inkscape.org/namespaces/inkscape"
     xmlns:sodipodi="http://sodipodi.sourceforge.net/DTD/sodipodi-0.dtd" width="210mm" height="297mm" viewBox="0 0 210 297">
 <sodipodi:namedview id="nv" inkscape:current-layer="layer1"/>
 <g id="layer1" inkscape:groupmode="layer" inkscape:label="Layer 1" transform="translate(10,5)">
  <path id="p1" d="M 10 10 C 20 30 40 30 50 10" style="fill:none;stroke:#ff0000;stroke-width:2"/>
  <g id="g1" transform="rotate(20) scale(1.5)" style="opacity:0.5">
   <rect id="r1" x="30" y="40" width="20" height="10" style="fill:#00ff00;stroke:#000000;stroke-width:1"/>
   <circle id="c1" cx="60" cy="60" r="8" fill="blue"/>
  </g>
  <text id="t1" x="5" y="100">hello</text>
 </g>
 <path id="outside" d="M 100 200 L 150 250" transform="rotate(5)" style="stroke:black;fill:none"/>
</svg>
"""


@pytest.fixture
def engine_env(monkeypatch, tiny_model, tmp_path):
    """The engine is this test run's Python, with the tiny model, as a user would set it up."""
    python = sys.executable
    if os.name == "posix":  # the plugin drops PYTHONPATH: this keeps the engine this checkout's
        python = tmp_path / "python"
        python.write_text(f"#!/bin/sh\nPYTHONPATH={shlex.quote(str(ROOT / 'core'))} "
                          f"exec {shlex.quote(sys.executable)} \"$@\"\n", encoding="utf-8")
        python.chmod(0o755)
    monkeypatch.setenv("CLIPDRAW_PYTHON", str(python))
    monkeypatch.setenv("CLIPDRAW_MODEL", tiny_model[0])
    monkeypatch.setenv("CLIPDRAW_PRETRAINED", tiny_model[1])
    return tiny_model


def run_ext(cls, tmp_path, args, doc=DOC):
    """Run an extension in-process as Inkscape would; returns (output tree or None, message)."""
    src = tmp_path / "in.svg"
    src.write_text(doc, encoding="utf-8")
    out = tmp_path / "out.svg"
    if out.exists():
        out.unlink()
    err = tmp_path / "stderr.txt"
    saved = sys.stderr
    with open(err, "w", encoding="utf-8") as sys.stderr:
        try:
            cls().run(args + [str(src)], output=str(out))
        except SystemExit as e:
            assert e.code != 0
        finally:
            sys.stderr = saved
    tree = etree.parse(str(out)).getroot() if out.exists() and out.stat().st_size else None
    return tree, err.read_text(encoding="utf-8")


def by_id(tree, i):
    found = tree.xpath(f"//*[@id='{i}']")
    return found[0] if found else None


def original(i):
    return by_id(etree.fromstring(DOC.encode()), i)


FAST = ["--iterations=4", "--time_limit=30", "--resolution=64", "--augmentations=1"]


def test_refine_in_place(engine_env, tmp_path, monkeypatch):
    """Whatever the engine replies, the document says the same: changed shapes read back as the
    reply (within 1e-3 user units), unchanged ones and everything else stay byte for byte."""
    calls = []
    real = clipdraw_engine.run
    monkeypatch.setattr(clipdraw_engine, "run", lambda request, **kw: calls.append((request, real(request, **kw))) or calls[-1][1])
    args = ["--id=p1", "--id=g1", "--prompt=a red apple", "--iterations=8", "--time_limit=60", "--resolution=64",
            "--augmentations=1", "--fidelity=0"]
    tree, message = run_ext(clipdraw_draw.Draw, tmp_path, args)
    assert message.startswith("CLIPDraw: Refined 3 paths in 8 iterations") and "text" not in message, message
    assert re.search(r"CLIP similarity to 'a red apple': -?\d\.\d{3} -> -?\d\.\d{3}\.", message), message
    (request, reply), = calls
    sent, got = request["scene"]["shapes"], reply["shapes"]
    assert [s["id"] for s in sent] == [s["id"] for s in got] == ["p1", "r1", "c1"]
    before = inkex.load_svg(DOC.encode()).getroot()
    after = inkex.load_svg(etree.tostring(tree)).getroot() if tree is not None else before
    selected = [before.getElementById("p1"), before.getElementById("g1")]
    canvas = cs.Canvas(cs.selection_box(before, selected, []), 64)  # Inkscape's box, as the plugin's
    for s, g in zip(sent, got):
        element = after.getElementById(s["id"])
        if not cs.shape_changed(s, g):
            assert etree.tostring(element) == etree.tostring(before.getElementById(s["id"]))
            continue
        again, _, _ = cs.collect(after, [element])
        now = cs.item_to_shape(again[0], canvas)
        assert {k: now.get(k) for k in cs.STROKE_DEFAULTS} == {k: s.get(k) for k in cs.STROKE_DEFAULTS}  # caps kept
        tol = 1e-3 * canvas.scale  # 1e-3 user units, in canvas pixels
        for a, b in zip(now["subpaths"], g["subpaths"]):
            assert len(a["points"]) == len(b["points"]) and a["closed"] == b["closed"]
            assert all(abs(x - y) < tol for p, q in zip(a["points"], b["points"]) for x, y in zip(p, q))
        assert now["stroke_width"] == pytest.approx(g["stroke_width"], rel=1e-4)
        for name in ("stroke", "fill"):
            if g[name] is not None:
                assert now[name][:3] == pytest.approx(g[name][:3], abs=1 / 255)
                # the engine kept alpha within the group's opacity, so what it optimized is written
                assert g[name][3] <= again[0].opacity + 1e-6
                assert now[name][3] == pytest.approx(g[name][3], abs=1e-4)
    if tree is not None:
        for i in ("outside", "t1"):
            assert etree.tostring(by_id(tree, i)) == etree.tostring(original(i))
        assert by_id(tree, "layer1").get("transform") == "translate(10,5)"
        assert by_id(tree, "g1").get("transform") == "rotate(20) scale(1.5)"


def test_zero_iterations_leave_the_document_as_it_was(engine_env, tmp_path):
    """The whole round trip through the real engine with nothing optimised (the dialog allows 0
    iterations): every element reads back where it was, within 1e-3 user units. (The plugin leaves
    an element untouched when the reply is within 1e-4 canvas px of what it sent; the mapping
    back itself is checked point by point in test_plugin.py.)"""
    tree, message = run_ext(clipdraw_draw.Draw, tmp_path, ["--id=p1", "--id=g1", "--prompt=a cat",
                                                           "--iterations=0", "--resolution=64"])
    # the summary says so, and the one measure of the drawing did not move either
    assert message.startswith("CLIPDraw: Nothing changed (the 3 selected paths are as drawn) in 0 iterations"), message
    m = re.search(r"CLIP similarity to 'a cat': (-?\d\.\d{3}) -> (-?\d\.\d{3})\.", message)
    assert m and m.group(1) == m.group(2), message
    before = inkex.load_svg(DOC.encode()).getroot()
    after = inkex.load_svg(etree.tostring(tree)).getroot() if tree is not None else before
    for i in ("p1", "r1", "c1"):
        a, b = after.getElementById(i), before.getElementById(i)
        pa, pb = (e.path.to_superpath().transform(e.composed_transform()) for e in (a, b))
        flat = lambda csp: [c for sub in csp for node in sub for p in node for c in p]  # noqa: E731
        assert max(abs(x - y) for x, y in zip(flat(pa), flat(pb))) < 1e-3, i
        assert len(flat(pa)) == len(flat(pb))


def test_a_prompt_too_long_for_clip_is_said_in_the_summary(engine_env, tmp_path):
    prompt = "a drawing of a cat " + "with a very long tail " * 15  # 80 tokens: 75 fit
    tree, message = run_ext(clipdraw_draw.Draw, tmp_path, ["--id=p1", f"--prompt={prompt}", "--summary=false"] + FAST)
    assert tree is not None, message
    assert message.startswith("CLIPDraw: Warning: The prompt 'a drawing of a cat with a ve...g tail with a very long tail'")
    assert "is too long for clipdraw-tiny: its last 5 tokens are dropped" in message, message


def test_add_strokes_go_in_a_group_above_the_selection(engine_env, tmp_path):
    tree, message = run_ext(clipdraw_draw.Draw, tmp_path,
                            ["--id=p1", "--id=t1", "--mode=add", "--strokes=5", "--prompt=a tree", "--summary=false"] + FAST)
    assert tree is not None, message
    assert message.strip() == "CLIPDraw: Left 1 text alone (Path > Object to Path makes paths CLIPDraw can use)."
    layer = by_id(tree, "layer1")
    group = layer[[by_id(tree, "t1") is c for c in layer].index(True) + 1]  # right above the top-most selected
    assert group.get("{http://www.inkscape.org/namespaces/inkscape}label") == "a tree"
    assert len(group) == 5 and all(p.tag.endswith("path") and "stroke-linecap:round" in p.get("style") for p in group)
    ids = [p.get("id") for p in tree.iter() if p.get("id")]
    assert len(set(ids)) == len(ids)


def test_new_layer_keeps_the_originals(engine_env, tmp_path):
    tree, message = run_ext(clipdraw_draw.Draw, tmp_path,
                            ["--id=g1", "--output_mode=layer", "--mode=add", "--strokes=3", "--summary=false"] + FAST)
    assert tree is not None, message
    layer = tree[-1]
    assert layer.get("{http://www.inkscape.org/namespaces/inkscape}groupmode") == "layer"
    assert layer.get("{http://www.inkscape.org/namespaces/inkscape}label") == "CLIPDraw: a drawing of a cat"
    assert len(layer) == 2 + 3
    before = etree.fromstring(DOC.encode())
    for i in ("layer1", "outside", "nv"):
        assert etree.tostring(by_id(tree, i)) == etree.tostring(by_id(before, i))


def test_nothing_selected_draws_on_the_page(engine_env, tmp_path):
    tree, message = run_ext(clipdraw_draw.Draw, tmp_path, ["--strokes=6", "--summary=false"] + FAST)
    assert tree is not None, message
    layer = by_id(tree, "layer1")
    group = layer[-1]
    assert len(group) == 6 and group.get("{http://www.inkscape.org/namespaces/inkscape}label") == "a drawing of a cat"
    # new strokes start on the canvas: the largest square on the 210 x 297 page, 43.5 from the top
    doc = inkex.load_svg(etree.tostring(tree)).getroot()
    for path in group:
        element = doc.getElementById(path.get("id"))
        box = element.bounding_box(element.getparent().composed_transform())
        assert -25 < box.left and box.right < 235 and 43.5 - 25 < box.top and box.bottom < 253.5 + 25


@pytest.mark.skipif(not shutil.which("inkscape"), reason="needs Inkscape (apt-get install inkscape)")
def test_text_only_selection_frames_new_strokes_around_the_text(engine_env, tmp_path, query_all):
    """The canvas is the text's box as Inkscape measures it, and the new strokes are clipped to it."""
    tree, message = run_ext(clipdraw_draw.Draw, tmp_path, ["--id=t1", "--strokes=5", "--summary=false"] + FAST)
    assert tree is not None, message
    x, y, w, h = query_all(tmp_path / "in.svg")["t1"]
    per_uu = 96 / 25.4  # px per user unit (a mm page, viewBox from 0)
    cx, cy, side = (x + w / 2) / per_uu, (y + h / 2) / per_uu, max(w, h) / per_uu / (1 - 2 * cs.MARGIN)
    doc = inkex.load_svg(etree.tostring(tree)).getroot()
    group = next(g for g in doc.iter() if isinstance(g, inkex.Group) and g.label == "a drawing of a cat")
    assert len(group) == 5
    clip = doc.getElementById(group.get("clip-path")[5:-1])
    square = clip[0].path.to_superpath().transform(group.composed_transform())
    corners = [node[1] for node in square[0]][:4]
    assert [tuple(c) for c in corners] == [pytest.approx(p, abs=1e-3) for p in (
        (cx - side / 2, cy - side / 2), (cx + side / 2, cy - side / 2), (cx + side / 2, cy + side / 2), (cx - side / 2, cy + side / 2))]
    assert 20 < w / per_uu < 40  # the text's real width ("hello" at Inkscape's default size)


LPE_DOC = DOC.replace('<text id="t1" x="5" y="100">hello</text>', """
  <path id="lpe" d="M 10 60 C 20 70 30 70 40 60" inkscape:path-effect="#effect1" inkscape:original-d="M 10 60 L 25 75 L 40 60"
        style="fill:none;stroke:#000;stroke-width:2;marker-end:url(#arrow)"/>
  <path id="dashes" d="M 10 90 L 60 90" style="fill:none;stroke:#000;stroke-width:2;stroke-dasharray:4,2"/>""").replace(
    '<sodipodi:namedview', '<defs><inkscape:path-effect id="effect1" effect="bspline"/>'
    '<marker id="arrow"><path d="M 0 0 L 2 1 L 0 2 Z"/></marker></defs><sodipodi:namedview')


def test_summary_names_dropped_effects_and_what_clip_did_not_see(engine_env, tmp_path):
    from clipdraw.engine import renders_dashes

    tree, message = run_ext(clipdraw_draw.Draw, tmp_path, ["--id=lpe", "--id=dashes", "--fidelity=0"] + FAST, doc=LPE_DOC)
    assert tree is not None, message
    assert ("CLIP saw dashes solid: the renderer draws no dashes yet" in message) == (not renders_dashes()), message
    assert "stroke-dasharray:4,2" in by_id(tree, "dashes").get("style")
    assert "lpe is a plain path now: the live path effect was dropped" in message, message
    assert "CLIP did not see the markers of lpe" in message
    lpe = by_id(tree, "lpe")
    assert lpe.get("{http://www.inkscape.org/namespaces/inkscape}path-effect") is None
    assert lpe.get("{http://www.inkscape.org/namespaces/inkscape}original-d") is None
    assert by_id(tree, "effect1") is not None and "marker-end:url(#arrow)" in lpe.get("style")


def test_what_does_clip_see_is_a_message_only(engine_env, tmp_path):
    tree, message = run_ext(clipdraw_see.See, tmp_path, ["--id=g1", "--top=3", "--labels=cat;dog;apple;house"])
    assert tree is None  # the document is not rewritten
    lines = message.strip().splitlines()
    assert lines[0] == "CLIP sees in the selection:" and len(lines) == 4
    total = sum(float(line.rsplit(" ", 1)[1].rstrip("%")) for line in lines[1:])
    assert {line.split(":")[0] for line in lines[1:]} <= {"cat", "dog", "apple", "house"} and total <= 100.05
    tree, message = run_ext(clipdraw_see.See, tmp_path, [])
    assert tree is None and message.startswith("CLIP sees in the page:")


@pytest.mark.parametrize("case", ["empty prompt", "bad model file", "no engine", "python without engine",
                                  "nothing to refine", "engine command missing", "engine command fails",
                                  "weights not downloaded"])
def test_user_errors_give_one_message_and_leave_the_document(case, engine_env, tmp_path, monkeypatch):
    args = ["--id=p1"] + FAST
    expect = {
        "empty prompt": "the prompt is empty",
        "bad model file": "",
        "no engine": "not set up",
        "python without engine": "does not have the clipdraw engine",
        "nothing to refine": "nothing to refine (1 text)",
        "engine command missing": "cannot run the engine command `/no/such/engine --flag`",
        "engine command fails": "exit status 255): ssh: Could not resolve hostname gpu-box",
        "weights not downloaded": "Run > Weights",
    }[case]
    if case == "empty prompt":
        args.append("--prompt=  ")
    elif case == "bad model file":
        bad = tmp_path / "broken.pt"
        bad.write_bytes(b"this is not a checkpoint")
        args.append(f"--pretrained={bad}")
        expect = str(bad.name)
    elif case == "no engine":
        monkeypatch.delenv("CLIPDRAW_PYTHON")
    elif case == "python without engine":
        empty = tmp_path / "venv"
        subprocess.run([sys.executable, "-m", "venv", "--without-pip", str(empty)], check=True)
        monkeypatch.setenv("CLIPDRAW_PYTHON", str(empty / "bin" / "python"))
    elif case == "nothing to refine":
        args = ["--id=t1", "--mode=refine"] + FAST
    elif case == "engine command missing":
        args.append("--engine=/no/such/engine --flag")
    elif case == "engine command fails":  # what ssh says for a machine it cannot find
        args.append("--engine=sh -c 'echo \"ssh: Could not resolve hostname gpu-box\" >&2; exit 255'")
    elif case == "weights not downloaded":  # offline, with an empty cache
        monkeypatch.setenv("HF_HOME", str(tmp_path / "hf"))
        monkeypatch.setenv("XDG_CACHE_HOME", str(tmp_path / "cache"))
        monkeypatch.setenv("HF_HUB_OFFLINE", "1")
        args += ["--model=ViT-B-32-quickgelu", "--pretrained=openai"]
    start = time.time()
    tree, message = run_ext(clipdraw_draw.Draw, tmp_path, args)
    assert tree is None  # nothing written: Inkscape keeps the document as it was
    lines = message.strip().splitlines()
    assert len(lines) == 1 and lines[0].startswith("CLIPDraw: ") and expect in lines[0], message
    assert "Traceback" not in message
    assert time.time() - start < 120


def test_the_dialogs_model_choice_reaches_the_engine(engine_env, tmp_path, monkeypatch):
    """The Run tab's CLIP model choice is an open_clip name the engine loads (a tag it does not
    have shows that it got there, without downloading anything); Other model overrides it."""
    monkeypatch.setenv("CLIPDRAW_PRETRAINED", "no-such-tag")
    tree, message = run_ext(clipdraw_draw.Draw, tmp_path, ["--id=p1", "--guide=ViT-B-32-256"] + FAST)
    assert tree is None and "'no-such-tag' is neither a file nor a pretrained tag of ViT-B-32-256" in message
    tree, message = run_ext(clipdraw_draw.Draw, tmp_path, ["--id=p1", "--guide=ViT-B-32-256", "--model=RN50"] + FAST)
    assert tree is None and "pretrained tag of RN50" in message


def test_the_engine_command_setting_runs_the_engine_instead_of_the_local_python(engine_env, tmp_path, monkeypatch,
                                                                              stand_in_engine):
    monkeypatch.setenv("CLIPDRAW_PYTHON", "/no/such/python")  # not used: the command is
    monkeypatch.setenv("CLIPDRAW_ENGINE", str(stand_in_engine))
    tree, message = run_ext(clipdraw_draw.Draw, tmp_path, ["--id=p1", "--summary=true"] + FAST)
    assert tree is not None and by_id(tree, "p1").get("d") != original("p1").get("d")
    assert message.startswith("CLIPDraw: Refined 1 path in 4 iterations")
    # without Gtk (this Python has no PyGObject) or without a display, the summary says so
    assert "install Gtk 3 for Python" in message or "no display" in message


# ---- Cancel ---------------------------------------------------------------------------------


def engine_children(pid):
    """Processes whose parent is `pid` (Linux /proc)."""
    kids = []
    for entry in Path("/proc").iterdir():
        if entry.name.isdigit():
            try:
                fields = (entry / "stat").read_text().rsplit(")", 1)[1].split()
            except OSError:
                continue
            if int(fields[1]) == pid and fields[0] != "Z":
                kids.append(int(entry.name))
    return kids


def alive(pid):
    try:
        state = Path(f"/proc/{pid}/stat").read_text().rsplit(")", 1)[1].split()[0]
    except OSError:
        return False
    return state != "Z"


def wait_for(condition, seconds):
    deadline = time.time() + seconds
    while time.time() < deadline:
        if condition():
            return True
        time.sleep(0.1)
    return False


@pytest.mark.skipif(not Path("/proc/self/stat").exists(), reason="reads /proc")
@pytest.mark.parametrize("how", ["inkscape cancel", "sigkill", "sigterm"])
def test_cancel_leaves_no_engine_behind(how, engine_env, tmp_path):
    """Inkscape's Cancel stops reading the plugin's pipes (it does not kill it); the plugin may also
    be killed outright. Either way the engine must go too."""
    src = tmp_path / "in.svg"
    src.write_text(DOC, encoding="utf-8")
    env = dict(os.environ, PYTHONPATH=os.pathsep.join(p for p in (str(INKEX),) if Path(p).is_dir()))
    plugin = subprocess.Popen(
        [sys.executable, str(ROOT / "inkscape_ext" / "clipdraw_draw.py"), "--id=p1", "--iterations=100000",
         "--time_limit=0", "--resolution=64", str(src)],
        stdin=subprocess.DEVNULL, stdout=subprocess.PIPE, stderr=subprocess.PIPE, env=env)
    engine = None
    try:
        assert wait_for(lambda: engine_children(plugin.pid), 60), "the engine never started"
        engine = engine_children(plugin.pid)[0]
        time.sleep(1.0)  # let it get into its loop
        if how == "inkscape cancel":
            plugin.stdout.close()
            plugin.stderr.close()
        elif how == "sigkill":
            plugin.kill()
        else:
            plugin.terminate()
        assert wait_for(lambda: not alive(engine), 15), f"engine {engine} outlived the plugin ({how})"
        assert wait_for(lambda: plugin.poll() is not None, 15)
    finally:
        if plugin.poll() is None:
            plugin.kill()
        plugin.wait()
        if engine is not None and alive(engine):
            os.kill(engine, signal.SIGKILL)
