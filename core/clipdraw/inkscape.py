"""`clipdraw install-inkscape`: put the plugin into Inkscape's extensions folder.

The plugin (clipdraw.inx and inkscape_ext/) is copied into `<extensions>/clipdraw/`, and this
Python (the one with torch and the engine) is recorded in `clipdraw_engine.json` there, so that
Inkscape's own Python needs nothing but inkex. The same file lists what was copied, which is
exactly what `--uninstall` removes. Then the engine is asked to load its CLIP model from what this
computer has (no download), so that missing weights are found now, not at the first drawing.
"""
from __future__ import annotations

import json
import os
import shutil
import subprocess
import sys
from pathlib import Path

FOLDER = "clipdraw"  # inside the extensions folder
CONFIG = "clipdraw_engine.json"  # read by inkscape_ext/clipdraw_engine.py
PLUGIN_SUFFIXES = (".py", ".inx")


class InstallError(Exception):
    """Printed as one line by the CLI, exit status 2."""


def plugin_source(source=None) -> Path:
    """The folder holding clipdraw.inx and inkscape_ext/: --source, else the clone this engine runs
    from (pip install -e .), else where a wheel's data files land (<prefix>/share/clipdraw-inkscape)."""
    candidates = [Path(source)] if source else [Path(__file__).resolve().parents[2],
                                                Path(sys.prefix) / "share" / "clipdraw-inkscape"]
    for root in candidates:
        if (root / "clipdraw.inx").is_file() and (root / "inkscape_ext").is_dir():
            return root
    raise InstallError(
        f"cannot find clipdraw.inx and inkscape_ext/ in {' or '.join(map(str, candidates))}: install the "
        f"engine from a clone (pip install -e .) or pass --source with the clone's folder")


def extensions_folder(explicit=None) -> Path:
    """Inkscape's user extensions folder: --dir, $INKSCAPE_PROFILE_DIR, what `inkscape
    --user-data-directory` says, else the usual place on this system."""
    if explicit:
        return Path(explicit).expanduser()
    if os.environ.get("INKSCAPE_PROFILE_DIR"):
        return Path(os.environ["INKSCAPE_PROFILE_DIR"]) / "extensions"
    inkscape = shutil.which("inkscape")
    if inkscape:
        try:
            out = subprocess.run([inkscape, "--user-data-directory"], capture_output=True, text=True,
                                 timeout=60).stdout.strip().splitlines()
            if out and out[-1].strip():
                return Path(out[-1].strip()) / "extensions"
        except (OSError, subprocess.SubprocessError):
            pass
    home = Path.home()
    if sys.platform == "win32":
        return Path(os.environ.get("APPDATA", home / "AppData" / "Roaming")) / "inkscape" / "extensions"
    if sys.platform == "darwin":
        return home / "Library" / "Application Support" / "org.inkscape.Inkscape" / "config" / "inkscape" / "extensions"
    return Path(os.environ.get("XDG_CONFIG_HOME") or home / ".config") / "inkscape" / "extensions"


def plugin_files(root: Path) -> list[Path]:
    """clipdraw.inx and the plugin scripts, relative to `root` (no caches, no tests)."""
    files = [Path("clipdraw.inx")]
    files += sorted(p.relative_to(root) for p in (root / "inkscape_ext").iterdir()
                    if p.is_file() and p.suffix in PLUGIN_SUFFIXES)
    return files


def install(extensions: Path, source=None, python=None) -> Path:
    """Copy the plugin into `extensions`/clipdraw and record the engine's Python; returns the folder."""
    root = plugin_source(source)
    target = extensions / FOLDER
    if target.exists() and not (target / CONFIG).is_file():
        raise InstallError(f"{target} exists and was not made by clipdraw install-inkscape: move it away first")
    if target.exists():
        uninstall(extensions)  # a reinstall replaces the old copy, whatever files it had
    files = plugin_files(root)
    made = [d for d in sorted({f.parent for f in files}) if d != Path(".")]
    new_extensions = not extensions.exists()  # then uninstall removes it too, if left empty
    for rel in files:
        dest = target / rel
        dest.parent.mkdir(parents=True, exist_ok=True)
        shutil.copyfile(root / rel, dest)
    record = {"python": str(Path(python or sys.executable)), "source": str(root),
              "files": [f.as_posix() for f in files], "folders": [d.as_posix() for d in made],
              "made_extensions_folder": new_extensions}
    (target / CONFIG).write_text(json.dumps(record, indent=1) + "\n", encoding="utf-8")
    return target


