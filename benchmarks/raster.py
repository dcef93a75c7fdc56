"""Rasterizer speed: forward and forward+backward for CLIPDraw's random strokes, with CLIP as the yardstick.

    python benchmarks/raster.py            # 16/64/256/1024 strokes at 224x224 and 512x512, then
                                           # the width table and the 2048 px page
    python benchmarks/raster.py --quick    # fewer runs, 224x224 only
    python benchmarks/raster.py --device cuda --backend native

The width table times 256 strokes at 224 whose full widths are 2 px, uniform in [2, 20] and
[2, 50] px, 100 px, and the widths a default `clipdraw draw` run ended with
(benchmarks/end_of_run_widths.json, see its "source"). The page row is one forward render at
2048x2048 of 10 page-sized filled shapes under 256 strokes (widths uniform in [2, 20] px at 224,
so 18 to 183 px there): a large document through `score` or `--png`.

The (best) column is the fastest forward+backward run: on a shared machine it shows what the
code does when it has the cores. Every (size, strokes) row runs in a fresh subprocess so that its
peak memory is its own: on CPU the growth of the process's peak resident set (Linux VmHWM, reset
through /proc/self/clear_refs) over what it held before the first render; on CUDA the peak of
torch.cuda.max_memory_allocated. The scene's points, widths and colours are views of three packed
tensors, bound before each render, as the CLIPDraw loop holds them (optimize.Packed). Times are
medians over --repeats runs after --warmup runs. The memory and the forward column come from runs
of the render alone. Then the ratio's two sides are timed in turn, --repeats times: the render
(forward+backward; the page: its forward) and the yardstick, one after the other as in a real
run, so that both see the same load on a shared machine (its load drifts from minute to minute);
the forward+backward, (best) and CLIP columns are those runs. The yardstick is one
forward+backward of CLIP ViT-B/32's image tower (open_clip "ViT-B-32-quickgelu", random weights, frozen, gradient to
the input images) at batch 4, as CLIPDraw does per step. The loss of the render is mean(image *
weights) so that every pixel gets a gradient. On a CPU, --threads N is also how many bands of rows
the rasterizer renders at once on worker threads (at most 4; --threads 1: one after the other).
"""
from __future__ import annotations

import argparse
import json
import os
import platform
import resource
import statistics
import subprocess
import sys
import time
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT / "core"))

import torch  # noqa: E402

from clipdraw.optimize import Packed, random_strokes  # noqa: E402


def _sync(device):
    if device.type == "cuda":
        torch.cuda.synchronize(device)


CLOCK = time.perf_counter  # --cpu-time: time.process_time


def _times_ms(fn, device, warmup: int, repeats: int) -> list:
    for _ in range(warmup):
        fn()
    _sync(device)
    times = []
    for _ in range(repeats):
        t = CLOCK()
        fn()
        _sync(device)
        times.append(1000 * (CLOCK() - t))
    return times


def _proc_status_kib(field: str):
    try:
        for line in Path("/proc/self/status").read_text().splitlines():
            if line.startswith(field + ":"):
                return int(line.split()[1])
    except (OSError, ValueError, IndexError):
        pass
    return None


def _rss_baseline() -> int:
    """Bytes resident now, with the peak reset to it where Linux allows (VmHWM via clear_refs).
    ru_maxrss is no use here: Linux carries it over from the parent across fork and exec."""
    try:
        Path("/proc/self/clear_refs").write_text("5")
    except OSError:
        pass
    now = _proc_status_kib("VmRSS")
    if now is not None:
        return now * 1024
    return _rss_peak()


def _rss_peak() -> int:
    """Peak resident bytes: VmHWM on Linux, else ru_maxrss (KiB on Linux, bytes on macOS)."""
    hwm = _proc_status_kib("VmHWM")
    if hwm is not None:
        return hwm * 1024
    r = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss
    return r if sys.platform == "darwin" else r * 1024


END_OF_RUN = ROOT / "benchmarks" / "end_of_run_widths.json"
WIDTHS = {"2": (2.0, 2.0), "2-20": (2.0, 20.0), "2-50": (2.0, 50.0), "100": (100.0, 100.0)}


