"""End to end: real Inkscape 1.2 headless on its own Xvfb display runs the installed plugin, which
runs the engine with a tiny random-weight CLIP: a refine run, a no-selection run, an error run.

Traps handled here: extension actions exist only with a display; without `.noprefs` a dialog opens
and nothing runs; parameters come from $INKSCAPE_PROFILE_DIR/preferences.xml; a message the
plugin prints opens a dialog that waits for OK (we photograph it and press OK); Inkscape exits 0
whatever happened; Inkscape runs `python3` from PATH, which must be the system one with lxml.
"""
import os
import shutil
import signal
import subprocess
import sys
import time
from pathlib import Path
from xml.sax.saxutils import quoteattr

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


def start_inkscape(display, profile, tmp_path, actions, prefs, env_extra=None):
    """Start Inkscape headless on `display` (parameters through preferences.xml); (process, env, out)."""
    src = tmp_path / "in.svg"
    src.write_text(DOC, encoding="utf-8")
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


def run_inkscape(display, profile, tmp_path, actions, prefs, env_extra=None, limit=240):
    """Run Inkscape headless on `display`; returns (exported tree, [screenshots of messages shown])."""
    proc, env, out = start_inkscape(display, profile, tmp_path, actions, prefs, env_extra)
    shots = []
    deadline = time.time() + limit
    try:
        while proc.poll() is None:
            assert time.time() < deadline, f"Inkscape still running after {limit} s"
            for wid, name, x, y, w, h in windows(env):
                # a message from the plugin: a nameless dialog (the "working" one is only 81 high)
                if name == "" and h > 120:
                    shot = tmp_path / f"message{len(shots)}.png"
                    time.sleep(1.0)  # let the dialog paint before it is photographed
                    subprocess.run(["import", "-window", "root", str(shot)], env=env, timeout=30, check=True)
                    shots.append(shot)
                    subprocess.run(["xdotool", "mousemove", str(x + w // 2), str(y + h - 17), "click", "1"],
                                   env=env, timeout=20, check=True)
                    time.sleep(1.0)
            time.sleep(0.5)
    finally:
        if proc.poll() is None:
            os.killpg(proc.pid, signal.SIGKILL)
            proc.wait()
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
        if proc.poll() is None:
            os.killpg(proc.pid, signal.SIGKILL)
            proc.wait()
        for pid in plugin_processes(profile):
            os.kill(pid, signal.SIGKILL)
