"""BYTES tensors on the wire: each element is a 4-byte little-endian length, then its bytes.

The one implementation: the server's codec and pb_utils (backend/python_stub) both use it."""

import struct

import numpy as np

_LEN = struct.Struct("<I")


def _to_bytes(x):
    # The server's rule for an element that is not bytes: str as UTF-8, else bytes(x).
    if isinstance(x, bytes):
        return x
    return x.encode("utf-8") if isinstance(x, str) else bytes(x)


def serialize(array: np.ndarray) -> bytes:
    """np.object_/np.bytes_/str array -> wire bytes, C order."""
    return serialize_array(array).tobytes()


def serialize_array(array: np.ndarray, to_bytes=_to_bytes) -> np.ndarray:
    """np.object_/np.bytes_/str array -> flat, writable np.uint8 array of wire bytes, C order.
    `to_bytes(x)` gives the bytes of an element that is not exactly `bytes` (pb_utils passes
    Triton's rule). Lengths and payload are placed with numpy; Python only touches each
    element to get its bytes."""
    flat = array.reshape(-1)
    n = flat.size
    if n == 0:
        return np.empty(0, np.uint8)
    if flat.dtype.kind == "S":
        lens, payload = _fixed_width(flat)
    elif flat.dtype.kind not in ("O", "U"):
        raise TypeError(f"a BYTES tensor needs an object, bytes or str array, got {flat.dtype}")
    else:
        items = [x if type(x) is bytes else to_bytes(x) for x in flat.tolist()]
        lens = np.fromiter(map(len, items), dtype=np.int64, count=n)
        payload = np.frombuffer(b"".join(items), np.uint8)
    return _pack(lens, payload)


def _fixed_width(flat: np.ndarray):
    """Lengths and payload of an np.bytes_ ('S<n>') array, straight from its (n, width) byte
    matrix. np.bytes_ drops trailing NULs, as tritonclient does."""
    n, width = flat.size, flat.dtype.itemsize
    lens = np.char.str_len(flat).astype(np.int64)
    chars = np.ascontiguousarray(flat).view(np.uint8).reshape(n, width)
    return lens, chars[np.arange(width) < lens[:, None]]


def _pack(lens: np.ndarray, payload: np.ndarray) -> np.ndarray:
    """Each element's length prefix put in front of its bytes (`payload`: all of them, joined)."""
    n = lens.size
    out = np.empty(4 * n + payload.size, np.uint8)
    starts = np.arange(n, dtype=np.int64) * 4
    starts[1:] += np.cumsum(lens[:-1])
    prefix_at = starts[:, None] + np.arange(4)
    out[prefix_at] = lens.astype("<u4").view(np.uint8).reshape(n, 4)
    keep = np.ones(out.size, bool)
    keep[prefix_at] = False
    out[keep] = payload
    return out


def deserialize(buf, count: int = -1) -> np.ndarray:
    """Wire bytes (any contiguous buffer) -> flat np.object_ array of bytes. `count` = expected
    element count (-1: any). Raises ValueError saying what is wrong."""
    mv = memoryview(buf).cast("B")
    total = len(mv)
    if total >= 4:
        out = _deserialize_uniform(mv, total, count)
        if out is not None:
            return out
    # Lengths differ: each offset depends on the previous length, so walk the prefixes. Slices
    # of one bytes object are cheaper than memoryview slices turned into bytes.
    data = buf if isinstance(buf, bytes) else mv.tobytes()
    unpack = _LEN.unpack_from
    items = []
    append = items.append
    pos = 0
    while pos < total:
        if count >= 0 and len(items) == count:
            raise ValueError(f"unexpected number of string elements {len(items) + 1}, expecting {count}")
        if pos + 4 > total:
            raise ValueError("incomplete string length indicator")
        (length,) = unpack(data, pos)
        end = pos + 4 + length
        if end > total:
            raise ValueError(f"string length {length} runs past the end of the buffer")
        append(data[pos + 4:end])
        pos = end
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
