"""Time one CLIPDraw iteration against open_clip's own image tower; print the tables quoted in README.md.

    python benchmarks/iteration.py                   # 256 strokes at 224, ViT-B/32, 4 augmentations
    python benchmarks/iteration.py --threads 1 2     # thread counts to compare (default: clipdraw's)
    python benchmarks/iteration.py --device cuda

The yardstick is open_clip's own ViT-B/32 image tower, fp32, forward+backward to the input images at
batch 4 (what CLIPDraw's step cost before clipdraw.image_tower). A full iteration is what `clipdraw
draw` does per step, timed inside the real loop (clipdraw.optimize.optimize): render 256 strokes
(forward+backward), 4 augmented copies in one grid_sample, the image tower forward+backward on
clipdraw's path (image_tower.py, at --precision), loss, Adam step, clamps. The machine may be shared,
so each round measures the yardstick and the loop back to back, and the tables give medians over
--rounds rounds of per-round medians and ratios. Weights are random unless --pretrained is given:
the arithmetic, and so the time, is the same.
"""
from __future__ import annotations

import argparse
import platform
import resource
import statistics
import sys
import time
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parents[1] / "core"))

import torch  # noqa: E402
import torch.nn.functional as F  # noqa: E402

from clipdraw.guidance import ClipLoss, augment  # noqa: E402
from clipdraw.hardware import default_threads, set_threads  # noqa: E402
from clipdraw.models import load_clip  # noqa: E402
from clipdraw.optimize import optimize, random_strokes  # noqa: E402
from clipdraw.render import render  # noqa: E402
from clipdraw.scene import Scene  # noqa: E402

DEVICE = "cpu"
PROMPT = "a drawing of a cat"


def sync() -> None:
    if DEVICE == "cuda":
        torch.cuda.synchronize()


def median_time(fn, repeats: int, warmup: int = 1) -> float:
    for _ in range(warmup):
        fn()
    times = []
    for _ in range(repeats):
        sync()
        t = time.perf_counter()
        fn()
        sync()
        times.append(time.perf_counter() - t)
    return statistics.median(times)


def make_scene(paths: int, size: int, seed: int = 0) -> Scene:
    scene = Scene(width=size, height=size)
    scene.shapes = random_strokes(paths, size, size, torch.Generator().manual_seed(seed), device=DEVICE)
    return scene


def tower_step(clip, batch: torch.Tensor, text: torch.Tensor, open_clips_own: bool = False):
    """One image tower forward + backward to its input batch [4, 3, S, S], weights frozen: on
    clipdraw's path (clip.encode_image), or open_clip's own fp32 forward (the yardstick)."""
    def step():
        x = batch.detach().requires_grad_()
        if open_clips_own:
            f = F.normalize(clip.model.encode_image((x - clip.mean) / clip.std), dim=-1)
        else:
            f = clip.encode_image(x)
        (-(f @ text.T).mean()).backward()

    return step


