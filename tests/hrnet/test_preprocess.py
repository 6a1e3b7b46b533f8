"""hrnet.preprocess against hand-checked numbers and an independent torch reference of
mmpose's test pipeline (docs/pipeline.md, "Preprocessing")."""

import struct
import time
import zlib
from pathlib import Path

import cv2
import numpy as np
import pytest
import torch

from hrnet import preprocess as pp

COCO_DIR = Path(__file__).resolve().parents[2] / "data" / "coco_mini" / "val2017"
COCO_IMAGES = sorted(COCO_DIR.glob("*.jpg"))


# ---------------------------------------------------------------- reference (mmpose + torch)

def _reference_size(w, h, input_size=512):
    """BottomUpGetImgSize, written out independently: short side -> 512, long side rounded
    up to a multiple of 64, scale = source box / 200, center rounded half-to-even."""
    def ceil64(x):
        return int(np.ceil(x / 64)) * 64
    base = ceil64(1 * input_size)
    if w < h:
        size = (base, ceil64(base / w * h))
        scale = np.array([w / 200.0, size[1] / size[0] * w / 200.0])
    else:
        size = (ceil64(base / h * w), base)
        scale = np.array([size[0] / size[1] * h / 200.0, h / 200.0])
    return size, np.array([round(w / 2.0), round(h / 2.0)]), scale


def _reference_affine(center, scale, rot, output_size, shift=(0.0, 0.0)):
    """get_affine_transform in its general form (rotation and shift included)."""
    box = scale * 200.0
    shift = np.array(shift)
    rad = np.pi * rot / 180
    sn, cs = np.sin(rad), np.cos(rad)
    v = (0.0, box[0] * -0.5)
    src_dir = [v[0] * cs - v[1] * sn, v[0] * sn + v[1] * cs]
    dst_w, dst_h = output_size

    def third(a, b):
        d = a - b
        return b + np.array([-d[1], d[0]], dtype=np.float32)

    src = np.zeros((3, 2), np.float32)
    src[0, :] = center + box * shift
    src[1, :] = center + src_dir + box * shift
    src[2, :] = third(src[0, :], src[1, :])
    dst = np.zeros((3, 2), np.float32)
    dst[0, :] = [dst_w * 0.5, dst_h * 0.5]
    dst[1, :] = np.array([dst_w * 0.5, dst_h * 0.5]) + np.array([0.0, dst_w * -0.5])
    dst[2, :] = third(dst[0, :], dst[1, :])
    return cv2.getAffineTransform(np.float32(src), np.float32(dst))


def _reference_input(img_rgb, flip_test=True):
    """warpAffine with cv2 defaults, then torchvision-style to_tensor + normalize in torch."""
    h, w = img_rgb.shape[:2]
    size, center, scale = _reference_size(w, h)
    warped = cv2.warpAffine(img_rgb, _reference_affine(center, scale, 0, size), size)
    t = torch.from_numpy(warped.transpose(2, 0, 1).copy()).contiguous().to(torch.float32).div(255)
    mean = torch.as_tensor([0.485, 0.456, 0.406], dtype=torch.float32)[:, None, None]
    std = torch.as_tensor([0.229, 0.224, 0.225], dtype=torch.float32)[:, None, None]
    t = t.clone().sub_(mean).div_(std).unsqueeze(0)
    if flip_test:
        t = torch.cat([t, torch.flip(t, [3])])
    return t.numpy(), center, scale


# ---------------------------------------------------------------- sizes and transform

