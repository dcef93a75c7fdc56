"""The `clipdraw` command: render, draw, score, trace, engine, install-inkscape."""
from __future__ import annotations

import argparse
import os
import signal
import sys
import threading
from pathlib import Path


class UsageError(Exception):
    """A mistake in the command line or its files: printed as one line, exit status 2."""


def whole(text: str) -> int:
    try:
        return int(text)
    except ValueError:
        raise argparse.ArgumentTypeError(f"expected a whole number, got {text!r}") from None


def positive_int(text: str) -> int:
    v = whole(text)
    if v < 1:
        raise argparse.ArgumentTypeError(f"must be at least 1, got {v}")
    return v


def check_range(args, option: str, low, high) -> None:
    """UsageError unless --option lies in [low, high] (bounds that need the engine's modules, so
    they are checked after parsing, when importing torch is no longer a cost)."""
    v = getattr(args, option.replace("-", "_"))
    if not low <= v <= high:
        raise UsageError(f"--{option} must be from {low} to {high}, got {v}")


MIN_CANVAS = 32  # the smallest canvas `draw` makes (the dialog's minimum too)


def save_png(rgba, path) -> None:
    """Save a float [H, W, 4] straight-alpha (or [H, W, 3]) image in 0..1 as PNG."""
    from .render import to_pil

    to_pil(rgba).save(path)


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


# ---- shared by draw, score, trace --------------------------------------------------------------


def non_negative(text: str) -> float:
    try:
        v = float(text)
    except ValueError:
        raise argparse.ArgumentTypeError(f"expected a number, got {text!r}") from None
    if not v >= 0 or v == float("inf"):
        raise argparse.ArgumentTypeError(f"must be a finite number of at least 0, got {text}")
    return v


def at_least_one(text: str) -> float:
    v = non_negative(text)
    if v < 1:
        raise argparse.ArgumentTypeError(f"must be at least 1, got {text}")
    return v


def add_model_args(p: argparse.ArgumentParser) -> None:
    p.add_argument("--model", metavar="NAME|CONFIG.json", help="open_clip model name, or an open_clip model config JSON file "
                   "(default: $CLIPDRAW_MODEL, else ViT-B-32-quickgelu)")
    p.add_argument("--pretrained", metavar="TAG|FILE", help="open_clip pretrained tag or a local weights file (open_clip "
                   "checkpoint, state dict, .safetensors, or OpenAI's ViT-B-32.pt); 'none' = random "
                   "weights (default: $CLIPDRAW_PRETRAINED, else openai)")
    p.add_argument("--device", default="auto", choices=["auto", "cpu", "cuda", "mps"])
    p.add_argument("--precision", default="auto", choices=["auto", "fp32", "bf16"],
                   help="the CLIP image tower's precision: auto = bf16 on CPUs with bf16 hardware "
                   "(avx512_bf16, AMX) and on CUDA (fp16 where bf16 is missing), fp32 elsewhere")
    p.add_argument("--threads", type=positive_int, metavar="N", help="CPU threads (default: "
                   "$CLIPDRAW_THREADS, else the cores not busy with other work)")


def use_threads(args) -> None:
    from .hardware import set_threads

    try:
        set_threads(args.threads)
    except ValueError as e:  # a bad CLIPDRAW_THREADS
        raise UsageError(str(e)) from None


def load_model(args):
    import torch

    from .models import load_clip, pick_device, resolve

    try:
        device = pick_device(args.device)
    except ValueError as e:
        raise UsageError(f"--device: {e}") from None
    use_threads(args)
    model, pretrained = resolve(args.model, args.pretrained)
    threads = torch.get_num_threads()
    print(f"loading {model} ({pretrained or 'random weights'}) on {device}", file=sys.stderr)
    clip = load_clip(model, pretrained, device, args.precision)
    print(clip.describe(threads), file=sys.stderr)
    return clip


def read_image(path) -> "torch.Tensor":
    """An image file as float [H, W, 3] in 0..1 (transparency over white)."""
    import numpy as np
    import torch
    from PIL import Image, UnidentifiedImageError

    try:
        im = Image.open(path)
        im.load()
    except (OSError, UnidentifiedImageError) as e:
        raise UsageError(f"cannot read image {path}: {e}") from None
    rgba = np.asarray(im.convert("RGBA"), dtype=np.float32) / 255
    rgb, a = rgba[..., :3], rgba[..., 3:]
    return torch.from_numpy(rgb * a + (1 - a))


