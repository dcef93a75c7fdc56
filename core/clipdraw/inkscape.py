"""`clipdraw install-inkscape`: put the plugin into Inkscape's extensions folder.

The plugin (clipdraw.inx and inkscape_ext/) is copied into `<extensions>/clipdraw/`, and this
Python (the one with torch and the engine) is recorded in `clipdraw_engine.json` there, so that
Inkscape's own Python needs nothing but inkex. The same file lists what was copied, which is
exactly what `--uninstall` removes.
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


# ---- the `clipdraw install-inkscape` command -------------------------------------------------


def add_install_args(p) -> None:
    p.add_argument("--uninstall", action="store_true", help="remove what an earlier install added")
    p.add_argument("--dir", help="Inkscape's extensions folder (default: found from Inkscape, "
                                 "$INKSCAPE_PROFILE_DIR, or the usual place on this system)")
    p.add_argument("--source", help="folder with clipdraw.inx and inkscape_ext/ (default: this clone)")


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
          f"  engine: {sys.executable}\n"
          f"Restart Inkscape, then use Extensions > CLIPDraw > Draw from Prompt...")
