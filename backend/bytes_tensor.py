"""BYTES tensors on the wire: each element is a 4-byte little-endian length, then its bytes."""

import struct

import numpy as np

_LEN = struct.Struct("<I")


def serialize(array: np.ndarray) -> bytes:
    """np.object_/np.bytes_/str array -> wire bytes. Lengths and payload are placed with numpy;
    only the C-level join touches each element."""
    flat = array.reshape(-1)
    n = flat.size
    if n == 0:
        return b""
    items = [x if isinstance(x, bytes) else (x.encode("utf-8") if isinstance(x, str) else bytes(x))
             for x in flat] if flat.dtype.kind in ("O", "U") else list(flat)
    if flat.dtype.kind == "S":
        # np.bytes_ drops trailing NULs, as tritonclient does.
        items = [bytes(x) for x in items]
    lens = np.fromiter(map(len, items), dtype=np.int64, count=n)
    payload = b"".join(items)
    out = np.empty(4 * n + len(payload), np.uint8)
    starts = np.arange(n, dtype=np.int64) * 4
    starts[1:] += np.cumsum(lens[:-1])
    prefix_at = starts[:, None] + np.arange(4)
    out[prefix_at] = lens.astype("<u4").view(np.uint8).reshape(n, 4)
    keep = np.ones(out.size, bool)
    keep[prefix_at] = False
    out[keep] = np.frombuffer(payload, np.uint8)
    return out.tobytes()


def deserialize(buf, count: int = -1) -> np.ndarray:
    """Wire bytes -> flat np.object_ array of bytes. `count` = expected element count (-1: any).
    Raises ValueError with a message saying what is wrong."""
    mv = memoryview(buf).cast("B")
    total = len(mv)
    if total >= 4:
        out = _deserialize_uniform(mv, total, count)
        if out is not None:
            return out
    # Lengths differ: each offset depends on the previous length, so walk the prefixes.
    items = []
    pos = 0
    while pos < total:
        if count >= 0 and len(items) == count:
            raise ValueError(f"unexpected number of string elements {len(items) + 1}, expecting {count}")
        if pos + 4 > total:
            raise ValueError("incomplete string length indicator")
        (length,) = _LEN.unpack_from(mv, pos)
        pos += 4
        if pos + length > total:
            raise ValueError(f"string length {length} runs past the end of the buffer")
        items.append(mv[pos:pos + length].tobytes())
        pos += length
    if count >= 0 and len(items) != count:
        raise ValueError(f"expected {count} string elements, got {len(items)}")
    out = np.empty(len(items), dtype=np.object_)
    out[:] = items
    return out


def _deserialize_uniform(mv, total: int, count: int):
    """Fast path when every element is as long as the first (fixed-size strings, the common
    case): checked and split with numpy. None when lengths differ or the count is off (the
    walk then says what is wrong)."""
    (length,) = _LEN.unpack_from(mv, 0)
    stride = 4 + length
    if total % stride or (count >= 0 and total // stride != count):
        return None
    n = total // stride
    rows = np.frombuffer(mv, np.uint8, total).reshape(n, stride)
    if not (rows[:, :4] == rows[0, :4]).all():
        return None
    out = np.empty(n, dtype=np.object_)
    if length == 0:
        out[:] = [b""] * n
    else:
        # Each row of a void view becomes one bytes object in C (trailing NULs kept).
        out[:] = np.ascontiguousarray(rows[:, 4:]).view(f"V{length}").ravel().tolist()
    return out
