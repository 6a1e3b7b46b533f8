"""Ascend NPU backend (`backend: "ais_bench"`): an OM model (ATC's output, `model.om`) run through
ais_bench's `InferSession` (shared docs: ascend-ais-bench.md).

* ais_bench is imported when such a model loads; where it is missing that model is UNAVAILABLE
  saying how to install it, and every other model serves.
* Devices: parameter `device_ids` ("0,1"; default "0"); each device gets `instance_group.count`
  instances, each owning one session created, called and released on its own thread (the ACL
  context is that thread's). Sessions run concurrently; one session runs one call at a time.
* Gears: parameter `dynamic_dims` lists the values of the OM inputs' -1 dims per gear, in ATC's
  syntax ("512,512;512,576"); a request whose dims are not a gear is refused (INVALID_ARGUMENT,
  with the nearest gears) before any device call. Calls use `infer(feeds, mode="dymdims")`.
* Batch: the OM's batch is fixed (1 for HRNet); a request of batch N runs as N calls in order,
  outputs concatenated.
* Statistics: compute_infer is the device time (`sumary().exec_time_list`), logged per execution
  at --log-verbose 1.
"""

import functools
import logging
import math
import os
import time

from proto import model_config_pb2 as mc

from .. import batching, dtypes
from .. import config as config_util
from ..errors import Internal, InvalidArgument, Unavailable
from ..scheduler import Instance, InstanceModel, InstancePool
from ..types import Timing

log = logging.getLogger("backend.ais_bench")

INSTALL = ("install Ascend's ais_bench inference tool on a machine with the CANN toolkit: build the "
           "aclruntime and ais_bench wheels from Ascend's tools repository (ais-bench_workload/tool/ais_bench, "
           "https://gitee.com/ascend/tools) and pip install both, then source "
           "/usr/local/Ascend/ascend-toolkit/set_env.sh before starting the server (the PyPI project "
           "'ais-bench-benchmark' is an unrelated tool)")
# aclruntime datatype names (str(desc.datatype) is "dtype.float32") -> wire datatypes
_WIRE = {"float32": "FP32", "float16": "FP16", "double": "FP64", "float64": "FP64", "int8": "INT8",
         "int16": "INT16", "int32": "INT32", "int64": "INT64", "uint8": "UINT8", "uint16": "UINT16",
         "uint32": "UINT32", "uint64": "UINT64", "bool": "BOOL"}
_SHOWN_GEARS = 3


def _interface(model_name: str):
    try:
        from ais_bench.infer import interface
    except ImportError as e:
        raise Unavailable(f"model '{model_name}' needs the ais_bench package, which cannot be imported "
                          f"({type(e).__name__}: {e}): {INSTALL}") from None
    return interface


def device_ids(config) -> list:
    text = config_util.parameter(config, "device_ids", "0")
    try:
        ids = [int(v) for v in text.split(",")]
    except ValueError:
        ids = []
    if not ids or any(i < 0 for i in ids) or len(set(ids)) != len(ids):
        raise InvalidArgument(f"model '{config.name}': parameter device_ids '{text}' must list distinct NPU "
                              f"ids, e.g. \"0,1\"")
    return ids


def gears(config) -> list:
    """The `dynamic_dims` gears as tuples ([] when the parameter is absent)."""
    text = config_util.parameter(config, "dynamic_dims", "")
    try:
        out = [tuple(int(v) for v in gear.split(",")) for gear in text.split(";") if gear.strip()]
    except ValueError:
        out = None
    if out is None or (text.strip() and not out) or any(v <= 0 for g in out for v in g) \
            or len({len(g) for g in out}) > 1:
        raise InvalidArgument(f"model '{config.name}': parameter dynamic_dims '{text}' is not ATC's "
                              f"--dynamic_dims form (gears of positive dims, same length, ';'-separated, "
                              f"e.g. \"512,512;512,576\")")
    return out


def normalize(config):
    """NPUs are named by device_ids, so the instances are placed by the backend (KIND_MODEL)."""
    for group in config.instance_group:
        if group.kind not in (mc.ModelInstanceGroup.KIND_AUTO, mc.ModelInstanceGroup.KIND_MODEL):
            raise InvalidArgument(
                f"instance group {group.name} of model '{config.name}' is "
                f"{mc.ModelInstanceGroup.Kind.Name(group.kind)}: the ais_bench backend runs on Ascend NPUs "
                f"named by parameters device_ids; use KIND_MODEL (or KIND_AUTO)")
        if group.gpus:
            raise InvalidArgument(f"instance group {group.name} of model '{config.name}' lists gpus: the "
                                  f"ais_bench backend takes its NPUs from parameters device_ids")
        group.kind = mc.ModelInstanceGroup.KIND_MODEL
    device_ids(config)
    gears(config)


def _wire(desc) -> str:
    return _WIRE.get(str(desc.datatype).rsplit(".", 1)[-1].lower(), str(desc.datatype))


