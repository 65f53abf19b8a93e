"""Seed images: odd and broken files generated with Pillow at test time, and CDN URL routing."""

from __future__ import annotations

import io
import struct
import zlib
from pathlib import Path

import numpy as np
import pytest
from PIL import Image

from pipeline.errors import ImageRejected
from pipeline.images import is_platform_cdn, prepare_image, read_image_file, sha256_hex


def _jpeg(img: Image.Image, **kwargs: object) -> bytes:
    out = io.BytesIO()
    img.save(out, "JPEG", **kwargs)
    return out.getvalue()


def _decoded(data: bytes) -> Image.Image:
    img = Image.open(io.BytesIO(data))
    img.load()
    return img


def _reason(data: bytes, **kwargs: int) -> str:
    with pytest.raises(ImageRejected) as info:
        prepare_image(data, **kwargs)
    return info.value.reason


def test_plain_jpeg_keeps_size_and_hashes_bytes_as_read() -> None:
    data = _jpeg(Image.new("RGB", (300, 200), (200, 30, 30)))
    prepared = prepare_image(data)
    assert prepared.sha256 == sha256_hex(data)
    assert prepared.original_size == (300, 200)
    out = _decoded(prepared.jpeg)
    assert (out.format, out.mode, out.size) == ("JPEG", "RGB", (300, 200))


def test_longest_side_is_capped() -> None:
    prepared = prepare_image(_jpeg(Image.new("RGB", (3000, 1500))), max_side=1024)
    assert _decoded(prepared.jpeg).size == (1024, 512)


def test_exif_orientation_is_applied() -> None:
    exif = Image.Exif()
    exif[0x0112] = 6  # rotate 90 degrees clockwise to display
    data = _jpeg(Image.new("RGB", (400, 100), (0, 0, 255)), exif=exif)
    assert _decoded(prepare_image(data).jpeg).size == (100, 400)


def test_cmyk_jpeg_becomes_rgb() -> None:
    data = _jpeg(Image.new("CMYK", (64, 64), (0, 255, 255, 0)))  # red in CMYK
    r, g, b = _decoded(prepare_image(data).jpeg).getpixel((32, 32))
    assert r > 200 and g < 60 and b < 60


def test_16_bit_png_is_scaled_not_clipped() -> None:
    gradient = np.tile(np.linspace(0, 65535, 64, dtype=np.uint16), (64, 1))
    img = Image.fromarray(gradient)
    out = io.BytesIO()
    img.save(out, "PNG")
    rgb = _decoded(prepare_image(out.getvalue()).jpeg)
    assert rgb.getpixel((0, 32))[0] < 20 and rgb.getpixel((63, 32))[0] > 235
    assert 100 < rgb.getpixel((32, 32))[0] < 160


def test_palette_with_transparency_goes_on_white() -> None:
    img = Image.new("RGBA", (32, 32), (0, 0, 0, 0)).convert("P")
    out = io.BytesIO()
    img.save(out, "PNG", transparency=0)
    assert min(_decoded(prepare_image(out.getvalue()).jpeg).getpixel((5, 5))) > 240


def test_animated_gif_gives_first_frame() -> None:
    frames = [Image.new("RGB", (40, 40), color) for color in ((255, 0, 0), (0, 0, 255))]
    out = io.BytesIO()
    frames[0].save(out, "GIF", save_all=True, append_images=frames[1:], duration=100, loop=0)
    r, _, b = _decoded(prepare_image(out.getvalue()).jpeg).getpixel((20, 20))
    assert r > 200 and b < 60


def test_rgba_png_goes_on_white() -> None:
    out = io.BytesIO()
    Image.new("RGBA", (10, 10), (255, 0, 0, 0)).save(out, "PNG")
    assert min(_decoded(prepare_image(out.getvalue()).jpeg).getpixel((5, 5))) > 240


def test_zero_bytes_text_and_truncated_are_unreadable() -> None:
    assert _reason(b"") == "unreadable_image"
    assert _reason("这不是图片, just text named .jpg\n".encode()) == "unreadable_image"
    good = _jpeg(Image.effect_noise((256, 256), 60).convert("RGB"))
    assert _reason(good[: len(good) // 2]) == "unreadable_image"


def _png_claiming(width: int, height: int) -> bytes:
    """A tiny PNG whose header claims ``width`` x ``height`` (a decompression bomb's calling card)."""
    def chunk(kind: bytes, body: bytes) -> bytes:
        return struct.pack(">I", len(body)) + kind + body + struct.pack(">I", zlib.crc32(kind + body))

    header = struct.pack(">IIBBBBB", width, height, 8, 2, 0, 0, 0)
    return (
        b"\x89PNG\r\n\x1a\n" + chunk(b"IHDR", header) + chunk(b"IDAT", zlib.compress(b"\0" * 16)) + chunk(b"IEND", b"")
    )


def test_decompression_bombs_are_refused_before_decoding() -> None:
    assert _reason(_png_claiming(100_000, 100_000)) == "image_too_large"
    assert _reason(_jpeg(Image.new("RGB", (200, 200))), max_pixels=10_000) == "image_too_large"


def test_unicode_file_names(tmp_path: Path) -> None:
    path = tmp_path / "商品 图片.jpg"
    path.write_bytes(_jpeg(Image.new("RGB", (20, 20))))
    assert prepare_image(read_image_file(path)).original_size == (20, 20)


def test_missing_file_is_file_not_found(tmp_path: Path) -> None:
    with pytest.raises(ImageRejected) as info:
        read_image_file(tmp_path / "gone.jpg")
    assert info.value.reason == "file_not_found"


@pytest.mark.parametrize(
    "url, expected",
    [
        ("https://img.alicdn.com/bao/x.jpg", True),
        ("https://GW.ALICDN.COM/x.jpg", True),
        ("http://img01.taobaocdn.com/x.jpg", True),
        ("https://alicdn.com.evil.example/x.jpg", False),
        ("https://example.com/x.jpg", False),
    ],
)
def test_platform_cdn_hosts(url: str, expected: bool) -> None:
    assert is_platform_cdn(url, ["*.alicdn.com", "*.tbcdn.cn", "*.taobaocdn.com"]) is expected


def test_a_decoder_raising_something_odd_is_an_unreadable_image() -> None:
    # A DDS header with pixel-format flags Pillow does not know: its decoder raises NotImplementedError.
    header = b"DDS " + struct.pack("<7I", 124, 4111, 48, 64, 192, 0, 0) + bytes(44)
    header += struct.pack("<8I", 32, 0x88, 0, 24, 0xFF0000, 0xFF00, 0xFF, 0) + bytes(20)
    assert _reason(header + bytes(64)) == "unreadable_image"


def test_16_bit_samples_scale_by_their_depth_not_by_the_picture() -> None:
    # A dark 16-bit picture stays dark: 300/65535 is black, not mid-grey.
    dark = Image.fromarray(np.full((8, 8), 300, dtype=np.uint16))
    out = io.BytesIO()
    dark.save(out, "PNG")
    assert _decoded(prepare_image(out.getvalue()).jpeg).getpixel((4, 4))[0] <= 2


def test_a_pixel_limit_above_pillows_own_is_honoured() -> None:
    # 100,000 x 1,000 = 1e8 pixels: over Pillow's default bomb limit (89.5 M), under a raised setting.
    big = _png_claiming(100_000, 1_000)
    assert _reason(big) == "image_too_large"
    assert _reason(big, max_pixels=200_000_000) == "unreadable_image"  # past the size check; the data is fake
