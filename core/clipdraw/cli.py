"""The `clipdraw` command: render, draw, score, trace, engine, install-inkscape."""
from __future__ import annotations

import argparse
import sys
from pathlib import Path


class UsageError(Exception):
    """A mistake in the command line or its files: printed as one line, exit status 2."""


def positive_int(text: str) -> int:
    try:
        v = int(text)
    except ValueError:
        raise argparse.ArgumentTypeError(f"expected a whole number, got {text!r}") from None
    if v < 1:
        raise argparse.ArgumentTypeError(f"must be at least 1, got {v}")
    return v


def save_png(rgba, path) -> None:
    """Save a float [H, W, 4] straight-alpha (or [H, W, 3]) image in 0..1 as PNG."""
    from PIL import Image

    array = (rgba.detach().clamp(0, 1).cpu().numpy() * 255 + 0.5).astype("uint8")
    Image.fromarray(array, "RGBA" if array.shape[2] == 4 else "RGB").save(path)


# ---- render -------------------------------------------------------------------------------


def add_render_args(p: argparse.ArgumentParser) -> None:
    p.add_argument("scene", help="scene JSON file")
    p.add_argument("-o", "--output", required=True, help="OUT.png or OUT.svg")
    p.add_argument("--width", type=positive_int, help="output width in pixels (default: the scene's)")
    p.add_argument("--height", type=positive_int, help="output height in pixels (default: the scene's)")
    p.add_argument("--backend", default="native", choices=["native", "diffvg"])


def run_render(args) -> None:
    from .render import render_rgba
    from .scene import Scene
    from .svg import scene_to_svg

    out = Path(args.output)
    if out.suffix.lower() not in (".png", ".svg"):
        raise UsageError(f"-o {args.output}: the output must end in .png or .svg")
    scene = Scene.load(args.scene)
    if out.suffix.lower() == ".svg":
        out.write_text(scene_to_svg(scene, args.width, args.height), encoding="utf-8")
    else:
        rgba = render_rgba(scene, args.width, args.height, backend=args.backend)
        save_png(rgba, out)


# ---- main ---------------------------------------------------------------------------------

COMMANDS = {
    "render": ("render a scene JSON file to PNG or SVG", add_render_args, run_render),
}


def build_parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(prog="clipdraw", description="Draw with CLIP, in vector strokes.")
    sub = parser.add_subparsers(dest="command", required=True, metavar="COMMAND")
    for name, (help_text, add_args, run) in COMMANDS.items():
        p = sub.add_parser(name, help=help_text, description=help_text)
        add_args(p)
        p.set_defaults(run=run)
    return parser


def main(argv=None) -> int:
    from .scene import SceneError

    parser = build_parser()
    args = parser.parse_args(argv)
    try:
        args.run(args)
    except (UsageError, SceneError) as e:
        print(f"clipdraw {args.command}: error: {e}", file=sys.stderr)
        return 2
    except KeyboardInterrupt:
        print(f"clipdraw {args.command}: interrupted", file=sys.stderr)
        return 130
    return 0


if __name__ == "__main__":
    sys.exit(main())
