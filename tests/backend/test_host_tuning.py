"""backend.host_tuning: with glibc's thresholds set, tensors of the pipeline's sizes allocated and
freed over and over (on a worker thread and on the main thread) reuse the heap instead of coming
back from the kernel as fresh pages. Each case runs in a process of its own (the setting is
process-wide)."""

import subprocess
import sys

import pytest

from tests.serverproc import ROOT

SCRIPT = r"""
import resource, sys, threading
import numpy as np
if sys.argv[1] == "tuned":
    from backend.host_tuning import keep_freed_memory
    assert keep_freed_memory()
faults = []
def work():
    for _ in range(3):
        a = np.ones(10 << 20, np.uint8); b = np.ones(7 << 20, np.uint8); del a, b
    before = resource.getrusage(resource.RUSAGE_THREAD).ru_minflt
    for _ in range(30):  # like a request: the input, the maps, the next input while the maps live
        a = np.ones(10 << 20, np.uint8)
        b = np.ones(7 << 20, np.uint8)
        del a
        c = np.ones(12 << 20, np.uint8)
        del b, c
    faults.append(resource.getrusage(resource.RUSAGE_THREAD).ru_minflt - before)
t = threading.Thread(target=work)
t.start()
t.join()
work()
print(*faults)
"""


def _faults(mode):
    run = subprocess.run([sys.executable, "-c", SCRIPT, mode], cwd=ROOT, capture_output=True, text=True,
                         timeout=120)
    assert run.returncode == 0, run.stderr
    return [int(x) for x in run.stdout.split()]


def test_freed_tensors_are_reused_without_page_faults():
    if not _glibc():
        pytest.skip("the C library is not glibc: keep_freed_memory() changes nothing")
    default, tuned = _faults("default"), _faults("tuned")
    for d, t in zip(default, tuned):  # (worker thread, main thread)
        assert t * 10 < d, (default, tuned)


def _glibc():
    import ctypes
    try:
        ctypes.CDLL("libc.so.6").gnu_get_libc_version
        return True
    except (OSError, AttributeError):
        return False
