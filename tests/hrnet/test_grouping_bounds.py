"""The bounds hrnet/grouping_kernels.py prunes its searches with hold: on random maps, every heat
bound (cell, tile, block) is >= the exact aggregated input-size heat of every pixel it covers,
every tag range (cell, tile, block, and the cached cells' own ranges) contains the exact resized
tags of every pixel it covers, and refine's bound of `heat - round(|tag - person tag|)` is >= its
exact value. "Exact" is torch's F.interpolate (bilinear, align_corners=False) and flip merge, as
in reference_ae.aggregate, never the kernels' own resize. (docs/grouping-kernels.md explains
why the bounds are sound; a bound loosened the wrong way, e.g. a cell's own weight taken larger
than 25/64, fails here on the plateau maps.)"""

import sys
from pathlib import Path

import numpy as np
import pytest
import torch
import torch.nn.functional as F

from hrnet import grouping
from hrnet import grouping_kernels as kernels
from hrnet.grouping import GroupingParams

sys.path.insert(0, str(Path(__file__).resolve().parent))
from reference_ae import aggregate  # noqa: E402

K = 17
CELL, TILE = kernels.CELL, kernels.TILE  # 4 input pixels per cell side, 4 cells per tile side
BLOCK = TILE * TILE  # cells per block side
OWN = TILE * TILE  # a tile's ranges: its 16 cells' (row-major), then its own at OWN


def random_output(rng, h, w, flip, kind):
    """[M, 34, h, w] float32: "noise" (normal, magnitudes 1e-3..1e3, so the rounding slack matters
    at every scale) or "plateau" (a few levels: equal neighbours, where the bounds are attained)."""
    shape = (2 if flip else 1, 2 * K, h, w)
    if kind == "plateau":
        return (rng.integers(-2, 4, shape) / np.float32(4)).astype(np.float32)
    scale = np.exp(rng.uniform(np.log(1e-3), np.log(1e3), (1, 2 * K, 1, 1)))
    return (rng.standard_normal(shape) * scale).astype(np.float32)


