"""Test-time preprocessing of mmpose's associative-embedding bottom-up pipeline.

Mirrors `hrnet_w32_coco_512x512`'s test pipeline (docs/pipeline.md, "Preprocessing"):
LoadImageFromFile (cv2 decode, BGR->RGB) -> BottomUpGetImgSize -> BottomUpResizeAlign
(warpAffine, ToTensor, NormalizeTensor), plus the horizontally flipped copy used by the
flip test. The output is bit-identical to the torch reference on the same decoded pixels.
numpy + OpenCV only: this runs inside the serving process, which never imports torch.
"""

import functools
import struct

import cv2
import numpy as np

MEAN = np.array([0.485, 0.456, 0.406], dtype=np.float32)  # RGB order
STD = np.array([0.229, 0.224, 0.225], dtype=np.float32)

# The input is uint8, so ToTensor + NormalizeTensor take only 256 values per channel.
# Tabulating them with the reference's float32 operations ((v / 255 - mean) / std, each
# rounded to float32) gives the reference's exact bits in a single gather pass.
_NORM_LUT = (np.arange(256, dtype=np.float32)[None, :] / np.float32(255.0) - MEAN[:, None]) / STD[:, None]

# cv2.warpAffine asserts that source and destination sides are below SHRT_MAX.
_MAX_SIDE = 32766

_PNG_SIGNATURE = b"\x89PNG\r\n\x1a\n"
_JPEG_SOI = b"\xff\xd8"
_JPEG_EOI = b"\xff\xd9"
# Start-of-frame markers carry the image size; C4 (DHT), C8 (JPG) and CC (DAC) do not.
_JPEG_SOF = frozenset(range(0xC0, 0xD0)) - {0xC4, 0xC8, 0xCC}
# Markers without a length field.
_JPEG_STANDALONE = frozenset([0x01, *range(0xD0, 0xD8)])


class ImageError(ValueError):
    """The request carries something that is not a usable JPEG/PNG image."""


def image_header(data: bytes) -> tuple[str, int, int]:
    """Return (format, width, height) read from the container, without decoding pixels.

    Also checks that the file is complete (JPEG: an EOI marker after the first scan;
    PNG: an intact chunk sequence up to IEND): cv2 may return a partial image otherwise.
    """
    if not isinstance(data, (bytes, bytearray, memoryview)):
        raise ImageError(f"expected encoded image bytes, got {type(data).__name__}")
    data = bytes(data)
    if not data:
        raise ImageError("empty image data")
    if data.startswith(_PNG_SIGNATURE):
        return ("PNG", *_png_header(data))
    if data.startswith(_JPEG_SOI):
        return ("JPEG", *_jpeg_header(data))
    raise ImageError(f"not a JPEG or PNG image (starts with {data[:8].hex()})")


def _png_header(data: bytes) -> tuple[int, int]:
    pos = len(_PNG_SIGNATURE)
    if len(data) < pos + 8 + 13 or data[pos + 4:pos + 8] != b"IHDR":
        raise ImageError("truncated or invalid PNG: missing IHDR chunk")
    width, height = struct.unpack_from(">II", data, pos + 8)
    # Walk the chunk lengths to IEND: a cut file fails here before libpng sees it.
    while True:
        if pos + 8 > len(data):
            raise ImageError("truncated PNG: missing IEND chunk")
        length, ctype = struct.unpack_from(">I4s", data, pos)
        if length > 0x7FFFFFFF:
            raise ImageError("invalid PNG: bad chunk length")
        pos += 12 + length
        if pos > len(data):
            raise ImageError("truncated PNG: missing IEND chunk")
        if ctype == b"IEND":
            return width, height


