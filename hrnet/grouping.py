"""Associative-embedding grouping: HRNet output maps -> people with keypoints in image pixels.

Serving code (numpy, munkres, cv2; never torch). It returns what mmpose 0.x computes at test time
for `hrnet_w32_coco_512x512` (flip merge, x4 bilinear resize, HeatmapParser.parse with adjust and
refine, get_group_preds; docs/reference-ae.md sections 4-5), bit for bit: same people, same order,
same float32 keypoints and scores. tests/hrnet/test_grouping.py checks it against a torch replica.

mmpose resizes all 68 maps to input size and scans them whole (~0.4 s, plus ~0.2 s per person for
refine). Here input-size values are only computed where they can matter, each with torch's own
arithmetic (its CPU bilinear kernel, fused multiply-adds included), so nothing changes:
* a resized value is a convex combination of 2x2 low-resolution values, so a pixel is bounded by
  its 3x3 low-resolution neighbourhood. NMS and top-k run exactly on the 16x16 tiles whose bound
  reaches the detection threshold (with a halo for the NMS window); on busy maps, the maxima are
  screened with an approximation (cv2) and only their values computed exactly;
* torch.topk's order of equal values (border plateaus: the resize clamps, so the two outermost
  rows/columns are equal) is replayed from its std::partial_sort, on that joint's whole NMS map;
* refine's argmax of `heat - round(|tag - person tag|)` is a branch and bound over tiles and
  4x4-pixel cells with the same kind of bounds (heat max, tag box), only for missing joints,
  with cells cached across people;
* the assignment is munkres 1.1.4 (its tie-breaking decides crowded scenes), skipped only when
  its first steps already finish.
Exactness holds for inputs with H + W > 128 and H * W >= 64 * max_num_people, where torch takes
these code paths (any real input: min(H, W) = 512).
"""

from __future__ import annotations

import dataclasses
import math

import cv2
import numpy as np
from munkres import Munkres

# COCO keypoints: the horizontal-flip permutation and the order match_by_tag visits joints in.
FLIP_INDEX = (0, 2, 1, 4, 3, 6, 5, 8, 7, 10, 9, 12, 11, 14, 13, 16, 15)
JOINT_ORDER = (0, 1, 2, 3, 4, 5, 6, 11, 12, 7, 8, 9, 10, 13, 14, 15, 16)
STRIDE = 4  # network output stride: grouping runs at input size (4h, 4w)

_TILE = 4  # cells (low-resolution pixels) per tile side: 16x16 input-size pixels
_F32 = np.float32
_F64 = np.float64
# Slack on bounds: computed values may exceed the exact convex combination by a few ulp.
_REL = 1e-5
_ABS = 1e-30


@dataclasses.dataclass(frozen=True)
class GroupingParams:
    """mmpose test_cfg of hrnet_w32_coco_512x512 (nms_padding is nms_kernel // 2)."""
    num_joints: int = 17
    max_num_people: int = 30
    detection_threshold: float = 0.1
    tag_threshold: float = 1.0
    nms_kernel: int = 5
    use_detection_val: bool = True
    adjust: bool = True
    refine: bool = True
    flip_test: bool = True
    # torch's CPU bilinear kernel built for AVX2/AVX512 fuses multiply-adds (what mmpose gets on any
    # current x86 CPU); False reproduces its plain float32 build (ATEN_CPU_CAPABILITY=default).
    fused_multiply_add: bool = True

    def __post_init__(self):
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

    persons = _match_by_tag(_detections(maps, params), params)
    keypoints = np.array(persons, dtype=_F32).reshape(-1, params.num_joints, 3 + maps.tag_dims)
    if params.adjust:
        _adjust(maps, keypoints)
    scores = np.array([person[:, 2].mean() for person in keypoints], dtype=_F32)
    if params.refine and len(keypoints):
        _refine(maps, keypoints)
    return _to_image(keypoints[:, :, :3], center, scale, maps.size), scores


# ------------------------------------------------------------------------------------- inputs

def _pair(value, name):
    arr = np.asarray(value, dtype=_F64).reshape(-1)
    if arr.shape != (2,):
        raise ValueError(f"{name} must hold 2 values, got shape {list(np.shape(value))}")
    if not np.all(np.isfinite(arr)):
        raise ValueError(f"{name} must be finite, got {arr.tolist()}")
    return arr


class _Axis:
    """torch upsample_bilinear2d (align_corners=False) source indices and weights along one axis."""

    def __init__(self, n_in, n_out):
        scale = _F32(n_in / n_out)
        src = np.maximum(scale * (np.arange(n_out, dtype=_F32) + _F32(0.5)) - _F32(0.5), _F32(0))
        self.i0 = src.astype(np.intp)
        lam = np.clip(src - self.i0.astype(_F32), _F32(0), _F32(1)).astype(_F32)
        self.i1 = np.where(self.i0 < n_in - 1, self.i0 + 1, self.i0)
        self.w0 = (_F32(1) - lam).astype(_F32)
        self.w1 = lam
        self.w0d = self.w0.astype(_F64)