def stroke_widths(spec: str, n: int) -> torch.Tensor:
    """Full widths at 224 px: a WIDTHS key (uniform between its bounds) or "end" (a real run's)."""
    if spec == "end":
        widths = torch.tensor(json.loads(END_OF_RUN.read_text())["widths"], dtype=torch.float32)
        return widths[torch.arange(n) % widths.shape[0]]
    lo, hi = WIDTHS[spec]
    return lo + (hi - lo) * torch.rand(n, generator=torch.Generator().manual_seed(2))


def page_shapes(n: int, size: int) -> list:
    """n filled closed curves, each about the page's size (radii 0.3 to 0.7 of it), random RGBA."""
    from clipdraw.scene import Shape, Subpath

    g = torch.Generator().manual_seed(3)
    shapes = []
    for _ in range(n):
        centre = (0.4 + 0.2 * torch.rand(2, generator=g)) * size
        angles = torch.linspace(0, 2 * torch.pi, 13)[:12] + torch.rand((), generator=g)
        radius = (0.3 + 0.4 * torch.rand(12, 1, generator=g)) * size
        points = centre + radius * torch.stack([angles.cos(), angles.sin()], -1)  # [12, 2]: 4 segments
        shapes.append(Shape([Subpath(points, closed=True)], torch.tensor(0.0), fill=torch.rand(4, generator=g)))
    return shapes


