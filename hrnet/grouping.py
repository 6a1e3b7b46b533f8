"""Associative-embedding grouping: HRNet output maps -> people with keypoints in image pixels.

Serving code (numpy, numba; never torch). It returns what mmpose 0.x computes at test time
for `hrnet_w32_coco_512x512` (flip merge, x4 bilinear resize, HeatmapParser.parse with adjust and
refine, get_group_preds; docs/pipeline.md, "Flip test and resize" to "Back to image pixels"), bit
for bit: same people, same order, same float32 keypoints and scores. tests/hrnet/test_grouping.py
checks it against a torch replica.

mmpose resizes all 68 maps to input size and scans them whole (~0.4 s, plus ~0.2 s per person for
refine). Here input-size values are only computed where they can matter, each with torch's own
arithmetic (its CPU bilinear kernel, fused multiply-adds included), so nothing changes; the loops
are compiled (hrnet/grouping_kernels.py, numba):
* a resized value is a convex combination of 2x2 low-resolution values, so a pixel is bounded by
  its 3x3 low-resolution neighbourhood. NMS visits the cells whose bound reaches the detection
  threshold best bound first and stops once the top_k + 1 largest maxima are known (only candidate
  pixels, handed on as bit masks, are tested);
* torch.topk's order of equal values (border plateaus: the resize clamps, so the two outermost
  rows/columns are equal) is replayed from its std::partial_sort on that joint's whole NMS map,
  skipping what cannot enter the heap;
* refine's argmax of `heat - round(|tag - person tag|)` is a best-first branch and bound over
  blocks, tiles and cells with the same kind of bounds (heat max, tag range), only for missing
  joints;
* the assignment is munkres 1.1.4's algorithm step for step (its tie-breaking decides crowded
  scenes), compiled; each joint is matched against every person found so far (mmpose's
  ignore_too_much=False; the list is cut to max_num_people only with ignore_too_much=True).
Exactness holds for inputs with H + W > 128 and H * W >= 64 * max_num_people, where torch takes
these code paths (any real input: min(H, W) = 512).
"""

from __future__ import annotations

import dataclasses
import functools
import math
import mmap
import os
import threading
from concurrent.futures import ThreadPoolExecutor, wait

import numpy as np

from hrnet import grouping_kernels as kernels

# COCO keypoints: the horizontal-flip permutation and the order match_by_tag visits joints in.
FLIP_INDEX = (0, 2, 1, 4, 3, 6, 5, 8, 7, 10, 9, 12, 11, 14, 13, 16, 15)
JOINT_ORDER = (0, 1, 2, 3, 4, 5, 6, 11, 12, 7, 8, 9, 10, 13, 14, 15, 16)
STRIDE = kernels.CELL  # network output stride: grouping runs at input size (4h, 4w)

_TILE = kernels.TILE  # cells (low-resolution pixels) per tile side: 16x16 input-size pixels
_F32 = np.float32
_F64 = np.float64
# Network outputs beyond this are refused: squared tag distances must stay finite in float32.
MAX_ABS_VALUE = 1e6
# Joints are searched in parallel on this many threads by default (the kernels release the GIL).
WORKERS = max(1, min(4, os.cpu_count() or 1))
_pool = (None, 0, None)  # (pid, size, executor): made on first use, again after a fork or to grow


def _in_parallel(fn, parts):
    """[fn(part) for part in parts], the first part on the calling thread (it would only wait),
    the others on worker threads."""
    global _pool
    if len(parts) == 1:
        return [fn(parts[0])]
    pid, size, executor = _pool
    if pid != os.getpid() or size < len(parts) - 1:
        # (the old pool is dropped, not shut down: another call may be about to submit to it; its
        # threads end when it is collected)
        executor = ThreadPoolExecutor(len(parts) - 1, thread_name_prefix="grouping")
        _pool = (os.getpid(), len(parts) - 1, executor)
    others = [executor.submit(fn, part) for part in parts[1:]]
    try:
        first = fn(parts[0])
    finally:
        wait(others)  # the workers use this call's arrays: all must be done, whatever failed
    return [first] + [future.result() for future in others]


def _merge(into, shares, parts):
    """Each joint's rows of the per-joint result arrays `into` from the part its share went to."""
    for mine, part in zip(shares, parts):
        for out, a in zip(into, part):
            out[mine] = a[mine]


def _interleave(joints, threads):
    """joints (most work first) dealt to the threads' parts in turn."""
    threads = threads or WORKERS
    return [joints[i::threads] for i in range(max(1, min(threads, len(joints))))]


