"""Compiled (numba) kernels of hrnet/grouping.py: exact input-size map values on demand, and the
three searches over them (NMS maxima, torch.topk's order, refine's argmax).

The input-size maps are never built whole. A value is computed with torch's own arithmetic (its
CPU bilinear kernel, align_corners=False, fused multiply-adds or not) when a search needs it, a
cell (the 4x4 input-size pixels of one low-resolution pixel) at a time, and kept for the rest of
the call in a dense store (a slot per cell: a sparse cache would cost a page fault per cell).
Searches skip cells, tiles (4x4 cells) and blocks (4x4 tiles) by upper bounds computed from the
low-resolution maps: a resized value is a convex combination of its cell's 3x3 neighbourhood in
which the cell's own value weighs at least 5/8 x 5/8. The low-resolution maps are read where the
network left them (the mirrored pass mirrored): the maps are 7 MB, and copying them cost more than
everything computed from them.

grouping._Maps builds the Grid. Kernels unpack it once: reading a field of a large tuple inside a
loop, or passing one to a function that is not inlined, costs more than the arithmetic. They
release the GIL (the server's event loop and other models run meanwhile).
"""

from collections import namedtuple

import numpy as np
from numba import njit

CELL = 4  # input-size pixels per cell side (the network stride)
TILE = 4  # cells per tile side, tiles per block side
# Store rows (the last axis of Cache.store and of RefineBounds.tile_lo/hi): the values first, pixel
# i * CELL + j of a cell (its row i, column j; _pixel) or cell i * TILE + j of a tile, then:
PIXELS = CELL * CELL
HEAT_MAX = PIXELS  # heat row: the cell's maximum
TAG_MIN, TAG_MAX = PIXELS, PIXELS + 1  # tag row (one per pass): the cell's minimum and maximum
BOX_TILE = TILE * TILE  # box row (a range per tag dimension): the tile's own range
HEAT_ROW, TAG_ROW, BOX_ROW = HEAT_MAX + 1, TAG_MAX + 1, BOX_TILE + 1  # the rows' widths
CENTRE = (CELL + 1, CELL + 2, 2 * CELL + 1, 2 * CELL + 2)  # a cell's centre 2x2 pixels
# Per-joint counters, int64 [K, COUNTERS]: a cache line per joint (joints are worked on by
# different threads at once); column USED: the store rows the joint has taken so far.
COUNTERS, USED = 8, 0
INF_BITS = 0x7F800000  # float32 bits of +inf: |value| bits from here up are NaN or infinite
REL = np.float32(1e-5)  # slack on bounds: computed values may exceed a convex combination by ulps
ABS = np.float32(1e-30)
NEG = np.float32(-np.inf)

# torch upsample_bilinear2d (align_corners=False) along input-size rows (y) and columns (x):
# source indices (int64 [2, n]: i0, i1) and weights (float64 [2, n]: w0, w1, float32 values);
# the column indices per pass [M, 2, n] (the second pass is read mirrored: w - 1 - i); fma: its
# AVX2/AVX512 kernel fuses multiply-adds.
Resize = namedtuple("Resize", "yidx yw xidx xw fma")
# Cells computed so far: maps: the network output [M, 2K, h, w] float32 itself (M = 2 with flip
# test: the second pass is the mirrored input's, read mirrored), chan [M, K] the channel of joint
# k's heat or tags in pass m (the flip index swaps left and right), slot [K, h, w] int32 (a cell's
# store row + 1; 0: not computed: _slot, _take_slot) into store [K*h*w, 1, HEAT_ROW] (heat: the
# mean of the M resized maps, then its maximum) or [K*h*w, M, TAG_ROW] (tags, then their minimum
# and maximum), count [K, COUNTERS] (USED: rows taken; joint k's are k*h*w onwards), scratch per
# joint pixels [K, M, 16] and rows [K, 4, 4] (3 used). Everything of a joint is its own, the
# counters and scratch on cache lines of their own: joints can be worked on by different threads
# at once.
Cache = namedtuple("Cache", "maps chan slot store count pixels rows")
# cell_heat [K, h, w], tile_heat [K, ny, nx]: upper bounds of the heat.
Grid = namedtuple("Grid", "resize heat tags cell_heat tile_heat")
# Filled as refine needs them: tag ranges (float32 [..., M]: min and max per tag dimension) of a
# block (4x4 tiles: over its cells' 3x3 low-resolution neighbourhoods), of a tile and of each of its
# cells (narrowed by the weight of the cell's own value, see _tile_boxes). Blocks: lo/hi
# [K, nby * nbx, M], done [K, nby * nbx], heat bound [K, nby * nbx]. Tiles: slot [K, ny, nx]
# (row + 1, as for the cells) into lo/hi [K * ny * nx, BOX_ROW, M] (its 16 cells, then the tile
# itself at BOX_TILE: a dense store, as for the cells; joint k's from k * ny * nx on), count
# [K, COUNTERS] (USED). centre: the least weight of a cell's own value in any of its resized
# pixels (float32).
RefineBounds = namedtuple("RefineBounds",
                          "block_lo block_hi block_done block_heat tile_slot tile_lo tile_hi tile_count centre")


# ------------------------------------------------------------------------------------ inputs

_ABS_BITS = np.uint32(0x7FFFFFFF)  # float32 bits less the sign: ordered as |value|; NaN/inf top


@njit(cache=True, nogil=True, inline="always")
def _max_abs_bits(values, top):
    """max(top, the largest float32 bit pattern less the sign in values): |value| as an integer,
    >= INF_BITS for a NaN or infinity."""
    bits = values.reshape(-1).view(np.uint32)
    for i in range(len(bits)):
        top = max(top, bits[np.uintp(i)] & _ABS_BITS)
    return top


@njit(cache=True, nogil=True, inline="always")
def _mean_mirrored(out, a, b):
    """out = (a + b mirrored) / 2 for [h, w] float32 arrays: the mean of the two passes' heat.
    Indices are unsigned: numba's handling of negative indices would keep the compiler from
    vectorising the loops."""
    h, w = out.shape
    o, x0, x1 = out.reshape(-1), a.reshape(-1), b.reshape(-1)
    for y in range(h):
        first = np.uintp(y * w)
        last = np.uintp(y * w + w - 1)
        for x in range(w):
            o[first + np.uintp(x)] = (x0[first + np.uintp(x)] + x1[last - np.uintp(x)]) / np.float32(2.0)


@njit(cache=True, nogil=True, inline="always")
def _max3(out, a, b, c):
    """out[x] = max(a[x], b[x], c[x]) for 1-D float32 arrays of one length."""
    for x in range(len(out)):
        out[np.uintp(x)] = max(max(a[np.uintp(x)], b[np.uintp(x)]), c[np.uintp(x)])


@njit(cache=True, nogil=True, inline="always")
def _dilate(cell, mean, rows, centre, slack):
    """cell = centre * mean + (1 - centre) * (max of mean [h, w] over each 3x3 neighbourhood,
    clipped at the edges) + slack, by way of rows [h, w]: the 3-wide row maxima."""
    h, w = mean.shape
    for y in range(h):
        src, dst = mean[y], rows[y]
        if w < 3:
            dst[:] = src.max()
            continue
        _max3(dst[1:w - 1], src[:w - 2], src[1:w - 1], src[2:])
        dst[0] = max(src[0], src[1])
        dst[w - 1] = max(src[w - 2], src[w - 1])
    other = np.float32(1.0) - centre
    for y in range(h):
        _max3(cell[y], rows[max(y - 1, 0)], rows[y], rows[min(y + 1, h - 1)])
        for x in range(w):
            cell[y, np.uintp(x)] = centre * mean[y, np.uintp(x)] + other * cell[y, np.uintp(x)] + slack


@njit(cache=True, nogil=True, inline="always")
def _tile_max(out, cells):
    """out [ceil(h/4), ceil(w/4)] = max of cells [h, w] over 4x4 blocks (clipped), by way of the
    column maxima of each band of 4 rows."""
    h, w = cells.shape
    band = np.empty(w, cells.dtype)
    for ty in range(out.shape[0]):
        y0 = ty * TILE
        for x in range(w):
            band[np.uintp(x)] = cells[y0, np.uintp(x)]
        for y in range(y0 + 1, min(h, y0 + TILE)):
            for x in range(w):
                band[np.uintp(x)] = max(band[np.uintp(x)], cells[y, np.uintp(x)])
        for tx in range(out.shape[1]):
            top = band[tx * TILE]
            for x in range(tx * TILE + 1, min(w, tx * TILE + TILE)):
                top = max(top, band[x])
            out[ty, tx] = top