def read_scene(path):
    """A scene from a scene JSON file or an SVG drawing."""
    from .scene import Scene
    from .svg import svg_to_scene

    if not Path(path).is_file():
        raise UsageError(f"{path}: no such file")
    return svg_to_scene(str(path)) if str(path).lower().endswith(".svg") else Scene.load(path)


def write_outputs(scene, args) -> None:
    from .optimize import picture
    from .svg import scene_to_svg

    Path(args.output).write_text(scene_to_svg(scene), encoding="utf-8")
    if args.png:
        save_png(picture(scene), args.png)
    if args.scene:
        scene.save(args.scene)


def check_outputs(args) -> None:
    if not args.output.lower().endswith(".svg"):
        raise UsageError(f"-o {args.output}: the output must end in .svg (use --png for a picture)")
    if args.png and not args.png.lower().endswith(".png"):
        raise UsageError(f"--png {args.png}: must end in .png")
    for out in filter(None, (args.output, args.png, args.scene)):
        if not Path(out).resolve().parent.is_dir():
            raise UsageError(f"{out}: its folder does not exist")


class Preview:
    """--preview FILE: the drawing as it forms, rewritten about once a second (whole, through a
    rename, so a viewer never reads half a file) and opened once in the desktop's image viewer,
    which reloads a file that changes (eog, macOS Preview, most others)."""

    def __init__(self, path, every=1.0):
        self.path, self.every = Path(path), every
        self.shown = None

    def __call__(self, image, last=False) -> None:
        import time

        from .engine import preview_png

        now = time.monotonic()
        if not last and self.shown is not None and now - self.shown < self.every:
            return
        partial = self.path.with_name(self.path.name + ".part")
        partial.write_bytes(preview_png(image))
        os.replace(partial, self.path)
        if self.shown is None:
            open_viewer(self.path)
        self.shown = now


def open_viewer(path) -> None:
    """Open a picture in the desktop's viewer, if there is a desktop; else say where it is."""
    import shutil
    import subprocess

    if sys.platform == "win32":
        os.startfile(path)  # the user's own file, in the user's viewer
        return
    opener = "open" if sys.platform == "darwin" else "xdg-open"
    desktop = sys.platform == "darwin" or os.environ.get("DISPLAY") or os.environ.get("WAYLAND_DISPLAY")
    if desktop and shutil.which(opener):
        subprocess.Popen([opener, str(path)], stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL,
                         start_new_session=True)
    else:
        print(f"\npreview: {path} (no desktop to show it on; it is rewritten as the drawing forms)",
              file=sys.stderr)


class ProgressBar:
    """The callback of `draw` and `trace`: a tqdm bar, frames, a preview picture, and CLIP's top
    labels now and then.

    While it is open, Ctrl+C asks the loop to stop after the current iteration (the caller then
    writes the current result); a second Ctrl+C aborts at once."""

    def __init__(self, iters, frames=None, frame_every=10, clip=None, labels_every=0, preview=None):
        from tqdm import tqdm

        self.bar = tqdm(total=iters, unit="it", dynamic_ncols=True, file=sys.stderr)
        self.frames, self.frame_every = frames, frame_every
        self.clip, self.labels_every = clip, labels_every
        self.preview = Preview(preview) if preview else None
        self.first_loss = None
        self.stop = False
        self.previous_handler = None
        if threading.current_thread() is threading.main_thread():
            self.previous_handler = signal.signal(signal.SIGINT, self.interrupt)

    def interrupt(self, signum, frame) -> None:
        if self.stop:
            raise KeyboardInterrupt
        self.stop = True
        self.bar.write("Ctrl+C: stopping after this iteration to write the result so far "
                       "(Ctrl+C again to quit without writing)", file=sys.stderr)

    def __call__(self, p) -> bool:
        if self.first_loss is None:
            self.first_loss = p.loss
        self.bar.total = p.iterations
        self.bar.set_postfix(loss=f"{p.loss:.4f}", refresh=False)
        self.bar.update(p.iteration - self.bar.n)
        if self.frames and (p.iteration % self.frame_every == 0 or p.iteration == 1):
            save_png(p.image, Path(self.frames) / f"frame_{p.iteration:04d}.png")
        if self.preview:
            self.preview(p.image, last=p.iteration == p.iterations or self.stop)
        if self.labels_every and p.iteration % self.labels_every == 0:
            from .guidance import top_labels

            top = top_labels(self.clip, p.image)[:5]  # the shipped nouns
            self.bar.write(f"iteration {p.iteration}: " + ", ".join(f"{l} {v:.1%}" for l, v in top),
                           file=sys.stderr)
        return self.stop

    def close(self) -> None:
        if self.previous_handler is not None:
            signal.signal(signal.SIGINT, self.previous_handler)
            self.previous_handler = None
        self.bar.close()