@dataclasses.dataclass(frozen=True)
class GroupingParams:
    """mmpose test_cfg of hrnet_w32_coco_512x512 (nms_padding is nms_kernel // 2)."""
    num_joints: int = 17
    max_num_people: int = 30
    detection_threshold: float = 0.1
    tag_threshold: float = 1.0
    nms_kernel: int = 5
    use_detection_val: bool = True
    # False (this config): match each joint against every person found so far, however many.
    # True: only against the first max_num_people, and skip the joint once that many exist.
    ignore_too_much: bool = False
    adjust: bool = True
    refine: bool = True
    flip_test: bool = True
    # torch's CPU bilinear kernel built for AVX2/AVX512 fuses multiply-adds (what mmpose gets on any
    # current x86 CPU); False reproduces its plain float32 build (ATEN_CPU_CAPABILITY=default).
    fused_multiply_add: bool = True
    # Worker threads for the per-joint searches (not mmpose's): 0 = one per core, up to 4.
    threads: int = 0

    def __post_init__(self):
        if isinstance(self.threads, bool) or not isinstance(self.threads, (int, np.integer)) \
                or not 0 <= self.threads <= 64:
            raise ValueError(f"threads must be an integer in [0, 64], got {self.threads!r}")
        for name in ("num_joints", "max_num_people", "nms_kernel"):
            value = getattr(self, name)
            if isinstance(value, bool) or not isinstance(value, (int, np.integer)) or value < 1:
                raise ValueError(f"{name} must be a positive integer, got {value!r}")
        if self.nms_kernel % 2 == 0:
            raise ValueError(f"nms_kernel must be odd, got {self.nms_kernel}")
        for name in ("detection_threshold", "tag_threshold"):
            value = getattr(self, name)
            if isinstance(value, bool) or not isinstance(value, (int, float, np.floating)) \
                    or not math.isfinite(value):
                raise ValueError(f"{name} must be a finite number, got {value!r}")
        if self.detection_threshold < 0:
            # below 0 a person could consist of joints with heat <= 0, which refine cannot handle
            raise ValueError(f"detection_threshold must be >= 0, got {self.detection_threshold}")
        if self.flip_test and self.num_joints != len(FLIP_INDEX):
            raise ValueError(f"flip_test needs the COCO flip index (17 joints), got num_joints={self.num_joints}")


def group(output, center, scale, params: GroupingParams = GroupingParams()):
    """Group one image's network output into people.

    output: float32 [N, 2*num_joints, h, w], N=2 with flip_test (the second is the output for the
    mirrored input, still mirrored) else N=1; the network input was (4h, 4w).
    center, scale: the preprocessing meta (center in image pixels, scale in units of 200 px).
    Returns keypoints float32 [P, num_joints, 3] (x, y, heat value) in image pixels and the
    person scores float32 [P] (mean heat value over all joints, before refine).
    """
    maps = _Maps(output, params)
    center = _pair(center, "center")
    scale = _pair(scale, "scale")

    cands = _detections(maps, params)
    persons = _match_by_tag(cands, params)
    keypoints = persons.astype(_F32)
    if params.adjust:
        _adjust(maps, keypoints)
    scores = kernels.row_means(np.ascontiguousarray(keypoints[:, :, 2]))  # mmpose: each person's .mean()
    if params.refine and len(keypoints):
        _refine(maps, keypoints, cands, params.threads)
    return _to_image(keypoints[:, :, :3], center, scale, maps.size), scores


def warm_up(params: GroupingParams = GroupingParams()):
    """Compile the kernels (numba; cached on disk after the first run on a machine, ~15 s before
    that): group() once on small maps that take every path (people, a border tie, refine)."""
    k, h, w = params.num_joints, 16, 24
    out = np.zeros((2 if params.flip_test else 1, 2 * k, h, w), _F32)
    out[:, :k, 5, 6] = out[:, :k, 10, 0] = out[:, :k, 10, w - 1] = 0.9  # one on each border column
    out[:, k:, 5, 6], out[:, k:, 10, 0], out[:, k:, 10, w - 1] = -1.0, 0.0, 3.0
    out[:, 0, 5, 6] = 0  # a joint to refine
    group(out, (w * 2, h * 2), (w / 50, h / 50), params)


# ------------------------------------------------------------------------------------- inputs

def _pair(value, name):
    arr = np.asarray(value, dtype=_F64).reshape(-1)
    if arr.shape != (2,):
        raise ValueError(f"{name} must hold 2 values, got shape {list(np.shape(value))}")
    if not np.all(np.isfinite(arr)):
        raise ValueError(f"{name} must be finite, got {arr.tolist()}")
    return arr


