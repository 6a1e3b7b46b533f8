"""TEST DOUBLE: the double's OM file, as its `atc` writes it and its InferSession reads it: a magic
line, one JSON header line (what ATC compiled: input shapes with -1 dims, the gears, the chip),
then the ONNX model's bytes."""

import json

MAGIC = b"AIS_BENCH_TEST_DOUBLE_OM\n"


def parse_shapes(text: str) -> dict:
    """ATC's --input_shape "name:1,3,-1,-1;other:..." -> {name: [dims]} in order."""
    out = {}
    for part in text.split(";"):
        name, _, dims = part.rpartition(":")
        if not name or not dims:
            raise ValueError(f"--input_shape entry '{part}' is not name:d0,d1,...")
        out[name] = [int(d) for d in dims.split(",")]
    return out


def parse_gears(text: str) -> list:
    """"512,512;512,576" -> [(512, 512), (512, 576)]."""
    return [tuple(int(v) for v in gear.split(",")) for gear in text.split(";") if gear]


def write(path: str, header: dict, onnx_bytes: bytes):
    with open(path, "wb") as f:
        f.write(MAGIC)
        f.write(json.dumps(header).encode() + b"\n")
        f.write(onnx_bytes)


def read(path: str) -> tuple:
    with open(path, "rb") as f:
        data = f.read()
    if not data.startswith(MAGIC):
        raise RuntimeError(f"[ERROR] load model from file failed, model file is {path} (not an OM "
                           f"of the ais_bench test double)")
    header, _, onnx_bytes = data[len(MAGIC):].partition(b"\n")
    return json.loads(header), onnx_bytes