def finish(result, args) -> int:
    """Write the result; the exit status: 130 (and a line saying so) when Ctrl+C stopped the run."""
    write_outputs(result.scene, args)
    if not result.stopped:
        return 0
    print(f"interrupted: wrote the result after {result.iterations} of {args.iters} iterations "
          f"to {args.output}", file=sys.stderr)
    return 130


# ---- draw -------------------------------------------------------------------------------------


def add_draw_args(p: argparse.ArgumentParser) -> None:
    p.add_argument("prompt", nargs="?", default="", help='what to draw, e.g. "a drawing of a cat"')
    p.add_argument("-o", "--output", required=True, metavar="OUT.svg", help="the drawing, one path per stroke")
    p.add_argument("--png", metavar="OUT.png", help="also write the drawing as a PNG")
    p.add_argument("--scene", metavar="OUT.json", help="also write the result as scene JSON")
    p.add_argument("--init", metavar="FILE", help="a scene JSON or SVG file to refine (its strokes are kept and moved)")
    p.add_argument("--paths", type=whole, metavar="N", help="new random strokes (default: 256 without --init, 0 with)")
    p.add_argument("--iters", type=positive_int, default=1000, metavar="N", help="iterations (default 1000)")
    p.add_argument("--time-limit", type=non_negative, default=0.0, metavar="S", help="stop after this many seconds "
                   "with the drawing as it is then; the lr schedule follows whichever of iterations "
                   "and time runs out first (default 0 = no limit). Ctrl+C also stops and writes it")
    p.add_argument("--max-width", type=at_least_one, default=100.0, metavar="PX",
                   help="widest stroke, full SVG width in canvas px (default 100: CLIPDraw's max_width 50 "
                   "is diffvg's half width). Strokes start 2 px wide and are kept at least 2 px "
                   "(both for a 224 px canvas, scaled with it)")
    p.add_argument("--size", type=positive_int, default=224, metavar="PX",
                   help=f"canvas size without --init, {MIN_CANVAS} to 16384 (default 224)")
    p.add_argument("--seed", type=whole, default=0, metavar="N",
                   help="random seed (default 0; runs on a CPU repeat exactly)")
    p.add_argument("--negative", action="append", default=[], metavar="TEXT", help="a negative prompt (repeatable)")
    p.add_argument("--negative-weight", type=non_negative, default=0.3, metavar="W",
                   help="how much the negative prompts' similarity counts (default 0.3)")
    p.add_argument("--image-prompt", action="append", default=[], metavar="IMAGE",
                   help="an image whose CLIP embedding is a target too (repeatable)")
    p.add_argument("--fidelity", type=non_negative, default=1.0, metavar="W", help="pull of --init's points back to "
                   "where they were drawn: 0 = free, larger = closer (default 1)")
    p.add_argument("--lock", action="append", default=[], choices=["points", "widths", "colors"],
                   help="keep these as given (repeatable)")
    p.add_argument("--augmentations", type=positive_int, default=4, metavar="N", help="augmented copies per step (default 4)")
    p.add_argument("--frames", metavar="DIR", help="write progress PNGs DIR/frame_0010.png ...")
    p.add_argument("--frame-every", type=positive_int, default=10, metavar="N", help="(default 10)")
    p.add_argument("--preview", metavar="FILE.png", help="watch the drawing form: FILE.png is rewritten about "
                   "once a second and opened in the desktop's image viewer, which reloads it")
    p.add_argument("--show-labels", type=whole, default=0, metavar="N",
                   help="every N iterations print CLIP's top 5 nouns for the drawing (the time counts "
                   "against --time-limit)")
    add_model_args(p)