@functools.lru_cache(maxsize=64)
def _axis(n_in, n_out):
    """torch upsample_bilinear2d (align_corners=False) along one axis: source indices int64
    [2, n_out] (i0, i1) and weights float64 [2, n_out] (w0, w1: float32 values, k/8)."""
    scale = _F32(n_in / n_out)
    src = np.maximum(scale * (np.arange(n_out, dtype=_F32) + _F32(0.5)) - _F32(0.5), _F32(0))
    i0 = src.astype(np.int64)
    lam = np.clip(src - i0.astype(_F32), _F32(0), _F32(1)).astype(_F32)
    i1 = np.where(i0 < n_in - 1, i0 + 1, i0)
    return np.stack([i0, i1]), np.stack([_F32(1) - lam, lam]).astype(_F64)


@functools.lru_cache(maxsize=64)
def _own_weight(n_in):
    """The least weight a cell's own low-resolution value has in the x4 resize of any of its pixels
    along one axis (5/8: pixels 0 and 3 of a cell lie 3/8 of the way to a neighbour). Every pixel
    reads only its cell and the two next to it, which the bounds rely on: checked here on torch's
    tables."""
    (i0, i1), (w0, w1) = _axis(n_in, STRIDE * n_in)
    cell = np.arange(STRIDE * n_in) // STRIDE
    if np.any(np.abs(i0 - cell) > 1) or np.any(np.abs(i1 - cell) > 1):
        raise AssertionError(f"x4 resize of {n_in} reads beyond a cell's neighbours")
    own = np.where(i0 == cell, w0, 0.0) + np.where(i1 == cell, w1, 0.0)
    return float(own.min())


_arena = threading.local()
_ARENA_BYTES = 256 << 20  # per calling thread; larger requests get fresh mappings


def _reused(name, shape, dtype, zero=False):
    """A scratch array of the calling thread's, reused by the next call on that thread: the
    stores are large and filled sparsely, so fresh memory would cost a page fault per page
    touched (and numpy's own large arrays ask for 2 MiB pages: 2 MiB zeroed per sparse touch).
    Contents are left as they are unless zero."""
    arrays = getattr(_arena, "arrays", None)
    if arrays is None:
        arrays = _arena.arrays = {}
    count = math.prod(shape)
    size = max(1, count * np.dtype(dtype).itemsize)
    buf = arrays.get(name)
    if buf is None or len(buf) < size:
        buf = np.frombuffer(mmap.mmap(-1, size), np.uint8)  # lazily zeroed 4 KiB pages
        if sum(len(b) for key, b in arrays.items() if key != name) + size <= _ARENA_BYTES:
            arrays[name] = buf
    out = buf[:size].view(dtype)[:count].reshape(shape)
    if zero:
        out.fill(0)
    return out


_LINE = 64  # bytes: a cache line


def _per_joint(make, shape, dtype):
    """make(shape, dtype), C-contiguous, each joint's part (the first axis: whole cache lines) on
    lines of its own: the threads working on different joints write them all the time, and a
    shared line would bounce between the cores."""
    itemsize = np.dtype(dtype).itemsize
    inner = math.prod(shape[1:])
    assert inner * itemsize % _LINE == 0, shape
    raw = make((shape[0] + 1) * inner, dtype)
    start = (-raw.ctypes.data % _LINE) // itemsize
    return raw[start:start + shape[0] * inner].reshape(shape)


def _cache(name, out, chan, store_shape):
    """A kernels.Cache over the output out [M, 2K, h, w], joint k's channel in pass m chan[m, k],
    with a store of store_shape (its slots are emptied by kernels.prepare)."""
    batch, h, w = out.shape[0], out.shape[2], out.shape[3]
    k = chan.shape[1]
    return kernels.Cache(out, chan, _reused(name + " slot", (k, h, w), np.int32),
                         _reused(name + " store", store_shape, _F32), _per_joint(np.zeros, (k, kernels.COUNTERS), np.int64),
                         _per_joint(np.empty, (k, batch, STRIDE * STRIDE), _F32), _per_joint(np.empty, (k, 4, STRIDE), _F32))


