"""Timing for the benchmarks: the median of repeated calls, after warm-up calls."""

import statistics
import time


def _clocked(fn):
    """(seconds fn() took, its result)."""
    t = time.perf_counter()
    result = fn()
    return time.perf_counter() - t, result


def timed(fn, repeat: int, warmup: int = 1):
    """(median seconds of `repeat` calls of fn after `warmup` calls, the last call's result)."""
    for _ in range(warmup):
        fn()
    times = []
    for _ in range(repeat):
        t, result = _clocked(fn)
        times.append(t)
    return statistics.median(times), result


def timed_pair(fn_a, fn_b, repeat: int, warmup: int = 1):
    """(median seconds of fn_a, of fn_b), their calls alternating: a ratio of the two is then
    measured under the same conditions on a shared machine whose speed drifts."""
    for _ in range(warmup):
        fn_a()
        fn_b()
    pairs = [(_clocked(fn_a)[0], _clocked(fn_b)[0]) for _ in range(repeat)]
    return statistics.median(a for a, _ in pairs), statistics.median(b for _, b in pairs)