def _jpeg_header(data: bytes) -> tuple[int, int]:
    n = len(data)
    pos = 2
    size = None
    while True:
        if pos >= n:
            raise ImageError("truncated JPEG: no image data")
        if data[pos] != 0xFF:
            raise ImageError(f"invalid JPEG: expected a marker at byte {pos}")
        while pos < n and data[pos] == 0xFF:  # fill bytes may precede a marker
            pos += 1
        if pos >= n:
            raise ImageError("truncated JPEG: no image data")
        marker = data[pos]
        pos += 1
        if marker in _JPEG_STANDALONE:
            continue
        if marker in (0xD8, 0xD9):
            raise ImageError("invalid JPEG: no image data before end marker")
        if pos + 2 > n:
            raise ImageError("truncated JPEG: cut inside a segment header")
        (length,) = struct.unpack_from(">H", data, pos)
        if length < 2:
            raise ImageError("invalid JPEG: bad segment length")
        if pos + length > n:
            raise ImageError("truncated JPEG: cut inside a segment")
        if marker in _JPEG_SOF:
            if length < 8:
                raise ImageError("invalid JPEG: short frame header")
            height, width = struct.unpack_from(">HH", data, pos + 3)
            size = (width, height)
        pos += length
        if marker == 0xDA:  # start of scan: entropy-coded data follows
            break
    if size is None:
        raise ImageError("invalid JPEG: scan before frame header")
    if size[1] == 0:
        raise ImageError("unsupported JPEG: height defined by a DNL marker")
    # Inside entropy-coded data 0xFF is always stuffed, so FFD9 after the first scan is EOI
    # (trailing bytes after EOI are tolerated, as decoders do).
    if data.rfind(_JPEG_EOI, pos) < 0:
        raise ImageError("truncated JPEG: missing end-of-image marker")
    return size


# Defaults of the preprocess model's limits: declared image size (decompression bombs), and the
# network input's pixels (512 x 8192: aspect ratios up to 16:1).
MAX_IMAGE_PIXELS = 40_000_000
MAX_INPUT_PIXELS = 512 * 8192


def decode_image(data: bytes, max_pixels: int = MAX_IMAGE_PIXELS) -> np.ndarray:
    """Decode a JPEG/PNG as mmcv.imfrombytes(flag='color', channel_order='rgb') does.

    Returns uint8 HxWx3 RGB (grayscale, palette, alpha and 16-bit PNGs become 8-bit RGB
    through cv2.IMREAD_COLOR, as in the reference). The header's pixel count is checked
    against max_pixels before any decoding, so a decompression bomb is never expanded.
    """
    fmt, width, height = image_header(data)
    if width < 2 or height < 2:
        raise ImageError(f"image too small: {width}x{height} {fmt} (minimum 2x2)")
    if width * height > max_pixels:
        raise ImageError(f"image too large: {width}x{height} {fmt} has {width * height} pixels "
                         f"(limit {max_pixels})")
    try:
        img = cv2.imdecode(np.frombuffer(data, dtype=np.uint8), cv2.IMREAD_COLOR)
    except cv2.error as exc:
        raise ImageError(f"cannot decode {fmt} image: {exc}") from None
    if img is None:
        raise ImageError(f"cannot decode {fmt} image: corrupt data")
    if img.shape[0] < 2 or img.shape[1] < 2:
        raise ImageError(f"image too small: {img.shape[1]}x{img.shape[0]} (minimum 2x2)")
    return cv2.cvtColor(img, cv2.COLOR_BGR2RGB, dst=img)


def _ceil_to_multiple(x: float, base: int = 64) -> int:
    return int(np.ceil(x / base)) * base


def _multi_scale_size(w: int, h: int, input_size: int) -> tuple[tuple[int, int], np.ndarray, np.ndarray]:
    """mmpose _get_multi_scale_size at test scale 1, in mmpose's own dtypes (int center,
    float64 scale), which the affine matrix must be computed from."""
    min_input = _ceil_to_multiple(input_size)
    if w < h:
        w_resized = min_input
        h_resized = _ceil_to_multiple(min_input / w * h)
        scale_w = w / 200.0
        scale_h = h_resized / w_resized * w / 200.0
    else:  # landscape and square
        h_resized = min_input
        w_resized = _ceil_to_multiple(min_input / h * w)
        scale_h = h / 200.0
        scale_w = w_resized / h_resized * h / 200.0
    # Python's round: half to even (h=425 -> 212).
    center = np.array([round(w / 2.0), round(h / 2.0)])
    return (w_resized, h_resized), center, np.array([scale_w, scale_h])