@pytest.mark.parametrize("w, h, size, center, scale", [
    (640, 425, (832, 512), (320, 212), (3.453125, 2.125)),      # landscape, h/2 rounds to even
    (425, 640, (512, 832), (212, 320), (2.125, 3.453125)),      # portrait
    (512, 512, (512, 512), (256, 256), (2.56, 2.56)),           # square -> landscape branch
    (100, 100, (512, 512), (50, 50), (0.5, 0.5)),               # small square, upscaled
    (333, 500, (512, 832), (166, 250), (1.665, 2.705625)),      # odd width: 166.5 -> 166
    (640, 301, (1152, 512), (320, 150), (3.38625, 1.505)),      # odd height: 150.5 -> 150
    (1024, 512, (1024, 512), (512, 256), (5.12, 2.56)),         # exact multiple, no padding
    (2, 2, (512, 512), (1, 1), (0.01, 0.01)),                   # smallest accepted image
])
def test_multi_scale_size_hand_checked(w, h, size, center, scale):
    got_size, got_center, got_scale = pp.get_multi_scale_size(w, h)
    assert got_size == size
    assert got_center.dtype == np.float32 and got_scale.dtype == np.float32
    np.testing.assert_array_equal(got_center, np.float32(center))
    np.testing.assert_array_equal(got_scale, np.float32(scale))


def test_affine_hand_checked():
    size, center, scale = pp.get_multi_scale_size(640, 425)
    trans = pp.get_affine_transform(center, scale, size)
    np.testing.assert_allclose(trans, [[1.204706, 0, 30.494118], [0, 1.204706, 0.602353]], atol=1e-6)


@pytest.mark.parametrize("w, h", [(640, 425), (425, 640), (333, 500), (500, 333), (640, 301),
                                  (17, 1000), (1000, 17), (2, 2), (7, 3)])
def test_affine_is_the_documented_similarity(w, h):
    # x' = s (x - cx) + W/2 with s = W / (scale_w * 200) = 512 / min(w, h).
    size, center, scale = pp.get_multi_scale_size(w, h)
    s = 512 / min(w, h)
    expected = [[s, 0, size[0] / 2 - s * center[0]], [0, s, size[1] / 2 - s * center[1]]]
    np.testing.assert_allclose(pp.get_affine_transform(center, scale, size), expected,
                               rtol=1e-5, atol=1e-3)


@pytest.mark.parametrize("w, h", [(640, 425), (425, 640), (333, 500), (640, 301), (17, 1000), (7, 3)])
def test_affine_matches_reference_bits(w, h):
    size, center, scale = _reference_size(w, h)
    np.testing.assert_array_equal(pp.get_affine_transform(center, scale, size),
                                  _reference_affine(center, scale, 0, size))


# ---------------------------------------------------------------- bit-exactness

@pytest.mark.parametrize("path", COCO_IMAGES, ids=[p.name for p in COCO_IMAGES])
def test_bit_exact_on_coco_images(path):
    img = pp.decode_image(path.read_bytes())
    expected, center, scale = _reference_input(img)
    got, got_center, got_scale = pp.preprocess(img)
    assert got.dtype == np.float32 and got.flags.c_contiguous
    assert got.shape == expected.shape
    assert np.array_equal(got, expected)
    np.testing.assert_array_equal(got_center, center.astype(np.float32))
    np.testing.assert_array_equal(got_scale, scale.astype(np.float32))


def test_coco_images_are_present():
    assert len(COCO_IMAGES) == 4


@pytest.mark.parametrize("h, w, flip_test", [
    (425, 640, True), (640, 425, True), (301, 333, False), (512, 512, True),
    (2, 2, True), (3, 7, False), (4, 20, True), (120, 17, True), (64, 64, False),
])
def test_bit_exact_on_synthetic_images(h, w, flip_test):
    rng = np.random.default_rng(h * 10007 + w)
    img = rng.integers(0, 256, (h, w, 3), dtype=np.uint8)
    img[0, :] = 0  # hit both ends of the lookup table
    img[-1, :] = 255
    expected, _, _ = _reference_input(img, flip_test)
    got, _, _ = pp.preprocess(img, flip_test=flip_test)
    assert got.shape == expected.shape == ((2 if flip_test else 1), 3) + got.shape[2:]
    assert np.array_equal(got, expected)


