"""Tests of wsol.io: every image file kind written for real with Pillow in tmp_path, and every failure."""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pytest
from PIL import Image

from wsol.io import DEFAULT_MAX_PIXELS, ImageLoadError, is_image_path, iter_images, load_image, to_rgb


def _noise(h: int, w: int, seed: int = 0) -> np.ndarray:
    return np.random.default_rng(seed).integers(0, 256, (h, w, 3), dtype=np.uint8)


# --- failures --------------------------------------------------------------------------------------


def test_missing_directory_empty_and_non_image(tmp_path: Path):
    cases = {
        tmp_path / "nope.jpg": "no such file",
        tmp_path: "is a directory",
    }
    empty = tmp_path / "empty.png"
    empty.write_bytes(b"")
    cases[empty] = r"empty file \(0 bytes\)"
    text = tmp_path / "notes.jpg"
    text.write_text("this is not a JPEG")
    cases[text] = "not an image"
    for path, reason in cases.items():
        with pytest.raises(ImageLoadError, match=reason) as info:
            load_image(path)
        assert isinstance(info.value, ValueError)
        assert info.value.path == str(path) and str(path) in str(info.value)


def test_truncated_jpeg_is_refused(tmp_path: Path):
    full = tmp_path / "full.jpg"
    Image.fromarray(_noise(96, 96)).save(full, quality=95)
    data = full.read_bytes()
    cut = tmp_path / "cut.jpg"
    cut.write_bytes(data[: len(data) // 2])
    assert load_image(full).size == (96, 96)
    with pytest.raises(ImageLoadError, match="truncated") as info:
        load_image(cut)
    assert "cut.jpg" in str(info.value)
    header_only = tmp_path / "header.jpg"
    header_only.write_bytes(data[:20])
    with pytest.raises(ImageLoadError, match=r"header\.jpg"):
        load_image(header_only)


def test_corrupt_png_data(tmp_path: Path):
    path = tmp_path / "bad.png"
    Image.fromarray(_noise(32, 32)).save(path)
    data = bytearray(path.read_bytes())
    mid = len(data) // 2
    data[mid : mid + 64] = bytes(64)  # zero a run of the compressed IDAT stream
    path.write_bytes(bytes(data))
    with pytest.raises(ImageLoadError, match=r"bad\.png"):
        load_image(path)


def test_pixel_limit_is_configurable(tmp_path: Path, monkeypatch: pytest.MonkeyPatch):
    path = tmp_path / "big.png"
    Image.new("L", (2000, 1000), 7).save(path)  # 2 M pixels, a few KB on disk
    with pytest.raises(ImageLoadError, match=r"2000×1000 = 2000000 pixels, more than max_pixels=1000000"):
        load_image(path, max_pixels=1_000_000)
    assert load_image(path, max_pixels=2_000_000).size == (2000, 1000)
    assert load_image(path, max_pixels=None).getpixel((5, 5)) == (7, 7, 7)
    with pytest.raises(ValueError, match="max_pixels must be a positive int"):
        load_image(path, max_pixels=0)
    assert DEFAULT_MAX_PIXELS == 89_478_485


def test_pillow_bomb_error_and_warning_become_load_errors(tmp_path: Path, monkeypatch: pytest.MonkeyPatch):
    warn_size, error_size = tmp_path / "w.png", tmp_path / "e.png"
    Image.new("RGB", (40, 40)).save(warn_size)  # 1600 > 1000: Pillow warns
    Image.new("RGB", (60, 50)).save(error_size)  # 3000 > 2·1000: Pillow raises
    monkeypatch.setattr(Image, "MAX_IMAGE_PIXELS", 1000)
    for path in (warn_size, error_size):
        with pytest.raises(ImageLoadError, match="decompression-bomb") as info:
            load_image(path, max_pixels=1000)
        assert path.name in str(info.value)
    # a larger max_pixels lifts Pillow's check for the call only
    assert load_image(error_size, max_pixels=None).size == (60, 50)
    assert load_image(error_size, max_pixels=5000).size == (60, 50)
    assert Image.MAX_IMAGE_PIXELS == 1000


# --- modes -----------------------------------------------------------------------------------------


def test_rgb_and_grayscale(tmp_path: Path):
    rgb = _noise(10, 12)
    Image.fromarray(rgb).save(tmp_path / "c.png")
    out = load_image(tmp_path / "c.png")
    assert out.mode == "RGB" and np.array_equal(np.asarray(out), rgb)
    gray = rgb[..., 0]
    Image.fromarray(gray).save(tmp_path / "g.png")
    out = np.asarray(load_image(tmp_path / "g.png"))
    assert out.shape == (10, 12, 3) and all(np.array_equal(out[..., c], gray) for c in range(3))
    Image.fromarray(gray > 127).save(tmp_path / "b.png")  # mode "1"
    out = np.asarray(load_image(tmp_path / "b.png"))
    assert np.array_equal(out[..., 1], np.where(gray > 127, 255, 0))


def test_sixteen_bit_png_is_scaled_not_clipped(tmp_path: Path):
    values = np.array([[0, 257, 1000, 32896, 65535]], dtype=np.uint16)
    path = tmp_path / "deep.png"
    image = Image.fromarray(values)
    assert image.mode == "I;16"
    image.save(path)
    assert Image.open(path).mode.startswith("I;16")
    out = np.asarray(load_image(path))
    # v·255/65535 = v/257, rounded: 1000/257 = 3.89 → 4 (Pillow's convert("L") would clip it to 255)
    assert out[0, :, 0].tolist() == [0, 1, 4, 128, 255]
    assert np.array_equal(out[..., 0], out[..., 2])


def test_int32_and_float_images():
    small = Image.fromarray(np.array([[0, 100, 255]], dtype=np.int32), mode="I")
    assert np.asarray(to_rgb(small))[0, :, 0].tolist() == [0, 100, 255]
    wide = Image.fromarray(np.array([[0, 514, 65535]], dtype=np.int32), mode="I")
    assert np.asarray(to_rgb(wide))[0, :, 0].tolist() == [0, 2, 255]
    unit = Image.fromarray(np.array([[0.0, 0.5, 1.0]], dtype=np.float32), mode="F")
    assert np.asarray(to_rgb(unit))[0, :, 0].tolist() == [0, 128, 255]
    other = Image.fromarray(np.array([[-2.0, 0.0, 2.0]], dtype=np.float32), mode="F")  # min-max scaled
    assert np.asarray(to_rgb(other))[0, :, 0].tolist() == [0, 128, 255]
    with pytest.raises(ValueError, match="NaN"):
        to_rgb(Image.fromarray(np.array([[np.nan, 1.0]], dtype=np.float32), mode="F"))
    with pytest.raises(ValueError, match=r"PIL\.Image"):
        to_rgb(np.zeros((2, 2, 3), np.uint8))  # type: ignore[arg-type]


def test_cmyk_jpeg(tmp_path: Path):
    cmyk = np.zeros((16, 32, 4), dtype=np.uint8)
    cmyk[:, :16, 0] = 255  # pure cyan
    cmyk[:, 16:, 3] = 255  # pure black
    path = tmp_path / "print.jpg"
    Image.fromarray(cmyk, mode="CMYK").save(path, quality=100)
    assert Image.open(path).mode == "CMYK"
    out = np.asarray(load_image(path)).astype(int)
    assert out.shape == (16, 32, 3)
    assert np.abs(out[4:12, 2:12] - [0, 255, 255]).max() <= 3
    assert np.abs(out[4:12, 20:30] - [0, 0, 0]).max() <= 3


def test_rgba_is_composited_on_white(tmp_path: Path):
    rgba = np.zeros((1, 3, 4), dtype=np.uint8)
    rgba[0, :, :3] = [200, 40, 0]
    rgba[0, :, 3] = [0, 255, 128]
    path = tmp_path / "t.png"
    Image.fromarray(rgba, mode="RGBA").save(path)
    out = np.asarray(load_image(path)).astype(int)[0]
    a = 128 / 255
    expected_mid = [round(a * c + (1 - a) * 255) for c in (200, 40, 0)]  # α·rgb + (1 − α)·white
    assert out[0].tolist() == [255, 255, 255]
    assert out[1].tolist() == [200, 40, 0]
    assert np.abs(out[2] - expected_mid).max() <= 1
    la = Image.fromarray(np.array([[[10, 0], [10, 255]]], dtype=np.uint8), mode="LA")
    assert np.asarray(to_rgb(la))[0, :, 0].tolist() == [255, 10]


def test_palette_images_with_and_without_transparency(tmp_path: Path):
    pal = Image.new("P", (4, 1))
    pal.putpalette([255, 0, 0, 0, 0, 255] + [0] * 762)
    pal.putdata([0, 1, 0, 1])
    pal.save(tmp_path / "p.png")
    out = np.asarray(load_image(tmp_path / "p.png"))
    assert out[0].tolist() == [[255, 0, 0], [0, 0, 255], [255, 0, 0], [0, 0, 255]]
    pal.save(tmp_path / "p.gif", transparency=1)  # colour 1 is transparent → white
    out = np.asarray(load_image(tmp_path / "p.gif"))
    assert out[0].tolist() == [[255, 0, 0], [255, 255, 255], [255, 0, 0], [255, 255, 255]]


def test_exif_orientation_is_applied(tmp_path: Path):
    stored = np.zeros((20, 40, 3), dtype=np.uint8)  # h=20, w=40 as stored; left half red, right half blue
    stored[:, :20] = [255, 0, 0]
    stored[:, 20:] = [0, 0, 255]
    exif = Image.Exif()
    exif[0x0112] = 6  # Orientation 6: display rotated 90° clockwise
    path = tmp_path / "phone.jpg"
    Image.fromarray(stored).save(path, exif=exif, quality=100)
    out = load_image(path)
    assert out.size == (20, 40)  # (width, height) swapped
    arr = np.asarray(out).astype(int)
    # rotating 90° clockwise brings the stored left half to the top
    assert np.abs(arr[2:18, 2:18] - [255, 0, 0]).max() <= 8
    assert np.abs(arr[22:38, 2:18] - [0, 0, 255]).max() <= 8
    Image.fromarray(stored).save(tmp_path / "plain.jpg", quality=100)
    assert load_image(tmp_path / "plain.jpg").size == (40, 20)


# --- listing ----------------------------------------------------------------------------------------


def test_iter_images(tmp_path: Path):
    for name in ("b.JPG", "a.png", "sub/c.png", ".hidden.png", ".git/d.png"):
        (tmp_path / name).parent.mkdir(parents=True, exist_ok=True)
        Image.new("RGB", (2, 2)).save(tmp_path / name, format="PNG")
    (tmp_path / "notes.txt").write_text("x")
    ignored: list[tuple[Path, str]] = []
    found = list(iter_images([tmp_path], on_ignored=lambda p, r: ignored.append((p, r))))
    assert found == [tmp_path / "a.png", tmp_path / "b.JPG"]
    assert ignored == [(tmp_path / "notes.txt", "not an image file (extension '.txt'); ignored")]
    deep = list(iter_images([tmp_path], recursive=True))
    assert deep == [tmp_path / "a.png", tmp_path / "b.JPG", tmp_path / "sub" / "c.png"]
    # explicit files are yielded as given, in order, even missing ones (load_image reports them)
    explicit = [tmp_path / "notes.txt", tmp_path / "missing.png", tmp_path / "a.png"]
    assert list(iter_images(explicit)) == explicit
    assert list(iter_images(str(tmp_path / "a.png"))) == [tmp_path / "a.png"]
    assert is_image_path("x.TIFF") and not is_image_path("x.pdf")