def get_multi_scale_size(w: int, h: int,
                         input_size: int = 512) -> tuple[tuple[int, int], np.ndarray, np.ndarray]:
    """Network input size (W, H), center float32[2] and scale float32[2] for a w x h image."""
    size, center, scale = _multi_scale_size(w, h, input_size)
    return size, center.astype(np.float32), scale.astype(np.float32)


def get_affine_transform(center: np.ndarray, scale: np.ndarray, output_size: tuple[int, int]) -> np.ndarray:
    """mmpose get_affine_transform with rot=0, shift=0: same float32 points, same
    cv2.getAffineTransform solve, hence the same float64 2x3 matrix bits."""
    scale_tmp = np.asarray(scale, dtype=np.float64) * 200.0
    src_w = scale_tmp[0]
    dst_w, dst_h = output_size
    src_dir = np.array([0.0, src_w * -0.5])  # rotate_point by 0 rad
    dst_dir = np.array([0.0, dst_w * -0.5])

    src = np.zeros((3, 2), dtype=np.float32)
    src[0, :] = center
    src[1, :] = center + src_dir
    src[2, :] = _third_point(src[0, :], src[1, :])

    dst = np.zeros((3, 2), dtype=np.float32)
    dst[0, :] = [dst_w * 0.5, dst_h * 0.5]
    dst[1, :] = np.array([dst_w * 0.5, dst_h * 0.5]) + dst_dir
    dst[2, :] = _third_point(dst[0, :], dst[1, :])
    return cv2.getAffineTransform(src, dst)


def _third_point(a: np.ndarray, b: np.ndarray) -> np.ndarray:
    # a - b rotated by 90 degrees around b, in float32 like mmpose.
    direction = a - b
    return b + np.array([-direction[1], direction[0]], dtype=np.float32)


@functools.lru_cache(maxsize=256)
def _geometry(w: int, h: int, input_size: int):
    """Network input size, center, scale and the affine matrix of a w x h image: they depend on
    the size alone, and images come in few sizes (a dozen numpy calls saved per image). The
    arrays are read-only: every caller shares them."""
    size, center, scale = _multi_scale_size(w, h, input_size)
    trans = get_affine_transform(center, scale, size)
    for a in (center, scale, trans):
        a.flags.writeable = False
    return size, center, scale, trans


def preprocess(img_rgb: np.ndarray, input_size: int = 512, flip_test: bool = True,
               max_input_pixels: int | None = None) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """Network input float32 [2 or 1, 3, H, W] (C-contiguous; [1] is [0] flipped along W
    when flip_test), center float32[2], scale float32[2].

    max_input_pixels bounds H*W of the network input: a very elongated image is small on
    disk but expands to a huge input (the short side always becomes input_size).
    """
    if not (isinstance(img_rgb, np.ndarray) and img_rgb.dtype == np.uint8
            and img_rgb.ndim == 3 and img_rgb.shape[2] == 3):
        raise ImageError("expected a uint8 HxWx3 RGB image")
    h, w = img_rgb.shape[:2]
    if w < 2 or h < 2:
        raise ImageError(f"image too small: {w}x{h} (minimum 2x2)")
    (out_w, out_h), center, scale, trans = _geometry(w, h, input_size)
    if max(w, h, out_w, out_h) > _MAX_SIDE:
        raise ImageError(f"image {w}x{h} is too elongated: network input would be {out_w}x{out_h} "
                         f"(side limit {_MAX_SIDE})")
    if max_input_pixels is not None and out_w * out_h > max_input_pixels:
        raise ImageError(f"image {w}x{h} is too elongated: network input {out_w}x{out_h} exceeds "
                         f"{max_input_pixels} pixels")

    warped = cv2.warpAffine(img_rgb, trans, (out_w, out_h), flags=cv2.INTER_LINEAR,
                            borderMode=cv2.BORDER_CONSTANT, borderValue=0)

    out = np.empty((2 if flip_test else 1, 3, out_h, out_w), dtype=np.float32)
    for c, plane in enumerate(cv2.split(warped)):
        # table lookup straight into the output plane (cv2: ~2.5x np.take on a strided channel)
        cv2.LUT(plane, _NORM_LUT[c], dst=out[0, c])
        if flip_test:
            cv2.flip(out[0, c], 1, dst=out[1, c])
    return out, center.astype(np.float32), scale.astype(np.float32)
