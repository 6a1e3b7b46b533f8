"""Scheduling requests onto model instances: one execution per free instance (`instance_group`
count), with Triton's dynamic batcher when the model asks for it (max_batch_size > 0)."""

import asyncio
import collections
import logging
import time
from concurrent.futures import ThreadPoolExecutor

from .errors import Internal, ServerError, Unavailable
from .model import Model
from .types import InferRequest, InferResponse, Timing

log = logging.getLogger("backend.scheduler")


class Instance:
    """One execution context of a model (a Python model object, an ONNX Runtime session, an NPU
    session...). It is built, run and closed on one thread of its own (InstancePool): a device
    context may belong to the thread that made it. `execute` returns one InferResponse or
    ServerError per request, in order, plus the Timing of the execution."""

    name = "instance"

    def execute(self, requests: list) -> tuple:
        raise NotImplementedError

    def close(self):
        pass


class InstancePool:
    """A model's instances, each on a dedicated thread where it is created, executes and closes.
    `factories` are (instance name, callable returning the Instance); they run concurrently (one
    per device can take a while). If any fails, those built are closed and the error re-raised."""

    def __init__(self, factories: list):
        self.executors = [ThreadPoolExecutor(1, thread_name_prefix=name) for name, _ in factories]
        futures = [ex.submit(make) for ex, (_, make) in zip(self.executors, factories)]
        built, error = [], None
        for ex, fut in zip(self.executors, futures):
            try:
                built.append((fut.result(), ex))
            except BaseException as e:  # noqa: B036 (re-raised below, after the clean-up)
                error = error or e
                ex.shutdown(wait=False)
        if error is not None:
            for inst, ex in built:
                _close_instance(inst, ex)
            raise error
        self.instances = [inst for inst, _ in built]
        self.executors = [ex for _, ex in built]
        self._by_id = {id(inst): ex for inst, ex in built}

    def executor(self, instance):
        return self._by_id[id(instance)]

    def close(self):
        """Close every instance on its own thread (after what runs there), then stop the threads."""
        for inst, ex in zip(self.instances, self.executors):
            _close_instance(inst, ex)


class _Pending:
    __slots__ = ("request", "future", "enqueued", "batch", "deadline", "running")

    def __init__(self, request, future, batch, deadline):
        self.request, self.future, self.batch, self.deadline = request, future, batch, deadline
        self.enqueued = time.monotonic_ns()
        self.running = False  # set by the instance's thread when its execution starts


