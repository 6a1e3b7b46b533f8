"""Datatype names on the wire ("FP32"), in model configs ("TYPE_FP32") and in numpy, in one table."""

import numpy as np

from proto import model_config_pb2 as mc

# wire name -> (config enum name, numpy dtype or None for BYTES)
_TABLE = {
    "BOOL": ("TYPE_BOOL", np.dtype(np.bool_)),
    "UINT8": ("TYPE_UINT8", np.dtype(np.uint8)),
    "UINT16": ("TYPE_UINT16", np.dtype("<u2")),
    "UINT32": ("TYPE_UINT32", np.dtype("<u4")),
    "UINT64": ("TYPE_UINT64", np.dtype("<u8")),
    "INT8": ("TYPE_INT8", np.dtype(np.int8)),
    "INT16": ("TYPE_INT16", np.dtype("<i2")),
    "INT32": ("TYPE_INT32", np.dtype("<i4")),
    "INT64": ("TYPE_INT64", np.dtype("<i8")),
    "FP16": ("TYPE_FP16", np.dtype("<f2")),
    "FP32": ("TYPE_FP32", np.dtype("<f4")),
    "FP64": ("TYPE_FP64", np.dtype("<f8")),
    "BYTES": ("TYPE_STRING", None),
    # numpy has no bfloat16: carried as raw 2-byte words.
    "BF16": ("TYPE_BF16", np.dtype("<u2")),
}

WIRE_NAMES = frozenset(_TABLE)
_BY_ENUM = {mc.DataType.Value(cfg): wire for wire, (cfg, _) in _TABLE.items()}
_BY_NUMPY = {}
for _wire, (_cfg, _np) in _TABLE.items():
    if _np is not None and _wire != "BF16":
        _BY_NUMPY.setdefault(_np, _wire)


def wire_from_config(data_type: int) -> str:
    """TYPE_FP32 (enum value) -> "FP32"."""
    return _BY_ENUM.get(data_type, "INVALID")


def config_from_wire(wire: str) -> int:
    """"FP32" -> TYPE_FP32 (enum value); "BYTES" -> TYPE_STRING."""
    return mc.DataType.Value(_TABLE[wire][0])


def numpy_dtype(wire: str):
    """"FP32" -> np.float32 (little-endian); None for BYTES."""
    return _TABLE[wire][1]


def element_size(wire: str) -> int:
    """Bytes per element; 0 for BYTES (variable)."""
    dt = _TABLE[wire][1]
    return 0 if dt is None else dt.itemsize


def wire_from_numpy(dtype) -> str:
    dtype = np.dtype(dtype)
    if dtype.kind in ("O", "S", "U"):
        return "BYTES"
    wire = _BY_NUMPY.get(dtype.newbyteorder("<") if dtype.byteorder == ">" else dtype)
    if wire is None:
        raise ValueError(f"numpy dtype {dtype} has no Triton datatype")
    return wire


# ModelInferRequest typed `contents` field for each wire type.
CONTENTS_FIELD = {
    "BOOL": "bool_contents", "INT8": "int_contents", "INT16": "int_contents",
    "INT32": "int_contents", "INT64": "int64_contents", "UINT8": "uint_contents",
    "UINT16": "uint_contents", "UINT32": "uint_contents", "UINT64": "uint64_contents",
    "FP32": "fp32_contents", "FP64": "fp64_contents", "BYTES": "bytes_contents",
}