def run_draw(args) -> int:
    from .guidance import context_warnings, quoted
    from .optimize import MAX_SEED, draw
    from .scene import MAX_SIZE

    if not args.prompt.strip() and not args.image_prompt:
        raise UsageError("give a prompt (or --image-prompt IMAGE)")
    if args.paths is not None and args.paths < 0:
        raise UsageError(f"--paths must be at least 0, got {args.paths}")
    if args.show_labels < 0:
        raise UsageError(f"--show-labels must be at least 0, got {args.show_labels}")
    check_range(args, "size", MIN_CANVAS, MAX_SIZE)
    check_range(args, "seed", 0, MAX_SEED)
    check_outputs(args)
    scene = read_scene(args.init) if args.init else None
    if scene is None and args.paths == 0:
        raise UsageError("--paths 0 without --init leaves nothing to draw")
    images = [read_image(f) for f in args.image_prompt]
    if args.frames:
        Path(args.frames).mkdir(parents=True, exist_ok=True)
    if args.preview and (not args.preview.lower().endswith(".png") or not Path(args.preview).resolve().parent.is_dir()):
        raise UsageError(f"--preview {args.preview}: must end in .png, in a folder that exists")
    clip = load_model(args)
    for warning in context_warnings(clip, [args.prompt.strip(), *args.negative]):
        print(f"clipdraw draw: warning: {warning}", file=sys.stderr)
    bar = ProgressBar(args.iters, args.frames, args.frame_every, clip, args.show_labels, args.preview)
    try:
        result = draw(clip, args.prompt.strip(), scene, negatives=args.negative,
                      negative_weight=args.negative_weight, image_prompts=images, paths=args.paths,
                      iters=args.iters, max_width=args.max_width, fidelity=args.fidelity,
                      lock=args.lock, seed=args.seed, augmentations=args.augmentations,
                      time_limit=args.time_limit, size=args.size, callback=bar)
    finally:
        bar.close()
    targets = [quoted(args.prompt.strip())] if args.prompt.strip() else []
    targets += ["the image prompt" + "s" * (len(images) > 1)] if images else []
    print(similarity_text(result.similarity, " and ".join(targets)), file=sys.stderr)
    if finish(result, args):
        return 130
    print(f"{result.iterations} iterations in {result.elapsed:.1f} s: wrote {args.output}", file=sys.stderr)
    return 0


def similarity_text(similarity: dict, targets: str) -> str:
    """CLIP similarity to 'a cat': 0.210 -> 0.330; to 'a blurry photo' (negative): 0.150 -> 0.120"""
    from .guidance import quoted

    parts = [f"CLIP similarity to {targets}: {similarity['start']:.3f} -> {similarity['end']:.3f}"]
    parts += [f"to {quoted(n['prompt'])} (negative): {n['start']:.3f} -> {n['end']:.3f}"
              for n in similarity["negatives"]]
    return "; ".join(parts)


# ---- score ------------------------------------------------------------------------------------


def add_score_args(p: argparse.ArgumentParser) -> None:
    p.add_argument("image", help="IMAGE.png (any picture) or DRAWING.svg or scene JSON")
    p.add_argument("--labels", help='comma-separated labels, e.g. "cat, dog, stitch" '
                   "(default: the shipped list of common nouns)")
    p.add_argument("--labels-file", help="a file with one label per line")
    p.add_argument("--template", help='text around each label, e.g. "a drawing of a {}" '
                   '(default: "{}" for your labels, "a drawing of a {}" for the nouns)')
    p.add_argument("--top", type=positive_int, default=5, help="how many to print (default 5)")
    add_model_args(p)


def run_score(args) -> None:
    from .guidance import top_labels
    from .optimize import picture

    labels = [l.strip() for l in (args.labels or "").split(",") if l.strip()]
    if args.labels_file:
        try:
            text = Path(args.labels_file).read_text(encoding="utf-8")
        except OSError as e:
            raise UsageError(f"--labels-file {args.labels_file}: {e.strerror or e}") from None
        labels += [l.strip() for l in text.splitlines() if l.strip()]
    if args.template is not None and "{}" not in args.template:
        raise UsageError(f'--template {args.template!r}: must contain {{}} where the label goes')
    suffix = Path(args.image).suffix.lower()
    image = picture(read_scene(args.image)) if suffix in (".svg", ".json") else read_image(args.image)
    clip = load_model(args)
    for label, p in top_labels(clip, image, labels, args.template)[: args.top]:
        print(f"{label}: {100 * p:.2f}%")


# ---- trace ------------------------------------------------------------------------------------


