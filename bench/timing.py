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


def timed_pair(fn_a, fn_b, repeat: int, warmup: int = 1):
    """(median seconds of fn_a, of fn_b), their calls alternating: a ratio of the two is then
    measured under the same conditions on a shared machine whose speed drifts."""
    for _ in range(warmup):
        fn_a()
        fn_b()
    times_a, times_b = [], []
    for _ in range(repeat):
        for fn, times in ((fn_a, times_a), (fn_b, times_b)):
            t = time.perf_counter()
            fn()
            times.append(time.perf_counter() - t)
    return statistics.median(times_a), statistics.median(times_b)