def test_flip_copy_and_layout():
    img = np.random.default_rng(1).integers(0, 256, (425, 640, 3), dtype=np.uint8)
    got, _, _ = pp.preprocess(img)
    assert got.shape == (2, 3, 512, 832)
    assert np.array_equal(got[1], got[0][:, :, ::-1])
    # the padding is black (0 before normalisation): value -mean/std per channel
    pad_column = got[0, :, :, 0]
    np.testing.assert_array_equal(pad_column, np.broadcast_to((-pp.MEAN / pp.STD)[:, None], pad_column.shape))


def test_geometry_cache_is_per_size_and_not_shared_with_callers():
    """Each image size's geometry is computed once (hrnet.preprocess._geometry): a caller changing
    the returned center or scale must not change the next image's, and a second size its own."""
    a = np.random.default_rng(2).integers(0, 256, (425, 640, 3), dtype=np.uint8)
    first, center, scale = pp.preprocess(a)
    want_center, want_scale = center.copy(), scale.copy()
    center += 100  # the caller's arrays are its own
    scale *= 3
    again, center2, scale2 = pp.preprocess(a)
    assert np.array_equal(again, first)
    assert np.array_equal(center2, want_center) and np.array_equal(scale2, want_scale)
    b = np.random.default_rng(3).integers(0, 256, (640, 425, 3), dtype=np.uint8)
    expected, want_c, want_s = _reference_input(b, True)
    got, got_c, got_s = pp.preprocess(b)
    assert np.array_equal(got, expected)
    assert np.array_equal(got_c, np.asarray(want_c, np.float32)) and np.array_equal(got_s, np.asarray(want_s, np.float32))


# ---------------------------------------------------------------- decoding

def _png(width, height, color_type, bit_depth, rows, extra_chunks=()):
    """A PNG written by hand: cv2 cannot write palette images."""
    def chunk(ctype, body):
        return struct.pack(">I", len(body)) + ctype + body + struct.pack(">I", zlib.crc32(ctype + body))
    ihdr = struct.pack(">IIBBBBB", width, height, bit_depth, color_type, 0, 0, 0)
    raw = b"".join(b"\x00" + row for row in rows)
    return (b"\x89PNG\r\n\x1a\n" + chunk(b"IHDR", ihdr)
            + b"".join(chunk(t, b) for t, b in extra_chunks)
            + chunk(b"IDAT", zlib.compress(raw)) + chunk(b"IEND", b""))


def test_decode_jpeg_is_rgb_like_mmcv():
    data = COCO_IMAGES[0].read_bytes()
    img = pp.decode_image(data)
    bgr = cv2.imdecode(np.frombuffer(data, np.uint8), cv2.IMREAD_COLOR)
    assert img.dtype == np.uint8 and img.shape == (425, 640, 3)
    assert np.array_equal(img, bgr[:, :, ::-1])


def test_decode_png_rgb_order():
    rgb = np.random.default_rng(2).integers(0, 256, (5, 7, 3), dtype=np.uint8)
    ok, enc = cv2.imencode(".png", rgb[:, :, ::-1])
    assert ok
    assert np.array_equal(pp.decode_image(enc.tobytes()), rgb)


def test_decode_grayscale_png():
    gray = np.arange(12, dtype=np.uint8).reshape(3, 4) * 20
    ok, enc = cv2.imencode(".png", gray)
    img = pp.decode_image(enc.tobytes())
    assert img.shape == (3, 4, 3) and img.dtype == np.uint8
    assert np.array_equal(img, np.repeat(gray[:, :, None], 3, axis=2))