class _Maps:
    """Low-resolution maps; exact values of mmpose's input-size heatmaps and tags on demand."""

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
        out = out.astype(_F32, copy=False)
        if not (np.isfinite(out.min()) and np.isfinite(out.max())):
            raise ValueError("output contains NaN or infinite values")
        self.fma = params.fused_multiply_add
        self.k = k
        self.low = (h, w)
        self.size = (STRIDE * w, STRIDE * h)  # (W, H)
        self.ry = _Axis(h, STRIDE * h)
        self.rx = _Axis(w, STRIDE * w)
        self.heat = [np.ascontiguousarray(out[0, :k])]
        self.tags = [np.ascontiguousarray(out[0, k:])]
        if params.flip_test:
            # mmpose flips the low-resolution output back, swaps left/right channels, then resizes.
            flip = np.asarray(FLIP_INDEX)
            self.heat.append(np.ascontiguousarray(out[1, flip, :, ::-1]))
            self.tags.append(np.ascontiguousarray(out[1, k + flip, :, ::-1]))
        self.tag_dims = len(self.tags)
        self.bounds = _Bounds(self)

    def _lerp(self, a, b, w0, w1, w0d):
        # torch's AVX2 build computes fma(a, w0, b*w1): a*w0 is exact in float64 (weights are k/8)
        if self.fma:
            out = np.multiply(a, w0d, dtype=_F64)
            out += b * w1
            return out.astype(_F32)
        return a * w0 + b * w1

    def upsample(self, m, ks, ys, xs):
        """Resized map stack `m` [K,h,w] at (joint, row, column) index arrays (broadcast together)."""
        h, w = self.low
        flat = m.reshape(-1)
        ry, rx = self.ry, self.rx
        base = ks * (h * w)
        r0, r1 = base + ry.i0[ys] * w, base + ry.i1[ys] * w
        c0, c1, wx0, wx1, wx0d = rx.i0[xs], rx.i1[xs], rx.w0[xs], rx.w1[xs], rx.w0d[xs]
        t0 = self._lerp(flat.take(r0 + c0), flat.take(r0 + c1), wx0, wx1, wx0d)
        t1 = self._lerp(flat.take(r1 + c0), flat.take(r1 + c1), wx0, wx1, wx0d)
        return self._lerp(t0, t1, ry.w0[ys], ry.w1[ys], ry.w0d[ys])

    def heat_at(self, ks, ys, xs):
        """Aggregated heatmap: the average of the original and flipped resized heatmaps."""
        value = self.upsample(self.heat[0], ks, ys, xs)
        if len(self.heat) == 2:
            value = (value + self.upsample(self.heat[1], ks, ys, xs)) / _F32(2.0)
        return value

    def tags_at(self, ks, ys, xs):
        return [self.upsample(t, ks, ys, xs) for t in self.tags]

    def block(self, m, ks, rows, cols):
        """Resized map stack `m` on blocks: joints ks [n], ascending rows [n, R] and columns
        [n, C] -> [n, R, C]. Separable (each needed source row is resized horizontally once),
        with the same per-pixel operations as `upsample`."""
        h, w = self.low
        ry, rx = self.ry, self.rx
        base = ry.i0[rows[:, 0]]
        span = int((ry.i1[rows[:, -1]] - base).max()) + 1
        src = np.minimum(base[:, None] + np.arange(span), h - 1)
        start = (ks[:, None] * h + src)[:, :, None] * w
        c0, c1 = rx.i0[cols][:, None, :], rx.i1[cols][:, None, :]
        wx = (rx.w0[cols][:, None, :], rx.w1[cols][:, None, :], rx.w0d[cols][:, None, :])
        flat = m.reshape(-1)
        horiz = self._lerp(flat.take(start + c0), flat.take(start + c1), *wx)  # [n, span, C]
        t0 = np.take_along_axis(horiz, (ry.i0[rows] - base[:, None])[:, :, None], axis=1)
        t1 = np.take_along_axis(horiz, (ry.i1[rows] - base[:, None])[:, :, None], axis=1)
        return self._lerp(t0, t1, ry.w0[rows][:, :, None], ry.w1[rows][:, :, None], ry.w0d[rows][:, :, None])

    def heat_block(self, ks, rows, cols):
        value = self.block(self.heat[0], ks, rows, cols)
        if len(self.heat) == 2:
            value = (value + self.block(self.heat[1], ks, rows, cols)) / _F32(2.0)
        return value


