"""`clipdraw install-inkscape`: copies the plugin, records the engine's Python, and `--uninstall`
removes exactly what it added."""
import json
import os
import subprocess
import sys
from pathlib import Path

from clipdraw import inkscape

ROOT = Path(__file__).resolve().parents[1]


def clipdraw(*args, env=None):
    return subprocess.run([sys.executable, "-m", "clipdraw", "install-inkscape", *args], capture_output=True,
                          text=True, env=env, timeout=120)


def tree(folder):
    return sorted(p.relative_to(folder).as_posix() for p in folder.rglob("*"))


def test_install_then_uninstall_leaves_the_folder_as_it_was(tmp_path):
    ext = tmp_path / "extensions"
    (ext / "other").mkdir(parents=True)
    (ext / "other" / "theirs.inx").write_text("<x/>")
    before = tree(ext)

    r = clipdraw("--dir", str(ext))
    assert r.returncode == 0, r.stderr
    target = ext / "clipdraw"
    assert str(target) in r.stdout
    assert (target / "clipdraw.inx").read_bytes() == (ROOT / "clipdraw.inx").read_bytes()
    for name in ("clipdraw_draw.py", "clipdraw_engine.py", "clipdraw_scene.py", "clipdraw_see.py", "clipdraw_see.inx"):
        assert (target / "inkscape_ext" / name).read_bytes() == (ROOT / "inkscape_ext" / name).read_bytes()
    record = json.loads((target / "clipdraw_engine.json").read_text())
    assert Path(record["python"]) == Path(sys.executable)

    # the plugin finds that record: the installed copy, run by another Python, names this one
    found = subprocess.run([sys.executable, "-c", "import clipdraw_engine; print(clipdraw_engine.find_python())"],
                           cwd=target / "inkscape_ext", capture_output=True, text=True,
                           env={k: v for k, v in os.environ.items() if k != "CLIPDRAW_PYTHON"})
    assert found.stdout.strip() == str(Path(sys.executable)), found.stderr

    (target / "inkscape_ext" / "__pycache__").mkdir(exist_ok=True)  # running the plugin makes this
    assert clipdraw("--dir", str(ext)).returncode == 0  # a reinstall replaces, it does not pile up
    r = clipdraw("--dir", str(ext), "--uninstall")
    assert r.returncode == 0 and "Removed" in r.stdout
    assert tree(ext) == before
    r = clipdraw("--dir", str(ext), "--uninstall")
    assert r.returncode == 0 and "not installed" in r.stdout


def test_uninstall_removes_a_folder_it_made_and_keeps_what_the_user_added(tmp_path):
    ext = tmp_path / "new" / "extensions"
    assert clipdraw("--dir", str(ext)).returncode == 0
    assert clipdraw("--dir", str(ext), "--uninstall").returncode == 0
    assert not ext.exists() and (tmp_path / "new").exists()  # it made extensions/, not new/
    assert clipdraw("--dir", str(ext)).returncode == 0
    (ext / "clipdraw" / "notes.txt").write_text("keep me")
    assert clipdraw("--dir", str(ext), "--uninstall").returncode == 0
    assert tree(ext) == ["clipdraw", "clipdraw/notes.txt"]


def test_refuses_a_clipdraw_folder_it_did_not_make(tmp_path):
    (tmp_path / "clipdraw").mkdir()
    r = clipdraw("--dir", str(tmp_path))
    assert r.returncode == 2 and "was not made by clipdraw install-inkscape" in r.stderr
    assert len(r.stderr.strip().splitlines()) == 1


def test_finds_the_extensions_folder(tmp_path, monkeypatch):
    monkeypatch.setenv("INKSCAPE_PROFILE_DIR", str(tmp_path / "profile"))
    assert inkscape.extensions_folder() == tmp_path / "profile" / "extensions"
    assert inkscape.extensions_folder(str(tmp_path / "x")) == tmp_path / "x"
    monkeypatch.delenv("INKSCAPE_PROFILE_DIR")
    monkeypatch.setenv("PATH", str(tmp_path))  # no inkscape to ask: the usual place on this system
    monkeypatch.setenv("XDG_CONFIG_HOME", str(tmp_path / "cfg"))
    monkeypatch.setattr(sys, "platform", "linux")
    assert inkscape.extensions_folder() == tmp_path / "cfg" / "inkscape" / "extensions"
    monkeypatch.setattr(sys, "platform", "win32")
    monkeypatch.setenv("APPDATA", str(tmp_path / "roaming"))
    assert inkscape.extensions_folder() == tmp_path / "roaming" / "inkscape" / "extensions"
    monkeypatch.setattr(sys, "platform", "darwin")
    assert inkscape.extensions_folder().parts[-5:] == (
        "Application Support", "org.inkscape.Inkscape", "config", "inkscape", "extensions")


def test_a_clear_message_without_the_plugin_files(tmp_path):
    r = clipdraw("--dir", str(tmp_path / "ext"), "--source", str(tmp_path))
    assert r.returncode == 2 and "cannot find clipdraw.inx" in r.stderr
    assert not (tmp_path / "ext").exists()


def test_install_checks_that_the_model_loads(tmp_path, tiny_model):
    env = dict(os.environ, CLIPDRAW_MODEL=tiny_model[0], CLIPDRAW_PRETRAINED=tiny_model[1])
    r = clipdraw("--dir", str(tmp_path / "extensions"), env=env)
    assert r.returncode == 0, r.stderr
    assert "the model loads: ready" in r.stdout


def test_install_without_weights_or_network_says_how_to_get_them(tmp_path):
    """Offline with an empty cache: the answer comes at once (the test's timeout), not after retries."""
    env = {k: v for k, v in os.environ.items() if not k.startswith("CLIPDRAW_")}
    env.update(HF_HOME=str(tmp_path / "hf"), XDG_CACHE_HOME=str(tmp_path / "cache"))  # the check reads the cache only, network or not
    r = clipdraw("--dir", str(tmp_path / "extensions"), env=env)
    assert r.returncode == 0, r.stderr  # the plugin is installed all the same
    assert "cannot load its model yet" in r.stdout
    assert "clipdraw install-inkscape --download-weights" in r.stdout
    assert "https://openaipublic.azureedge.net/clip/models/" in r.stdout and "Run > Weights" in r.stdout