class AisInstance(Instance):
    """One InferSession on one NPU; everything here runs on the instance's thread."""

    def __init__(self, name, interface, device_id, path, model_name):
        self.name, self.device_id, self.model_name = name, device_id, model_name
        self.model = None  # the OmModel, set once made: the checks every instance shares
        try:
            self.session = interface.InferSession(device_id, path)
        except Exception as e:
            raise Unavailable(f"model '{model_name}': cannot load {path} on NPU {device_id}: "
                              f"{type(e).__name__}: {e}") from None
        self.om_inputs = [(d.name, [int(v) for v in d.shape], _wire(d)) for d in self.session.get_inputs()]
        self.om_outputs = [(d.name, [int(v) for v in d.shape], _wire(d)) for d in self.session.get_outputs()]
        # free_resource() on current ais_bench, finalize() on older versions
        self.release = next((n for n in ("free_resource", "finalize") if hasattr(self.session, n)), None)
        # sumary()'s list grows for as long as the session runs: cleared after each read where the
        # version can (reset_sumaryinfo), else read past the runs already counted
        self._reset_times = getattr(self.session, "reset_sumaryinfo", None)
        self.runs = 0
        self.device_ms = 0.0
        log.info("model '%s' instance '%s': %s on NPU %d", model_name, name, os.path.basename(path), device_id)

    def execute(self, requests):
        m = self.model
        t0 = time.monotonic_ns()
        errors = {id(r): m.refusal(r) for r in requests}
        valid = [r for r in requests if errors[id(r)] is None]
        device_ms = []
        responses = []
        if valid:
            feeds = batching.feeds(valid, m.batched)
            t1 = time.monotonic_ns()
            results = []
            try:
                for feed in feeds:
                    parts = []
                    for piece in batching.slices(feed, m.om_batch) if m.om_batch else [feed]:
                        outs = self.session.infer([piece[n] for n in m.feed_order], mode=m.mode)
                        parts.append({name: outs[i] for name, i in m.output_index})
                    results.append(batching.concatenate(parts))
            except Exception as e:  # the runtime refused or failed: this execution's requests fail
                self._device_times()
                raise Internal(f"model '{m.name}' instance '{self.name}' (NPU {self.device_id}): ais_bench "
                               f"failed: {type(e).__name__}: {e}") from None
            device_ms = self._device_times()
            responses = iter(batching.responses(valid, m.batched, m.name, results))
        else:
            t1 = time.monotonic_ns()
        out = [errors[id(r)] or next(responses) for r in requests]
        device_ns = int(sum(device_ms) * 1e6)
        if device_ms:
            log.debug("model '%s' instance '%s' (NPU %d): %d device runs, exec ms (sumary) %s",
                      m.name, self.name, self.device_id, len(device_ms), ", ".join(f"{t:.3f}" for t in device_ms))
        # compute_infer is the device's time; the host side of the calls (copies in and out,
        # which ais_bench does not time apart) and the outputs' assembly are compute_output.
        return out, Timing(0, t1 - t0, device_ns, max(0, time.monotonic_ns() - t1 - device_ns))

    def _device_times(self) -> list:
        times = list(self.session.sumary().exec_time_list)
        if self._reset_times is not None:
            self._reset_times()
        else:
            times = times[self.runs:]
        self.runs += len(times)
        self.device_ms += sum(times)
        return times

    def close(self):
        if self.release is not None:
            getattr(self.session, self.release)()
            log.info("model '%s' instance '%s': released its session on NPU %d (%s; %d runs, %.1f ms "
                     "on the device)", self.model_name, self.name, self.device_id, self.release,
                     self.runs, self.device_ms)
        self.session = self.release = None