class _Maps:
    """One image's low-resolution maps and the kernels' Grid over them (exact input-size values of
    mmpose's resized heatmaps and tags on demand, with bounds to skip the rest)."""

    def __init__(self, output, params: GroupingParams):
        out = np.asarray(output)
        k = params.num_joints
        batch = 2 if params.flip_test else 1
        if out.ndim != 4 or out.shape[0] != batch or out.shape[1] != 2 * k:
            raise ValueError(f"output must be [{batch}, {2 * k}, h, w] (flip_test={params.flip_test}), "
                             f"got shape {list(out.shape)}")
        h, w = out.shape[2:]
        if h < 1 or w < 1:
            raise ValueError(f"output maps must not be empty, got shape {list(out.shape)}")
        if params.max_num_people > STRIDE * STRIDE * h * w:
            raise ValueError(f"max_num_people={params.max_num_people} exceeds the {STRIDE * h}x{STRIDE * w} map")
        out = np.ascontiguousarray(out, dtype=_F32)
        self.k = k
        self.low = (h, w)
        self.size = (STRIDE * w, STRIDE * h)  # (W, H)
        self.tag_dims = batch
        self.ny, self.nx = -(-h // _TILE), -(-w // _TILE)
        # the kernels read the output where it is (the second pass mirrored, its left/right
        # channels swapped): copying 7 MB costs more than everything they compute from it
        flip = np.asarray(FLIP_INDEX if params.flip_test else range(k), np.int64)
        chan = np.stack([np.arange(k), flip])[:batch]
        # scratch of the calling thread's (kernels.prepare fills or empties what is read)
        cell = _reused("cell bounds", (k, h, w), _F32)
        tile = _reused("tile bounds", (k, self.ny, self.nx), _F32)
        cells = k * h * w
        heat = _cache("heat", out, chan, (cells, 1, kernels.HEAT_ROW))
        tags = _cache("tags", out, chan + k, (cells, batch, kernels.TAG_ROW))
        # (rounded down: a smaller weight only loosens the bounds)
        self.centre = np.nextafter(_F32(_own_weight(h) * _own_weight(w)), _F32(0))
        top = max(_in_parallel(
            lambda joints: kernels.prepare(out, joints, flip, self.centre, cell, tile, heat.slot, tags.slot),
            _interleave(np.arange(k), params.threads)))
        if top >= kernels.INF_BITS:
            raise ValueError("output contains NaN or infinite values")
        big = float(np.uint32(top).view(_F32))  # the largest |value|
        if big > MAX_ABS_VALUE:
            # beyond this, float32 sums lose the precision the bounds rely on (and no network
            # emits such values): refuse rather than search forever
            raise ValueError(f"output values must lie within +-{MAX_ABS_VALUE:g}, got one of magnitude {big:g}")
        yidx, yw = _axis(h, STRIDE * h)
        xidx, xw = _axis(w, STRIDE * w)
        resize = kernels.Resize(yidx, yw, np.stack([xidx, w - 1 - xidx])[:batch], xw, bool(params.fused_multiply_add))
        self.grid = kernels.Grid(resize, heat, tags, cell, tile)
        self._refine = None

    def refine_bounds(self):
        """Refine's bounds: heat per block now, tag ranges filled by the kernel as it goes."""
        if self._refine is None:
            k, m = self.k, self.tag_dims
            block = kernels.tile_max(self.grid.tile_heat).reshape(k, -1)
            tiles = k * self.ny * self.nx
            self._refine = kernels.RefineBounds(
                np.empty(block.shape + (m,), _F32), np.empty(block.shape + (m,), _F32), np.zeros(block.shape, np.uint8),
                block, _reused("tile slot", (k, self.ny, self.nx), np.int32, zero=True),
                _reused("tile lo", (tiles, kernels.BOX_ROW, m), _F32), _reused("tile hi", (tiles, kernels.BOX_ROW, m), _F32),
                _per_joint(np.zeros, (k, kernels.COUNTERS), np.int64), self.centre)
        return self._refine

    def heat_at(self, ks, ys, xs):
        """Aggregated input-size heat (mean of the original and flipped resized heatmaps) at
        (joint, row, column) index arrays of one shape."""
        ks, ys, xs = np.broadcast_arrays(*(np.asarray(a, np.int64) for a in (ks, ys, xs)))
        return kernels.heat_at(self.grid, ks.ravel(), ys.ravel(), xs.ravel()).reshape(ks.shape)

    def tags_at(self, ks, ys, xs):
        """Input-size tags [n, tag_dims] at (joint, row, column) index arrays of length n."""
        return kernels.tags_at(self.grid, *(np.asarray(a, np.int64).ravel() for a in (ks, ys, xs)))


def torch_topk(values, k):
    """(indices, values) of torch.topk(values, k) on a 1-D CPU tensor (k * 64 <= len), equal
    values in torch's order."""
    values = np.ascontiguousarray(values, dtype=_F32).reshape(-1)
    return kernels.topk_1d(values, k)


def _detections(maps: _Maps, params: GroupingParams):
    """mmpose's top_k rows with val above the detection threshold, joint by joint in torch.topk
    order: (start [K+1] (joint j's rows are start[j]:start[j+1]), x, y, val, tags [n, L])."""
    def detect(joints, replay):
        return kernels.detect(maps.grid, joints, _F32(params.detection_threshold), params.nms_kernel // 2,
                              params.max_num_people, replay)

    # the maxima of every joint, then the replays (the costly part) spread over the threads
    shares = _interleave(np.arange(maps.k), params.threads)
    parts = _in_parallel(lambda mine: detect(mine, False), shares)
    flat, vals, counts, tied = parts[0]
    _merge((flat, vals, counts, tied), shares[1:], parts[1:])
    if tied.any():
        shares = _interleave(np.flatnonzero(tied), params.threads)
        _merge((flat, vals, counts), shares, _in_parallel(lambda mine: detect(mine, True), shares))
    ks = np.repeat(np.arange(maps.k), counts)
    keep = np.arange(flat.shape[1]) < counts[:, None]
    flat, vals = flat[keep], vals[keep]
    width = maps.size[0]
    xs, ys = flat % width, flat // width
    return np.concatenate([[0], np.cumsum(counts)]), xs, ys, vals, maps.tags_at(ks, ys, xs)


# ---------------------------------------------------------------------------------- grouping

def _match_by_tag(cands, params: GroupingParams):
    """mmpose _match_by_tag: people [P, num_joints, 3+L] float64 (x, y, val, tags...), compiled
    (kernels.match_by_tag: same founding-tag keys, float64 costs and munkres 1.1.4)."""
    order = np.asarray(JOINT_ORDER if params.num_joints == len(JOINT_ORDER) else range(params.num_joints), np.int64)
    start, xs, ys, vals, tags = cands
    return kernels.match_by_tag(order, start.astype(np.int64), xs.astype(np.int64), ys.astype(np.int64), vals, tags,
                                params.max_num_people, bool(params.ignore_too_much), float(params.tag_threshold),
                                bool(params.use_detection_val))


# ----------------------------------------------------------------------------- adjust, refine

def _quarter_offsets(maps: _Maps, ks, ys, xs):
    """mmpose's +-0.25 towards the higher neighbour (ties go negative): (dx, dy) float32."""
    return kernels.quarter_offsets(maps.grid, *(np.asarray(a, np.int64) for a in (ks, ys, xs)))


def _adjust(maps: _Maps, keypoints):
    p, ks = np.nonzero(keypoints[:, :, 2] > 0)
    if not len(p):
        return
    xs = keypoints[p, ks, 0].astype(np.intp)
    ys = keypoints[p, ks, 1].astype(np.intp)
    dx, dy = _quarter_offsets(maps, ks, ys, xs)
    keypoints[p, ks, 0] = xs.astype(_F32) + dx + _F32(0.5)
    keypoints[p, ks, 1] = ys.astype(_F32) + dy + _F32(0.5)


def _refine(maps: _Maps, keypoints, cands, threads=0):
    """mmpose refine, for the joints each person misses: argmax of heat - round(|tag - person tag|)
    (the queries and their seeds, then the search, then the result: compiled)."""
    grid = maps.grid
    joint_start, cand_x, cand_y = (np.asarray(a, np.int64) for a in cands[:3])
    people, joints, prev, start, seeds = kernels.refine_queries(grid, keypoints, joint_start, cand_x, cand_y)
    if not len(people):
        return
    bounds = maps.refine_bounds()
    # joints to threads, the queries of one joint together (its caches are its own)
    shares = _interleave(np.argsort(-np.bincount(joints, minlength=maps.k), kind="stable"), threads)
    queries = [np.arange(len(joints))] if len(shares) == 1 else [np.flatnonzero(np.isin(joints, mine)) for mine in shares]
    parts = _in_parallel(lambda mine: kernels.refine_argmax(grid, bounds, mine, joints, prev, start, seeds), queries)
    flat = parts[0] if len(parts) == 1 else np.max(parts, axis=0)  # each query answered by one part, -1 elsewhere
    kernels.refine_apply(grid, keypoints, people, joints, flat)


def _to_image(coords, center, scale, size):
    """mmpose transform_preds: input-size pixels -> image pixels (float64 math, float32 result)."""
    box = scale * 200.0
    out = coords.copy()
    for axis in range(2):
        out[:, :, axis] = coords[:, :, axis].astype(_F64) * (box[axis] / size[axis]) + center[axis] - box[axis] * 0.5
    return out
