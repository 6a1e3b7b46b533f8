"""Request data for client.perf, chosen from the model's metadata the way perf_analyzer does.

Numeric inputs get random data generated once (perf_analyzer's default), `zero` gives zeros.
BYTES inputs get encoded images (the pose pipeline's IMAGE input): the bundled COCO mini set,
the images of an `--input-data` folder, or the contents of a perf_analyzer-format JSON file.
Dynamic dimensions come from `--shape NAME:d1,d2,...` (without the batch dimension, as in
perf_analyzer). Requests are batch 1.
"""

from __future__ import annotations

import base64
import json
from dataclasses import dataclass
from pathlib import Path

import numpy as np
from tritonclient.utils import deserialize_bytes_tensor, serialize_byte_tensor, triton_to_np_dtype

from client.coco import PROJECT_COCO_ROOT, IMAGE_DIR_NAME

IMAGE_SUFFIXES = (".jpg", ".jpeg", ".png")
DEFAULT_IMAGE_DIR = PROJECT_COCO_ROOT / IMAGE_DIR_NAME


@dataclass(frozen=True)
class TensorSpec:
    name: str
    datatype: str
    shape: tuple[int, ...]      # request shape, batch dimension included when the model batches
    batched: bool = False       # the first dim is the batch dim (max_batch_size > 0)

    @property
    def byte_size(self) -> int | None:
        """Bytes of one request's tensor; None when unknown (BYTES, dynamic dims)."""
        if self.datatype == "BYTES" or any(d < 0 for d in self.shape):
            return None
        return int(np.prod(self.shape)) * np.dtype(triton_to_np_dtype(self.datatype)).itemsize


def parse_shape_args(items: list[str] | None) -> dict[str, tuple[int, ...]]:
    """["input:1,3,512,512"] -> {"input": (1, 3, 512, 512)}."""
    shapes = {}
    for item in items or []:
        name, sep, dims = item.rpartition(":")
        try:
            if not sep or not name:
                raise ValueError
            shapes[name] = tuple(int(d) for d in dims.split(","))
        except ValueError:
            raise ValueError(f"--shape {item!r}: expected NAME:d1,d2,...") from None
    return shapes


def tensor_specs(metadata: dict, config: dict, shapes: dict[str, tuple[int, ...]],
                 kind: str = "inputs") -> list[TensorSpec]:
    """Request shapes of the model's inputs (or outputs) from metadata/config JSON.

    With max_batch_size > 0 the metadata's first dim is the batch dim (perf_analyzer skips it);
    batch 1 is sent. Remaining -1 dims must be given by `shapes` (inputs), else ValueError.
    """
    batching = int(config.get("max_batch_size", 0)) > 0
    specs = []
    for tensor in metadata.get(kind, []):
        name, dims = tensor["name"], [int(d) for d in tensor["shape"]]
        if batching:
            dims = dims[1:]
        if name in shapes:
            given = list(shapes[name])
            if len(given) != len(dims) or any(d >= 0 and d != g for d, g in zip(dims, given)):
                raise ValueError(
                    f"--shape {name}:{','.join(map(str, given))} does not fit the model's "
                    f"{kind[:-1]} shape {dims}" + (" (batch dim excluded)" if batching else ""))
            dims = given
        elif kind == "inputs" and tensor["datatype"] != "BYTES" and any(d < 0 for d in dims):
            raise ValueError(
                f"input '{name}' has dynamic shape {dims}: give --shape "
                f"{name}:{','.join('N' if d < 0 else str(d) for d in dims)}")
        elif kind == "inputs" and tensor["datatype"] == "BYTES":
            dims = [1 if d < 0 else d for d in dims]   # one encoded image per element
        specs.append(TensorSpec(name, tensor["datatype"], tuple(([1] if batching else []) + dims),
                                batching))
    return specs


def image_files(folder: Path) -> list[Path]:
    files = sorted(p for p in folder.iterdir() if p.suffix.lower() in IMAGE_SUFFIXES)
    if not files:
        raise ValueError(f"no .jpg/.png images in {folder}")
    return files


def bytes_tensor(spec: TensorSpec, payload: bytes) -> np.ndarray:
    return np.full(spec.shape, payload, dtype=np.object_)


def random_tensor(spec: TensorSpec, rng: np.random.Generator, zero: bool) -> np.ndarray:
    dtype = np.dtype(triton_to_np_dtype(spec.datatype))
    if zero:
        return np.zeros(spec.shape, dtype)
    if dtype == np.bool_:
        return rng.integers(0, 2, spec.shape).astype(np.bool_)
    if np.issubdtype(dtype, np.integer):
        info = np.iinfo(dtype)
        return rng.integers(max(info.min, -128), min(info.max, 127), spec.shape, endpoint=True,
                            dtype=dtype)
    return rng.random(spec.shape, dtype=np.float64).astype(dtype)


