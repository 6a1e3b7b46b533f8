"""TEST DOUBLE of `ais_bench.infer.interface` (Ascend's ais_bench inference tool): there is no NPU,
CANN or ais_bench on these machines, so this runs the double's OM (tests/ais_bench_double/bin/atc
writes it: compiled shapes, gears, ONNX bytes) with ONNX Runtime behind the documented surface of
`InferSession` (shared docs: ascend-ais-bench.md, section 2), and refuses what the runtime refuses:
a batch other than the compiled one, dims that are not a compiled gear, a mode the OM was not
compiled for, a non-contiguous or mistyped feed, any call after the session was released, any call
from a thread other than the one that created the session (the ACL context is that thread's), a
device id the card does not have. See tests/ais_bench_double/README.md for its environment knobs.
"""

import enum
import json
import os
import threading
import time

import numpy as np

from .. import _om

_journal_lock = threading.Lock()
_session_ids = iter(range(1, 1 << 30))


class dtype(enum.Enum):  # aclruntime.dtype: str() gives "dtype.float32"
    float32 = 0
    float16 = 1
    int8 = 2
    int32 = 3
    uint8 = 4
    int64 = 9
    double = 11
    bool = 12


_FROM_ORT = {"tensor(float)": dtype.float32, "tensor(float16)": dtype.float16, "tensor(int8)": dtype.int8,
             "tensor(int32)": dtype.int32, "tensor(uint8)": dtype.uint8, "tensor(int64)": dtype.int64,
             "tensor(double)": dtype.double, "tensor(bool)": dtype.bool}
_NUMPY = {dtype.float32: np.float32, dtype.float16: np.float16, dtype.int8: np.int8, dtype.int32: np.int32,
          dtype.uint8: np.uint8, dtype.int64: np.int64, dtype.double: np.float64, dtype.bool: np.bool_}


class TensorDesc:
    def __init__(self, name, shape, datatype):
        self.name, self.shape, self.datatype = name, list(shape), datatype
        items = int(np.prod([d if d > 0 else 1 for d in shape]))
        self.size = self.realsize = items * np.dtype(_NUMPY[datatype]).itemsize
        self.format = 0  # ACL_FORMAT_NCHW

    def __repr__(self):
        return f"<TensorDesc {self.name} {self.shape} {self.datatype}>"


class _Summary:
    def __init__(self, exec_time_list):
        self.exec_time_list = exec_time_list


def _journal(**event):
    path = os.environ.get("AIS_BENCH_DOUBLE_JOURNAL")
    if path:
        with _journal_lock, open(path, "a") as f:
            f.write(json.dumps(event) + "\n")