class InstanceModel(Model):
    """A model served by a pool of instances, with or without dynamic batching."""

    def __init__(self, config, version, model_dir, pool: InstancePool, execution_timeout_s: float = 0):
        super().__init__(config, version, model_dir)
        self.pool = pool
        self.instances = pool.instances
        self.execution_timeout_s = execution_timeout_s
        self._free = collections.deque(self.instances)  # idle instances, longest idle first
        # instances running one execution, oldest first; one in neither deque has two (prefetch)
        self._once = collections.deque()
        self._staged = set()  # requests handed to a thread, until their execution ends
        self._queue = collections.deque()
        self._wakeup = None
        self._task = None
        db = config.dynamic_batching if config.HasField("dynamic_batching") else None
        self.batching = db is not None and config.max_batch_size > 0
        self.max_delay_ns = db.max_queue_delay_microseconds * 1000 if db is not None else 0
        self.preferred = sorted(db.preferred_batch_size) if db is not None else []
        policy = db.default_queue_policy if db is not None else None
        self.max_queue_size = policy.max_queue_size if policy is not None else 0
        self.default_timeout_us = policy.default_timeout_microseconds if policy is not None else 0
        self.allow_timeout_override = policy.allow_timeout_override if policy is not None else False
        # Without a dynamic batcher, a busy instance is handed its next execution at once: it waits
        # on the instance's thread and starts the moment the previous one returns, with no round
        # trip through the event loop in between (what keeps a device busy). Not with a batcher
        # (its batches would form early, its queue policy counts what waits) nor with an
        # execution timeout (measured from the start), nor for a request with a queue timeout.
        self.prefetch = db is None and not execution_timeout_s

    def _start(self):
        if self._task is None:
            self._wakeup = asyncio.Event()
            self._task = asyncio.get_running_loop().create_task(self._run(), name=f"sched-{self.name}")

    async def infer(self, request: InferRequest) -> InferResponse:
        self._start()
        if self.max_queue_size and len(self._queue) >= self.max_queue_size:
            raise Unavailable("Exceeds maximum queue size", reason="REJECTED")
        timeout_us = self.default_timeout_us
        if request.timeout_us and (self.allow_timeout_override or not timeout_us):
            timeout_us = request.timeout_us
        deadline = time.monotonic_ns() + timeout_us * 1000 if timeout_us else 0
        future = asyncio.get_running_loop().create_future()
        pending = _Pending(request, future, request.batch_size(self.max_batch_size), deadline)
        self._queue.append(pending)
        if self.batching or deadline:
            self._wakeup.set()  # run() forms the batch, or watches the deadline
        if not self.batching:
            self._dispatch()
        try:
            return await future
        except asyncio.CancelledError:
            # The client went away: a queued request leaves the queue (run() skips it).
            future.cancel()
            raise

    def _expire(self, now):
        """Fail queued requests whose queue timeout passed; drop cancelled ones."""
        if not any(p.deadline or p.future.done() for p in self._queue):
            return
        keep = collections.deque()
        for p in self._queue:
            if p.future.done():
                continue
            if p.deadline and now >= p.deadline:
                p.future.set_exception(Unavailable("Request timeout expired", reason="REJECTED"))
                continue
            keep.append(p)
        self._queue = keep

    def _take_batch(self):
        """Pop the requests of the next execution (the dynamic batcher's): as many as fit in
        max_batch_size (stopping at the largest preferred size reached)."""
        first = self._queue.popleft()
        batch = [first]
        size = first.batch
        best = 1 if size in self.preferred else 0  # requests forming the largest preferred size
        while self._queue:
            nxt = self._queue[0]
            if nxt.future.done():
                self._queue.popleft()
                continue
            if size + nxt.batch > self.max_batch_size:
                break
            batch.append(self._queue.popleft())
            size += nxt.batch
            if size in self.preferred:
                best = len(batch)
        if best:
            # As Triton: send the largest preferred batch size that can be made; the rest waits.
            self._queue.extendleft(reversed(batch[best:]))
            batch = batch[:best]
        return batch

    def pending_requests(self) -> int:
        queued = sum(1 for p in self._queue if not p.future.done())
        return queued + sum(1 for p in self._staged if not p.running and not p.future.done())

    def _queued_items(self):
        return sum(p.batch for p in self._queue if not p.future.done())

    async def _run(self):
        while True:
            self._expire(time.monotonic_ns())
            if not self.batching:
                self._dispatch()
            if not self._queue or not self._free or not self.batching:
                self._wakeup.clear()
                timeout = None
                deadlines = [p.deadline for p in self._queue if p.deadline]
                if deadlines:
                    timeout = max(0.0, (min(deadlines) - time.monotonic_ns()) / 1e9)
                try:
                    await asyncio.wait_for(self._wakeup.wait(), timeout)
                except asyncio.TimeoutError:
                    pass
                continue
            if self.max_delay_ns:
                # Wait (up to the queue delay of the oldest request) for a preferred batch size.
                target = self.preferred[-1] if self.preferred else self.max_batch_size
                oldest = self._queue[0].enqueued
                while self._queued_items() < target:
                    left = oldest + self.max_delay_ns - time.monotonic_ns()
                    if left <= 0:
                        break
                    self._wakeup.clear()
                    try:
                        await asyncio.wait_for(self._wakeup.wait(), left / 1e9)
                    except asyncio.TimeoutError:
                        break
                self._expire(time.monotonic_ns())
                if not self._queue:
                    continue
            batch = self._take_batch()
            batch = [p for p in batch if not p.future.done()]
            if not batch:
                continue
            self._submit(self._take_instance(), batch)

    def _dispatch(self):
        """Without a batcher: hand queued requests to instances while one can take them."""
        while self._queue:
            head = self._queue[0]
            if head.future.done():
                self._queue.popleft()
                continue
            if not self._free and not (self.prefetch and self._once and not head.deadline):
                return
            self._submit(self._take_instance(), [self._queue.popleft()])

    def _take_instance(self):
        """An idle instance, else (prefetch) the one whose execution started first."""
        if self._free:
            instance = self._free.popleft()
            self._once.append(instance)
        else:
            instance = self._once.popleft()
        return instance

    def _submit(self, instance, batch):
        """The batch to the instance's thread now. Its outcome comes back to the event loop as one
        callback (through a task where an execution timeout is watched)."""
        loop = asyncio.get_running_loop()
        self._staged.update(batch)
        submitted = time.monotonic_ns()  # (until the thread says when it began)
        work = self.pool.executor(instance).submit(_run_on_instance, instance, batch)
        if self.execution_timeout_s:
            loop.create_task(self._watch(instance, batch, work, submitted))
        else:
            work.add_done_callback(lambda w: _call_soon(loop, self._finish, instance, batch, w, submitted))

    async def _watch(self, instance, batch, work, submitted):
        """Fail the batch's requests if its execution outlasts the execution timeout."""
        done, _ = await asyncio.wait({asyncio.wrap_future(work)}, timeout=self.execution_timeout_s)
        if done:
            self._finish(instance, batch, work, submitted)
            return
        # The instance stays busy until its thread returns; only these requests fail.
        self._staged.difference_update(batch)
        loop = asyncio.get_running_loop()
        work.add_done_callback(lambda _w: _call_soon(loop, self._release, instance))
        err = Unavailable(f"model '{self.name}' instance '{instance.name}' did not finish within "
                          f"{self.execution_timeout_s:g} s (execution timeout)")
        for p in batch:
            if not p.future.done():
                p.future.set_exception(err)
        log.error("%s", err.message)

    def _finish(self, instance, batch, work, started):
        """On the event loop, once the execution returned: statistics, then each request's result."""
        try:
            started, batch, results, timing = work.result()
        except ServerError as e:
            results, timing = [e] * len(batch), Timing()
        except Exception as e:  # a backend bug, not the client's fault
            log.error("model '%s' instance '%s' failed", self.name, instance.name, exc_info=e)
            results, timing = [Internal(f"model '{self.name}' instance '{instance.name}' failed: {e}")] \
                * len(batch), Timing()
        finally:
            self._staged.difference_update(batch)
            self._release(instance)
        if not batch:
            return  # every request had gone while it waited
        if len(results) != len(batch):
            results = [Internal(f"model '{self.name}' returned {len(results)} responses for "
                                f"{len(batch)} requests")] * len(batch)
        total = sum(p.batch for p in batch)
        self.stats.execution_done(total, timing)
        log.debug("'%s' instance '%s': %d request(s), batch size %d, %.1f ms", self.name,
                  instance.name, len(batch), total, (time.monotonic_ns() - started) / 1e6)
        for p, result in zip(batch, results):
            if p.future.done():
                continue
            if isinstance(result, Exception):
                p.future.set_exception(result)
                continue
            result.timing = Timing(started - p.enqueued, timing.compute_input_ns,
                                   timing.compute_infer_ns, timing.compute_output_ns)
            p.future.set_result(result)

    def _release(self, instance):
        if instance in self._once:  # its only execution ended
            self._once.remove(instance)
            self._free.append(instance)
        else:  # (it had two) its prefetched execution runs now
            self._once.append(instance)
        if not self.batching:
            self._dispatch()  # (run() only watches queue timeouts: nothing to wake it for)
        elif self._wakeup is not None:
            self._wakeup.set()

    async def close(self):
        if self._task is not None:
            self._task.cancel()
        for p in self._queue:
            if not p.future.done():
                p.future.set_exception(Unavailable(f"model '{self.name}' was unloaded"))
        await asyncio.get_running_loop().run_in_executor(None, self.pool.close)


def _call_soon(loop, fn, *args):
    """fn(*args) on the event loop, from any thread (nothing once the loop is closed)."""
    try:
        loop.call_soon_threadsafe(fn, *args)
    except RuntimeError:
        if not loop.is_closed():
            raise


def _run_on_instance(instance, batch):
    """On the instance's thread: execute the requests of the batch still wanted (a client may
    have gone while they waited behind the previous execution). Returns (start ns, those
    requests, their results, Timing)."""
    started = time.monotonic_ns()
    live = []
    for p in batch:
        if not p.future.done():  # (a read of the future's state; it is set on the event loop)
            p.running = True
            live.append(p)
    if not live:
        return started, live, [], Timing()
    results, timing = instance.execute([p.request for p in live])
    return started, live, results, timing


def _close_instance(instance, executor):
    """instance.close() on the instance's thread, after any execution still running there."""
    try:
        executor.submit(instance.close).result()
    except Exception:
        log.exception("closing instance '%s' failed", instance.name)
    executor.shutdown(wait=True)