@njit(cache=True, nogil=True)
def tile_max(cells):
    """Max of cells [K, h, w] over 4x4 blocks (clipped): [K, ceil(h/4), ceil(w/4)]."""
    K, h, w = cells.shape
    out = np.empty((K, -(-h // TILE), -(-w // TILE)), cells.dtype)
    for k in range(K):
        _tile_max(out[k], cells[k])
    return out


@njit(cache=True, nogil=True)
def prepare(out, joints, flip_index, centre, cell, tile, heat_slot, tag_slot):
    """For the listed joints of the network output out [M, 2K, h, w] (M = 2: the second pass is the
    mirrored input's, its left/right channels swapped by flip_index): the bounds of the mean heat
    per cell [K, h, w] and per tile [K, ny, nx], and the caches' slots emptied. A resized value is
    a convex combination of its cell's 3x3 neighbourhood in which the cell's own value weighs at
    least `centre`, in both passes with the same weights, so their mean is too: it is at most
    centre * own + (1 - centre) * the neighbourhood's maximum. The slack covers rounding, a few
    ulp of the joint's largest magnitude.
    Returns the largest |value| of the listed joints' channels as float32 bits (>= INF_BITS for
    a NaN or infinity), for the caller to check before any search."""
    M, C, h, w = out.shape
    K = C // 2
    largest = np.uint32(0)
    mean = np.empty((h, w), np.float32)
    rows = np.empty((h, w), np.float32)
    for k in joints:
        top = np.uint32(0)
        for m in range(M):
            source = k if m == 0 else flip_index[k]
            top = _max_abs_bits(out[m, source], top)
            top = _max_abs_bits(out[m, K + source], top)
        if M == 1:
            mean[:] = out[0, k]
        else:
            _mean_mirrored(mean, out[0, k], out[1, flip_index[k]])
        if top < np.uint32(INF_BITS):
            _dilate(cell[k], mean, rows, centre, REL * np.uint32(top).view(np.float32) + ABS)
            _tile_max(tile[k], cell[k])
        heat_slot[k] = 0
        tag_slot[k] = 0
        largest = max(largest, top)
    return largest


# ------------------------------------------------------------------------------ exact values

@njit(cache=True, nogil=True, inline="always")
def _lerp(a, b, w0, w1, w0d, fma):
    # torch's AVX2 build computes fma(a, w0, b*w1); a*w0 is exact in float64 (weights are k/8),
    # so one float64 sum rounded to float32 is that fused operation.
    if fma:
        return np.float32(np.float64(a) * w0d + np.float64(b * w1))
    return a * w0 + b * w1


@njit(cache=True, nogil=True, inline="always")
def _resize_cell(maps, m, c, yidx, yw, xidx, xw, fma, rows, k, cy, cx, out, o0, o1):
    """torch's resize of the low-resolution map maps[m, c] on one cell into out[o0, o1, :16]: each
    source row is resized horizontally once (into rows[k, :3]), then vertically: the per-pixel
    operations of its kernel."""
    y0, x0 = cy * CELL, cx * CELL
    base = yidx[0, y0]
    for r in range(yidx[1, y0 + CELL - 1] - base + 1):  # at most 3 source rows per cell
        for j in range(CELL):
            x = x0 + j
            rows[k, r, j] = _lerp(maps[m, c, base + r, xidx[m, 0, x]], maps[m, c, base + r, xidx[m, 1, x]],
                               np.float32(xw[0, x]), np.float32(xw[1, x]), xw[0, x], fma)
    for i in range(CELL):
        y = y0 + i
        a, b = yidx[0, y] - base, yidx[1, y] - base
        for j in range(CELL):
            out[o0, o1, i * CELL + j] = _lerp(rows[k, a, j], rows[k, b, j], np.float32(yw[0, y]), np.float32(yw[1, y]),
                                              yw[0, y], fma)


@njit(cache=True, nogil=True, inline="always")
def _slot(slots, k, cy, cx):
    """The store row of joint k's cell (cy, cx), computed (slots hold the row + 1; 0: not yet)."""
    return slots[k, cy, cx] - 1


@njit(cache=True, nogil=True, inline="always")
def _take_slot(slots, count, k, cy, cx):
    """The next free store row of joint k (its rows start at k times its number of cells), given
    to its cell (cy, cx)."""
    row = k * slots.shape[1] * slots.shape[2] + count[k, USED]
    count[k, USED] += 1
    slots[k, cy, cx] = row + 1
    return row


@njit(cache=True, nogil=True, inline="always")
def _pixel(y, x):
    """Where input-size pixel (y, x) lies in its cell's store row."""
    return (y % CELL) * CELL + x % CELL


# An interior cell (not on the map's outer ring) reads no clamped index: its pixels 0..3 along an
# axis mix the previous and own low-resolution values (0, 1) or the own and next ones (2, 3) with
# these weights of the first (torch's float32 source coordinates are exact multiples of 1/8;
# tests/hrnet/test_grouping.py checks them against grouping._axis).
_W0 = (np.float32(0.375), np.float32(0.125), np.float32(0.875), np.float32(0.625))


@njit(cache=True, nogil=True, inline="always")
def _row4(a, b, c, fma):
    """One source row (values a, b, c of the previous, own and next columns) resized on an interior
    cell's 4 columns."""
    w0, w1, w2, w3 = _W0
    return (_lerp(a, b, w0, w3, np.float64(w0), fma), _lerp(a, b, w1, w2, np.float64(w1), fma),
            _lerp(b, c, w2, w1, np.float64(w2), fma), _lerp(b, c, w3, w0, np.float64(w3), fma))


@njit(cache=True, nogil=True, inline="always")
def _resize_interior(src, off, w, r0, c0, c1, c2, fma, out, o0, o1):
    """_resize_cell on an interior cell with the weights written out: src the maps flat, the pass's
    map from offset off (rows of w), source rows r0..r0 + 2 and columns c0, c1, c2 (the previous,
    own and next in the pass's direction)."""
    w0, w1, w2, w3 = _W0
    row = off + np.uintp(r0) * np.uintp(w)
    a = _row4(src[row + np.uintp(c0)], src[row + np.uintp(c1)], src[row + np.uintp(c2)], fma)
    row += np.uintp(w)
    b = _row4(src[row + np.uintp(c0)], src[row + np.uintp(c1)], src[row + np.uintp(c2)], fma)
    row += np.uintp(w)
    c = _row4(src[row + np.uintp(c0)], src[row + np.uintp(c1)], src[row + np.uintp(c2)], fma)
    for j in range(CELL):
        out[o0, o1, j] = _lerp(a[j], b[j], w0, w3, np.float64(w0), fma)
        out[o0, o1, CELL + j] = _lerp(a[j], b[j], w1, w2, np.float64(w1), fma)
        out[o0, o1, 2 * CELL + j] = _lerp(b[j], c[j], w2, w1, np.float64(w2), fma)
        out[o0, o1, 3 * CELL + j] = _lerp(b[j], c[j], w3, w0, np.float64(w3), fma)


@njit(cache=True, nogil=True)
def fill(R, C, ks, cys, cxs, mean):
    """Compute the listed cells (joint, cell row, cell column) that are not cached yet, each into
    the next slot: with mean (the heat), the mean of the M resized maps and its maximum; else (the
    tags) each resized map and its minimum and maximum. One call for many cells: unpacking the
    tuples costs more than a cell."""
    maps, chan, slots, store, count, pixels, rows = C.maps, C.chan, C.slot, C.store, C.count, C.pixels, C.rows
    yidx, yw, xidx, xw, fma = R.yidx, R.yw, R.xidx, R.xw, R.fma
    M, _, h, w = maps.shape
    src = maps.reshape(-1)
    for i in range(len(ks)):
        k, cy, cx = ks[i], cys[i], cxs[i]
        if slots[k, cy, cx]:
            continue
        slot = _take_slot(slots, count, k, cy, cx)
        if 0 < cy < h - 1 and 0 < cx < w - 1:
            for m in range(M):  # (the second pass mirrored: its previous column is the next one)
                off = np.uintp((m * maps.shape[1] + chan[m, k]) * h * w)
                c0, c2 = (cx - 1, cx + 1) if m == 0 else (w - cx, w - 2 - cx)
                c1 = cx if m == 0 else w - 1 - cx
                if mean:
                    _resize_interior(src, off, w, cy - 1, c0, c1, c2, fma, pixels, k, m)
                else:
                    _resize_interior(src, off, w, cy - 1, c0, c1, c2, fma, store, slot, m)
        else:
            for m in range(M):  # (indices rather than row views: views cost more than a lerp)
                if mean:
                    _resize_cell(maps, m, chan[m, k], yidx, yw, xidx, xw, fma, rows, k, cy, cx, pixels, k, m)
                else:
                    _resize_cell(maps, m, chan[m, k], yidx, yw, xidx, xw, fma, rows, k, cy, cx, store, slot, m)
        if mean:
            top = NEG
            for p in range(PIXELS):
                v = pixels[k, 0, p] if M == 1 else (pixels[k, 0, p] + pixels[k, 1, p]) / np.float32(2.0)
                store[slot, 0, p] = v
                top = max(top, v)
            store[slot, 0, HEAT_MAX] = top
        else:
            for m in range(M):
                lo = hi = store[slot, m, 0]
                for p in range(1, PIXELS):
                    lo = min(lo, store[slot, m, p])
                    hi = max(hi, store[slot, m, p])
                store[slot, m, TAG_MIN], store[slot, m, TAG_MAX] = lo, hi


@njit(cache=True, nogil=True, inline="always")
def _cached(slots, store, k, y, x):
    """A cached input-size heat value (its cell must have been computed)."""
    return store[_slot(slots, k, y // CELL, x // CELL), 0, _pixel(y, x)]


@njit(cache=True, nogil=True)
def heat_at(g, ks, ys, xs):
    """Aggregated input-size heat at (joint, row, column) arrays of one length."""
    C = g.heat
    fill(g.resize, C, ks, ys // CELL, xs // CELL, True)
    slots, store = C.slot, C.store
    out = np.empty(len(ks), np.float32)
    for i in range(len(ks)):
        out[i] = _cached(slots, store, ks[i], ys[i], xs[i])
    return out


@njit(cache=True, nogil=True)
def tags_at(g, ks, ys, xs):
    """Input-size tags [n, M] at (joint, row, column) arrays of one length."""
    C = g.tags
    fill(g.resize, C, ks, ys // CELL, xs // CELL, False)
    slots, store = C.slot, C.store
    out = np.empty((len(ks), C.maps.shape[0]), np.float32)
    for i in range(len(ks)):
        out[i] = store[_slot(slots, ks[i], ys[i] // CELL, xs[i] // CELL), :, _pixel(ys[i], xs[i])]
    return out


@njit(cache=True, nogil=True)
def quarter_offsets(g, ks, ys, xs):
    """mmpose's adjustment at (joint, row, column) arrays of one length: +0.25 towards the higher
    of the left/right and of the upper/lower neighbours' heat, -0.25 when not higher (ties), as
    float32 (dx, dy)."""
    C = g.heat
    K, h, w = C.slot.shape
    width, height = w * CELL, h * CELL
    n = len(ks)
    nk, ny, nx = np.empty(4 * n, np.int64), np.empty(4 * n, np.int64), np.empty(4 * n, np.int64)
    for i in range(n):
        nk[4 * i:4 * i + 4] = ks[i]
        ny[4 * i], nx[4 * i] = ys[i], min(width - 1, xs[i] + 1)
        ny[4 * i + 1], nx[4 * i + 1] = ys[i], max(0, xs[i] - 1)
        ny[4 * i + 2], nx[4 * i + 2] = min(height - 1, ys[i] + 1), xs[i]
        ny[4 * i + 3], nx[4 * i + 3] = max(0, ys[i] - 1), xs[i]
    v = heat_at(g, nk, ny, nx)
    quarter = np.float32(0.25)
    dx, dy = np.empty(n, np.float32), np.empty(n, np.float32)
    for i in range(n):
        dx[i] = quarter if v[4 * i] > v[4 * i + 1] else -quarter
        dy[i] = quarter if v[4 * i + 2] > v[4 * i + 3] else -quarter
    return dx, dy


# ---------------------------------------------------------------------------- NMS and top-k

@njit(cache=True, nogil=True)
def _fill_above(R, C, k, cys, cxs, n, floor, halo, masks):
    """Compute the first n listed cells of joint k, keep (moved to the front; returns how many)
    those whose exact maximum is above floor, and compute the cells that the NMS windows of their
    candidate pixels reach (above floor, not below the cell's _centre_max): what _is_max reads.
    masks[i]: the candidate pixels of kept cell i (bit p: pixel p of the cell)."""
    fill(R, C, np.full(n, k, np.int64), cys[:n], cxs[:n], True)
    K, h, w = C.slot.shape
    slots, store = C.slot, C.store
    kept = 0
    for i in range(n):
        if store[_slot(slots, k, cys[i], cxs[i]), 0, HEAT_MAX] > floor:
            cys[kept], cxs[kept] = cys[i], cxs[i]
            kept += 1
    reach = -(-halo // CELL)  # the cells a window reaches beyond its own, each way
    span = (2 * reach + 1) ** 2
    ys = np.empty(kept * span, np.int64)
    xs = np.empty(kept * span, np.int64)
    m = 0
    for i in range(kept):
        cy, cx = cys[i], cxs[i]
        slot = _slot(slots, k, cy, cx)
        least = _centre_max(store, slot, halo)
        y0, y1, x0, x1 = CELL, -1, CELL, -1  # the candidates' rows and columns within the cell
        mask = 0
        for p in range(PIXELS):
            if _candidate(store, slot, p, floor, least, halo):
                y0, y1 = min(y0, p // CELL), max(y1, p // CELL)
                x0, x1 = min(x0, p % CELL), max(x1, p % CELL)
                mask |= 1 << p
        masks[i] = mask
        if y1 < 0:
            continue
        for yy in range(max(0, (cy * CELL + y0 - halo) // CELL), min(h, (cy * CELL + y1 + halo) // CELL + 1)):
            for xx in range(max(0, (cx * CELL + x0 - halo) // CELL), min(w, (cx * CELL + x1 + halo) // CELL + 1)):
                if not slots[k, yy, xx]:
                    ys[m], xs[m] = yy, xx
                    m += 1
    fill(R, C, np.full(m, k, np.int64), ys[:m], xs[:m], True)  # (fill skips repeats)
    return kept


@njit(cache=True, nogil=True, inline="always")
def _centre_max(store, slot, halo):
    """The largest of a cell's centre 2x2 values: with halo >= 2 they lie in the NMS window of every
    pixel of the cell, so a pixel below it is no maximum (-inf otherwise: rules out nothing)."""
    if halo < 2:
        return NEG
    a, b, c, d = CENTRE
    return max(max(store[slot, 0, a], store[slot, 0, b]), max(store[slot, 0, c], store[slot, 0, d]))


@njit(cache=True, nogil=True, inline="always")
def _candidate(store, slot, p, floor, least, halo):
    """Whether pixel p of a cell (store row slot) is worth _is_max: above floor, not below the
    cell's _centre_max `least` and, with a window wider than the pixel, not below a nearest
    neighbour within the cell (both lie in its window). The one rule: _fill_above applies it (its
    masks) and computes the cells that _is_max will read for exactly these pixels; the searches
    test only those."""
    v = store[slot, 0, p]
    if not (v > floor and v >= least):
        return False
    if halo == 0:
        return True
    i, j = p // CELL, p % CELL
    return not ((i > 0 and store[slot, 0, p - CELL] > v) or (j > 0 and store[slot, 0, p - 1] > v)
                or (j < CELL - 1 and store[slot, 0, p + 1] > v) or (i < CELL - 1 and store[slot, 0, p + CELL] > v))


@njit(cache=True, nogil=True, inline="always")
def _is_max(slots, store, k, y, x, v, halo):
    """MaxPool(2*halo+1, stride 1, padding -inf) of the cached heat equals v at (y, x) (for
    _candidate pixels only: their windows' cells are computed)."""
    height, width = slots.shape[1] * CELL, slots.shape[2] * CELL
    if halo > 0:  # the four nearest first: on a slope one of them is higher
        if (y > 0 and _cached(slots, store, k, y - 1, x) > v) or (x > 0 and _cached(slots, store, k, y, x - 1) > v) \
                or (x + 1 < width and _cached(slots, store, k, y, x + 1) > v) \
                or (y + 1 < height and _cached(slots, store, k, y + 1, x) > v):
            return False
    for yy in range(max(0, y - halo), min(height, y + halo + 1)):
        for xx in range(max(0, x - halo), min(width, x + halo + 1)):
            if _cached(slots, store, k, yy, xx) > v:
                return False
    return True


_LEVELS = 32  # bound levels of _maxima_above's best-first visit
_BATCH = 64  # cells at least per step of it, but for the last


@njit(cache=True, nogil=True)
def _maxima_above(R, C, bound, k, thr, halo, enough):
    """(flat indices, values) of joint k's NMS maxima with heat > thr, given the heat bound per
    cell [h, w]: the `enough` largest of them at least (all of them when there are no more).
    Cells are visited by descending bound, a level (an equal part of the range of bounds) at a
    time, until `enough` maxima are found and the least of the `enough` largest exceeds every
    bound left: no maximum in a cell not visited could be among them or equal one of them
    (crowded scenes: most cells above the threshold are never computed)."""
    h, w = bound.shape
    width = w * CELL
    cells = np.empty(h * w, np.int64)  # those above the threshold, as cy * w + cx
    n = 0
    highest = thr
    for cy in range(h):
        for cx in range(w):
            if bound[cy, cx] > thr:
                cells[n] = cy * w + cx
                highest = max(highest, bound[cy, cx])
                n += 1
    # by level, highest first (a counting sort: the order within a level does not matter);
    # level_top: the highest bound of the level and those after it
    level_start = np.zeros(_LEVELS + 1, np.int64)
    level_top = np.full(_LEVELS, NEG)
    level_of = np.zeros(n, np.int64)
    if n > 2 * _BATCH:  # (else one step for all)
        scale = np.float64(_LEVELS) / (np.float64(highest) - np.float64(thr))
        for i in range(n):
            b = bound[cells[i] // w, cells[i] % w]
            level_of[i] = min(_LEVELS - 1, int((np.float64(highest) - np.float64(b)) * scale))
            level_top[level_of[i]] = max(level_top[level_of[i]], b)
    for i in range(n):
        level_start[level_of[i] + 1] += 1
    for level in range(_LEVELS):
        level_start[level + 1] += level_start[level]
    for level in range(_LEVELS - 2, -1, -1):
        level_top[level] = max(level_top[level], level_top[level + 1])
    cys = np.empty(n, np.int64)
    cxs = np.empty(n, np.int64)
    at = level_start[:_LEVELS].copy()
    for i in range(n):
        cys[at[level_of[i]]], cxs[at[level_of[i]]] = cells[i] // w, cells[i] % w
        at[level_of[i]] += 1
    slots, store = C.slot, C.store
    flat = np.empty(n * PIXELS, np.int64)
    vals = np.empty(n * PIXELS, np.float32)
    largest = np.full(enough, NEG)  # the `enough` largest values found, ascending
    masks = np.empty(n, np.int64)
    found = level = 0
    while level < _LEVELS and not (found >= enough and largest[0] > level_top[level]):
        a = level_start[level]
        level += 1
        while level < _LEVELS and level_start[level] - a < _BATCH:  # (few calls: each allocates)
            level += 1
        b = level_start[level]
        m = _fill_above(R, C, k, cys[a:b], cxs[a:b], b - a, thr, halo, masks) if b > a else 0
        for i in range(a, a + m):
            slot = _slot(slots, k, cys[i], cxs[i])
            for p in range(PIXELS):
                if masks[i - a] >> p & 1:  # (a _candidate)
                    v = store[slot, 0, p]
                    y, x = cys[i] * CELL + p // CELL, cxs[i] * CELL + p % CELL
                    if _is_max(slots, store, k, y, x, v, halo):
                        flat[found] = y * width + x
                        vals[found] = v
                        found += 1
                        if v > largest[0]:
                            j = 0
                            while j + 1 < enough and largest[j + 1] < v:
                                largest[j] = largest[j + 1]
                                j += 1
                            largest[j] = v
    return flat[:found], vals[:found]


@njit(cache=True, nogil=True)
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


@njit(cache=True, nogil=True)
def _make_heap(hv, hi):
    n = len(hv)
    for parent in range((n - 2) // 2, -1, -1):  # std::make_heap
        _adjust_heap(hv, hi, parent, n, hv[parent], hi[parent])


@njit(cache=True, nogil=True)
def _sort_heap(hv, hi):
    for last in range(len(hv) - 1, 0, -1):  # std::sort_heap
        v, i = hv[last], hi[last]
        hv[last], hi[last] = hv[0], hi[0]
        _adjust_heap(hv, hi, 0, last, v, i)


@njit(cache=True, nogil=True)
def topk_1d(values, k):
    """torch.topk(values, k) of a 1-D CPU tensor with k*64 <= len: std::partial_sort with
    `a > b` (heap select, then heap sort): (indices, values), equal values in torch's order."""
    hv = values[:k].copy()
    hi = np.arange(k)
    _make_heap(hv, hi)
    for i in range(k, len(values)):
        if values[i] > hv[0]:
            _adjust_heap(hv, hi, 0, k, values[i], i)
    _sort_heap(hv, hi)
    return hi, hv


@njit(cache=True, nogil=True)
def _topk_replay(R, C, bound, k, top, halo):
    """topk_1d of joint k's whole NMS map (heat where it is its window's maximum, else 0),
    replayed in index order, a row of cells at a time. Once the heap minimum is >= 0, zeros
    cannot enter, and neither can anything in a cell whose heat bound is <= that minimum: such
    cells are neither computed nor scanned."""
    h, w = bound.shape
    width = w * CELL
    slots, store = C.slot, C.store
    live_y = np.empty(w, np.int64)
    live_x = np.empty(w, np.int64)
    live_slot = np.empty(w, np.int64)
    masks = np.empty(w, np.int64)
    hv = np.empty(top, np.float32)
    hi = np.empty(top, np.int64)
    filled = 0
    for cy in range(h):
        n = 0
        for cx in range(w):  # the minimum only grows: what it rules out now stays ruled out
            if filled < top or hv[0] < 0 or bound[cy, cx] > hv[0]:
                live_y[n], live_x[n] = cy, cx
                n += 1
        low = hv[0] if filled == top and hv[0] >= 0 else NEG  # below it, only zeros can enter
        n = _fill_above(R, C, k, live_y, live_x, n, low, halo, masks)  # (kept in column order)
        for c in range(n):
            live_slot[c] = _slot(slots, k, cy, live_x[c])
        for i in range(CELL):
            y = cy * CELL + i
            for c in range(n):
                slot, cx = live_slot[c], live_x[c]
                row = masks[c] >> (i * CELL) & (1 << CELL) - 1  # the row's candidates above low
                if row == 0 and filled == top and hv[0] >= 0:
                    continue
                for j in range(CELL):
                    x = cx * CELL + j
                    v = store[slot, 0, i * CELL + j]
                    if filled < top or hv[0] < 0:
                        # (the mask's floor is -inf here: the row began with the heap below 0 or not full)
                        is_max = (row >> j & 1) != 0 and _is_max(slots, store, k, y, x, v, halo)
                        nms = v if is_max else np.float32(0.0)
                        if filled < top:
                            hv[filled] = nms
                            hi[filled] = y * width + x
                            filled += 1
                            if filled == top:
                                _make_heap(hv, hi)
                        elif nms > hv[0]:
                            _adjust_heap(hv, hi, 0, top, nms, y * width + x)
                    elif row >> j & 1 and v > hv[0] and _is_max(slots, store, k, y, x, v, halo):
                        # (a _candidate above hv[0]: the mask's floor low <= hv[0])
                        _adjust_heap(hv, hi, 0, top, v, y * width + x)
    _sort_heap(hv, hi)
    return hi, hv


@njit(cache=True, nogil=True)
def detect(g, joints, thr, halo, top, replay):
    """mmpose's top_k on the NMS maps of the listed joints, kept above the detection threshold: per
    joint, flat indices and values [K, top] in torch.topk's order, counts [K] (0 for joints not
    listed) and whether the joint needs the replay [K].

    The top+1 largest maxima above the threshold are found on the cells whose bound reaches it,
    best bound first (_maxima_above); their order is the sorted one unless equal values (border plateaus: the resize clamps, so the two outermost
    rows and columns are equal) fall within the first top+1, in which case which of them make the
    cut and their order are std::partial_sort's, replayed on the whole NMS map: with replay, at
    once; without, such joints are only flagged (to be spread over threads in a second pass)."""
    R, C, cell_heat = g.resize, g.heat, g.cell_heat
    K = cell_heat.shape[0]
    out_flat = np.zeros((K, top), np.int64)
    out_val = np.zeros((K, top), np.float32)
    counts = np.zeros(K, np.int64)
    tied = np.zeros(K, np.bool_)
    for k in joints:
        if replay:
            flat, vals = _topk_replay(R, C, cell_heat[k], k, top, halo)
            order = np.arange(top)
        else:
            flat, vals = _maxima_above(R, C, cell_heat[k], k, thr, halo, top + 1)  # (the tie check's top + 1)
            if len(flat) == 0:
                continue
            order = np.argsort(-vals)
            for i in range(1, min(len(order), top + 1)):
                if vals[order[i]] == vals[order[i - 1]]:
                    tied[k] = True
                    break
            if tied[k]:
                continue
        n = 0
        for i in range(min(len(order), top)):
            v = vals[order[i]]
            if v > thr:
                out_flat[k, n] = flat[order[i]]
                out_val[k, n] = v
                n += 1
        counts[k] = n
    return out_flat, out_val, counts, tied


# ---------------------------------------------------------------------------------- refine

@njit(cache=True, nogil=True, inline="always")
def _upper_from(heat, sq, span):
    """Upper bound of `heat - round(d)` given a lower bound sqrt(sq) of the distance d, over tags
    and person tags of magnitude up to span (float32 throughout: the slack covers its rounding)."""
    dist = np.sqrt(sq)
    dist = max(dist - REL * (np.float32(1.0) + dist + span), np.float32(0.0))
    upper = heat - np.rint(dist)
    return upper + REL * abs(upper) + ABS


@njit(cache=True, nogil=True, inline="always")
def _add_gap(sq, span, a, b, p):
    """One tag dimension of a bound: the squared gap from p to the range [a, b] is added to sq;
    span keeps the largest magnitude involved (for the slack)."""
    gap = max(max(a - p, p - b), np.float32(0.0))
    return sq + gap * gap, max(span, abs(p), abs(a), abs(b))


@njit(cache=True, nogil=True, inline="always")
def _upper(heat, lo, hi, i, j, prev):
    """Upper bound of `heat - round(||tag - prev||)` over the box of tags lo/hi[i, j, :]."""
    sq = span = np.float32(0.0)
    for m in range(len(prev)):
        sq, span = _add_gap(sq, span, lo[i, j, m], hi[i, j, m], prev[m])
    return _upper_from(heat, sq, span)


@njit(cache=True, nogil=True, inline="always")
def _upper_cell(heat, hs, tags, ts, prev):
    """_upper from a computed cell's own ranges: heat[hs, 0, HEAT_MAX] and tags[ts, :, TAG_MIN]
    to tags[ts, :, TAG_MAX] of the stores."""
    sq = span = np.float32(0.0)
    for m in range(len(prev)):
        sq, span = _add_gap(sq, span, tags[ts, m, TAG_MIN], tags[ts, m, TAG_MAX], prev[m])
    return _upper_from(heat[hs, 0, HEAT_MAX], sq, span)


@njit(cache=True, nogil=True, inline="always")
def _tag_box(T, k, cy0, cy1, cx0, cx1, lo, hi, i, j):
    """lo/hi[i, j, :] = range of joint k's tags (cache T) over the 3x3 neighbourhoods of the cells
    in rows [cy0, cy1) and columns [cx0, cx1): the low-resolution window one wider, clipped (the
    second pass mirrored)."""
    tags = T.maps
    h, w = tags.shape[2], tags.shape[3]
    for m in range(tags.shape[0]):
        src = tags[m, T.chan[m, k]]
        x0, x1 = max(0, cx0 - 1), min(w, cx1 + 1)
        if m == 1:
            x0, x1 = w - x1, w - x0
        a = b = src[max(0, cy0 - 1), x0]
        for y in range(max(0, cy0 - 1), min(h, cy1 + 1)):
            row = src[y]
            for x in range(x1 - x0):  # unsigned indices: the compiler vectorises the loop
                v = row[np.uintp(x0 + x)]
                a = min(a, v)
                b = max(b, v)
        lo[i, j, m] = a
        hi[i, j, m] = b


@njit(cache=True, nogil=True)
def _tile_boxes(T, k, ty, tx, r, window, rows_lo, rows_hi):
    """Tag ranges of one tile's cells and of the tile (joint k's tags, cache T, the second pass
    mirrored), into its next slot. A cell's resized tags lie in its 3x3 neighbourhood's range
    [lo, hi] and, as the cell's own value t weighs at least r.centre, in [centre t + (1 - centre)
    lo, centre t + (1 - centre) hi] (less and plus rounding slack). The tile's window (its cells
    and one more all round, edge values repeated past the map: window [6, 6]) is read once, then
    ranged over 3 columns (rows_lo/hi [6, 4]) and 3 of those rows. Cells past the map's edge get
    ranges too, unused. Returns the slot."""
    tags = T.maps
    h, w = tags.shape[2], tags.shape[3]
    slot = _take_slot(r.tile_slot, r.tile_count, k, ty, tx)
    lo, hi = r.tile_lo[slot], r.tile_hi[slot]
    cy0, cx0 = ty * TILE, tx * TILE
    other = np.float32(1.0) - r.centre
    for m in range(tags.shape[0]):
        src = tags[m, T.chan[m, k]]
        mirror = w - 1 if m == 1 else 0  # column x of the pass is column |mirror - x| of src
        for i in range(TILE + 2):
            y = min(max(cy0 - 1 + i, 0), h - 1)
            for j in range(TILE + 2):
                window[i, j] = src[y, abs(mirror - min(max(cx0 - 1 + j, 0), w - 1))]
        for i in range(TILE + 2):
            for j in range(TILE):
                a, b, c = window[i, j], window[i, j + 1], window[i, j + 2]
                rows_lo[i, j] = min(min(a, b), c)
                rows_hi[i, j] = max(max(a, b), c)
        lo_t = hi_t = window[1, 1]
        for i in range(TILE):
            for j in range(TILE):
                a = min(min(rows_lo[i, j], rows_lo[i + 1, j]), rows_lo[i + 2, j])
                b = max(max(rows_hi[i, j], rows_hi[i + 1, j]), rows_hi[i + 2, j])
                own = r.centre * window[i + 1, j + 1]
                slack = REL * max(abs(own), abs(a), abs(b)) + ABS
                a = max(a, own + other * a - slack)
                b = min(b, own + other * b + slack)
                lo[i * TILE + j, m], hi[i * TILE + j, m] = a, b
                if cy0 + i < h and cx0 + j < w:
                    lo_t = min(lo_t, a)
                    hi_t = max(hi_t, b)
        lo[BOX_TILE, m], hi[BOX_TILE, m] = lo_t, hi_t
    return slot


@njit(cache=True, nogil=True, inline="always")
def _refine_cell(heat, hs, tags, ts, cy, cx, width, prev, best, best_flat):
    """Exact `heat - round(||tag - prev||)` on one cell (heat[hs, 0, :16], tags[ts, :, :16] of the
    stores: indices, as views would cost reference counting), with mmpose's float32 ops (square,
    sum over the tag dimensions, sqrt, round); returns the running (max, first row-major argmax)."""
    if _upper_cell(heat, hs, tags, ts, prev) < best:  # the cell's exact ranges are tighter than its 3x3 box
        return best, best_flat
    top = NEG
    for p in range(PIXELS):  # the cell's maximum first (a loop the compiler vectorises)
        sq = np.float32(0.0)
        for m in range(len(prev)):
            d = tags[ts, m, p] - prev[m]
            sq = d * d if m == 0 else sq + d * d
        top = max(top, heat[hs, 0, p] - np.rint(np.sqrt(sq)))
    if top < best:
        return best, best_flat
    for p in range(PIXELS):
        sq = np.float32(0.0)
        for m in range(len(prev)):
            d = tags[ts, m, p] - prev[m]
            sq = d * d if m == 0 else sq + d * d
        v = heat[hs, 0, p] - np.rint(np.sqrt(sq))
        flat = (cy * CELL + p // CELL) * width + cx * CELL + p % CELL
        if v > best or (v == best and flat < best_flat):
            best, best_flat = v, flat
    return best, best_flat


@njit(cache=True, nogil=True, inline="always")
def _sort_desc(bound, ids, n):
    """Insertion sort of the first n (bound, id) pairs by descending bound."""
    for i in range(1, n):
        b, j = bound[i], ids[i]
        pos = i
        while pos > 0 and bound[pos - 1] < b:
            bound[pos], ids[pos] = bound[pos - 1], ids[pos - 1]
            pos -= 1
        bound[pos], ids[pos] = b, j


@njit(cache=True, nogil=True)
def _refine_cells(R, H, T, cell_heat, k, cells, n, prev, best, best_flat, bound, order):
    """_refine_cell over the first n listed cells (cy * w + cx) of joint k: those computed first,
    by descending bound from their exact ranges (the best first prunes the rest), then the others
    whose heat bound still reaches the best value, computed now. (Ties between cells are settled
    by position, whatever the order.) bound, order: scratch of n at least."""
    hslot, hstore, tslot, tstore = H.slot, H.store, T.slot, T.store
    w = hslot.shape[2]
    for new in range(2):
        m = 0
        for i in range(n):
            cy, cx = cells[i] // w, cells[i] % w
            known = hslot[k, cy, cx] != 0 and tslot[k, cy, cx] != 0
            if new == 0 and known:
                upper = _upper_cell(hstore, _slot(hslot, k, cy, cx), tstore, _slot(tslot, k, cy, cx), prev)
                if upper >= best:
                    bound[m], order[m] = upper, cells[i]
                    m += 1
            elif new == 1 and not known and cell_heat[k, cy, cx] >= best:
                order[m] = cells[i]
                m += 1
        if new == 1:
            if m == 0:
                break
            ks = np.full(m, k, np.int64)
            fill(R, H, ks, order[:m] // w, order[:m] % w, True)
            fill(R, T, ks, order[:m] // w, order[:m] % w, False)
            for i in range(m):
                cy, cx = order[i] // w, order[i] % w
                bound[i] = _upper_cell(hstore, _slot(hslot, k, cy, cx), tstore, _slot(tslot, k, cy, cx), prev)
        _sort_desc(bound, order, m)
        for i in range(m):
            if bound[i] < best:
                break
            cy, cx = order[i] // w, order[i] % w
            best, best_flat = _refine_cell(hstore, _slot(hslot, k, cy, cx), tstore, _slot(tslot, k, cy, cx),
                                           cy, cx, w * CELL, prev, best, best_flat)
    return best, best_flat


@njit(cache=True, nogil=True)
def refine_queries(g, keypoints, joint_start, cand_x, cand_y):
    """The queries of mmpose's refine for keypoints [P, K, >= 3] (x, y, val: input-size pixels): one
    per person and joint it misses (val 0) whose map has some heat above 0 (else nothing could be
    kept). Returns (person, joint) of each query, the person's tag prev [n, M] (mean of the tags at
    its joints' pixels, coordinates truncated, as numpy's np.mean), and its seed cells (cy * w + cx)
    seed_cells[seed_start[q]:seed_start[q + 1]]: the cells of the person's own joints (its tags are
    there), then those of the joint's detections (the candidates joint_start[k]:joint_start[k + 1]
    of cand_x/cand_y: the hottest places of its map)."""
    K, h, w = g.cell_heat.shape
    width, height = w * CELL, h * CELL
    P = keypoints.shape[0]
    # the pixels of every person's joints, and the queries: both in row-major order (np.nonzero)
    own_k, own_y, own_x = np.empty(P * K, np.int64), np.empty(P * K, np.int64), np.empty(P * K, np.int64)
    own_start = np.zeros(P + 1, np.int64)
    people, joints = np.empty(P * K, np.int64), np.empty(P * K, np.int64)
    hot = np.zeros(K, np.bool_)
    for k in range(K):
        hot[k] = g.tile_heat[k].max() > 0
    j = n = 0
    for i in range(P):
        for k in range(K):
            if keypoints[i, k, 2] > 0:
                own_k[j] = k
                own_x[j] = min(max(np.int64(keypoints[i, k, 0]), 0), width - 1)  # (truncation, as astype)
                own_y[j] = min(max(np.int64(keypoints[i, k, 1]), 0), height - 1)
                j += 1
            elif keypoints[i, k, 2] == 0 and hot[k]:
                people[n], joints[n] = i, k
                n += 1
        own_start[i + 1] = j
    person_tag = group_means(tags_at(g, own_k[:j], own_y[:j], own_x[:j]), own_start)
    people, joints = people[:n], joints[:n]
    prev = np.empty((n, person_tag.shape[1]), np.float32)
    seed_start = np.zeros(n + 1, np.int64)
    for q in range(n):
        i, k = people[q], joints[q]
        prev[q] = person_tag[i]
        seed_start[q + 1] = seed_start[q] + (own_start[i + 1] - own_start[i]) + (joint_start[k + 1] - joint_start[k])
    seed_cells = np.empty(seed_start[n], np.int64)
    for q in range(n):
        i, k = people[q], joints[q]
        s = seed_start[q]
        for j in range(own_start[i], own_start[i + 1]):
            seed_cells[s] = (own_y[j] // CELL) * w + own_x[j] // CELL
            s += 1
        for j in range(joint_start[k], joint_start[k + 1]):
            seed_cells[s] = (cand_y[j] // CELL) * w + cand_x[j] // CELL
            s += 1
    return people, joints, prev, seed_start, seed_cells


@njit(cache=True, nogil=True)
def refine_apply(g, keypoints, people, joints, flat):
    """mmpose's refine result into keypoints [P, K, >= 3]: each query's argmax (a flat input-size
    index) is kept where its heat is above 0, at the pixel's centre plus the +-0.25 adjustment
    (float64 sums, stored as float32), with that heat."""
    K, h, w = g.cell_heat.shape
    width = w * CELL
    n = len(flat)
    ys, xs = np.empty(n, np.int64), np.empty(n, np.int64)
    for q in range(n):
        ys[q], xs[q] = flat[q] // width, flat[q] % width
    vals = heat_at(g, joints, ys, xs)
    take = np.flatnonzero(vals > 0)
    dx, dy = quarter_offsets(g, joints[take], ys[take], xs[take])
    for j in range(len(take)):
        q = take[j]
        i, k = people[q], joints[q]
        keypoints[i, k, 0] = np.float32(np.float64(xs[q]) + np.float64(0.5) + np.float64(dx[j]))
        keypoints[i, k, 1] = np.float32(np.float64(ys[q]) + np.float64(0.5) + np.float64(dy[j]))
        keypoints[i, k, 2] = vals[q]


@njit(cache=True, nogil=True)
def refine_argmax(g, r, queries, joints, prev, seed_start, seed_cells):
    """Flat input-size index of the row-major first argmax of `heat - round(||tag - prev||)`
    for each listed query (of n: a joint, a person tag prev [n, M]); -1 for the others.

    Branch and bound: the seed cells (query q's are seed_cells[seed_start[q]:seed_start[q+1]],
    as cy * w + cx: where the person's other joints are, so tags match, and the joint's detections)
    give a lower bound; then
    blocks, their tiles and the tiles' cells are visited by descending bound, each level stopping
    at the first bound below the best value so far. What is skipped cannot reach the maximum, so
    every pixel attaining it is evaluated and the first in row-major order is exact. A block's
    bound is its heat bound until it is first visited, then also its tag range's."""
    R, H, T, cell_heat, tile_heat = g.resize, g.heat, g.tags, g.cell_heat, g.tile_heat
    K, h, w = cell_heat.shape
    ny, nx = tile_heat.shape[1], tile_heat.shape[2]
    block_heat, block_lo, block_hi, block_done = r.block_heat, r.block_lo, r.block_hi, r.block_done
    tile_slot, tile_lo, tile_hi = r.tile_slot, r.tile_lo, r.tile_hi
    nbx = -(-nx // TILE)
    blocks = block_heat.shape[1]
    side = TILE * TILE
    out = np.full(len(joints), -1, np.int64)
    block_bound = np.empty(blocks, np.float32)
    block_id = np.empty(blocks, np.int64)
    window = np.empty((TILE + 2, TILE + 2), np.float32)
    rows_lo = np.empty((TILE + 2, TILE), np.float32)
    rows_hi = np.empty((TILE + 2, TILE), np.float32)
    tile_bound = np.empty(TILE * TILE, np.float32)
    tile_id = np.empty(TILE * TILE, np.int64)
    cell_bound = np.empty(TILE * TILE, np.float32)
    cell_id = np.empty(TILE * TILE, np.int64)
    most = TILE * TILE
    for q in queries:
        most = max(most, seed_start[q + 1] - seed_start[q])
    seed_bound = np.empty(most, np.float32)
    seed_id = np.empty(most, np.int64)
    for q in queries:
        k = joints[q]
        p = prev[q]
        seeds = seed_cells[seed_start[q]:seed_start[q + 1]]
        best, best_flat = _refine_cells(R, H, T, cell_heat, k, seeds, len(seeds), p, NEG, np.int64(-1),
                                        seed_bound, seed_id)
        # (a heat bound below best prunes without the tag part: the values are heat - round(d) <=
        # heat, exactly so in float32, and the heat bounds carry the rounding slack)
        n = 0  # the blocks not pruned by the seeds
        for b in range(blocks):
            if block_heat[k, b] >= best:
                block_bound[n] = block_heat[k, b]
                if block_done[k, b]:
                    block_bound[n] = _upper(block_heat[k, b], block_lo, block_hi, k, b, p)
                block_id[n] = b
                n += 1
        for j in range(n):
            top = j  # selection sort, lazily: most blocks are pruned
            for c in range(j + 1, n):
                if block_bound[c] > block_bound[top]:
                    top = c
            block_bound[j], block_bound[top] = block_bound[top], block_bound[j]
            block_id[j], block_id[top] = block_id[top], block_id[j]
            if block_bound[j] < best:
                break
            b = block_id[j]
            by, bx = b // nbx, b % nbx
            if not block_done[k, b]:
                _tag_box(T, k, by * side, min(h, by * side + side), bx * side, min(w, bx * side + side),
                         block_lo, block_hi, k, b)
                block_done[k, b] = 1
                if _upper(block_heat[k, b], block_lo, block_hi, k, b, p) < best:
                    continue
            t = 0
            for ty in range(by * TILE, min(ny, by * TILE + TILE)):
                for tx in range(bx * TILE, min(nx, bx * TILE + TILE)):
                    if tile_heat[k, ty, tx] < best:
                        continue
                    slot = _slot(tile_slot, k, ty, tx)
                    if slot < 0:
                        slot = _tile_boxes(T, k, ty, tx, r, window, rows_lo, rows_hi)
                    tile_bound[t] = _upper(tile_heat[k, ty, tx], tile_lo, tile_hi, slot, BOX_TILE, p)
                    tile_id[t] = ty * nx + tx
                    t += 1
            _sort_desc(tile_bound, tile_id, t)
            for a in range(t):
                if tile_bound[a] < best:
                    break
                ty, tx = tile_id[a] // nx, tile_id[a] % nx
                slot = _slot(tile_slot, k, ty, tx)
                c = 0
                for cy in range(ty * TILE, min(h, ty * TILE + TILE)):
                    for cx in range(tx * TILE, min(w, tx * TILE + TILE)):
                        if cell_heat[k, cy, cx] < best:
                            continue
                        bound = _upper(cell_heat[k, cy, cx], tile_lo, tile_hi, slot, (cy % TILE) * TILE + cx % TILE, p)
                        if bound >= best:
                            cell_bound[c], cell_id[c] = bound, cy * w + cx
                            c += 1
                _sort_desc(cell_bound, cell_id, c)
                while c and cell_bound[c - 1] < best:  # raised by earlier cells of this tile
                    c -= 1
                best, best_flat = _refine_cells(R, H, T, cell_heat, k, cell_id, c, p, best, best_flat,
                                                seed_bound, seed_id)
        out[q] = best_flat
    return out


# ------------------------------------------------------------------------------ assignment

@njit(cache=True, nogil=True, inline="always")
def _last_zero(C, col_covered, i, a, b):
    """The last column j in [a, b) with C[i, j] == 0 not covered, or -1."""
    for j in range(b - 1, a - 1, -1):
        if C[i, j] == 0 and not col_covered[j]:
            return j
    return -1


@njit(cache=True, nogil=True)
def _find_a_zero(C, row_covered, col_covered, i0, j0):
    # munkres 1.1.4 scans rows from i0 (wrapping), each row from j0 (wrapping) to its end, and
    # keeps the last uncovered zero of the first row that has one.
    n = C.shape[0]
    i = i0
    while True:
        if not row_covered[i]:
            col = _last_zero(C, col_covered, i, 0, j0)  # (scanned after [j0, n))
            if col < 0:
                col = _last_zero(C, col_covered, i, j0, n)
            if col >= 0:
                return i, col
        i = (i + 1) % n
        if i == i0:
            return -1, -1


@njit(cache=True, nogil=True)
def munkres(cost):
    """munkres 1.1.4's Munkres().compute(cost) on a float64 [rows, cols] matrix, step for step
    (its tie-breaking decides crowded scenes): the (row, col) pairs [p, 2] in row-major order.
    Its marks are kept as the starred column of each row and row of each column and the primed
    column of each row (a row or column holds one star at most, a row one prime): what it finds
    by scanning the marked matrix. tests/hrnet/test_grouping.py checks it against the library
    on tie-heavy matrices."""
    rows, cols = cost.shape
    n = max(rows, cols)
    C = np.zeros((n, n))  # zero padding to square
    C[:rows, :cols] = cost
    row_covered = np.zeros(n, np.bool_)
    col_covered = np.zeros(n, np.bool_)
    row_star = np.full(n, -1, np.int64)
    col_star = np.full(n, -1, np.int64)
    row_prime = np.full(n, -1, np.int64)
    path = np.zeros((2 * n + 1, 2), np.int64)
    for i in range(n):  # step 1
        C[i] -= C[i].min()
    for i in range(n):  # step 2
        for j in range(n):
            if C[i, j] == 0 and not col_covered[j] and not row_covered[i]:
                row_star[i], col_star[j] = j, i
                col_covered[j] = True
                row_covered[i] = True
                break
    row_covered[:] = False
    col_covered[:] = False
    while True:
        count = 0  # step 3 (every line is uncovered here)
        for j in range(n):
            if col_star[j] >= 0:
                col_covered[j] = True
                count += 1
        if count >= n:
            break
        row = col = 0  # step 4 (with step 6 until a path can be made)
        while True:
            row, col = _find_a_zero(C, row_covered, col_covered, row, col)
            if row < 0:
                smallest = np.float64(9223372036854775807)  # sys.maxsize
                for i in range(n):
                    if not row_covered[i]:
                        for j in range(n):
                            if not col_covered[j] and smallest > C[i, j]:
                                smallest = C[i, j]
                for i in range(n):  # step 6: two operations, as there, for their rounding
                    for j in range(n):
                        if row_covered[i]:
                            C[i, j] += smallest
                        if not col_covered[j]:
                            C[i, j] -= smallest
                row = col = 0
                continue
            row_prime[row] = col
            star = row_star[row]
            if star < 0:
                break
            col = star
            row_covered[row] = True
            col_covered[col] = False
        count = 0  # step 5: primes (even places) and stars (odd places) alternate on the path
        path[0, 0], path[0, 1] = row, col
        while col_star[path[count, 1]] >= 0:
            count += 1
            path[count, 0], path[count, 1] = col_star[path[count - 1, 1]], path[count - 1, 1]
            count += 1
            path[count, 0], path[count, 1] = path[count - 1, 0], row_prime[path[count - 1, 0]]
        for i in range(1, count + 1, 2):  # its stars unstarred, then its primes starred
            row_star[path[i, 0]] = col_star[path[i, 1]] = -1
        for i in range(0, count + 1, 2):
            row_star[path[i, 0]], col_star[path[i, 1]] = path[i, 1], path[i, 0]
        row_covered[:] = False
        col_covered[:] = False
        row_prime[:] = -1
    pairs = np.empty((rows, 2), np.int64)
    p = 0
    for i in range(rows):
        if 0 <= row_star[i] < cols:
            pairs[p, 0], pairs[p, 1] = i, row_star[i]
            p += 1
    return pairs[:p]


# ------------------------------------------------------------------------------- numpy's means

_PW_BLOCK = 128  # numpy's pairwise sum: values summed in one leaf at most (its PW_BLOCKSIZE)
_PW_LANES = 8  # running sums in a leaf (its unrolling), combined as written in _pairwise_leaf
_PW_DEPTH = 64  # _pairwise_sum's stack: halving from 2**63 values needs fewer levels


@njit(cache=True, nogil=True, inline="always")
def _pairwise_leaf(a, lo, hi):
    """numpy's pairwise float32 sum of at most _PW_BLOCK values: sequential below _PW_LANES, else
    _PW_LANES running sums."""
    n = hi - lo
    if n < _PW_LANES:
        res = np.float32(0.0)
        for i in range(lo, hi):
            res += a[i]
        return res
    r = a[lo:lo + _PW_LANES].copy()
    i = _PW_LANES
    while i < n - n % _PW_LANES:
        for j in range(_PW_LANES):
            r[j] += a[lo + i + j]
        i += _PW_LANES
    res = ((r[0] + r[1]) + (r[2] + r[3])) + ((r[4] + r[5]) + (r[6] + r[7]))  # numpy's order, 8 lanes
    for j in range(lo + i, hi):
        res += a[j]
    return res


@njit(cache=True, nogil=True)
def _pairwise_sum(a):
    """numpy's pairwise float32 sum of a (what .mean() of a float32 vector adds up): leaves of at
    most _PW_BLOCK values, longer runs split in halves at a multiple of _PW_LANES and the halves'
    sums added. (The recursion made explicit: numba's cache does not keep recursive functions.)"""
    lo_of, hi_of = np.empty(_PW_DEPTH, np.int64), np.empty(_PW_DEPTH, np.int64)
    state = np.empty(_PW_DEPTH, np.int64)
    sums = np.empty(_PW_DEPTH, np.float32)
    top, count = 0, 0
    lo_of[0], hi_of[0], state[0] = 0, len(a), 0
    while top >= 0:
        lo, hi = lo_of[top], hi_of[top]
        if hi - lo <= _PW_BLOCK:
            sums[count] = _pairwise_leaf(a, lo, hi)
            count += 1
            top -= 1
            continue
        half = (hi - lo) // 2
        half -= half % _PW_LANES
        if state[top] < 2:  # push the left half, then the right one
            state[top] += 1
            lo_of[top + 1], hi_of[top + 1] = (lo, lo + half) if state[top] == 1 else (lo + half, hi)
            state[top + 1] = 0
            top += 1
        else:
            count -= 1
            sums[count - 1] = sums[count - 1] + sums[count]
            top -= 1
    return sums[0]


@njit(cache=True, nogil=True)
def row_means(values):
    """[v.mean() for v in values] of a float32 [P, K] array, as numpy computes each (float32
    pairwise sum, then a float32 division)."""
    out = np.empty(values.shape[0], np.float32)
    for p in range(values.shape[0]):
        out[p] = _pairwise_sum(values[p]) / np.float32(values.shape[1])
    return out


@njit(cache=True, nogil=True, inline="always")
def _column_mean(values, lo, hi, d):
    """np.mean(values[lo:hi], axis=0)[d] of a float32 [n, L] array, as numpy computes it: with one
    column the axis is a vector (pairwise sum), with more the rows are added in order; then a
    float32 division."""
    if values.shape[1] == 1:
        return _pairwise_sum(values[lo:hi, 0]) / np.float32(hi - lo)
    acc = values[lo, d]
    for i in range(lo + 1, hi):
        acc += values[i, d]
    return acc / np.float32(hi - lo)


@njit(cache=True, nogil=True)
def group_means(values, start):
    """[np.mean(values[start[g]:start[g+1]], axis=0) for each group g] of a float32 [n, L] array,
    as numpy computes it (_column_mean)."""
    out = np.empty((len(start) - 1, values.shape[1]), np.float32)
    for g in range(len(start) - 1):
        for d in range(values.shape[1]):
            out[g, d] = _column_mean(values, start[g], start[g + 1], d)
    return out


# ------------------------------------------------------------------------------------ matching

@njit(cache=True, nogil=True)
def _found(keys, joints, tag_list, tag_count, people, key, k, joint, tag):
    """mmpose's people.setdefault(tag[0], ...): an existing person with that founding tag (float
    equality, as dict keys) takes the joint and restarts its tag list; else a new person."""
    person = -1
    for i in range(people):
        if keys[i] == key:
            person = i
            break
    if person < 0:
        person = people
        keys[person] = key
        joints[person] = 0.0
        people += 1
    joints[person, k] = joint
    tag_list[person, 0] = tag
    tag_count[person] = 1
    return people


@njit(cache=True, nogil=True)
def match_by_tag(order, start, xs, ys, vals, tags, max_people, ignore_too_much, tag_threshold, use_detection_val):
    """mmpose's _match_by_tag on the detections (joint j's are rows start[j]:start[j+1] of xs, ys,
    vals, tags [n, L]), joints visited in `order`: the people [P, K, 3 + L] float64 (x, y, val,
    tags), in the order their founding tags were first seen. Same float64 cost matrix and munkres
    1.1.4's algorithm; a person's tag is the float32 mean of its tags as np.mean over its tag list
    computes it (_column_mean).
    Candidates are matched against every person found so far; only with ignore_too_much are they
    matched against the first max_people, and a joint is skipped once that many exist (mmpose)."""
    K = len(order)
    L = tags.shape[1]
    n = len(xs)
    keys = np.empty(n, np.float64)
    joints = np.empty((n, K, 3 + L), np.float64)
    tag_list = np.empty((n, K, L), np.float32)
    tag_count = np.zeros(n, np.int64)
    people = 0
    rows = np.empty((n, 3 + L), np.float64)
    for i in range(K):
        k = order[i]
        s, e = start[k], start[k + 1]
        added = e - s
        if added == 0:
            continue
        for r in range(added):
            rows[r, 0], rows[r, 1], rows[r, 2] = xs[s + r], ys[s + r], vals[s + r]
            for d in range(L):
                rows[r, 3 + d] = tags[s + r, d]
        if i == 0 or people == 0:
            for r in range(added):
                people = _found(keys, joints, tag_list, tag_count, people, np.float64(tags[s + r, 0]), k,
                                rows[r], tags[s + r])
            continue
        if ignore_too_much and people >= max_people:
            continue  # mmpose cuts the list to max_people persons, then skips the joint if it is full
        num = people  # (below max_people with ignore_too_much, so the cut changes nothing)
        grouped = np.zeros((num, L), np.float32)
        for c in range(num):
            for d in range(L):
                grouped[c, d] = _column_mean(tag_list[c], 0, tag_count[c], d)
        width = max(added, num)
        cost = np.empty((added, width), np.float64)
        dist = np.empty((added, num), np.float64)
        for r in range(added):
            for c in range(num):
                sq = 0.0
                for d in range(L):
                    diff = rows[r, 3 + d] - np.float64(grouped[c, d])
                    sq = diff * diff if d == 0 else sq + diff * diff
                dist[r, c] = np.sqrt(sq)
                cost[r, c] = np.rint(dist[r, c]) * 100 - rows[r, 2] if use_detection_val else dist[r, c]
            for c in range(num, width):
                cost[r, c] = 1e10
        pairs = munkres(cost)
        for a in range(len(pairs)):
            r, c = pairs[a, 0], pairs[a, 1]
            if r < added and c < num and dist[r, c] < tag_threshold:
                joints[c, k] = rows[r]
                tag_list[c, tag_count[c]] = tags[s + r]
                tag_count[c] += 1
            else:
                people = _found(keys, joints, tag_list, tag_count, people, np.float64(tags[s + r, 0]), k,
                                rows[r], tags[s + r])
    return joints[:people]