def blocks_of(a, size, fill):
    """a [K, h, w] padded with `fill` to multiples of size, then [K, ceil(h/size), ceil(w/size),
    size, size] (the blocks of size x size)."""
    k, h, w = a.shape
    ny, nx = -(-h // size), -(-w // size)
    padded = np.full((k, ny * size, nx * size), fill, a.dtype)
    padded[:, :h, :w] = a
    return padded.reshape(k, ny, size, nx, size).transpose(0, 1, 3, 2, 4)


def per_cell(a):
    """[K, H, W] input-size values -> [K, h, w, 16]: each cell's 16 pixels, row-major (the stores'
    order)."""
    k, hh, ww = a.shape
    return a.reshape(k, hh // CELL, CELL, ww // CELL, CELL).transpose(0, 1, 3, 2, 4).reshape(
        k, hh // CELL, ww // CELL, CELL * CELL)


def widened(lo, hi):
    """lo and hi one float32 step further apart. A tag range is the raw minimum and maximum of
    low-resolution values, and a resize without fused multiply-adds (torch's plain float32 build,
    GroupingParams(fused_multiply_add=False)) can round a convex combination one step past them;
    refine's _upper adds its slack (REL) where it uses the ranges, and is checked strictly below."""
    return np.nextafter(lo, np.float32(-np.inf)), np.nextafter(hi, np.float32(np.inf))


def assert_at_least(bound, exact, what):
    bad = ~(bound >= exact)
    assert not bad.any(), (f"{what}: {int(bad.sum())} of {bad.size} bounds below the exact value, worst "
                           f"{float(np.max(np.where(bad, exact - bound, -np.inf))):.3g} at {np.argwhere(bad)[0]}")


def refine_values(heat, tags, prev):
    """mmpose refine's `heat - round(||tag - prev||)` in its float32 numpy ops: [K, H, W]."""
    dist = (((tags - prev[None, None, None, :]) ** 2).sum(axis=3) ** 0.5)
    return heat - np.round(dist)


def _torch_fma():
    """The kernels' resize arithmetic that is torch's on this machine: fused multiply-adds (its
    AVX2/AVX512 build) or plain float32 (for outputs with H + W > 128, as all of these)."""
    x = np.random.default_rng(0).standard_normal((1, 2, 16, 20)).astype(np.float32)
    want = F.interpolate(torch.from_numpy(x[:, :1]), size=(64, 80), mode="bilinear", align_corners=False)[0, 0]
    ys, xs = np.mgrid[0:64, 0:80]
    for fused in (True, False):
        maps = grouping._Maps(x, GroupingParams(num_joints=1, flip_test=False, fused_multiply_add=fused))
        if np.array_equal(maps.heat_at(0, ys, xs), want.numpy()):
            return fused
    raise AssertionError("torch's bilinear resize matches neither the fused nor the plain float32 formula")


FMA = _torch_fma()

CASES = [(h, w, flip, kind, seed)
         for seed, (h, w) in enumerate([(1, 40), (37, 3), (16, 24), (37, 50), (66, 40)])
         for flip in (True, False) for kind in ("noise", "plateau")]


@pytest.mark.parametrize("h,w,flip,kind,seed", CASES)
def test_bounds_cover_the_exact_resized_values(h, w, flip, kind, seed):
    rng = np.random.default_rng(100 + seed)
    out = random_output(rng, h, w, flip, kind)
    with torch.no_grad():
        heat_t, tags_t = aggregate(out, flip, K)
    heat = heat_t[0].numpy()  # [K, H, W]: the mean of the two passes' resized heatmaps
    tags = tags_t[0].numpy()  # [K, H, W, M]: each pass's resized tags
    m_dims = tags.shape[3]

    # (the _Maps' arrays are the calling thread's scratch: everything below reads this one's
    # before any other _Maps is made)
    maps = grouping._Maps(out, GroupingParams(flip_test=flip, fused_multiply_add=FMA))
    grid = maps.grid

    # heat: cells, tiles (4x4 cells), blocks (4x4 tiles)
    cell_max = per_cell(heat).max(axis=3)  # [K, h, w]
    assert_at_least(grid.cell_heat, cell_max, "cell heat bound")
    tile_max = blocks_of(cell_max, TILE, -np.inf).max(axis=(3, 4))
    assert grid.tile_heat.shape == tile_max.shape
    assert_at_least(grid.tile_heat, tile_max, "tile heat bound")
    r = maps.refine_bounds()
    block_max = blocks_of(cell_max, BLOCK, -np.inf).max(axis=(3, 4))
    assert_at_least(r.block_heat.reshape(block_max.shape), block_max, "block heat bound")

    # tag ranges per cell [K, h, w, M]
    tag_cells = np.stack([per_cell(tags[..., m]) for m in range(m_dims)], axis=3)  # [K, h, w, M, 16]
    cell_lo, cell_hi = tag_cells.min(axis=4), tag_cells.max(axis=4)

    # tiles: refine fills a tile's ranges (its 16 cells', then its own) into its next slot
    ny, nx = grid.tile_heat.shape[1:]
    window = np.empty((TILE + 2, TILE + 2), np.float32)
    rows_lo, rows_hi = np.empty((TILE + 2, TILE), np.float32), np.empty((TILE + 2, TILE), np.float32)
    slots = np.empty((K, ny, nx), np.int64)
    for k in range(K):
        for ty in range(ny):
            for tx in range(nx):
                slots[k, ty, tx] = kernels._tile_boxes(maps.grid.tags, k, ty, tx, r, window, rows_lo, rows_hi)
    tile_lo, tile_hi = r.tile_lo[slots], r.tile_hi[slots]  # [K, ny, nx, 17, M]
    lo_cells = tile_lo[:, :, :, :OWN].reshape(K, ny, nx, TILE, TILE, m_dims).transpose(0, 1, 3, 2, 4, 5) \
        .reshape(K, ny * TILE, nx * TILE, m_dims)[:, :h, :w]
    hi_cells = tile_hi[:, :, :, :OWN].reshape(K, ny, nx, TILE, TILE, m_dims).transpose(0, 1, 3, 2, 4, 5) \
        .reshape(K, ny * TILE, nx * TILE, m_dims)[:, :h, :w]
    lo_cells, hi_cells = widened(lo_cells, hi_cells)
    assert_at_least(cell_lo, lo_cells, "cell tag range (low end)")
    assert_at_least(hi_cells, cell_hi, "cell tag range (high end)")
    lo_tiles, hi_tiles = widened(tile_lo[:, :, :, OWN], tile_hi[:, :, :, OWN])
    for m in range(m_dims):
        assert_at_least(blocks_of(cell_lo[..., m], TILE, np.inf).min(axis=(3, 4)), lo_tiles[..., m],
                        "tile tag range (low end)")
        assert_at_least(hi_tiles[..., m], blocks_of(cell_hi[..., m], TILE, -np.inf).max(axis=(3, 4)),
                        "tile tag range (high end)")

    # blocks: their tag ranges over the low-resolution window one cell wider
    nby, nbx = -(-ny // TILE), -(-nx // TILE)
    for k in range(K):
        for by in range(nby):
            for bx in range(nbx):
                kernels._tag_box(maps.grid.tags, k, by * BLOCK, min(h, by * BLOCK + BLOCK), bx * BLOCK,
                                 min(w, bx * BLOCK + BLOCK), r.block_lo, r.block_hi, k, by * nbx + bx)
    block_lo, block_hi = widened(r.block_lo.reshape(K, nby, nbx, m_dims), r.block_hi.reshape(K, nby, nbx, m_dims))
    for m in range(m_dims):
        assert_at_least(blocks_of(cell_lo[..., m], BLOCK, np.inf).min(axis=(3, 4)), block_lo[..., m],
                        "block tag range (low end)")
        assert_at_least(block_hi[..., m], blocks_of(cell_hi[..., m], BLOCK, -np.inf).max(axis=(3, 4)),
                        "block tag range (high end)")

    # cached cells: every cell computed into the stores, each at its slot (1-based; 0: not computed)
    # with its 16 values row-major, then its own extremes (heat: max; tags: min, max per pass)
    ks, ys, xs = (a.ravel() for a in np.mgrid[0:K, 0:CELL * h, 0:CELL * w])
    maps.heat_at(ks, ys, xs)
    maps.tags_at(ks, ys, xs)
    heat_slot, heat_store = grid.heat.slot, grid.heat.store  # [K, h, w] (1-based), [cells, 1, 17]
    tag_slot, tag_store = grid.tags.slot, grid.tags.store  # [K, h, w] (1-based), [cells, M, 18]
    assert (heat_slot > 0).all() and (tag_slot > 0).all()  # 1-based: 0 means "not computed"
    n = CELL * CELL
    np.testing.assert_array_equal(heat_store[heat_slot - 1, 0, :n], per_cell(heat))
    np.testing.assert_array_equal(tag_store[tag_slot - 1, :, :n], tag_cells)
    assert_at_least(heat_store[heat_slot - 1, 0, n], cell_max, "cached cell heat maximum")
    assert_at_least(cell_lo, tag_store[tag_slot - 1, :, n], "cached cell tag minimum")
    assert_at_least(tag_store[tag_slot - 1, :, n + 1], cell_hi, "cached cell tag maximum")

    # refine's bound of heat - round(||tag - prev||), at each level, for person tags drawn from
    # the tags themselves and from far outside them
    flat_tags = tags.reshape(-1, m_dims)
    for prev in [flat_tags[i] for i in rng.integers(0, len(flat_tags), 3)] + [np.full(m_dims, 7.3, np.float32)]:
        prev = np.asarray(prev, np.float32)
        exact = refine_values(heat, tags, prev)
        exact_cell = per_cell(exact).max(axis=3)
        upper_cell = np.empty((K, h, w), np.float32)
        upper_cached = np.empty((K, h, w), np.float32)
        for k in range(K):
            for cy in range(h):
                for cx in range(w):
                    slot = slots[k, cy // TILE, cx // TILE]
                    upper_cell[k, cy, cx] = kernels._upper(grid.cell_heat[k, cy, cx], r.tile_lo, r.tile_hi, slot,
                                                           (cy % TILE) * TILE + cx % TILE, prev)
                    upper_cached[k, cy, cx] = kernels._upper_cell(heat_store, heat_slot[k, cy, cx] - 1, tag_store,
                                                                  tag_slot[k, cy, cx] - 1, prev)
        assert_at_least(upper_cell, exact_cell, "refine cell bound")
        assert_at_least(upper_cached, exact_cell, "refine bound of a cached cell")
        exact_tile = blocks_of(exact_cell, TILE, -np.inf).max(axis=(3, 4))
        upper_tile = np.array([[[kernels._upper(grid.tile_heat[k, ty, tx], r.tile_lo, r.tile_hi, slots[k, ty, tx],
                                                OWN, prev) for tx in range(nx)] for ty in range(ny)]
                               for k in range(K)], np.float32)
        assert_at_least(upper_tile, exact_tile, "refine tile bound")
        exact_block = blocks_of(exact_cell, BLOCK, -np.inf).max(axis=(3, 4)).reshape(K, -1)
        upper_block = np.array([[kernels._upper(r.block_heat[k, b], r.block_lo, r.block_hi, k, b, prev)
                                 for b in range(nby * nbx)] for k in range(K)], np.float32)
        assert_at_least(upper_block, exact_block, "refine block bound")


@pytest.mark.parametrize("flip", [True, False])
def test_nms_rules_out_pixels_below_their_cells_centre(flip):
    """_centre_max: with the 5x5 NMS window, a cell's centre 2x2 pixels lie in every one of its
    pixels' windows, so an NMS maximum is never below them (checked on torch's NMS)."""
    rng = np.random.default_rng(7)
    for kind in ("noise", "plateau"):
        out = random_output(rng, 20, 28, flip, kind)
        with torch.no_grad():
            heat, _ = aggregate(out, flip, K)
            keep = (F.max_pool2d(heat, 5, 1, 2) == heat)[0].numpy()
        heat = heat[0].numpy()
        centre = per_cell(heat)[..., [5, 6, 9, 10]].max(axis=3)
        centre = np.repeat(np.repeat(centre, CELL, axis=1), CELL, axis=2)
        assert keep.any() and np.all(heat[keep] >= centre[keep])


def test_refine_bound_survives_a_range_one_step_too_narrow():
    """A tag range can miss a resized value by one float32 step (see widened); refine's bound must
    still hold when that step crosses a rounding boundary of the distance: the true tag
    2.9999998 is 1.4999998 from the person tag 1.5 (round: 1), the range's end 3.0 is 1.5 from it
    (round: 2). _upper's slack keeps the bound at heat - 1."""
    true_tag = np.nextafter(np.float32(3.0), np.float32(0))
    prev = np.array([1.5], np.float32)
    heat = np.float32(0.75)
    exact = heat - np.round(np.sqrt((true_tag - prev[0]) ** 2))
    assert exact == heat - 1
    lo = hi = np.full((1, 1, 1), 3.0, np.float32)  # [joint, box, tag dimension]
    assert kernels._upper(heat, lo, hi, 0, 0, prev) >= exact