@pytest.mark.parametrize("with_transparency", [False, True])
def test_decode_palette_png(with_transparency):
    palette = np.array([[255, 0, 0], [0, 255, 0], [0, 0, 255], [10, 20, 30]], np.uint8)
    index = np.array([[0, 1, 2], [3, 2, 1]], np.uint8)
    extra = [(b"PLTE", palette.tobytes())]
    if with_transparency:
        extra.append((b"tRNS", bytes([0, 128, 255, 7])))
    data = _png(3, 2, 3, 8, [r.tobytes() for r in index], extra)
    img = pp.decode_image(data)
    assert img.shape == (2, 3, 3) and img.dtype == np.uint8
    assert np.array_equal(img, palette[index])


def test_decode_rgba_png_drops_alpha():
    rgba = np.random.default_rng(3).integers(0, 256, (4, 5, 4), dtype=np.uint8)
    data = _png(5, 4, 6, 8, [r.tobytes() for r in rgba])
    img = pp.decode_image(data)
    assert np.array_equal(img, rgba[:, :, :3])


@pytest.mark.parametrize("channels", [1, 3])
def test_decode_16bit_png_becomes_8bit(channels):
    # IMREAD_COLOR (the reference's flag) keeps the high byte of each 16-bit sample.
    rng = np.random.default_rng(4)
    shape = (6, 5) if channels == 1 else (6, 5, 3)
    v16 = rng.integers(0, 65536, shape, dtype=np.uint16)
    ok, enc = cv2.imencode(".png", v16 if channels == 1 else v16[:, :, ::-1])
    img = pp.decode_image(enc.tobytes())
    assert img.dtype == np.uint8 and img.shape == (6, 5, 3)
    expected = (v16 >> 8).astype(np.uint8)
    if channels == 1:
        expected = np.repeat(expected[:, :, None], 3, axis=2)
    assert np.array_equal(img, expected)


def test_decode_accepts_trailing_bytes_after_jpeg_eoi():
    data = COCO_IMAGES[0].read_bytes()
    assert pp.decode_image(data + b"\x00" * 16).shape == (425, 640, 3)


def test_image_header():
    assert pp.image_header(COCO_IMAGES[0].read_bytes()) == ("JPEG", 640, 425)
    ok, enc = cv2.imencode(".png", np.zeros((7, 9, 3), np.uint8))
    assert pp.image_header(enc.tobytes()) == ("PNG", 9, 7)


# ---------------------------------------------------------------- bad input

def _jpeg_bytes():
    return COCO_IMAGES[0].read_bytes()


def _png_bytes():
    ok, enc = cv2.imencode(".png", np.random.default_rng(5).integers(0, 256, (40, 50, 3), dtype=np.uint8))
    return enc.tobytes()


def _sof_offset(data):
    return data.index(b"\xff\xc0")


