"""End to end: real Inkscape 1.2 headless on its own Xvfb display runs the installed plugin, which
runs the engine with a tiny random-weight CLIP: a refine run, a no-selection run, an error run.

Traps handled here: extension actions exist only with a display; without `.noprefs` a dialog opens
and nothing runs; parameters come from $INKSCAPE_PROFILE_DIR/preferences.xml; a message the
plugin prints opens a dialog that waits for OK (we photograph it and press OK); Inkscape exits 0
whatever happened; Inkscape runs `python3` from PATH, which must be the system one with lxml.
"""
import math
import os
import shutil
import signal
import subprocess
import sys
import time
from pathlib import Path
from xml.sax.saxutils import quoteattr

import numpy as np
import pytest
from lxml import etree

ROOT = Path(__file__).resolve().parents[1]
TOOLS = ("inkscape", "Xvfb", "xdotool", "import")
pytestmark = [
    pytest.mark.inkscape,
    pytest.mark.timeout(600),
    pytest.mark.skipif(any(shutil.which(t) is None for t in TOOLS),
                       reason="needs Inkscape, Xvfb, xdotool and ImageMagick (apt-get install inkscape xvfb xdotool imagemagick)"),
]
INK = "{http://www.inkscape.org/namespaces/inkscape}"

DOC = """<svg xmlns="http://www.w3.org/2000/svg" xmlns:inkscape="http://www.inkscape.org/namespaces/inkscape"
     width="210mm" height="297mm" viewBox="0 0 210 297">
 <g id="layer1" inkscape:groupmode="layer" inkscape:label="Layer 1" transform="translate(10,5)">
  <path id="p1" d="M 10 10 C 20 30 40 30 50 10" style="fill:none;stroke:#ff0000;stroke-width:2"/>
  <g id="g1" transform="rotate(20) scale(1.5)" style="opacity:0.5">
   <rect id="r1" x="30" y="40" width="20" height="10" style="fill:#00ff00;stroke:#000000;stroke-width:1"/>
   <circle id="c1" cx="60" cy="60" r="8" fill="blue"/>
  </g>
 </g>
 <path id="outside" d="M 100 200 L 150 250" style="stroke:black;fill:none"/>
</svg>
"""