def add_trace_args(p: argparse.ArgumentParser) -> None:
    p.add_argument("image", help="the picture to trace (PNG, JPEG, ...)")
    p.add_argument("-o", "--output", required=True, help="OUT.svg")
    p.add_argument("--png", help="also write the result as a PNG")
    p.add_argument("--scene", help="also write the result as scene JSON")
    p.add_argument("--paths", type=whole, default=64, help="strokes (default 64)")
    p.add_argument("--fills", type=whole, default=16, help="filled shapes under the strokes (default 16)")
    p.add_argument("--iters", type=positive_int, default=300, help="iterations (default 300)")
    p.add_argument("--time-limit", type=non_negative, default=0.0, help="seconds (default 0 = no limit)")
    p.add_argument("--max-width", type=at_least_one, default=10.0, help="widest stroke in px (default 10)")
    p.add_argument("--size", type=positive_int, default=224,
                   help="longest side of the canvas in px; the image is resized to it (default 224)")
    p.add_argument("--seed", type=whole, default=0)
    p.add_argument("--prompt", default="", help="optional: add a CLIP term for this prompt")
    p.add_argument("--clip-weight", type=non_negative, default=0.1, help="weight of the CLIP term (default 0.1)")
    p.add_argument("--frames", metavar="DIR", help="write progress PNGs DIR/frame_0010.png ...")
    p.add_argument("--frame-every", type=positive_int, default=10)
    add_model_args(p)


def run_trace(args) -> int:
    import torch.nn.functional as F

    from .models import pick_device
    from .optimize import MAX_SEED, picture, trace
    from .scene import MAX_SIZE

    if args.paths < 0 or args.fills < 0 or args.paths + args.fills == 0:
        raise UsageError("--paths and --fills must be at least 0, and not both 0")
    check_range(args, "size", 1, MAX_SIZE)
    check_range(args, "seed", 0, MAX_SEED)
    check_outputs(args)
    target = read_image(args.image)  # [H, W, 3]
    h, w, _ = target.shape
    k = args.size / max(h, w)
    size = (max(1, round(h * k)), max(1, round(w * k)))
    target = F.interpolate(target.permute(2, 0, 1)[None], size=size, mode="bilinear",
                           antialias=True, align_corners=False)[0].permute(1, 2, 0).clamp(0, 1)
    if args.frames:
        Path(args.frames).mkdir(parents=True, exist_ok=True)
    use_threads(args)
    clip = load_model(args) if args.prompt else None
    try:
        device = clip.device if clip else pick_device(args.device)
    except ValueError as e:
        raise UsageError(f"--device: {e}") from None
    bar = ProgressBar(args.iters, args.frames, args.frame_every)
    try:
        result = trace(target, args.paths, args.fills, iters=args.iters, max_width=args.max_width,
                       seed=args.seed, clip=clip, prompt=args.prompt, clip_weight=args.clip_weight,
                       time_limit=args.time_limit, callback=bar, device=device)
    finally:
        bar.close()
    if finish(result, args):
        return 130
    error = float((picture(result.scene).cpu() - target).square().mean())
    print(f"L2 error (mean squared, 0..1 colours): {bar.first_loss:.5f} at the start, {error:.5f} "
          f"at the end: wrote {args.output}", file=sys.stderr)
    return 0


# ---- engine -----------------------------------------------------------------------------------


def add_engine_args(p: argparse.ArgumentParser) -> None:
    p.description = ("read one JSON request on stdin, write the reply JSON on stdout and JSON "
                     "lines on stderr (docs/engine-protocol.md)")


def run_engine(args) -> None:
    from .engine import main as engine_main

    code = engine_main()
    if code:
        raise SystemExit(code)


# ---- main ---------------------------------------------------------------------------------

from .inkscape import add_install_args, run_install  # noqa: E402  (stdlib only: cheap to import)

COMMANDS = {
    "render": ("render a scene JSON file to PNG or SVG", add_render_args, run_render),
    "draw": ("draw (or refine --init) strokes until CLIP agrees with a prompt", add_draw_args, run_draw),
    "score": ("CLIP's zero-shot label probabilities for a picture or drawing", add_score_args, run_score),
    "trace": ("fit strokes and fills to a picture (L2, optionally plus CLIP)", add_trace_args, run_trace),
    "engine": ("the Inkscape plugin's engine: JSON request on stdin, reply on stdout",
               add_engine_args, run_engine),
    "install-inkscape": ("install the plugin into Inkscape's extensions folder (--uninstall removes it)",
                         add_install_args, run_install),
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
    from .models import ModelError, ModelFileError
    from .scene import SceneError

    parser = build_parser()
    args = parser.parse_args(argv)
    try:
        code = args.run(args)
    except (UsageError, SceneError, ModelFileError) as e:
        print(f"clipdraw {args.command}: error: {e}", file=sys.stderr)
        return 2
    except ModelError as e:
        print(f"clipdraw {args.command}: error: {e}", file=sys.stderr)
        return 1
    except KeyboardInterrupt:
        print(f"clipdraw {args.command}: interrupted", file=sys.stderr)
        return 130
    return code or 0


if __name__ == "__main__":
    sys.exit(main())
