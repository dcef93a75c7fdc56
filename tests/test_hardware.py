"""Precision and thread defaults (hardware.py): what this machine runs fast."""
import subprocess
import sys
import time

import pytest
import torch

from clipdraw.hardware import cpu_has_fast_bf16, default_threads, other_busy_cores, pick_dtype


def test_precision_choices():
    assert pick_dtype("fp32", "cpu") == torch.float32 and pick_dtype("bf16", "cpu") == torch.bfloat16
    flags = open("/proc/cpuinfo").read() if sys.platform == "linux" else ""
    assert cpu_has_fast_bf16() == (" avx512_bf16" in flags or " amx_bf16" in flags)
    assert pick_dtype("auto", "cpu") == (torch.bfloat16 if cpu_has_fast_bf16() else torch.float32)
    assert pick_dtype("auto", "mps") == torch.float32
    with pytest.raises(ValueError, match="auto, fp32, bf16"):
        pick_dtype("fp16", "cpu")


@pytest.mark.skipif(sys.platform != "linux", reason="counts running tasks through /proc/loadavg")
def test_default_threads_leave_busy_cores_alone(monkeypatch):
    monkeypatch.delenv("CLIPDRAW_THREADS", raising=False)
    assert 1 <= default_threads() <= torch.get_num_threads()
    spin = "import time\nend = time.time() + 20\nwhile time.time() < end: pass"
    busy = [subprocess.Popen([sys.executable, "-c", spin]) for _ in range(2)]
    try:
        time.sleep(0.5)
        assert other_busy_cores() >= 2  # the two spinning processes, whatever else runs
        if len(__import__("os").sched_getaffinity(0)) <= 2:
            assert default_threads() == 1
    finally:
        for p in busy:
            p.kill()
            p.wait(timeout=10)
    monkeypatch.setenv("CLIPDRAW_THREADS", "3")
    assert default_threads() == 3