def measure_render(size: int, strokes: int, device: str, backend: str, warmup: int, repeats: int,
                   widths: str = "2", page: int = 0, clip: bool = True) -> dict:
    """size: the render's size; widths: a stroke_widths spec; page: that many page-sized fills under
    the strokes, the scene drawn at 224 and rendered forward only at `size` (no backward)."""
    from clipdraw.render import render
    from clipdraw.scene import Scene

    dev = torch.device(device)
    # DESIGN.md's random init, drawn at that canvas size (the same strokes as `clipdraw draw` starts from)
    canvas = 224 if page else size
    shapes = random_strokes(strokes, canvas, canvas, torch.Generator().manual_seed(0))
    if widths != "2":
        for shape, w in zip(shapes, stroke_widths(widths, strokes) * canvas / 224):
            shape.stroke_width = w.clone()
    scene = Scene(canvas, canvas, page_shapes(page, canvas) + shapes).to(dev)
    # the parameters as the CLIPDraw loop holds them: three packed tensors, the scene's views of them
    pack = Packed(scene)
    leaves = list(pack.tensors.values())
    for t in leaves:
        t.requires_grad_(True)
    weights = torch.rand(size, size, 3, generator=torch.Generator().manual_seed(1)).to(dev)

    def forward():
        pack.bind()
        with torch.set_grad_enabled(not page):  # the page: a plain render, as `score` does
            render(scene, size, size, backend=backend)

    def forward_backward():
        for t in leaves:
            t.grad = None
        pack.bind()
        (render(scene, backend=backend) * weights).mean().backward()

    if dev.type == "cuda":
        torch.cuda.reset_peak_memory_stats(dev)
        base = torch.cuda.memory_allocated(dev)
    else:
        base = _rss_baseline()
    # with the yardstick, the timed thing's times come from the runs in turn below: alone, it runs
    # only for its memory
    alone = 1 if clip else repeats
    fwd = _times_ms(forward, dev, warmup, alone if page else repeats)
    fb = [float("nan")] if page else _times_ms(forward_backward, dev, warmup, alone)
    if dev.type == "cuda":
        peak = (torch.cuda.max_memory_allocated(dev) - base) / 2**20
    else:
        peak = (_rss_peak() - base) / 2**20
    clip_ms = None
    if clip:
        # the yardstick, one step after each render (the timed thing: the page's forward, else
        # forward+backward), as in a real run: both see the same load, which drifts on a shared machine
        timed = forward if page else forward_backward
        clip_step = clip_yardstick(device)
        for _ in range(max(1, warmup // 2)):
            clip_step()
        times, clip_times = [], []
        for _ in range(repeats):
            times += _times_ms(timed, dev, 0, 1)
            clip_times += _times_ms(clip_step, dev, 0, 1)
        clip_ms = statistics.median(clip_times)
        if page:
            fwd = times
        else:
            fb = times
    return {"size": size, "strokes": strokes, "widths": widths, "page": page, "forward_ms": statistics.median(fwd),
            "forward_backward_ms": statistics.median(fb), "forward_backward_best_ms": min(fb),
            "peak_mib": peak, "clip_ms": clip_ms}


def clip_yardstick(device: str):
    """One forward+backward of CLIP ViT-B/32's image tower at batch 4 (a function to call)."""
    import open_clip

    dev = torch.device(device)
    model = open_clip.create_model("ViT-B-32-quickgelu", pretrained=None)
    visual = model.visual.to(dev).eval().requires_grad_(False)
    x = torch.rand(4, 3, 224, 224, device=dev, requires_grad=True)

    def step():
        x.grad = None
        visual(x).sum().backward()

    return step


def machine(device: str) -> str:
    cpu = platform.processor() or "unknown CPU"
    try:
        for line in Path("/proc/cpuinfo").read_text().splitlines():
            if line.startswith("model name"):
                cpu = line.split(":", 1)[1].strip()
                break
    except OSError:
        pass
    parts = [f"CPU {cpu}", f"{os.cpu_count()} cores", f"torch {torch.__version__}",
             f"{torch.get_num_threads()} threads"]
    if device.startswith("cuda") and torch.cuda.is_available():
        parts.append(f"GPU {torch.cuda.get_device_name(torch.device(device))}")
    try:
        parts.append("load average %.2f %.2f %.2f" % os.getloadavg())
    except OSError:
        pass
    return ", ".join(parts)


def main(argv=None) -> int:
    p = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("--quick", action="store_true", help="224x224 only, fewer runs")
    p.add_argument("--sizes", default=None, help="comma-separated canvas sizes (default 224,512)")
    p.add_argument("--strokes", default="16,64,256,1024", help="comma-separated stroke counts")
    p.add_argument("--repeats", type=int, default=None, help="timed runs per row (default 15, quick 5)")
    p.add_argument("--warmup", type=int, default=3)
    p.add_argument("--device", default="cpu")
    p.add_argument("--backend", default="native", choices=["native", "diffvg"])
    p.add_argument("--threads", type=int, default=None, help="torch.set_num_threads (default: torch's)")
    p.add_argument("--no-clip", action="store_true", help="skip the CLIP yardstick")
    p.add_argument("--cpu-time", action="store_true", help="time the process's CPU time, not the wall clock: with "
                   "--threads 1, what the code costs on a machine others are loading (CPU only)")
    p.add_argument("--inline", action="store_true", help="measure in this process (peak memory is then cumulative)")
    p.add_argument("--no-widths", action="store_true", help="skip the width table and the 2048 px page")
    p.add_argument("--one", nargs=2, type=int, metavar=("SIZE", "STROKES"), help=argparse.SUPPRESS)
    p.add_argument("--widths", default="2", help=argparse.SUPPRESS)
    p.add_argument("--page", type=int, default=0, help=argparse.SUPPRESS)
    args = p.parse_args(argv)
    if args.threads:
        torch.set_num_threads(args.threads)
    if args.cpu_time:
        global CLOCK
        CLOCK = time.process_time
    repeats = args.repeats or (5 if args.quick else 15)
    if args.one:
        r = measure_render(args.one[0], args.one[1], args.device, args.backend, args.warmup, repeats,
                           args.widths, args.page, not args.no_clip)
        print(json.dumps(r))
        return 0

    def row(size, n, widths="2", page=0, repeats=repeats):
        if args.inline:
            return measure_render(size, n, args.device, args.backend, args.warmup, repeats, widths, page,
                                  not args.no_clip)
        cmd = [sys.executable, __file__, "--one", str(size), str(n), "--device", args.device,
               "--backend", args.backend, "--warmup", str(args.warmup), "--repeats", str(repeats),
               "--widths", widths, "--page", str(page)] + (["--no-clip"] if args.no_clip else []) + (
                   ["--cpu-time"] if args.cpu_time else [])
        if args.threads:
            cmd += ["--threads", str(args.threads)]
        out = subprocess.run(cmd, check=True, capture_output=True, text=True).stdout
        return json.loads(out.strip().splitlines()[-1])

    sizes = [int(s) for s in (args.sizes or ("224" if args.quick else "224,512")).split(",")]
    counts = [int(s) for s in args.strokes.split(",")]
    print(f"# machine: {machine(args.device)}")
    print(f"# backend {args.backend} on {args.device}; median of {repeats} runs after {args.warmup} warm-up; "
          f"{'CPU time of the process' if args.cpu_time else 'wall clock'}")
    print("# yardstick: CLIP ViT-B/32 image tower, batch 4, forward+backward (CLIP ms column), timed in turn "
          "with the render in each row's process")
    mem = "peak CUDA alloc MiB" if args.device.startswith("cuda") else "peak RSS growth MiB"

    def ratio(r, key="forward_backward_ms", digits=3):
        return f"{r[key] / r['clip_ms']:.{digits}f}" if r["clip_ms"] else "-"

    def clip(r):
        return f"{r['clip_ms']:.0f}" if r["clip_ms"] else "-"

    print()
    print(f"| size | strokes | forward ms | forward+backward ms | (best) | {mem} | CLIP ms | fwd+bwd / CLIP |")
    print("|---|---|---|---|---|---|---|---|")
    rows = []
    for size in sizes:
        for n in counts:
            r = row(size, n)
            rows.append(r)
            print(f"| {size} | {n} | {r['forward_ms']:.1f} | {r['forward_backward_ms']:.1f} | "
                  f"{r['forward_backward_best_ms']:.1f} | {r['peak_mib']:.0f} | {clip(r)} | {ratio(r)} |", flush=True)
    target = [r for r in rows if r["size"] == 224 and r["strokes"] == 256 and r["clip_ms"]]
    if target:
        fb, c = target[0]["forward_backward_ms"], target[0]["clip_ms"]
        ok = fb <= 60 and fb <= 0.1 * c
        print(f"\n# target (256 strokes at 224x224, 2-core CPU): fwd+bwd <= 60 ms and <= 0.1 x CLIP "
              f"({0.1 * c:.0f} ms): {fb:.1f} ms -> {'met' if ok else 'NOT met'}")
    if not args.no_widths:
        wide = []
        print(f"\n| 256 strokes at 224, full width px | forward ms | forward+backward ms | (best) | {mem} | CLIP ms "
              "| fwd+bwd / CLIP |")
        print("|---|---|---|---|---|---|---|")
        specs = list(WIDTHS) + (["end"] if END_OF_RUN.exists() else [])
        for spec in specs:
            r = row(224, 256, spec)
            wide.append(r)
            label = "end of a `clipdraw draw` run" if spec == "end" else spec.replace("-", " to ")
            print(f"| {label} | {r['forward_ms']:.1f} | {r['forward_backward_ms']:.1f} | "
                  f"{r['forward_backward_best_ms']:.1f} | {r['peak_mib']:.0f} | {clip(r)} | {ratio(r)} |", flush=True)
        if END_OF_RUN.exists():
            w = torch.tensor(json.loads(END_OF_RUN.read_text())["widths"])
            q = torch.quantile(w, torch.tensor([0.1, 0.5, 0.9])).tolist()
            print(f"\n# end-of-run widths: {len(w)} strokes, mean {w.mean():.1f} px, 10/50/90% {q[0]:.1f} / "
                  f"{q[1]:.1f} / {q[2]:.1f} px, max {w.max():.1f} px")
        page = row(2048, 256, "2-20", page=10, repeats=max(1, repeats // 5))
        print(f"\n| 2048x2048 page: 10 page-sized fills + 256 strokes | forward ms | {mem} | CLIP ms | forward / CLIP |")
        print("|---|---|---|---|---|")
        print(f"| no autograd | {page['forward_ms']:.0f} | {page['peak_mib']:.0f} | {clip(page)} | "
              f"{ratio(page, 'forward_ms', 2)} |", flush=True)
        mid = [r for r in wide if r["widths"] == "2-50"][0]
        if mid["clip_ms"] and page["clip_ms"]:
            ok = mid["forward_backward_ms"] <= 0.15 * mid["clip_ms"] and mid["peak_mib"] <= 1024
            print(f"\n# target (256 strokes 2 to 50 px at 224): fwd+bwd <= 0.15 x CLIP and <= 1 GiB: "
                  f"{ratio(mid)}, {mid['peak_mib']:.0f} MiB -> {'met' if ok else 'NOT met'}")
            ok = page["forward_ms"] <= 2 * page["clip_ms"] and page["peak_mib"] <= 1024
            print(f"# target (2048 px page): forward <= 2 x CLIP and <= 1 GiB: "
                  f"{ratio(page, 'forward_ms', 2)}, {page['peak_mib']:.0f} MiB -> {'met' if ok else 'NOT met'}")
    print(f"# load average at the end: {'%.2f %.2f %.2f' % os.getloadavg()}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