def uninstall(extensions: Path) -> Path | None:
    """Remove exactly what `install` added; returns the folder, or None if nothing was installed."""
    target = extensions / FOLDER
    config = target / CONFIG
    if not config.is_file():
        return None
    try:
        record = json.loads(config.read_text(encoding="utf-8"))
        files, folders = list(record["files"]), list(record["folders"])
        made_extensions = bool(record.get("made_extensions_folder"))
    except (OSError, ValueError, KeyError, TypeError):
        raise InstallError(f"{config} is damaged: remove {target} by hand") from None
    for rel in files:
        path = target / rel
        if path.is_file() or path.is_symlink():
            path.unlink()
        shutil.rmtree(path.parent / "__pycache__", ignore_errors=True)  # Python's, made by running the plugin
    config.unlink()
    leftovers = [target / rel for rel in sorted(folders, key=lambda f: -len(Path(f).parts))] + [target]
    for folder in leftovers + ([extensions] if made_extensions else []):
        try:
            folder.rmdir()
        except OSError:  # not empty: something the user put there stays
            pass
    return target


def check_model(python=None, download=False, timeout=900):
    """Have the engine, run as the plugin runs it, load its model (CLIPDRAW_MODEL/PRETRAINED or the
    default): from the cache or a local file only, unless `download`. None if it loads, else the
    engine's message."""
    request = {"command": "score", "labels": ["a cat"], "top": 1,
               "scene": {"format": "clipdraw-scene", "version": 1, "width": 32, "height": 32, "shapes": []}}
    env = dict(os.environ) if download else dict(os.environ, HF_HUB_OFFLINE="1")
    try:
        r = subprocess.run([python or sys.executable, "-m", "clipdraw", "engine"], input=json.dumps(request) + "\n",
                           capture_output=True, text=True, env=env, timeout=timeout)
    except subprocess.TimeoutExpired:
        return f"loading the model took more than {timeout} s"
    if r.returncode == 0:
        return None
    errors = [line for line in r.stderr.splitlines() if '"error"' in line]
    try:
        return json.loads(errors[-1])["message"]
    except (IndexError, ValueError, KeyError):
        return f"the engine failed (exit status {r.returncode})"


def how_to_get_weights() -> str:
    """Exact steps to get the default weights, for a model that cannot load yet."""
    from .models import resolve

    model, pretrained = resolve(None, None)
    lines = ["Get the weights before the first drawing, in one of these ways:",
             "  clipdraw install-inkscape --download-weights   (needs internet once; fills the cache the engine reads)"]
    try:
        import open_clip

        url = (open_clip.get_pretrained_cfg(model, pretrained or "") or {}).get("url")
    except Exception:  # noqa: BLE001 - only a hint: a local file or an unknown model has no URL
        url = None
    if url:
        lines.append(f"  or download {url} where there is internet,")
    lines.append("  then put the file's path in Draw from Prompt's Run > Weights field "
                 "(or set CLIPDRAW_PRETRAINED=FILE for every run).")
    return "\n".join(lines)


# ---- the `clipdraw install-inkscape` command -------------------------------------------------


def add_install_args(p) -> None:
    p.add_argument("--uninstall", action="store_true", help="remove what an earlier install added")
    p.add_argument("--dir", help="Inkscape's extensions folder (default: found from Inkscape, "
                                 "$INKSCAPE_PROFILE_DIR, or the usual place on this system)")
    p.add_argument("--source", help="folder with clipdraw.inx and inkscape_ext/ (default: this clone)")
    p.add_argument("--download-weights", action="store_true",
                   help="download the CLIP weights now if they are not on this computer (needs internet)")


def run_install(args) -> None:
    from .cli import UsageError

    extensions = extensions_folder(args.dir)
    try:
        if args.uninstall:
            target = uninstall(extensions)
            print(f"Removed CLIPDraw from {target}." if target else f"CLIPDraw is not installed in {extensions}.")
            return
        target = install(extensions, args.source)
    except InstallError as e:
        raise UsageError(str(e)) from None
    except OSError as e:
        raise UsageError(f"cannot write to {extensions}: {e.strerror}") from None
    print(f"Installed CLIPDraw into {target}\n"
          f"  engine: {sys.executable}", flush=True)
    from .models import resolve

    model, pretrained = resolve(None, None)
    print(f"Checking that the engine can load {model} ({pretrained or 'random weights'})"
          f"{' (downloading if needed)' if args.download_weights else ''}...", flush=True)
    problem = check_model(download=args.download_weights)
    if problem is None:
        print("  the model loads: ready.")
    else:
        print(f"  the engine cannot load its model yet: {problem}\n{how_to_get_weights()}")
    print("Restart Inkscape, then use Extensions > CLIPDraw > Draw from Prompt...")