class _Bounds:
    """Bounds of input-size values per cell (the 4x4 pixels of one low-resolution pixel) and per
    tile (4x4 cells): a resized value lies within its cell's 3x3 low-resolution neighbourhood."""

    def __init__(self, maps: _Maps):
        self.maps = maps
        h, w = maps.low
        self.ny, self.nx = -(-h // _TILE), -(-w // _TILE)
        cell = self._filtered(maps.heat[0], cv2.dilate)
        if len(maps.heat) == 2:
            cell = (cell + self._filtered(maps.heat[1], cv2.dilate)) / _F32(2.0)
        self.cell_heat = cell + _F32(_REL) * np.abs(cell) + _F32(_ABS)  # [K, h, w] float32
        self.tile_heat = self._tiled(self.cell_heat, np.maximum, -np.inf)  # [K, ny, nx]
        self._tag_boxes = None
        self._slots = self._store = None

    @staticmethod
    def _filtered(m, op):
        """3x3 max (cv2.dilate) or min (cv2.erode) of each joint's map [K, h, w]; replicated
        borders add nothing beyond the clamped neighbourhood."""
        out = np.empty_like(m)
        kernel = np.ones((3, 3), np.uint8)
        for j in range(len(m)):
            op(m[j], kernel, dst=out[j], borderType=cv2.BORDER_REPLICATE)
        return out

    def _tiled(self, cells, reduce, fill):
        """Reduce (np.maximum / np.minimum) cells [K, h, w] over 4x4 blocks -> tiles [K, ny, nx]."""
        k, h, w = cells.shape
        padded = cells
        if (h, w) != (self.ny * _TILE, self.nx * _TILE):
            padded = np.full((k, self.ny * _TILE, self.nx * _TILE), fill, cells.dtype)
            padded[:, :h, :w] = cells
        cols = padded[:, :, 0::_TILE].copy()
        for j in range(1, _TILE):
            reduce(cols, padded[:, :, j::_TILE], out=cols)
        out = cols[:, 0::_TILE].copy()
        for i in range(1, _TILE):
            reduce(out, cols[:, i::_TILE], out=out)
        return out

    def tag_boxes(self):
        """Per tag dimension, (min, max) of the tags per cell [K, h, w] and per tile [K, ny, nx]."""
        if self._tag_boxes is None:
            self._tag_boxes = []
            for tag in self.maps.tags:
                lo = self._filtered(tag, cv2.erode)
                hi = self._filtered(tag, cv2.dilate)
                self._tag_boxes.append(((lo, hi), (self._tiled(lo, np.minimum, np.inf),
                                                   self._tiled(hi, np.maximum, -np.inf))))
        return self._tag_boxes

    def tile_pixels(self, tile_ids, halo):
        """Rows and columns [n, 16+2*halo] of tiles with a halo, and which lie inside the map."""
        width, height = self.maps.size
        side = _TILE * STRIDE
        offs = np.arange(-halo, side + halo)
        rows = (tile_ids // self.nx * side)[:, None] + offs
        cols = (tile_ids % self.nx * side)[:, None] + offs
        rin, cin = (rows >= 0) & (rows < height), (cols >= 0) & (cols < width)
        return np.clip(rows, 0, height - 1), np.clip(cols, 0, width - 1), rin, cin

    def heat_blocks(self, joint_ids, tile_ids, halo):
        """Exact heat on tiles with a halo, -inf outside the map: [n, 16+2*halo, 16+2*halo]."""
        rows, cols, rin, cin = self.tile_pixels(tile_ids, halo)
        values = self.maps.heat_block(joint_ids, rows, cols)
        values[~(rin[:, :, None] & cin[:, None, :])] = -np.inf
        return values

    def tile_cells(self, tile_ids):
        """Cell ids [n, 16] of tiles."""
        h, w = self.maps.low
        offs = np.arange(_TILE)
        cy = (tile_ids // self.nx * _TILE)[:, None, None] + offs[:, None]
        cx = (tile_ids % self.nx * _TILE)[:, None, None] + offs[None, :]
        # cells beyond the map repeat the tile's first cell: harmless for max and argmin
        cells = np.where((cy < h) & (cx < w), cy * w + cx, cy[:, :1, :1] * w + cx[:, :1, :1])
        return cells.reshape(len(tile_ids), -1)

    def cell_pixels(self, cell_ids):
        """Input-size rows and columns [n, 4] of cells."""
        w = self.maps.low[1]
        offs = np.arange(STRIDE)
        return (cell_ids // w * STRIDE)[:, None] + offs, (cell_ids % w * STRIDE)[:, None] + offs

    def cached(self, cell_ids):
        """Exact heat and tags [n, 4, 4] of cells given as joint * h * w + cell, each computed once."""
        h, w = self.maps.low
        if self._slots is None:
            self._slots = np.full(self.maps.k * h * w, -1, np.int32)
            self._store = [np.empty((0, STRIDE, STRIDE), _F32) for _ in range(1 + self.maps.tag_dims)]
        todo = np.unique(cell_ids[self._slots[cell_ids] < 0])
        if len(todo):
            rows, cols = self.cell_pixels(todo % (h * w))
            ks = todo // (h * w)
            values = [self.maps.heat_block(ks, rows, cols)]
            values += [self.maps.block(t, ks, rows, cols) for t in self.maps.tags]
            self._slots[todo] = np.arange(len(self._store[0]), len(self._store[0]) + len(todo))
            self._store = [np.concatenate([old, new]) for old, new in zip(self._store, values)]
        slots = self._slots[cell_ids]
        return [a[slots] for a in self._store]


# --------------------------------------------------------------------------- nms and top-k

def _nms_blocks(values, halo):
    """MaxPool(kernel 2*halo+1, stride 1) on tiles with halo: (interior, interior == window max)."""
    n = values.shape[1] - 2 * halo
    rowmax = values[:, 0:n]
    for d in range(1, 2 * halo + 1):
        rowmax = np.maximum(rowmax, values[:, d:d + n])
    winmax = rowmax[:, :, 0:n]
    for d in range(1, 2 * halo + 1):
        winmax = np.maximum(winmax, rowmax[:, :, d:d + n])
    interior = values[:, halo:halo + n, halo:halo + n]
    return interior, interior == winmax


# Near-ties (plateaus) beyond which a joint's exact NMS map is computed whole.
_NEAR_LIMIT = 20000
# Above this share of tiles that may hold a detection, a joint's maxima are screened densely
# (cv2 on the whole map) rather than computed exactly tile by tile (measured crossover).
_DENSE_SHARE = 0.08


def _detections(maps: _Maps, params: GroupingParams):
    """Per joint, None or (x, y, val, tags [n, L]): mmpose's top_k rows with val above the
    detection threshold, in torch.topk order."""
    bounds, k, thr = maps.bounds, maps.k, params.detection_threshold
    halo = params.nms_kernel // 2
    top = params.max_num_people
    side = _TILE * STRIDE
    active = bounds.tile_heat.reshape(k, -1) > thr
    dense = active.mean(axis=1) > _DENSE_SHARE
    maxima = {}  # joint -> _DenseMaxima, shared with the tie replay
    parts = []  # (joint, flat index, value) of NMS maxima above the threshold
    joint_ids, tile_ids = np.nonzero(active & ~dense[:, None])
    if len(tile_ids):
        interior, is_max = _nms_blocks(bounds.heat_blocks(joint_ids, tile_ids, halo), halo)
        t, yy, xx = np.nonzero(is_max & (interior > thr))
        flat = (tile_ids[t] // bounds.nx * side + yy) * maps.size[0] + tile_ids[t] % bounds.nx * side + xx
        parts.append((joint_ids[t], flat, interior[t, yy, xx]))
    for joint in np.flatnonzero(dense):
        maxima[joint] = _DenseMaxima(maps, joint, params.nms_kernel)
        flat, vals = maxima[joint].above(thr)
        parts.append((np.full(len(flat), joint), flat, vals))
    chosen = []
    if parts:
        ks, flat, vals = (np.concatenate(p) for p in zip(*parts))
        order = np.lexsort((-vals, ks))
        ks, vals, flat = ks[order], vals[order], flat[order]
        starts = np.searchsorted(ks, np.arange(k + 1))
        for j in range(k):
            v = vals[starts[j]:starts[j + 1]]
            if not len(v):
                continue
            head = v[:top + 1]
            if np.any(head[1:] == head[:-1]):
                # Equal values: their order, and which make the cut, is std::partial_sort's.
                if j not in maxima:
                    maxima[j] = _DenseMaxima(maps, j, params.nms_kernel)
                f, v = maxima[j].topk(top)
                keep = v > thr
                f, v = f[keep], v[keep]
            else:
                f, v = flat[starts[j]:starts[j + 1]][:top], v[:top]
            if len(f):
                chosen.append((j, f, v))
    result = [None] * k
    if chosen:
        ks = np.concatenate([np.full(len(f), j) for j, f, _ in chosen])
        flat = np.concatenate([f for _, f, _ in chosen])
        ys, xs = flat // maps.size[0], flat % maps.size[0]
        tags = np.stack(maps.tags_at(ks, ys, xs), axis=1)
        start = 0
        for j, f, v in chosen:
            end = start + len(f)
            result[j] = (xs[start:end], ys[start:end], v.astype(_F32), tags[start:end])
            start = end
    return result


class _DenseMaxima:
    """One joint's NMS maxima over the whole map, exact, found through a cheap approximation.

    cv2.resize of the averaged low-resolution maps is within `eps` of torch's values, so pixels
    clearly below a neighbour of their NMS window are not maxima, pixels clearly above all of
    them are, and only the near-ties in between need their exact window. Exact values are
    computed for the maxima only.
    """

    def __init__(self, maps: _Maps, joint, kernel):
        self.maps, self.joint, self.halo = maps, joint, kernel // 2
        width, height = maps.size
        heat = [m[joint] for m in maps.heat]
        low = heat[0] if len(heat) == 1 else (heat[0] + heat[1]) / _F32(2)
        self.approx = cv2.resize(low, (width, height), interpolation=cv2.INTER_LINEAR).reshape(-1)
        self.eps = _F32(_REL * sum(float(np.abs(m).max()) for m in heat) + _ABS)
        ring = np.ones((kernel, kernel), np.uint8)
        ring[self.halo, self.halo] = 0
        # the largest other value in the NMS window (MaxPool pads with -inf)
        others = cv2.dilate(self.approx.reshape(height, width), ring, borderType=cv2.BORDER_CONSTANT,
                            borderValue=float(np.finfo(_F32).min))
        self.margin = self.approx - others.reshape(-1)
        self._nms = None

    def above(self, floor, lo=0, hi=None):
        """(flat indices ascending, exact values) of the nonzero maxima in [lo, hi) with value
        > floor (a zero is what the NMS map holds anyway, maximum or not)."""
        width, height = self.maps.size
        eps2 = 2 * self.eps
        hot = lo + np.flatnonzero(self.approx[lo:hi] > _F32(floor) - self.eps)
        cand = hot[self.margin[hot] >= -eps2]  # every maximum above the floor is in here
        near = self.margin[cand] <= eps2  # near-ties: decided on their exact window
        if near.sum() > _NEAR_LIMIT:  # large plateaus: the exact map is cheaper
            flat, vals = cand, self._exact_nms()[cand]
            keep = (vals > _F32(floor)) & (vals != 0)
            return flat[keep], vals[keep]
        vals = self.maps.heat_at(np.full(len(cand), self.joint), cand // width, cand % width)
        keep = (vals > _F32(floor)) & (vals != 0)
        cand, vals, near = cand[keep], vals[keep], near[keep]
        if near.any():
            halo = self.halo
            ys, xs = cand[near] // width, cand[near] % width
            offs = np.arange(-halo, halo + 1)
            wy, wx = ys[:, None, None] + offs[:, None], xs[:, None, None] + offs[None, :]
            inside = (wy >= 0) & (wy < height) & (wx >= 0) & (wx < width)
            window = self.maps.heat_at(np.full((len(ys), 1, 1), self.joint),
                                       np.clip(wy, 0, height - 1), np.clip(wx, 0, width - 1))
            window = np.where(inside, window, -np.inf).reshape(len(ys), -1)
            keep = np.ones(len(cand), dtype=bool)
            keep[near] = vals[near] >= window.max(axis=1)
            cand, vals = cand[keep], vals[keep]
        return cand, vals

    def _exact_nms(self):
        """The whole exact NMS map of this joint (flat), computed separably: same ops per pixel."""
        if self._nms is None:
            maps, ry, rx = self.maps, self.maps.ry, self.maps.rx
            heat = None
            for m in maps.heat:
                t = maps._lerp(m[self.joint][:, rx.i0], m[self.joint][:, rx.i1], rx.w0, rx.w1, rx.w0d)
                t = maps._lerp(t[ry.i0], t[ry.i1], ry.w0[:, None], ry.w1[:, None], ry.w0d[:, None])
                heat = t if heat is None else (heat + t) / _F32(2.0)
            size = 2 * self.halo + 1
            pooled = cv2.dilate(heat, np.ones((size, size), np.uint8), borderType=cv2.BORDER_CONSTANT,
                                borderValue=float(np.finfo(_F32).min))
            self._nms = np.where(heat == pooled, heat, _F32(0)).reshape(-1)
        return self._nms

    def topk(self, k):
        """torch.topk(heat * (heat == maxpool(heat)), k) of this joint: (flat indices, values).

        Replayed in index order, in stages of growing length: the heap minimum at the start of a
        stage is a floor for what can enter during it, so only maxima above it are computed.
        """
        n = len(self.approx)
        heap = _HeapSelect(k)
        first = np.zeros(k, _F32)  # the NMS map's first k values seed the heap; non-maxima are 0
        flat, vals = self.above(-np.inf, 0, k)
        first[flat] = vals
        heap.feed(np.arange(k), first)
        lo, size = k, 1 << 12
        while lo < n:
            hi = min(n, lo + size)
            if heap.min >= 0:  # NMS zeros cannot enter: the maxima above the minimum only
                heap.feed(*self.above(heap.min, lo, hi))
            else:
                stream = np.zeros(hi - lo, _F32)
                flat, vals = self.above(-np.inf, lo, hi)
                stream[flat - lo] = vals
                heap.feed(np.arange(lo, hi), stream)
            lo, size = hi, size * 2
        return heap.result()


def _adjust_heap(hv, hi, hole, length, value, index):
    # libstdc++ std::__adjust_heap + __push_heap with comp(a, b) = a > b: a min-heap on values.
    top = hole
    child = hole
    while child < (length - 1) // 2:
        child = 2 * (child + 1)
        if hv[child] > hv[child - 1]:
            child -= 1
        hv[hole] = hv[child]
        hi[hole] = hi[child]
        hole = child
    if (length & 1) == 0 and child == (length - 2) // 2:
        child = 2 * (child + 1)
        hv[hole] = hv[child - 1]
        hi[hole] = hi[child - 1]
        hole = child - 1
    parent = (hole - 1) // 2
    while hole > top and hv[parent] > value:
        hv[hole] = hv[parent]
        hi[hole] = hi[parent]
        hole = parent
        parent = (hole - 1) // 2
    hv[hole] = value
    hi[hole] = index


class _HeapSelect:
    """torch.topk's CPU selection (aten SortingKernel, when k*64 <= n): std::partial_sort with
    `a > b`, i.e. libstdc++'s heap select then heap sort, replayed on a stream of elements given
    in index order. Elements that cannot enter the heap may be left out of the stream."""

    def __init__(self, k):
        self.k = k
        self.hv, self.hi = [], []
        self.full = False

    @property
    def min(self):
        return self.hv[0]

    def feed(self, indices, values):
        """Push elements (numpy arrays, ascending indices) through the heap select."""
        pos = 0
        if not self.full:
            take = min(self.k - len(self.hv), len(indices))
            self.hv += values[:take].tolist()
            self.hi += indices[:take].tolist()
            pos = take
            if len(self.hv) < self.k:
                return
            for parent in range((self.k - 2) // 2, -1, -1):  # std::make_heap
                _adjust_heap(self.hv, self.hi, parent, self.k, self.hv[parent], self.hi[parent])
            self.full = True
        hv, hi, k = self.hv, self.hi, self.k
        cand = np.flatnonzero(values[pos:] > hv[0]) + pos  # the heap minimum only grows
        start, chunk = 0, 64
        while start < len(cand):
            sel = cand[start:start + chunk]
            sel = sel[values[sel] > hv[0]]  # re-filtered with the current minimum
            start += chunk
            chunk = min(2 * chunk, 1 << 14)
            for v, i in zip(values[sel].tolist(), indices[sel].tolist()):
                if v > hv[0]:  # std::__pop_heap(first, middle, it)
                    _adjust_heap(hv, hi, 0, k, v, i)

    def result(self):
        """(indices, values) in torch.topk's order (descending values)."""
        hv, hi = list(self.hv), list(self.hi)
        for last in range(len(hv) - 1, 0, -1):  # std::sort_heap
            v, i = hv[last], hi[last]
            hv[last], hi[last] = hv[0], hi[0]
            _adjust_heap(hv, hi, 0, last, v, i)
        return np.array(hi, dtype=np.intp), np.array(hv, dtype=_F32)


def torch_topk(values, k):
    """(indices, values) of torch.topk(values, k) on a 1-D CPU tensor, equal values included."""
    values = np.asarray(values).reshape(-1)
    heap = _HeapSelect(k)
    heap.feed(np.arange(len(values)), values)
    return heap.result()


# ---------------------------------------------------------------------------------- grouping

def _match_by_tag(cands, params: GroupingParams):
    """mmpose _match_by_tag: people as [num_joints, 3+L] float64 rows (x, y, val, tags...).

    Same dict keyed by the founding float tag (equal tags collide, as in mmpose), same float64 cost
    matrix and the same munkres solver, so tied assignments resolve the same way.
    """
    order = JOINT_ORDER if params.num_joints == len(JOINT_ORDER) else range(params.num_joints)
    people = {}  # founding tag0 -> [joints [K, 3+L], tag list, cached mean tag]
    for i, idx in enumerate(order):
        cand = cands[idx]
        if cand is None:
            continue
        xs, ys, vals, tags = cand
        joints = np.concatenate((xs[:, None].astype(_F64), ys[:, None].astype(_F64),
                                 vals[:, None].astype(_F64), tags.astype(_F64)), axis=1)
        if i == 0 or not people:
            for row in range(len(joints)):
                _found(people, params, idx, joints[row], tags[row])
            continue
        keys = list(people)[:params.max_num_people]
        grouped = []
        for key in keys:
            person = people[key]
            if person[2] is None:
                person[2] = np.mean(person[1], axis=0)
            grouped.append(person[2])
        diff = joints[:, None, 3:] - np.array(grouped)[None, :, :]
        dist = np.linalg.norm(diff, ord=2, axis=2)
        cost = np.round(dist) * 100 - joints[:, 2:3] if params.use_detection_val else np.copy(dist)
        added, num = cost.shape
        if added > num:
            cost = np.concatenate((cost, np.zeros((added, added - num), dtype=_F32) + 1e10), axis=1)
        pairs = _munkres(cost)
        for row, col in pairs:
            if row < added and col < num and dist[row, col] < params.tag_threshold:
                person = people[keys[col]]
                person[0][idx] = joints[row]
                person[1].append(tags[row])
                person[2] = None
            else:
                _found(people, params, idx, joints[row], tags[row])
    return [person[0] for person in people.values()]


def _munkres(cost):
    """munkres 1.1.4 `Munkres().compute(cost)` (n <= m rows, float64).

    Its steps 1-3 subtract each row's minimum, star the first zero of each row in a column not
    starred yet, and stop if every row got one; those steps are run here with numpy, and the
    solver only when they do not finish (same input, so the same tie-breaking either way).
    """
    zero = cost == cost.min(axis=1, keepdims=True)  # x - min == 0 exactly when x == min
    free = np.ones(cost.shape[1], dtype=bool)
    pairs = []
    for row in range(len(cost)):
        cols = np.flatnonzero(zero[row] & free)
        if not len(cols):
            return Munkres().compute(cost.tolist())
        free[cols[0]] = False
        pairs.append((row, int(cols[0])))
    return pairs  # munkres' zero padding rows then star the free columns: nothing to report


def _found(people, params, idx, joint, tag):
    key = float(tag[0])
    person = people.setdefault(key, [np.zeros((params.num_joints, len(joint)), _F64), None, None])
    person[0][idx] = joint
    person[1] = [tag]
    person[2] = None


# ----------------------------------------------------------------------------- adjust, refine

def _quarter_offsets(maps: _Maps, ks, ys, xs):
    """mmpose's +-0.25 towards the higher neighbour (ties go negative): (dx, dy) float32."""
    width, height = maps.size
    lr = maps.heat_at(np.stack([ks, ks]), np.stack([ys, ys]),
                      np.stack([np.minimum(width - 1, xs + 1), np.maximum(0, xs - 1)]))
    ud = maps.heat_at(np.stack([ks, ks]), np.stack([np.minimum(height - 1, ys + 1), np.maximum(0, ys - 1)]),
                      np.stack([xs, xs]))
    quarter = _F32(0.25)
    return np.where(lr[0] > lr[1], quarter, -quarter), np.where(ud[0] > ud[1], quarter, -quarter)


def _adjust(maps: _Maps, keypoints):
    p, ks = np.nonzero(keypoints[:, :, 2] > 0)
    if not len(p):
        return
    xs = keypoints[p, ks, 0].astype(np.intp)
    ys = keypoints[p, ks, 1].astype(np.intp)
    dx, dy = _quarter_offsets(maps, ks, ys, xs)
    keypoints[p, ks, 0] = xs.astype(_F32) + dx + _F32(0.5)
    keypoints[p, ks, 1] = ys.astype(_F32) + dy + _F32(0.5)


def _refine(maps: _Maps, keypoints):
    """mmpose refine, for the joints each person misses: argmax of heat - round(tag distance)."""
    width, height = maps.size
    h, w = maps.low
    # person tag: mean of the tags at its joints' pixels (adjusted coordinates truncate back)
    pp, pk = np.nonzero(keypoints[:, :, 2] > 0)
    px = np.clip(keypoints[pp, pk, 0].astype(np.intp), 0, width - 1)
    py = np.clip(keypoints[pp, pk, 1].astype(np.intp), 0, height - 1)
    tags = np.stack(maps.tags_at(pk, py, px), axis=1)
    starts = np.searchsorted(pp, np.arange(len(keypoints) + 1))
    prev = np.stack([np.mean(tags[starts[i]:starts[i + 1]], axis=0) for i in range(len(keypoints))])
    p, ks = np.nonzero(keypoints[:, :, 2] == 0)
    if not len(p):
        return
    # seeds for the search: the cells where the person's other joints are (tags match there)
    query_of = np.full(keypoints.shape[:2], -1)
    query_of[p, ks] = np.arange(len(p))
    seed_q = query_of[pp[:, None], np.arange(maps.k)[None, :]]
    seed_cell = ((py // STRIDE) * w + px // STRIDE)[:, None] + np.arange(maps.k)[None, :] * (h * w)
    keep = seed_q >= 0
    flat = _refine_argmax(maps.bounds, ks, prev[p], (seed_q[keep], seed_cell[keep]))
    ys, xs = flat // width, flat % width
    vals = maps.heat_at(ks, ys, xs)
    take = vals > 0
    p, ks, ys, xs, vals = p[take], ks[take], ys[take], xs[take], vals[take]
    dx, dy = _quarter_offsets(maps, ks, ys, xs)
    keypoints[p, ks, 0] = (xs + _F64(0.5)) + dx
    keypoints[p, ks, 1] = (ys + _F64(0.5)) + dy
    keypoints[p, ks, 2] = vals


def _upper(heat, boxes, prev):
    """Upper bound of `heat - round(||tag - prev||)` from a heat bound and per-dimension tag boxes
    (float32 throughout: the slack covers its rounding as well)."""
    sq = None
    span = np.abs(prev).max(axis=-1)
    for dim, (lo, hi) in enumerate(boxes):
        p = prev[..., dim]
        gap = np.maximum(np.maximum(lo - p, p - hi), _F32(0))
        sq = gap * gap if sq is None else sq + gap * gap
        span = np.maximum(span, np.maximum(np.abs(lo), np.abs(hi)))
    dist = np.sqrt(sq)
    dist = np.maximum(dist - _F32(_REL) * (_F32(1) + dist + span), _F32(0))  # float32 tag arithmetic
    upper = heat - np.round(dist)
    return upper + _F32(_REL) * np.abs(upper) + _F32(_ABS)


def _cell_norms(bounds: _Bounds, cell_ids, prev):
    """Exact `heat - round(||tag - prev||)` on cells, prev [n, L] per cell: [n, 16] float32,
    with mmpose's float32 ops (square, sum over the tag dimensions, sqrt, round)."""
    heat, *tags = bounds.cached(cell_ids)
    sq = None
    for dim, tag in enumerate(tags):
        diff = tag - prev[:, dim, None, None]
        sq = diff * diff if sq is None else sq + diff * diff
    return (heat - np.round(np.sqrt(sq))).reshape(len(cell_ids), -1)


# Ranks (hottest first) of the candidate tiles examined per query in the successive rounds.
_ROUNDS = (0, 1, 5, 21, 85)
_HOT = 16  # tiles with the highest heat bound tried first for a lower bound
_FIRST_CELLS = 4  # cells per query evaluated ahead of the rest of a round


def _refine_argmax(bounds: _Bounds, joints, prev, seeds):
    """Flat input-size index of the row-major first argmax of each query's refine map
    (query = a joint and a person tag), given seed cells (query, joint * h * w + cell).

    Branch and bound: the seeds give each query a lower bound; only tiles whose heat bound
    reaches it are bounded with their tag boxes; those are examined best-first in rounds, and
    within a tile only the cells whose own bound reaches the best value so far are evaluated
    exactly. Every pixel that attains the final maximum is evaluated, so the first one in
    row-major order is exact.
    """
    n = len(joints)
    k, (h, w) = bounds.maps.k, bounds.maps.low
    width = bounds.maps.size[0]
    boxes = bounds.tag_boxes()
    tile_heat = bounds.tile_heat.reshape(k, -1)
    count = tile_heat.shape[1]
    order = np.argsort(-tile_heat, axis=1, kind="stable")
    descending = -np.take_along_axis(tile_heat, order, axis=1)
    # More seeds: each query's best-bounded tile among its joint's hottest tiles.
    hot = order[joints, :_HOT]  # [n, hot]
    key = joints[:, None] * count + hot
    up = _upper(tile_heat.reshape(-1)[key], [(lo.reshape(-1)[key], hi.reshape(-1)[key]) for _, (lo, hi) in boxes],
                prev[:, None, :])
    cells = bounds.tile_cells(hot[np.arange(n), np.argmax(up, axis=1)])
    seed_q = np.concatenate([seeds[0], np.repeat(np.arange(n), cells.shape[1])])
    seed_cell = np.concatenate([seeds[1], (joints[:, None] * (h * w) + cells).reshape(-1)])
    lower = np.full(n, -np.inf)
    norms = _cell_norms(bounds, seed_cell, prev[seed_q])
    np.maximum.at(lower, seed_q, norms.max(axis=1))
    found = [(seed_q, seed_cell, norms)]  # (query, cell, norms [m, 16]) of evaluated cells
    # Candidate tiles: per query, the prefix of its joint's tiles sorted by heat bound.
    reach = np.empty(n, np.intp)
    for joint in np.unique(joints):
        mine = joints == joint
        reach[mine] = np.searchsorted(descending[joint], -lower[mine], side="right")
    query = np.repeat(np.arange(n), reach)
    rank = np.arange(len(query)) - np.repeat(np.cumsum(reach) - reach, reach)
    tile = order[joints[query], rank]
    key = joints[query] * count + tile
    up = _upper(tile_heat.reshape(-1)[key], [(lo.reshape(-1)[key], hi.reshape(-1)[key]) for _, (lo, hi) in boxes],
                prev[query])
    live = up >= lower[query]
    query, tile, up, rank = query[live], tile[live], up[live], rank[live]
    cell_heat = bounds.cell_heat.reshape(-1)
    cell_boxes = [(lo.reshape(-1), hi.reshape(-1)) for (lo, hi), _ in boxes]
    # Hottest tiles first, in rounds: each round raises the lower bounds that prune the next.
    for lo_rank, hi_rank in zip(_ROUNDS, _ROUNDS[1:] + (count,)):
        sel = (rank >= lo_rank) & (rank < hi_rank)
        sel &= up >= lower[query]
        if not sel.any():
            continue
        q = query[sel]
        cells = bounds.tile_cells(tile[sel])
        q = np.repeat(q, cells.shape[1])
        cells = joints[q] * (h * w) + cells.reshape(-1)
        cell_up = _upper(cell_heat[cells], [(lo[cells], hi[cells]) for lo, hi in cell_boxes], prev[q])
        keep = cell_up >= lower[q]
        q, cells, cell_up = q[keep], cells[keep], cell_up[keep]
        # each query's best-bounded cells first: they lift the lower bound before the rest
        by_bound = np.lexsort((-cell_up, q))
        q, cells, cell_up = q[by_bound], cells[by_bound], cell_up[by_bound]
        first = np.arange(len(q)) - np.searchsorted(q, q) < _FIRST_CELLS
        for part in (first, ~first):
            part &= cell_up >= lower[q]
            if part.any():
                norms = _cell_norms(bounds, cells[part], prev[q[part]])
                np.maximum.at(lower, q[part], norms.max(axis=1))
                found.append((q[part], cells[part], norms))
    query, cells, norms = (np.concatenate(parts) for parts in zip(*found))
    rows, cols = bounds.cell_pixels(cells % (h * w))
    flat = (rows[:, :, None] * width + cols[:, None, :]).reshape(len(cells), -1)
    big = np.iinfo(np.intp).max
    best = np.full(n, big)
    np.minimum.at(best, query, np.where(norms == lower[query][:, None], flat, big).min(axis=1))
    return best


def _to_image(coords, center, scale, size):
    """mmpose transform_preds: input-size pixels -> image pixels (float64 math, float32 result)."""
    box = scale * 200.0
    out = coords.copy()
    for axis in range(2):
        out[:, :, axis] = coords[:, :, axis].astype(_F64) * (box[axis] / size[axis]) + center[axis] - box[axis] * 0.5
    return out
