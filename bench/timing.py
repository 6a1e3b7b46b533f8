"""Timing for the benchmarks: the median of repeated calls, after warm-up calls."""

import statistics
import time


def timed(fn, repeat: int, warmup: int = 1):
    """(median seconds of `repeat` calls of fn after `warmup` calls, the last call's result)."""
    for _ in range(warmup):
        fn()
    times = []
    for _ in range(repeat):
        t = time.perf_counter()
        result = fn()
        times.append(time.perf_counter() - t)
    return statistics.median(times), result