def loop_time(clip, args, iters: int, warmup: int = 1) -> tuple[float, list]:
    """Median seconds per iteration of the real loop, and its losses."""
    stamps, losses = [], []

    def callback(p):
        sync()
        stamps.append(time.perf_counter())
        losses.append(p.loss)

    loss = ClipLoss(clip, [PROMPT], augmentations=args.augmentations, generator=torch.Generator().manual_seed(0))
    optimize(make_scene(args.paths, args.size), loss, iters=warmup + iters, max_width=50.0, callback=callback)
    steps = [b - a for a, b in zip(stamps[warmup - 1:], stamps[warmup:])]
    return statistics.median(steps), losses


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--paths", type=int, default=256)
    ap.add_argument("--size", type=int, default=224)
    ap.add_argument("--augmentations", type=int, default=4)
    ap.add_argument("--model", default="ViT-B-32-quickgelu")
    ap.add_argument("--pretrained", default="none", help="weights file or tag (default: random)")
    ap.add_argument("--precision", default="auto", choices=["auto", "fp32", "bf16"])
    ap.add_argument("--rounds", type=int, default=5, help="rounds of yardstick + loop (medians over rounds)")
    ap.add_argument("--repeats", type=int, default=3, help="timed runs per part per round")
    ap.add_argument("--iters", type=int, default=4, help="timed loop iterations per round")
    ap.add_argument("--threads", type=int, nargs="*", default=None,
                    help="thread counts to compare (default: clipdraw's default for this machine)")
    ap.add_argument("--trajectory", type=int, default=10, help="iterations of the fp32 vs bf16 loss check")
    ap.add_argument("--device", default="cpu", choices=["cpu", "cuda", "mps"])
    args = ap.parse_args()
    global DEVICE
    DEVICE = args.device

    threads = args.threads or [default_threads()]
    cpu = next((line.split(":", 1)[1].strip() for line in open("/proc/cpuinfo") if line.startswith("model name")),
               platform.machine()) if Path("/proc/cpuinfo").exists() else platform.machine()
    where = torch.cuda.get_device_name() if DEVICE == "cuda" else DEVICE
    load = " ".join(f"{v:.1f}" for v in __import__("os").getloadavg())
    print(f"# {where}; CPU {cpu}, torch {torch.__version__}, load average {load}")
    fast = load_clip(args.model, args.pretrained, DEVICE, args.precision)
    fp32 = load_clip(args.model, args.pretrained, DEVICE, "fp32")
    path = "image_tower.py" if fast.image_tower is not None else "open_clip's forward (not served)"
    print(f"# {args.paths} strokes at {args.size}x{args.size}, {args.model}, {args.augmentations} "
          f"augmentations; clipdraw's tower: {path}, {str(fast.dtype).removeprefix('torch.')}")
    print(f"# medians over {args.rounds} rounds; clipdraw's default thread count here: {default_threads()}\n")

    g = torch.Generator().manual_seed(0)
    scene = make_scene(args.paths, args.size)
    for t in [p.points for s in scene.shapes for p in s.subpaths] + [s.stroke_width for s in scene.shapes]:
        t.requires_grad_()
    image = render(scene, args.size, args.size).detach()  # [H, W, 3]
    batch = augment(image, args.augmentations, fast.image_size, g).detach()  # [4, 3, S, S]
    text = fast.encode_text([PROMPT])

    def render_step():
        render(scene, args.size, args.size).mean().backward()

    def augment_step():
        x = image.clone().requires_grad_()
        augment(x, args.augmentations, fast.image_size, g).mean().backward()

    rows = {}  # threads -> {part: [per-round seconds]}, plus ratios
    for n in threads:
        set_threads(n)
        r = rows[n] = {k: [] for k in ("yard", "fp32", "fast", "render", "augment", "full", "ratio")}
        for _ in range(args.rounds):
            yard = median_time(tower_step(fp32, batch, text, open_clips_own=True), args.repeats)
            full, _ = loop_time(fast, args, args.iters)
            r["yard"].append(yard)
            r["full"].append(full)
            r["ratio"].append(full / yard)
            r["fp32"].append(median_time(tower_step(fp32, batch, text), args.repeats))
            r["fast"].append(median_time(tower_step(fast, batch, text), args.repeats))
            r["render"].append(median_time(render_step, args.repeats))
            r["augment"].append(median_time(augment_step, args.repeats))
    med = {n: {k: statistics.median(v) for k, v in r.items()} for n, r in rows.items()}

    dtype = str(fast.dtype).removeprefix("torch.")
    print("| part (forward + backward), ms | " + " | ".join(f"{n} thread{'s' * (n != 1)}" for n in threads) + " |")
    print("|---|" + "---|" * len(threads))
    for key, name in (("yard", "open_clip's image tower, fp32 (yardstick)"),
                      ("fp32", "image_tower.py, fp32"),
                      ("fast", f"image_tower.py, {dtype} (clipdraw's)"),
                      ("render", f"render, {args.paths} strokes"),
                      ("augment", f"augment, {args.augmentations} copies"),
                      ("full", "full iteration (+ loss, Adam, clamps)")):
        print(f"| {name} | " + " | ".join(f"{1e3 * med[n][key]:.0f}" for n in threads) + " |")
    print("| **full iteration / yardstick** (target <= 0.5) | "
          + " | ".join(f"**{med[n]['ratio']:.2f}**" for n in threads) + " |")
    for n in threads:
        print(f"\n{n} thread(s), per-round full / yardstick: " + " ".join(f"{v:.2f}" for v in rows[n]["ratio"]))

    best = min(threads, key=lambda n: med[n]["full"])
    set_threads(best)
    if args.trajectory and fast.dtype != torch.float32:
        _, a = loop_time(fp32, args, args.trajectory)
        _, b = loop_time(fast, args, args.trajectory)
        print(f"\nloss trajectory, same seed (fp32 | {dtype}):")
        print("  fp32: " + " ".join(f"{v:.4f}" for v in a))
        print(f"  {dtype}: " + " ".join(f"{v:.4f}" for v in b))
        print(f"  largest difference: {max(abs(x - y) for x, y in zip(a, b)):.4f}")

    peak = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024  # KiB on Linux
    print(f"\npeak memory (max RSS): {peak:.0f} MiB")
    if DEVICE == "cuda":
        print(f"peak GPU memory: {torch.cuda.max_memory_allocated() / 2**20:.0f} MiB")
    t_full = med[best]["full"]
    print(f"\nhow long a drawing takes here ({best} thread{'s' * (best != 1)}): {t_full:.2f} s per iteration -> "
          f"1000 iterations (CLIPDraw's full run) in {1000 * t_full / 60:.1f} min; a 60 s budget does "
          f"{int(60 / t_full)} iterations")


if __name__ == "__main__":
    main()