def _bad_inputs():
    jpeg, png = _jpeg_bytes(), _png_bytes()
    sof = _sof_offset(jpeg)
    sos = jpeg.index(b"\xff\xda")
    ok, tiny_jpeg = cv2.imencode(".jpg", np.zeros((1, 1, 3), np.uint8))
    ok, thin_jpeg = cv2.imencode(".jpg", np.zeros((1, 50, 3), np.uint8))
    ok, gif_like = cv2.imencode(".bmp", np.zeros((4, 4, 3), np.uint8))
    idat = png.index(b"IDAT")
    corrupt_png = png[:idat + 10] + bytes(b ^ 0x55 for b in png[idat + 10:idat + 30]) + png[idat + 30:]
    return {
        "empty": (b"", "empty"),
        "text": (b"this is not an image", "not a JPEG or PNG"),
        "bmp": (gif_like.tobytes(), "not a JPEG or PNG"),
        "str": ("abc", "bytes"),
        "jpeg_soi_only": (jpeg[:2], "truncated"),
        "jpeg_cut_in_header": (jpeg[:sof + 5], "truncated"),
        "jpeg_cut_in_scan": (jpeg[:len(jpeg) // 2], "truncated"),
        "jpeg_no_eoi": (jpeg[:-2], "truncated"),
        "jpeg_cut_after_sos": (jpeg[:sos + 20], "truncated"),
        "jpeg_scan_without_frame": (jpeg[:2] + jpeg[sos:], "frame header"),
        "jpeg_garbage_after_soi": (jpeg[:2] + b"\x00\x01\x02", "marker"),
        "jpeg_1x1": (tiny_jpeg.tobytes(), "too small"),
        "jpeg_1x50": (thin_jpeg.tobytes(), "too small"),
        "png_signature_only": (png[:8], "IHDR"),
        "png_cut_in_data": (png[:len(png) // 2], "truncated"),
        "png_no_iend": (png[:-12], "truncated"),
        "png_corrupt_data": (corrupt_png, "decode"),
        "png_1x1": (_png(1, 1, 2, 8, [b"\x00\x00\x00"]), "too small"),
        "png_3x1": (_png(3, 1, 0, 8, [b"\x00\x00\x00"]), "too small"),
    }


@pytest.mark.parametrize("case", sorted(_bad_inputs()))
def test_bad_input_raises_image_error(case):
    data, message = _bad_inputs()[case]
    with pytest.raises(pp.ImageError, match=message):
        pp.decode_image(data)


def test_image_error_is_a_value_error():
    assert issubclass(pp.ImageError, ValueError)


def _no_decode(*args, **kwargs):
    raise AssertionError("cv2.imdecode must not run on a refused image")


def _bomb_png():
    # Valid structure (IHDR, a small IDAT, IEND) claiming 100000 x 100000 pixels.
    return _png(100_000, 100_000, 2, 8, [b"\x00" * 30])


def _bomb_jpeg():
    # A real JPEG with its frame header rewritten to 65535 x 65535 (JPEG's maximum).
    data = bytearray(_jpeg_bytes())
    sof = _sof_offset(bytes(data))
    data[sof + 5:sof + 9] = struct.pack(">HH", 65535, 65535)
    return bytes(data)


@pytest.mark.parametrize("make", [_bomb_png, _bomb_jpeg], ids=["png", "jpeg"])
def test_decompression_bomb_refused_before_decoding(make, monkeypatch):
    data = make()
    monkeypatch.setattr(pp.cv2, "imdecode", _no_decode)
    start = time.perf_counter()
    with pytest.raises(pp.ImageError, match="too large"):
        pp.decode_image(data)
    assert time.perf_counter() - start < 0.05


def test_max_pixels_boundary():
    data = _jpeg_bytes()
    assert pp.decode_image(data, max_pixels=640 * 425).shape == (425, 640, 3)
    with pytest.raises(pp.ImageError, match="too large"):
        pp.decode_image(data, max_pixels=640 * 425 - 1)


@pytest.mark.parametrize("img", [
    np.zeros((10, 10), np.uint8),            # no channel axis
    np.zeros((10, 10, 4), np.uint8),         # RGBA array
    np.zeros((10, 10, 3), np.float32),       # not uint8
    np.zeros((1, 10, 3), np.uint8),          # below 2x2
    [[[0, 0, 0]]],                           # not an array
], ids=["2d", "4ch", "float", "1x10", "list"])
def test_preprocess_rejects_bad_arrays(img):
    with pytest.raises(pp.ImageError):
        pp.preprocess(img)


def test_preprocess_rejects_too_elongated_images():
    # 2 x 300 is small but expands to a 512 x 76800 input: beyond warpAffine's side limit.
    with pytest.raises(pp.ImageError, match="elongated"):
        pp.preprocess(np.zeros((2, 300, 3), np.uint8))
    with pytest.raises(pp.ImageError, match="elongated"):
        pp.preprocess(np.zeros((64, 640, 3), np.uint8), max_input_pixels=512 * 512)
    net_input, _, _ = pp.preprocess(np.zeros((64, 640, 3), np.uint8), max_input_pixels=512 * 5120)
    assert net_input.shape == (2, 3, 512, 5120)