@pytest.fixture(scope="module")
def display():
    """A private Xvfb display (extension actions do not exist without one)."""
    n = next(n for n in range(87, 400)
             if not Path(f"/tmp/.X11-unix/X{n}").exists() and not Path(f"/tmp/.X{n}-lock").exists())
    xvfb = subprocess.Popen(["Xvfb", f":{n}", "-screen", "0", "1280x1024x24", "-nolisten", "tcp"],
                            stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
    deadline = time.time() + 20
    while not Path(f"/tmp/.X11-unix/X{n}").exists():
        assert xvfb.poll() is None and time.time() < deadline, "Xvfb did not start"
        time.sleep(0.1)
    yield f":{n}"
    xvfb.terminate()
    xvfb.wait(10)


@pytest.fixture(scope="module")
def profile(tmp_path_factory):
    """An Inkscape profile with the plugin installed by `clipdraw install-inkscape` itself, which
    records this test run's Python as the engine's."""
    folder = tmp_path_factory.mktemp("inkscape-profile")
    env = dict(os.environ, INKSCAPE_PROFILE_DIR=str(folder))
    r = subprocess.run([sys.executable, "-m", "clipdraw", "install-inkscape"], env=env, capture_output=True,
                       text=True, timeout=120)
    assert r.returncode == 0, r.stderr
    assert (folder / "extensions" / "clipdraw" / "clipdraw.inx").is_file()
    return folder


def windows(env):
    """(id, name, x, y, width, height) of the visible windows."""
    found = subprocess.run(["xdotool", "search", "--onlyvisible", "--class", "."], env=env,
                           capture_output=True, text=True, timeout=20).stdout.split()
    out = []
    for wid in found:
        name = subprocess.run(["xdotool", "getwindowname", wid], env=env, capture_output=True, text=True,
                              timeout=20).stdout.strip()
        geo = subprocess.run(["xdotool", "getwindowgeometry", "--shell", wid], env=env, capture_output=True,
                             text=True, timeout=20).stdout
        g = dict(line.split("=", 1) for line in geo.split() if "=" in line)
        if {"X", "Y", "WIDTH", "HEIGHT"} <= set(g):
            out.append((wid, name, int(g["X"]), int(g["Y"]), int(g["WIDTH"]), int(g["HEIGHT"])))
    return out


def start_inkscape(display, profile, tmp_path, actions, prefs, env_extra=None, doc=DOC):
    """Start Inkscape headless on `display` (parameters through preferences.xml); (process, env, out)."""
    src = tmp_path / "in.svg"
    src.write_text(doc, encoding="utf-8")
    out = tmp_path / "out.svg"
    attrs = " ".join(f"org.clipdraw.draw.{k}={quoteattr(str(v))}" for k, v in prefs.items())
    (profile / "preferences.xml").write_text(
        f'<?xml version="1.0" encoding="UTF-8" standalone="no"?>\n'
        f'<inkscape version="1"><group id="extensions" {attrs}/></inkscape>\n', encoding="utf-8")
    env = {k: v for k, v in os.environ.items() if not k.startswith(("CLIPDRAW_", "PYTHON"))}
    # Inkscape runs `python3` from PATH: the system one, with lxml and Inkscape's inkex
    env.update(DISPLAY=display, INKSCAPE_PROFILE_DIR=str(profile), PATH="/usr/bin:/bin:" + os.environ["PATH"])
    env.update(env_extra or {})
    proc = subprocess.Popen(
        ["inkscape", "--batch-process", f"--actions={actions};export-filename:{out};export-do", str(src)],
        env=env, stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL, start_new_session=True)
    return proc, env, out


def kill_inkscape(proc):
    """Inkscape, and everything it started (the plugin, its engine), killed if still running."""
    if proc.poll() is None:
        os.killpg(proc.pid, signal.SIGKILL)
        proc.wait()


def run_inkscape(display, profile, tmp_path, actions, prefs, env_extra=None, limit=240, doc=DOC):
    """Run Inkscape headless on `display`; returns (exported tree, [screenshots of messages shown])."""
    proc, env, out = start_inkscape(display, profile, tmp_path, actions, prefs, env_extra, doc)
    shots = []
    deadline = time.time() + limit
    try:
        while proc.poll() is None:
            assert time.time() < deadline, f"Inkscape still running after {limit} s"
            for wid, name, x, y, w, h in windows(env):
                # a message from the plugin: a nameless dialog (the "working" one is only 81 high),
                # or the end of the run in the plugin's own window (clipdraw_window), whose Close
                # is the right half of its bottom row
                if (name == "" and h > 120) or name in ("CLIPDraw: done", "CLIPDraw: nothing changed"):
                    shot = tmp_path / f"message{len(shots)}.png"
                    time.sleep(1.0)  # let the dialog paint before it is photographed
                    subprocess.run(["import", "-window", "root", str(shot)], env=env, timeout=30, check=True)
                    shots.append(shot)
                    ok = (x + w // 2, y + h - 17) if name == "" else (x + 3 * w // 4, y + h - 24)
                    subprocess.run(["xdotool", "mousemove", str(ok[0]), str(ok[1]), "click", "1"],
                                   env=env, timeout=20, check=True)
                    time.sleep(1.0)
            time.sleep(0.5)
    finally:
        kill_inkscape(proc)
    tree = etree.parse(str(out)).getroot() if out.exists() else None
    if out.exists():
        out.unlink()
    return tree, shots


def by_id(tree, i):
    found = tree.xpath(f"//*[@id='{i}']")
    return found[0] if found else None


FAST = {"iterations": 5, "time_limit": 60, "resolution": 64, "augmentations": 1}


def test_refine_run(display, profile, tmp_path, tiny_model):
    model = {"CLIPDRAW_MODEL": tiny_model[0], "CLIPDRAW_PRETRAINED": tiny_model[1]}
    tree, shots = run_inkscape(display, profile, tmp_path, "select-by-id:p1,g1;org.clipdraw.draw.noprefs",
                               dict(FAST, prompt="a red apple", summary="true"), model)
    assert tree is not None
    assert len(shots) == 1 and shots[0].stat().st_size > 0  # the summary was shown, and OK pressed
    for i in ("p1", "r1", "c1", "g1", "layer1"):
        assert by_id(tree, i) is not None, i
    assert by_id(tree, "outside").get("d") == "M 100 200 L 150 250"
    assert by_id(tree, "g1").get("transform") == "rotate(20) scale(1.5)"
    # the selected paths really changed: the result is where the optimiser got to, not the start
    original = etree.fromstring(DOC.encode())
    for i in ("p1", "r1", "c1"):
        assert etree.tostring(by_id(tree, i)) != etree.tostring(by_id(original, i)), i
    assert by_id(tree, "p1").get("d") != "M 10 10 C 20 30 40 30 50 10"
    assert len(tree.xpath("//*[local-name()='g' and @inkscape:label]", namespaces={"inkscape": INK[1:-1]})) == 1


def test_no_selection_run_draws_new_strokes(display, profile, tmp_path, tiny_model):
    model = {"CLIPDRAW_MODEL": tiny_model[0], "CLIPDRAW_PRETRAINED": tiny_model[1]}
    tree, shots = run_inkscape(display, profile, tmp_path, "org.clipdraw.draw.noprefs",
                               dict(FAST, prompt="a boat", strokes=4, summary="false"), model)
    assert tree is not None and shots == []
    groups = [g for g in tree.iter("{http://www.w3.org/2000/svg}g") if g.get(INK + "label") == "a boat"]
    assert len(groups) == 1 and len(groups[0]) == 4
    assert all("stroke-linecap:round" in p.get("style") for p in groups[0])
    assert by_id(tree, "p1").get("d") == "M 10 10 C 20 30 40 30 50 10"  # nothing selected, nothing refined


def test_error_run_shows_a_message_and_leaves_the_document(display, profile, tmp_path, tiny_model):
    bad = tmp_path / "broken.pt"
    bad.write_bytes(b"not a checkpoint")
    base, _ = run_inkscape(display, profile, tmp_path, "select-by-id:p1", {})
    tree, shots = run_inkscape(display, profile, tmp_path, "select-by-id:p1;org.clipdraw.draw.noprefs",
                               dict(FAST, prompt="a cat"),
                               {"CLIPDRAW_MODEL": tiny_model[0], "CLIPDRAW_PRETRAINED": str(bad)}, limit=90)
    assert len(shots) == 1  # one clear message, then OK
    assert drawing(tree) == drawing(base)


def drawing(tree):
    """The document without Inkscape's view settings (window size, zoom) and indentation."""
    tree = etree.fromstring(etree.tostring(tree), etree.XMLParser(remove_blank_text=True))
    for view in tree.xpath("//*[local-name()='namedview']"):
        view.getparent().remove(view)
    return etree.tostring(tree)


def plugin_processes(profile):
    """Pids of the plugin and engine processes started for this profile (Linux /proc)."""
    pids = []
    for entry in Path("/proc").iterdir():
        try:
            cmd = (entry / "cmdline").read_bytes()
            env = (entry / "environ").read_bytes()
            state = (entry / "stat").read_text().rsplit(")", 1)[1].split()[0]
        except (OSError, IndexError):
            continue
        if b"clipdraw" in cmd and f"INKSCAPE_PROFILE_DIR={profile}".encode() in env.split(b"\0") and state != "Z":
            pids.append(int(entry.name))
    return pids


@pytest.mark.skipif(not Path("/proc/self/environ").exists(), reason="reads /proc")
def test_inkscape_gone_mid_run_takes_plugin_and_engine_along(display, profile, tmp_path, tiny_model):
    """Inkscape's Cancel does not kill the plugin; it stops reading its pipes, as Inkscape dying does.
    Either way the plugin must stop and take the engine with it."""
    model = {"CLIPDRAW_MODEL": tiny_model[0], "CLIPDRAW_PRETRAINED": tiny_model[1]}
    proc, env, out = start_inkscape(display, profile, tmp_path, "select-by-id:p1;org.clipdraw.draw.noprefs",
                                    dict(FAST, iterations=100000, time_limit=0, summary="false"), model)
    try:
        deadline = time.time() + 120
        while len(plugin_processes(profile)) < 2:  # the plugin and its engine
            assert proc.poll() is None and time.time() < deadline, "the engine never started"
            time.sleep(0.2)
        time.sleep(1.0)
        os.kill(proc.pid, signal.SIGKILL)
        proc.wait()
        deadline = time.time() + 20
        while plugin_processes(profile):
            assert time.time() < deadline, f"left behind: {plugin_processes(profile)}"
            time.sleep(0.2)
    finally:
        kill_inkscape(proc)
        for pid in plugin_processes(profile):
            os.kill(pid, signal.SIGKILL)


# ---- the document keeps what the user made (issue 7) -----------------------------------------

KEEP = """<svg xmlns="http://www.w3.org/2000/svg" xmlns:inkscape="http://www.inkscape.org/namespaces/inkscape"
     xmlns:xlink="http://www.w3.org/1999/xlink" width="200" height="200" viewBox="0 0 200 200">
 <defs id="defs">
  <linearGradient id="stops"><stop offset="0" style="stop-color:#ff0000"/><stop offset="1" style="stop-color:#0000ff"/></linearGradient>
  <linearGradient id="across" xlink:href="#stops" x1="20" y1="0" x2="180" y2="0" gradientUnits="userSpaceOnUse"/>
  <radialGradient id="round" xlink:href="#stops" cx="60" cy="60" r="30" gradientUnits="userSpaceOnUse"/>
  <inkscape:path-effect id="effect1" effect="bspline" is_visible="true" lpeversion="1" weight="33.333333" steps="2"
     helper_size="0" apply_no_weight="true" apply_with_weight="true" only_selected="false"/>
 </defs>
 <g id="layer1" inkscape:groupmode="layer" inkscape:label="Layer 1">
  <path id="grad" d="M 20 20 C 60 40 120 0 180 20" style="fill:none;stroke:url(#across);stroke-width:6"/>
  <circle id="disc" cx="60" cy="60" r="30" style="fill:url(#round);stroke:none"/>
  <path id="dash" d="M 20 150 L 180 150" style="fill:none;stroke:#000000;stroke-width:4;stroke-linecap:butt;stroke-dasharray:10,10"/>
  <path id="lpe" d="M 120 60 C 130 100 160 100 170 60" inkscape:path-effect="#effect1"
        inkscape:original-d="M 110 100 L 140 40 L 190 100" style="fill:none;stroke:#008000;stroke-width:3"/>
  <text id="words" x="40" y="190" style="font-size:16px;font-family:sans-serif">Hello CLIP</text>
 </g>
</svg>
"""
KEEP_MODEL = lambda tiny_model: {"CLIPDRAW_MODEL": tiny_model[0], "CLIPDRAW_PRETRAINED": tiny_model[1]}  # noqa: E731


def inkscape_inkex():
    """Inkscape's own inkex (as tests/test_plugin.py uses it), to read the results as the plugin would."""
    folder = os.environ.get("CLIPDRAW_TEST_INKEX", "/usr/share/inkscape/extensions")
    if folder not in sys.path:
        sys.path.append(folder)
    return pytest.importorskip("inkex")


def doc_points(element):
    """An element's cubic control points in document user units (inkex, as the plugin reads them)."""
    csp = element.path.to_superpath().transform(element.composed_transform())
    return [p for sub in csp for node in sub for p in node]


def test_refine_keeps_gradients_dashes_and_lpe_refinement(display, profile, tmp_path, tiny_model):
    """Refined in Inkscape: every gradient reference and definition stays; the dashed butt-capped
    path keeps its style and Inkscape draws it dashed; the LPE path's refinement survives edits
    that make Inkscape recompute path effects (flipping it twice), where it would snap back."""
    inkex = inkscape_inkex()
    prefs = dict(FAST, prompt="a rainbow", summary="true", fidelity="0")
    select = "select-by-id:grad,disc,dash,lpe;org.clipdraw.draw.noprefs"
    base, _ = run_inkscape(display, profile, tmp_path, "select-by-id:grad", {}, doc=KEEP)  # Inkscape's own ids added
    tree, shots = run_inkscape(display, profile, tmp_path, select, prefs, KEEP_MODEL(tiny_model), doc=KEEP)
    assert tree is not None and len(shots) == 1
    before = etree.fromstring(KEEP.encode())
    assert drawing(by_id(tree, "defs")) == drawing(by_id(base, "defs"))  # every definition as it was
    for i in ("stops", "across", "round", "effect1"):
        assert by_id(tree, i) is not None, i
    assert "stroke:url(#across)" in by_id(tree, "grad").get("style")
    assert "fill:url(#round)" in by_id(tree, "disc").get("style")
    assert by_id(tree, "grad").get("d") != by_id(before, "grad").get("d")  # refined all the same
    dash = by_id(tree, "dash")
    assert dash.get("d") != by_id(before, "dash").get("d")
    assert inkex.Style(dash.get("style"))["stroke-dasharray"] == "10,10"
    assert inkex.Style(dash.get("style"))["stroke-linecap"] == "butt"
    assert "stroke-linejoin" not in inkex.Style(dash.get("style"))

    out = tmp_path / "refined.svg"
    out.write_bytes(etree.tostring(tree))
    png = tmp_path / "dash.png"
    subprocess.run(["inkscape", str(out), "--export-id=dash", "--export-id-only", "--export-type=png",
                    f"--export-filename={png}", "--export-background=white", "--export-background-opacity=1"],
                   check=True, capture_output=True, timeout=120, env={"HOME": str(tmp_path), "PATH": "/usr/bin:/bin"})
    from PIL import Image

    ink = (np.asarray(Image.open(png).convert("L")) < 128).any(axis=0)  # [W]: columns with ink
    runs = np.count_nonzero(np.diff(ink.astype(int)) == 1) + int(ink[0])
    assert runs >= 6 and 0.3 < ink.mean() < 0.7, (runs, ink.mean())  # 8 dashes of 10 px, gaps of 10

    lpe = by_id(tree, "lpe")
    assert lpe.get(INK + "path-effect") is None and lpe.get(INK + "original-d") is None
    refined = doc_points(inkex.load_svg(etree.tostring(tree)).getroot().getElementById("lpe"))
    flipped, _ = run_inkscape(display, profile, tmp_path,
                              select + ";select-by-id:lpe;object-flip-horizontal;object-flip-horizontal",
                              prefs, KEEP_MODEL(tiny_model), doc=KEEP)
    again = doc_points(inkex.load_svg(etree.tostring(flipped)).getroot().getElementById("lpe"))
    assert len(again) == len(refined) and max(math.dist(a, b) for a, b in zip(again, refined)) < 1e-3


def test_text_only_selection_frames_new_strokes_around_the_text(display, profile, tmp_path, tiny_model, query_all):
    """New strokes for a text-only selection sit in a square around the text as Inkscape measures
    it, clipped to that square."""
    inkex = inkscape_inkex()
    tree, shots = run_inkscape(display, profile, tmp_path, "select-by-id:words;org.clipdraw.draw.noprefs",
                               dict(FAST, prompt="a cat", strokes=8, summary="false"), KEEP_MODEL(tiny_model), doc=KEEP)
    assert tree is not None and len(shots) == 1  # "Left 1 text alone": it is not refined
    x, y, w, h = query_all(tmp_path / "in.svg")["words"]  # px = user units in this document
    doc = inkex.load_svg(etree.tostring(tree)).getroot()
    group = next(g for g in doc.iter() if isinstance(g, inkex.Group) and g.label == "a cat")
    assert len(group) == 8
    clip = doc.getElementById(group.get("clip-path")[5:-1])
    corners = [node[1] for node in clip[0].path.to_superpath().transform(group.composed_transform())[0]][:4]
    side = max(w, h) / (1 - 2 * 0.05)  # the plugin's margin
    xs, ys = [c[0] for c in corners], [c[1] for c in corners]
    assert (min(xs) + max(xs)) / 2 == pytest.approx(x + w / 2, abs=1e-2)
    assert (min(ys) + max(ys)) / 2 == pytest.approx(y + h / 2, abs=1e-2)
    assert max(xs) - min(xs) == pytest.approx(side, abs=1e-2) and max(ys) - min(ys) == pytest.approx(side, abs=1e-2)
    for path in group:  # every new stroke starts inside the square
        start = doc_points(path)[1]
        assert min(xs) - 1 <= start[0] <= max(xs) + 1 and min(ys) - 1 <= start[1] <= max(ys) + 1


def test_what_does_clip_see_leaves_no_undo_step(display, profile, tmp_path, tiny_model):
    """Flip a path, ask What Does CLIP See?, undo once: the undo takes back the flip, so the look
    at the drawing left no undo step of its own (and changed nothing)."""
    base, _ = run_inkscape(display, profile, tmp_path, "select-by-id:grad", {}, doc=KEEP)
    flipped, _ = run_inkscape(display, profile, tmp_path, "select-by-id:grad;object-flip-horizontal", {}, doc=KEEP)
    assert drawing(flipped) != drawing(base)  # the flip is a change undo can take back
    tree, shots = run_inkscape(display, profile, tmp_path,
                               "select-by-id:grad;object-flip-horizontal;org.clipdraw.see.noprefs;undo",
                               {}, KEEP_MODEL(tiny_model), doc=KEEP)
    assert len(shots) == 1  # CLIP's labels were shown
    assert drawing(tree) == drawing(base)