class OmModel(InstanceModel):
    """What every instance shares: the OM's tensors against the config, the gears, the split."""

    def configure(self, om_inputs, om_outputs, gear_list, auto_complete_config=True):
        config = self.config
        if auto_complete_config:  # off with --disable-auto-complete-config
            _autocomplete(config, om_inputs, om_outputs)
        self.feed_order = _match(config.name, "input", [i.name for i in config.input], om_inputs,
                                 {i.name: dtypes.wire_from_config(i.data_type) for i in config.input})
        names = _match(config.name, "output", [o.name for o in config.output], om_outputs,
                       {o.name: dtypes.wire_from_config(o.data_type) for o in config.output})
        self.output_index = [(name, i) for i, name in enumerate(names) if name is not None]
        self.om_shapes = {name: shape for name, (_, shape, _) in zip(self.feed_order, om_inputs)}
        dynamic = sum(d == -1 for _, shape, _ in om_inputs for d in shape)
        first = om_inputs[0][1]
        # A fixed OM batch (the first dim) is fed in slices of it; a dynamic one is a gear value.
        self.om_batch = first[0] if first and first[0] > 0 else 0
        self.batched = config.max_batch_size > 0
        self.gears = gear_list
        if dynamic and not gear_list:
            raise InvalidArgument(
                f"model '{config.name}': the OM's inputs have dynamic dims ({_shapes(om_inputs)}): set "
                f"parameters dynamic_dims to the gears it was compiled with (atc --dynamic_dims)")
        if gear_list and len(gear_list[0]) != dynamic:
            raise InvalidArgument(
                f"model '{config.name}': parameter dynamic_dims has {len(gear_list[0])} values a gear, the "
                f"OM's inputs have {dynamic} dynamic dims ({_shapes(om_inputs)})")
        self.gear_set = set(gear_list)
        self.mode = "dymdims" if gear_list else "static"

    def refusal(self, request):
        """INVALID_ARGUMENT for a request the OM cannot run (checked before any device call)."""
        gear = []
        for name in self.feed_order:
            shape = request.inputs[name].shape
            om = self.om_shapes[name]
            if len(shape) != len(om):
                return InvalidArgument(f"model '{self.name}': input '{name}' has shape {list(shape)}, the OM "
                                       f"takes {len(om)} dims {om}")
            for axis, (got, want) in enumerate(zip(shape, om)):
                if axis == 0 and self.om_batch:
                    if got % self.om_batch:
                        return InvalidArgument(f"model '{self.name}': input '{name}' batch {got} is not a "
                                               f"multiple of the OM's batch {self.om_batch}")
                elif want == -1:
                    gear.append(int(got))
                elif got != want:
                    return InvalidArgument(f"model '{self.name}': input '{name}' has shape {list(shape)}, the "
                                           f"OM takes {om}")
        gear = tuple(gear)
        if self.gears and gear not in self.gear_set:
            shapes = "; ".join(f"'{n}' {list(request.inputs[n].shape)}" for n in self.feed_order)
            return InvalidArgument(
                f"model '{self.name}': input {shapes}: dims {','.join(map(str, gear))} are not one of the OM's "
                f"{len(self.gears)} gears (parameters dynamic_dims); nearest gears: {_nearest(gear, self.gears)}")
        return None


def _nearest(gear, gear_list) -> str:
    ranked = sorted(gear_list, key=lambda g: math.dist(g, gear))
    return "; ".join(",".join(map(str, g)) for g in ranked[:_SHOWN_GEARS])


def _shapes(tensors) -> str:
    return ", ".join(f"{name} {shape}" for name, shape, _ in tensors)


def _autocomplete(config, om_inputs, om_outputs):
    """Inputs/outputs from the OM when the config leaves them out (its fixed batch as -1: split)."""
    def add(io, tensors):
        for name, shape, wire in tensors:
            dims = shape[1:] if config.max_batch_size > 0 else [-1] + shape[1:]
            dt = dtypes.config_from_wire(wire)
            io.add(name=name, data_type=dt, dims=dims)
    if not config.input:
        add(config.input, om_inputs)
    if not config.output:
        add(config.output, om_outputs)


def _match(model_name, what, names, om, wire):
    """The config tensors in the OM's order: by name where the OM keeps the ONNX names, else by
    position (ATC may rename outputs after graph nodes); datatypes must agree."""
    om_names = [n for n, _, _ in om]
    if set(names) <= set(om_names):
        order = [n if n in names else None for n in om_names]
    elif len(names) == len(om_names):
        order = list(names)
        log.info("model '%s': %ss taken by position: %s", model_name, what,
                 ", ".join(f"{c} <- OM {o}" for c, o in zip(names, om_names)))
    else:
        raise InvalidArgument(f"model '{model_name}': config {what}s {names} do not match the OM's {om_names}")
    if what == "input" and None in order:
        raise InvalidArgument(f"model '{model_name}': the OM's inputs {om_names} are not all in the config ({names})")
    for config_name, (om_name, _, om_wire) in zip(order, om):
        if config_name is not None and wire[config_name] != om_wire:
            raise InvalidArgument(f"model '{model_name}': {what} '{config_name}' is {wire[config_name]} in the "
                                  f"config, {om_wire} in the OM ('{om_name}')")
    return order


def load(config, version: int, model_dir: str, version_dir: str, execution_timeout_s: float = 0,
         auto_complete_config: bool = True):
    interface = _interface(config.name)
    path = os.path.join(version_dir, config.default_model_filename or "model.om")
    if not os.path.isfile(path):
        raise InvalidArgument(f"unable to find '{path}' for model '{config.name}' (convert the ONNX with "
                              f"ATC: make om SOC=<your chip, e.g. Ascend310P3>)")
    gear_list, ids = gears(config), device_ids(config)
    pool = InstancePool([
        (name, functools.partial(AisInstance, name, interface, device, path, config.name))
        for name, _, device in config_util.instance_placements(config, ids)])
    try:
        first = pool.instances[0]
        model = OmModel(config, version, model_dir, pool, execution_timeout_s)
        model.configure(first.om_inputs, first.om_outputs, gear_list, auto_complete_config)
    except BaseException:
        pool.close()
        raise
    for inst in pool.instances:
        inst.model = model
    log.info("model '%s': %d instance(s) on NPU(s) %s, %s", config.name, len(pool.instances),
             ",".join(map(str, ids)),
             f"{len(gear_list)} gears (dymdims)" if gear_list else "static shapes")
    return model
