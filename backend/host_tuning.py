"""Process-wide settings for a server whose threads hand multi-megabyte tensors to each other, set
once at start (glibc only; elsewhere nothing changes).

glibc returns freed memory above its trim threshold to the kernel (twice the largest block freed so
far, ~20 MiB here) and hands blocks larger than its mmap threshold a mapping of their own. A
request of hrnet_pose allocates and frees ~20 MiB of tensors (the network input, the device's
output): with the defaults much of that memory went back to the kernel after each request and came
back as fresh pages, zeroed by the kernel on first touch (measured: ~100 page faults and ~1.5 ms of
kernel time per image, a tenth of the host's work). Blocks up to 32 MiB (glibc's largest mmap
threshold) now come from the heap, and up to 256 MiB of freed heap stays mapped for reuse."""

import ctypes
import ctypes.util
import logging

log = logging.getLogger("backend.host_tuning")

_M_TRIM_THRESHOLD = -1  # mallopt parameters (malloc.h)
_M_MMAP_THRESHOLD = -3
MMAP_THRESHOLD = 32 << 20
TRIM_THRESHOLD = 256 << 20


def keep_freed_memory() -> bool:
    """Set glibc's thresholds (above); False where the C library is not glibc."""
    try:
        libc = ctypes.CDLL(ctypes.util.find_library("c") or "libc.so.6")
        libc.gnu_get_libc_version  # glibc's own symbol: another libc's mallopt means other things
        mallopt = libc.mallopt
    except (OSError, AttributeError):
        return False
    mallopt.argtypes = (ctypes.c_int, ctypes.c_int)
    ok = mallopt(_M_MMAP_THRESHOLD, MMAP_THRESHOLD) == 1 and mallopt(_M_TRIM_THRESHOLD, TRIM_THRESHOLD) == 1
    log.debug("glibc malloc: mmap threshold %d MiB, trim threshold %d MiB%s", MMAP_THRESHOLD >> 20,
              TRIM_THRESHOLD >> 20, "" if ok else " (refused)")
    return ok
