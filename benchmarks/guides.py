"""Which CLIP to guide with: open_clip image towers' forward+backward cost here, beside their accuracy.

    python benchmarks/guides.py                 # the models below, batch 4, medians of 3 rounds
    python benchmarks/guides.py --models RN50 ViT-B-16

Each model is built by open_clip with random weights (the arithmetic, and so the time, is that of
the trained model) and timed as CLIPDraw uses it: 4 images at the model's input size, forward and
backward to the images, weights frozen. "clipdraw" is clipdraw's own path (clipdraw.image_tower at
--precision where it serves the architecture, open_clip's fp32 forward where it does not);
"open_clip" is open_clip's fp32 forward. The yardstick, measured in the same round just before each
model, is open_clip's ViT-B-32 in fp32, and "x B/32" is clipdraw's time over it. Accuracy is the
published zero-shot ImageNet-1k top-1 of the named weights: open_clip's results table
(docs/openclip_results.csv in github.com/mlfoundations/open_clip) and, for MobileCLIP, Apple's
(README.md of github.com/apple/ml-mobileclip).
"""
from __future__ import annotations

import argparse
import logging
import os
import statistics
import sys
import time
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parents[1] / "core"))

import torch  # noqa: E402

from clipdraw.hardware import default_threads, pick_dtype, set_threads  # noqa: E402
from clipdraw.image_tower import fast_image_tower  # noqa: E402

# (model, weights, zero-shot ImageNet top-1 %, source)
PUBLISHED = {
    "ViT-B-32-quickgelu": ("openai", 63.3, "open_clip"),
    "ViT-B-32": ("datacomp_xl_s13b_b90k", 69.2, "open_clip"),
    "ViT-B-32-256": ("datacomp_s34b_b86k", 72.8, "open_clip"),
    "ViT-B-16": ("dfn2b", 76.2, "open_clip"),
    "RN50": ("openai", 59.8, "open_clip"),
    "MobileCLIP-S1": ("datacompdr", 72.6, "Apple"),
    "MobileCLIP-S2": ("datacompdr", 74.4, "Apple"),
    "MobileCLIP2-S0": ("dfndr2b", 71.5, "Apple"),
    "MobileCLIP2-S2": ("dfndr2b", 77.2, "Apple"),
    "MobileCLIP-B": ("datacompdr", 76.8, "Apple"),
}


def build(name: str):
    import open_clip

    logging.disable(logging.CRITICAL)
    try:
        model = open_clip.create_model(name, pretrained=None)
    finally:
        logging.disable(logging.NOTSET)
    size = model.visual.image_size if hasattr(model.visual, "image_size") else 224
    size = size[0] if isinstance(size, (tuple, list)) else size
    return model.visual.eval().requires_grad_(False), int(size)


def step_time(tower, size: int, repeats: int) -> float:
    x0 = torch.rand(4, 3, size, size, generator=torch.Generator().manual_seed(0))

    def step():
        x = x0.clone().requires_grad_()
        out = tower(x)
        out = out[0] if isinstance(out, tuple) else out
        out.float().sum().backward()

    step()
    times = []
    for _ in range(repeats):
        t = time.perf_counter()
        step()
        times.append(time.perf_counter() - t)
    return statistics.median(times)


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--models", nargs="*", default=list(PUBLISHED))
    ap.add_argument("--precision", default="auto", choices=["auto", "fp32", "bf16"])
    ap.add_argument("--rounds", type=int, default=3)
    ap.add_argument("--repeats", type=int, default=2)
    ap.add_argument("--threads", type=int, default=None)
    args = ap.parse_args()
    threads = set_threads(args.threads or default_threads())
    dtype = pick_dtype(args.precision, "cpu")
    load = " ".join(f"{v:.1f}" for v in os.getloadavg())
    print(f"# CPU, {threads} thread(s), clipdraw precision {str(dtype).removeprefix('torch.')}, "
          f"torch {torch.__version__}, load average {load}; batch 4, forward+backward to the images, "
          f"medians of {args.rounds} rounds\n")
    yard_visual, yard_size = build("ViT-B-32")
    print("| model | weights | input | image tower | open_clip ms | clipdraw ms | clipdraw x B/32 | ImageNet zero-shot % |")
    print("|---|---|---|---|---|---|---|---|")
    for name in args.models:
        visual, size = build(name)
        fast = fast_image_tower(visual, dtype)
        ours = fast if fast is not None else visual
        own, mine, ratio = [], [], []
        for _ in range(args.rounds):
            yard = step_time(yard_visual, yard_size, args.repeats)
            own.append(step_time(visual, size, args.repeats))
            mine.append(own[-1] if fast is None else step_time(ours, size, args.repeats))
            ratio.append(mine[-1] / yard)
        weights, acc, source = PUBLISHED.get(name, ("-", None, ""))
        kind = "ViT (image_tower.py)" if fast is not None else f"{type(visual).__name__} (open_clip)"
        print(f"| {name} | {weights} | {size} | {kind} | {1e3 * statistics.median(own):.0f} | "
              f"{1e3 * statistics.median(mine):.0f} | {statistics.median(ratio):.2f} | "
              f"{'-' if acc is None else f'{acc:.1f} ({source})'} |", flush=True)
        del visual, fast, ours


if __name__ == "__main__":
    main()