class InferSession:
    def __init__(self, device_id: int, model_path: str, acl_json_path: str = None, debug: bool = False,
                 loop: int = 1):
        import onnxruntime as ort
        devices = int(os.environ.get("AIS_BENCH_DOUBLE_DEVICES", "2"))
        if not 0 <= int(device_id) < devices:
            raise RuntimeError(f"[ERROR] acl open device {device_id} failed (ret 107001): this card has "
                               f"devices 0..{devices - 1}")
        self.device_id = int(device_id)
        self._thread = threading.get_ident()
        self._id = next(_session_ids)
        self._released = False
        self._header, onnx_bytes = _om.read(model_path)
        opts = ort.SessionOptions()
        opts.intra_op_num_threads = int(os.environ.get("AIS_BENCH_DOUBLE_THREADS", "1"))
        opts.inter_op_num_threads = 1
        self._ort = ort.InferenceSession(onnx_bytes, sess_options=opts, providers=["CPUExecutionProvider"])
        self._delay_s = float(os.environ.get("AIS_BENCH_DOUBLE_DELAY_MS", "0")) / 1000
        shapes = self._header["input_shape"]
        self._inputs = [TensorDesc(i.name, shapes.get(i.name, [d if isinstance(d, int) else -1 for d in i.shape]),
                                   _FROM_ORT[i.type]) for i in self._ort.get_inputs()]
        batch = self._inputs[0].shape[0]
        self._outputs = [TensorDesc(o.name, [batch] + [d if isinstance(d, int) else -1 for d in o.shape[1:]],
                                    _FROM_ORT[o.type]) for o in self._ort.get_outputs()]
        self._gears = [tuple(g) for g in self._header["gears"]]
        self._current = None  # the gear set_dynamic_* chose (for run)
        self._exec_times = []
        if os.environ.get("AIS_BENCH_DOUBLE_API") == "old":
            self.finalize = self._release_as("finalize")
        else:
            self.free_resource = self._release_as("free_resource")
        _journal(event="create", session=self._id, device=self.device_id, thread=self._thread,
                 path=os.path.abspath(model_path), pid=os.getpid())

    # ---- what every call checks -------------------------------------------------------------
    def _check(self, what):
        if self._released:
            raise RuntimeError(f"[ERROR] {what}: the session was released (free_resource/finalize): "
                               f"the model and its context are gone")
        if threading.get_ident() != self._thread:
            raise RuntimeError(f"[ERROR] {what}: ACL context of device {self.device_id} belongs to the thread "
                               f"that created the session (ret 107002: context is null on this thread)")

    def _check_feeds(self, feeds, expect_shapes):
        if not isinstance(feeds, (list, tuple)) or len(feeds) != len(self._inputs):
            raise RuntimeError(f"[ERROR] the model has {len(self._inputs)} inputs, got "
                               f"{len(feeds) if isinstance(feeds, (list, tuple)) else type(feeds).__name__}")
        for desc, x, want in zip(self._inputs, feeds, expect_shapes):
            if not isinstance(x, np.ndarray) or x.dtype != _NUMPY[desc.datatype] or not x.flags.c_contiguous:
                raise RuntimeError(f"[ERROR] input '{desc.name}' must be a C-contiguous {desc.datatype.name} "
                                   f"numpy array")
            if list(x.shape) != list(want):
                raise RuntimeError(f"[ERROR] input '{desc.name}' shape {list(x.shape)} does not match the "
                                   f"model's {list(want)} (check the batch and the dynamic gear)")

    def _gear_of(self, feeds) -> tuple:
        """The values of the -1 dims of the feeds, in input order (ATC's dynamic_dims order)."""
        return tuple(int(x.shape[i]) for desc, x in zip(self._inputs, feeds)
                     for i, d in enumerate(desc.shape) if d == -1 and i < np.ndim(x))

    def _resolved(self, gear) -> list:
        values = iter(gear)
        return [[next(values) if d == -1 else d for d in desc.shape] for desc in self._inputs]

    def _need(self, kind, mode):
        if self._header["gear_kind"] != kind:
            raise RuntimeError(f"[ERROR] mode '{mode}' needs an OM compiled with --{kind}; this one has "
                               f"{'--' + self._header['gear_kind'] if self._header['gear_kind'] else 'static shapes'}")

    def _in_gears(self, gear, what):
        if gear not in self._gears:
            raise RuntimeError(f"[ERROR] {what} {','.join(map(str, gear))} is not one of the model's "
                               f"{len(self._gears)} gears")

    # ---- the documented surface -------------------------------------------------------------
    def get_inputs(self):
        self._check("get_inputs")
        return list(self._inputs)

    def get_outputs(self):
        self._check("get_outputs")
        return list(self._outputs)

    def infer(self, feeds, mode: str = "static", custom_sizes=100000):
        self._check("infer")
        if mode == "static":
            if self._gears:
                raise RuntimeError("[ERROR] the model has dynamic dims: infer with a dynamic mode")
            shapes = [d.shape for d in self._inputs]
        elif mode == "dymdims":
            self._need("dynamic_dims", mode)
            for desc, x in zip(self._inputs, feeds):
                if isinstance(x, np.ndarray) and x.ndim != len(desc.shape):
                    raise RuntimeError(f"[ERROR] input '{desc.name}' has {x.ndim} dims, the model {len(desc.shape)}")
            gear = self._gear_of(feeds)
            dims = ";".join(f"{d.name}:{','.join(map(str, x.shape))}" for d, x in zip(self._inputs, feeds))
            self._in_gears(gear, f"dymdims {dims}:")
            shapes = self._resolved(gear)
        elif mode == "dymhw":
            self._need("dynamic_image_size", mode)
            gear = tuple(int(v) for v in np.shape(feeds[0])[2:4])
            self._in_gears(gear, "image size")
            shapes = self._resolved(gear)
        elif mode == "dymbatch":
            self._need("dynamic_batch_size", mode)
            gear = (int(np.shape(feeds[0])[0]),)
            self._in_gears(gear, "batch size")
            shapes = self._resolved(gear)
        elif mode == "dymshape":
            raise RuntimeError("[ERROR] mode 'dymshape' needs an OM compiled with --input_shape_range "
                               "(the double's atc compiles none)")
        else:
            raise RuntimeError(f"[ERROR] unknown mode '{mode}'")
        self._check_feeds(feeds, shapes)
        return self._run(feeds, mode)

    def set_dynamic_dims(self, dym_dims: str):
        self._check("set_dynamic_dims")
        self._need("dynamic_dims", "set_dynamic_dims")
        shapes = _om.parse_shapes(dym_dims)
        gear = tuple(v for d in self._inputs for v, m in zip(shapes.get(d.name, []), d.shape) if m == -1)
        self._in_gears(gear, f"dims {dym_dims}:")
        self._current = gear

    def set_dynamic_hw(self, w: int, h: int):
        self._check("set_dynamic_hw")
        self._need("dynamic_image_size", "set_dynamic_hw")
        self._in_gears((int(h), int(w)), "image size")
        self._current = (int(h), int(w))

    def set_dynamic_batchsize(self, batchsize: int):
        self._check("set_dynamic_batchsize")
        self._need("dynamic_batch_size", "set_dynamic_batchsize")
        self._in_gears((int(batchsize),), "batch size")
        self._current = (int(batchsize),)

    def run(self, feeds, out_array: bool = True):
        self._check("run")
        if self._gears and self._current is None:
            raise RuntimeError("[ERROR] the model has dynamic dims: set a gear (set_dynamic_*) before run")
        self._check_feeds(feeds, self._resolved(self._current) if self._gears else [d.shape for d in self._inputs])
        return self._run(feeds, "run")

    def sumary(self):
        self._check("sumary")
        return _Summary(list(self._exec_times))

    def reset_sumaryinfo(self):
        self._check("reset_sumaryinfo")
        self._exec_times = []

    def _release_as(self, name):
        def release():
            self._check(name)
            self._ort = None
            self._released = True
            _journal(event=name, session=self._id, device=self.device_id, thread=threading.get_ident())
        release.__name__ = name
        return release

    def _run(self, feeds, mode):
        start = time.perf_counter_ns()
        outs = self._ort.run(None, {d.name: x for d, x in zip(self._inputs, feeds)})
        if self._delay_s:
            time.sleep(self._delay_s)  # the emulated device's time; the GIL is free meanwhile
        end = time.perf_counter_ns()
        exec_ms = (end - start) / 1e6
        self._exec_times.append(exec_ms)
        _journal(event="infer", session=self._id, device=self.device_id, thread=threading.get_ident(),
                 mode=mode, shapes=[list(x.shape) for x in feeds], start_ns=start, end_ns=end, exec_ms=exec_ms)
        return outs