def json_tensor(spec: TensorSpec, value) -> np.ndarray:
    """One tensor of a perf_analyzer JSON data entry: list, {"b64"}, or {"content", "shape"}."""
    shape = None
    if isinstance(value, dict) and "content" in value:
        shape = value.get("shape")
        value = value["content"]
    if isinstance(value, dict) and "b64" in value:
        raw = base64.b64decode(value["b64"])
        if spec.datatype == "BYTES":
            array = deserialize_bytes_tensor(raw)   # b64 of STRING data carries 4-byte lengths
        else:
            array = np.frombuffer(raw, triton_to_np_dtype(spec.datatype))
    elif spec.datatype == "BYTES":
        array = np.array([v.encode() if isinstance(v, str) else v for v in value], np.object_)
    else:
        array = np.asarray(value, triton_to_np_dtype(spec.datatype))
    target = ([1] if spec.batched else []) + list(shape) if shape is not None else list(spec.shape)
    if -1 in target or int(np.prod(target)) != array.size:
        raise ValueError(f"input data for '{spec.name}' has {array.size} elements, "
                         f"shape {target} needs {int(np.prod(target))}")
    return array.reshape(target)


def json_samples(specs: list[TensorSpec], source: Path) -> list[dict[str, np.ndarray]]:
    """The entries of a perf_analyzer JSON file; ValueError naming the file and what is wrong."""
    try:
        with open(source) as f:
            entries = json.load(f)["data"]
        if not isinstance(entries, list) or not entries:
            raise TypeError
    except json.JSONDecodeError as err:
        raise ValueError(f"--input-data {source}: not JSON ({err})") from None
    except (KeyError, TypeError):
        raise ValueError(f"--input-data {source}: expected perf_analyzer's format "
                         f'{{"data": [{{"INPUT": ...}}, ...]}}') from None
    for i, entry in enumerate(entries):
        missing = [s.name for s in specs if not isinstance(entry, dict) or s.name not in entry]
        if missing:
            raise ValueError(f"--input-data {source}: entry {i} lacks input(s) {', '.join(missing)}")
    return [{s.name: json_tensor(s, entry[s.name]) for s in specs} for entry in entries]


def load_samples(specs: list[TensorSpec], input_data: str | None,
                 seed: int = 0) -> list[dict[str, np.ndarray]]:
    """The request data to cycle through: a list of {input name: array}."""
    rng = np.random.default_rng(seed)
    source = Path(input_data) if input_data not in (None, "random", "zero") else None
    if source is not None and source.is_file():
        return json_samples(specs, source)
    if source is not None and not source.is_dir():
        raise ValueError(f"--input-data {input_data}: no such file or folder")

    fixed = {}
    for spec in specs:
        raw_file = source / spec.name if source is not None else None
        if raw_file is not None and raw_file.is_file():   # perf_analyzer's per-input binary file
            data = raw_file.read_bytes()
            fixed[spec.name] = (deserialize_bytes_tensor(data).reshape(spec.shape)
                                if spec.datatype == "BYTES" else
                                np.frombuffer(data, triton_to_np_dtype(spec.datatype))
                                .reshape(spec.shape))
        elif spec.datatype != "BYTES":
            fixed[spec.name] = random_tensor(spec, rng, zero=input_data == "zero")
    byte_specs = [s for s in specs if s.name not in fixed]
    if not byte_specs:
        return [fixed]
    images = image_files(source if source is not None else DEFAULT_IMAGE_DIR)
    return [{**fixed, **{s.name: bytes_tensor(s, path.read_bytes()) for s in byte_specs}}
            for path in images]


def to_perf_analyzer_json(specs: list[TensorSpec], samples: list[dict[str, np.ndarray]]) -> dict:
    """The samples in perf_analyzer's --input-data JSON format (b64 content + shape w/o batch)."""
    entries = []
    for sample in samples:
        entry = {}
        for spec in specs:
            array = sample[spec.name]
            raw = (serialize_byte_tensor(array).item() if spec.datatype == "BYTES"
                   else np.ascontiguousarray(array).tobytes())
            shape = list(array.shape)[1:] if spec.batched else list(array.shape)
            entry[spec.name] = {"content": {"b64": base64.b64encode(raw).decode()},
                                "shape": shape}
        entries.append(entry)
    return {"data": entries}
