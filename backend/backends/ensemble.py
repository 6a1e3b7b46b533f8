"""Ensembles (`platform: "ensemble"`): steps wired by input_map/output_map, validated at load,
each step started as soon as its inputs exist; a failure names the ensemble, the step and the model."""

import asyncio

from .. import dtypes
from ..errors import InvalidArgument, ServerError
from ..model import Model
from ..types import InferRequest, InferResponse, RequestedOutput, Timing


def step_models(config):
    """(model name, version string) of every step."""
    return [(s.model_name, "" if s.model_version <= 0 else str(s.model_version))
            for s in config.ensemble_scheduling.step]


class EnsembleModel(Model):
    def __init__(self, config, version, model_dir, resolve, infer):
        """`resolve(name, version)` gives a loaded step Model; `infer(request)` runs a request
        through the core (validation, statistics, scheduling of the step model)."""
        super().__init__(config, version, model_dir)
        self.platform = "ensemble"
        self._infer = infer
        self.steps = list(config.ensemble_scheduling.step)
        # A chain (hrnet_pose: each step needs the one before): no two steps can ever run at once,
        # so they are awaited one after the other in that order, without a task per step.
        self._chain = self._validate(resolve)

    def _validate(self, resolve):
        """Check the steps against their models and each other; returns the steps' indices in
        the order they can run when they form a chain (one step runnable at a time), else None."""
        name = self.name
        if not self.steps:
            raise InvalidArgument(f"ensemble '{name}' must have at least one step")
        # tensor name -> (datatype, dims as the producer/ensemble input declares them, producer)
        known = {i.name: (spec.datatype, spec.dims, "ensemble input") for i, spec in
                 zip(self.config.input, self.inputs.values())}
        producers = {}
        models = []  # each step's model, resolved once: in this loop, so failures keep their step order
        for idx, step in enumerate(self.steps):
            model = resolve(step.model_name, "" if step.model_version <= 0 else str(step.model_version))
            models.append(model)
            if model.max_batch_size < self.max_batch_size:
                raise InvalidArgument(
                    f"ensemble {name} allows maximum batch size {self.max_batch_size}, but it contains "
                    f"model {model.name} which only allows maximum batch size to be {model.max_batch_size}")
            for key in step.input_map:
                if key not in model.inputs:
                    raise InvalidArgument(
                        f"in ensemble {name}, ensemble tensor {step.input_map[key]} is mapped to "
                        f"non-existing input {key} of model {model.name}")
            for req in model.inputs.values():
                if not req.optional and req.name not in step.input_map:
                    raise InvalidArgument(f"in ensemble {name}, input {req.name} of model {model.name} "
                                          f"(step {idx}) is not mapped to any ensemble tensor")
            for key, tensor in step.output_map.items():
                if key not in model.outputs:
                    raise InvalidArgument(
                        f"in ensemble {name}, ensemble tensor {tensor} is mapped from non-existing output "
                        f"{key} of model {model.name}")
                if tensor in producers or tensor in self.inputs:
                    raise InvalidArgument(f"ensemble tensor {tensor} in ensemble {name} is produced "
                                          f"more than once")
                spec = model.outputs[key]
                producers[tensor] = idx
                known[tensor] = (spec.datatype, _full_dims(model, spec.dims), f"model {model.name}")
        # Every consumed tensor must be produced with a matching type and compatible shape.
        for idx, (step, model) in enumerate(zip(self.steps, models)):
            for key, tensor in step.input_map.items():
                if tensor not in known:
                    raise InvalidArgument(f"in ensemble {name}, step {idx} (model {model.name}) consumes "
                                          f"tensor {tensor}, which no step produces and is not an "
                                          f"ensemble input")
                dtype, dims, src = known[tensor]
                spec = model.inputs[key]
                if dtype != spec.datatype:
                    raise InvalidArgument(
                        f"in ensemble {name}, inconsistent data type for tensor {tensor}: {src} gives "
                        f"{dtype}, input {key} of model {model.name} expects {spec.datatype}")
                want = _full_dims(model, spec.dims)
                if src == "ensemble input":
                    dims = _full_dims(self, dims)
                if not _compatible(dims, want):
                    raise InvalidArgument(
                        f"in ensemble {name}, inconsistent shape for tensor {tensor}: {src} gives "
                        f"{dims}, input {key} of model {model.name} expects {want}")
        for out in self.outputs:
            if out not in producers:
                raise InvalidArgument(f"in ensemble {name}, ensemble output {out} is not produced by any step")
        # No cycles: a step may only consume ensemble inputs or outputs of other steps; the
        # schedule below must be able to run every step.
        ready = set(self.inputs)
        pending = list(range(len(self.steps)))
        order, chain = [], True
        while pending:
            runnable = [i for i in pending if set(self.steps[i].input_map.values()) <= ready]
            if not runnable:
                raise InvalidArgument(f"ensemble {name} has a cycle or unreachable steps: "
                                      f"{[self.steps[i].model_name for i in pending]}")
            chain = chain and len(runnable) == 1
            order += runnable
            for i in runnable:
                pending.remove(i)
                ready.update(self.steps[i].output_map.values())
        return order if chain else None

    async def infer(self, request: InferRequest) -> InferResponse:
        tensors = dict(request.inputs)
        timing = Timing()
        if self._chain:
            for idx in self._chain:
                await self._step(idx, self.steps[idx], request, tensors, timing)
        else:
            await self._graph(request, tensors, timing)
        wanted = request.requested_names(self.outputs)
        return InferResponse(self.name, self.version_str, request.id,
                             {n: tensors[n] for n in wanted}, timing=timing)

    async def _graph(self, request, tensors, timing):
        """Every step as a task, started as soon as its inputs exist."""
        events = {}
        loop = asyncio.get_running_loop()
        for step in self.steps:
            for t in step.output_map.values():
                events[t] = loop.create_future()

        async def run(idx, step):
            for t in step.input_map.values():
                if t not in tensors:
                    await events[t]
            await self._step(idx, step, request, tensors, timing)
            for t in step.output_map.values():
                if not events[t].done():
                    events[t].set_result(True)

        tasks = [loop.create_task(run(i, s)) for i, s in enumerate(self.steps)]
        try:
            await asyncio.gather(*tasks)
        finally:
            for t in tasks:
                t.cancel()
            for f in events.values():
                if not f.done():
                    f.cancel()

    async def _step(self, idx, step, request, tensors, timing):
        """Run one step on the ensemble tensors it maps; its outputs join them."""
        req = InferRequest(
            model_name=step.model_name,
            model_version="" if step.model_version <= 0 else str(step.model_version),
            id=request.id,
            inputs={k: tensors[t] for k, t in step.input_map.items()},
            outputs=[RequestedOutput(k) for k in step.output_map],
            parameters=request.parameters, timeout_us=request.timeout_us,
            is_cancelled=request.is_cancelled)
        try:
            resp = await self._infer(req)
        except ServerError as e:
            raise e.prefixed(f"in ensemble '{self.name}', step {idx} (model '{step.model_name}'): ")
        timing.add(resp.timing)
        for k, t in step.output_map.items():
            tensors[t] = resp.outputs[k]


def _full_dims(model, dims):
    return ([-1] if model.max_batch_size > 0 else []) + list(dims)


def _compatible(a, b):
    return len(a) == len(b) and all(x == -1 or y == -1 or x == y for x, y in zip(a, b))


_ = dtypes
