"""Judged recognition of CLIPDraw drawings against iterations and seconds; print the table quoted in
README.md: how soon `clipdraw draw` makes a drawing an independent judge recognises.

    python benchmarks/quality.py                        # 25 50 100 200 400 iterations, 10 prompts
    python benchmarks/quality.py --iters 50 100 --prompts 25 --paths 64 256
    python benchmarks/quality.py --precision fp32 bf16   # the guide in bf16 recognises as much?

The guide is the concept model (tests/data/concept, `python -m clipdraw.concepts.train`), a toy
CLIP that knows 5 shapes in 5 colours; each prompt is "a drawing of a <colour> <shape>". Every
(iterations, prompt) pair is its own `draw` run with the default settings (CLIPDraw's: 256 strokes,
max width 100, 4 augmentations, 224 canvas, seed 0), as `clipdraw draw --iters N` runs it, so the
learning-rate schedule is that of an N-iteration run. The judge (a small CNN trained apart from the
model) names each drawing's shape and colour; "both" is the share of prompts it gets entirely
right. The random-stroke row judges the starting strokes (0 iterations): chance is 20% shape,
20% colour, 4% both. Seconds are the mean wall time of a run on this machine, measured in the
same run as the table, so compare rows, not machines.
"""
from __future__ import annotations

import argparse
import sys
import time
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT / "core"))

import torch  # noqa: E402

from clipdraw.concepts import COLOURS, SHAPES, caption  # noqa: E402
from clipdraw.concepts.judge import Judge  # noqa: E402
from clipdraw.models import load_clip  # noqa: E402
from clipdraw.optimize import draw, picture  # noqa: E402
from clipdraw.render import to_pil  # noqa: E402
from raster import machine  # noqa: E402  (benchmarks/raster.py)

DATA = ROOT / "tests" / "data" / "concept"


def prompts(n: int) -> list[tuple[str, str]]:
    """n (shape, colour) pairs, every shape before any repeats and colours rotating."""
    pairs = [(SHAPES[i % len(SHAPES)], COLOURS[(i + i // len(SHAPES)) % len(COLOURS)]) for i in range(25)]
    return pairs[:n]


def judged(judge: Judge, clip, pairs, iters: int, paths: int, seed: int, pictures: list) -> dict:
    """Draw each pair's caption; the judge's hit rates and the mean seconds a drawing took.
    Appends (caption, image [H, W, 3], verdict) to `pictures`."""
    shape_ok = colour_ok = both = 0
    seconds = 0.0
    for shape, colour in pairs:
        t = time.perf_counter()
        result = draw(clip, caption(shape, colour), iters=iters, paths=paths, seed=seed)
        seconds += time.perf_counter() - t
        image = picture(result.scene)
        got = judge.verdict(image)
        pictures.append((caption(shape, colour), image, got))
        shape_ok += got[0] == shape
        colour_ok += got[1] == colour
        both += got == (shape, colour)
    n = len(pairs)
    return {"shape": shape_ok / n, "colour": colour_ok / n, "both": both / n, "seconds": seconds / n}


def gallery(pictures: list, path: str, iters: int) -> None:
    """A row of drawings with their prompts under them, labelled as the toy model's work."""
    from PIL import Image, ImageDraw

    tile, label = 224, 34
    sheet = Image.new("RGB", (tile * len(pictures), tile + label + 22), "white")
    pen = ImageDraw.Draw(sheet)
    for i, (text, image, _) in enumerate(pictures):
        sheet.paste(to_pil(image), (i * tile, 0))
        pen.text((i * tile + 8, tile + 4), text.replace("a drawing of ", ""), fill="black")
        pen.rectangle([i * tile, 0, (i + 1) * tile - 1, tile - 1], outline=(200, 200, 200))
    pen.text((8, tile + label - 8), f"clipdraw draw \"a drawing of a ...\" --iters {iters}, guided by the "
             f"toy concept model trained in this repository (not OpenAI's CLIP)", fill=(90, 90, 90))
    sheet.save(path)


def main(argv=None) -> None:
    p = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    p.add_argument("--iters", type=int, nargs="+", default=[25, 50, 100, 200, 400])
    p.add_argument("--prompts", type=int, default=10, help="how many of the 25 concepts (default 10)")
    p.add_argument("--paths", type=int, nargs="+", default=[256], help="stroke counts to compare (default 256)")
    p.add_argument("--seed", type=int, default=0)
    p.add_argument("--threads", type=int, default=None, help="torch threads (default: torch's)")
    p.add_argument("--precision", nargs="+", default=["auto"], choices=["auto", "fp32", "bf16"],
                   help="the guide's precisions to compare (default auto)")
    p.add_argument("--gallery", metavar="PNG", help="also save the drawings of the last row as a picture")
    args = p.parse_args(argv)
    if args.threads:
        torch.set_num_threads(args.threads)

    spec = (str(DATA / "clipdraw-concept.json"), str(DATA / "clipdraw-concept.safetensors"), "cpu")
    judge = Judge.load(DATA / "judge.safetensors")
    pairs = prompts(args.prompts)
    print(f"# {machine('cpu')}")
    print(f"# concept model (toy CLIP, not OpenAI's), {len(pairs)} prompts, seed {args.seed}, judged by the concept judge")
    print()
    print("| precision | strokes | iterations | seconds | shape | colour | both |")
    print("|-----------|---------|------------|---------|-------|--------|------|")
    for precision in args.precision:
        clip = load_clip(*spec, precision=precision)
        for paths in args.paths:
            for iters in [0] + list(args.iters):  # 0: the random strokes CLIPDraw starts from
                pictures = []
                row = judged(judge, clip, pairs, iters, paths, args.seed, pictures)
                label = str(iters) if iters else "0 (random strokes)"
                print(f"| {str(clip.dtype).removeprefix('torch.')} | {paths} | {label} | {row['seconds']:.1f} "
                      f"| {row['shape']:.0%} | {row['colour']:.0%} | {row['both']:.0%} |", flush=True)
    if args.gallery:
        gallery(pictures[:len(SHAPES)], args.gallery, iters)


if __name__ == "__main__":
    main()
