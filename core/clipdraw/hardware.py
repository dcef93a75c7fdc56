"""What this machine runs fast: the CLIP weights' precision and the number of CPU threads.

Precision "auto" is bf16 on CPUs that do bf16 arithmetic in hardware (avx512_bf16 or AMX; there
the image tower's backward takes about half of fp32's time) and fp32 on other CPUs (where bf16 is
emulated and slower); on CUDA bf16 where the GPU supports it, else fp16; fp32 on Apple's MPS.

Threads: torch's default is one per physical core, which on a machine whose cores are busy with
other work oversubscribes them (a draw on 2 busy cores took 26 s on 2 threads, 9.5 s on one).
The default here is the cores not busy with other tasks right now, at least 1 and at most torch's
default; CLIPDRAW_THREADS or --threads sets it.
"""
from __future__ import annotations

import functools
import os
import statistics
import time
from typing import Optional

import torch

PRECISIONS = ("auto", "fp32", "bf16")
_DTYPES = {"fp32": torch.float32, "bf16": torch.bfloat16}


@functools.lru_cache(maxsize=None)
def cpu_has_fast_bf16() -> bool:
    """True if the CPU has bf16 arithmetic in hardware (x86 avx512_bf16 or AMX-BF16; read once)."""
    try:
        with open("/proc/cpuinfo", encoding="utf-8") as f:
            flags = next((line.split(":", 1)[1].split() for line in f if line.startswith("flags")), [])
    except OSError:  # not Linux: no cheap way to ask, and emulated bf16 is slower than fp32
        return False
    return "avx512_bf16" in flags or "amx_bf16" in flags


def pick_dtype(precision: str, device) -> torch.dtype:
    """The dtype of the CLIP image tower's weights for `precision` (auto | fp32 | bf16) on `device`."""
    if precision not in PRECISIONS:
        raise ValueError(f"unknown precision {precision!r}: choose {', '.join(PRECISIONS)}")
    if precision != "auto":
        return _DTYPES[precision]
    kind = torch.device(device).type
    if kind == "cuda":
        return torch.bfloat16 if torch.cuda.is_bf16_supported() else torch.float16
    if kind == "cpu" and cpu_has_fast_bf16():
        return torch.bfloat16
    return torch.float32


def default_threads() -> int:
    """CLIPDRAW_THREADS if set, else the cores not busy with other work (at least 1, at most torch's default)."""
    env = os.environ.get("CLIPDRAW_THREADS", "").strip()
    if env:
        return parse_threads(env, "CLIPDRAW_THREADS")
    most = torch.get_num_threads()
    busy = other_busy_cores()
    if busy is None:
        return most
    cores = len(os.sched_getaffinity(0)) if hasattr(os, "sched_getaffinity") else os.cpu_count() or 1
    return max(1, min(most, round(cores - busy)))


def other_busy_cores(samples: int = 5) -> Optional[float]:
    """How many other tasks are running now: Linux's count of runnable tasks (/proc/loadavg, less
    this process), median of a few samples 10 ms apart. Not the 1-minute load average, which
    still counts this program's own previous run. Elsewhere the load average; None without one."""
    counts = []
    for i in range(samples):
        try:
            with open("/proc/loadavg", encoding="ascii") as f:
                counts.append(int(f.read().split()[3].split("/")[0]) - 1)
        except (OSError, ValueError, IndexError):
            break
        if i + 1 < samples:
            time.sleep(0.01)
    if counts:
        return float(statistics.median(counts))
    try:
        return os.getloadavg()[0]
    except (OSError, AttributeError):  # Windows
        return None


def parse_threads(text: str, where: str = "threads") -> int:
    """A thread count (`where` names its source in the message); ValueError with one sentence if bad."""
    try:
        n = int(text)
    except ValueError:
        n = 0
    if n < 1:
        raise ValueError(f"{where}: expected a whole number of at least 1, got {text!r}")
    return n


def set_threads(n: Optional[int] = None) -> int:
    """Run torch's CPU work on n threads (None: default_threads()); returns the number used."""
    n = default_threads() if n is None else n
    torch.set_num_threads(n)
    return n
