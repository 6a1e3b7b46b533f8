"""System (POSIX) shared memory regions registered by clients, read and written with bounds checks."""

import mmap
import os
import re
import threading

import numpy as np

from .errors import AlreadyExists, Internal, InvalidArgument, NotFound

# shm_open names: one leading '/', then no further '/' (and nothing that walks out of /dev/shm).
_KEY = re.compile(r"^/?[^/\x00]{1,255}$")
SHM_DIR = "/dev/shm"


class _Region:
    def __init__(self, name, key, offset, byte_size, fd, mm):
        self.name, self.key, self.offset, self.byte_size = name, key, offset, byte_size
        self.fd, self.mm = fd, mm

    def close(self):
        try:
            self.mm.close()
        except BufferError:
            # A numpy view of it is still alive (a request in flight): the mapping goes with it.
            pass
        os.close(self.fd)


class SharedMemoryManager:
    def __init__(self):
        self._regions = {}
        self._lock = threading.Lock()

    def register(self, name: str, key: str, offset: int, byte_size: int):
        if not name:
            raise InvalidArgument("shared memory region name must not be empty")
        if not _KEY.match(key) or key.strip("/") in (".", ".."):
            raise InvalidArgument(f"Unable to open shared memory region: '{name}', invalid key '{key}'")
        with self._lock:
            if name in self._regions:
                raise AlreadyExists(f"shared memory region '{name}' already in manager")
            path = os.path.join(SHM_DIR, key.lstrip("/"))
            try:
                fd = os.open(path, os.O_RDWR | getattr(os, "O_NOFOLLOW", 0))
            except OSError as e:
                raise InvalidArgument(
                    f"Unable to open shared memory region: '{key}' for region '{name}': {e.strerror}")
            try:
                size = os.fstat(fd).st_size
                if offset < 0 or byte_size <= 0 or offset >= size or offset + byte_size > size:
                    raise InvalidArgument(f"Invalid offset + byte size for shared memory region: '{name}'")
                mm = mmap.mmap(fd, size)
            except Exception:
                os.close(fd)
                raise
            self._regions[name] = _Region(name, key, offset, byte_size, fd, mm)

    def unregister(self, name: str = ""):
        with self._lock:
            names = list(self._regions) if not name else [name]
            for n in names:
                region = self._regions.pop(n, None)
                if region is not None:
                    region.close()

    def status(self, name: str = ""):
        with self._lock:
            if name:
                if name not in self._regions:
                    raise NotFound(f"Unable to find system shared memory region: '{name}'")
                return [self._regions[name]]
            return list(self._regions.values())

    def _slice(self, name: str, offset: int, byte_size: int):
        with self._lock:
            region = self._regions.get(name)
        if region is None:
            raise NotFound(f"Unable to find shared memory region: '{name}'")
        if offset < 0 or byte_size < 0 or offset + byte_size > region.byte_size:
            raise InvalidArgument(f"Invalid offset + byte size for shared memory region: '{name}'")
        start = region.offset + offset
        return region, start

    def read(self, name: str, offset: int, byte_size: int) -> np.ndarray:
        """A uint8 copy of the bytes (a copy, so a later Unregister cannot pull memory from
        under a request in flight)."""
        region, start = self._slice(name, offset, byte_size)
        return np.frombuffer(region.mm, np.uint8, byte_size, start).copy()

    def write(self, name: str, offset: int, byte_size: int, data: bytes | memoryview, tensor: str) -> None:
        region, start = self._slice(name, offset, byte_size)
        n = len(data)
        if n > byte_size:
            raise Internal(
                f"shared memory size specified with the request for output '{tensor}' ({byte_size} bytes) "
                f"should be at least {n} bytes to hold the results")
        region.mm[start:start + n] = data
