"""Robust image loading: every file becomes an RGB ``PIL.Image`` or an :class:`ImageLoadError` saying why not.

:func:`load_image` handles what real folders of photos contain:

* **orientation**: the EXIF ``Orientation`` tag is applied (``PIL.ImageOps.exif_transpose``), so a phone
  photo stored sideways is returned upright (a broken EXIF block is ignored, the pixels are kept as stored);
* **modes**: grayscale (``L``, ``1``) is replicated to three channels; palette (``P``) images are expanded;
  ``CMYK`` / ``YCbCr`` / ``LAB`` / ``HSV`` are converted by Pillow; **transparency** (``RGBA``, ``LA``, ``PA``,
  palette or ``tRNS`` transparency) is *composited on white* (``out = α·rgb + (1 − α)·255``), the usual
  rendering of a transparent image on a page; **16-bit** grayscale (``I;16*`` modes, e.g. 16-bit PNG) is
  scaled to 8 bits as ``round(v / 257)`` (65535 → 255, i.e. ``v·255/65535``; Pillow's own ``convert("L")``
  clips every value above 255 to white); 32-bit integer ``I`` images are taken as 8-bit if their maximum is
  ≤ 255, as 16-bit if ≤ 65535, else min-max scaled; float ``F`` images as ``[0, 1]`` if they lie in it, else
  min-max scaled;
* **animated / multi-page** files (GIF, TIFF): the first frame;
* **failures**: missing path, a directory, an empty (0-byte) file, a file Pillow cannot identify, corrupt or
  truncated pixel data, and images above a pixel limit (decompression-bomb guard, ``max_pixels``; Pillow's
  own ``DecompressionBombError`` / ``DecompressionBombWarning`` are turned into the same error) each raise
  :class:`ImageLoadError` (a ``ValueError``) naming the file and the reason.

:func:`iter_images` expands a list of files and folders into image paths (folders: sorted, by extension).
"""

from __future__ import annotations

import contextlib
import os
import struct
import threading
import warnings
from collections.abc import Callable, Iterable, Iterator
from pathlib import Path

import numpy as np
from PIL import Image, ImageOps, UnidentifiedImageError

__all__ = [
    "DEFAULT_MAX_PIXELS",
    "IMAGE_EXTENSIONS",
    "ImageLoadError",
    "is_image_path",
    "iter_images",
    "load_image",
    "to_rgb",
]

PathLike = str | os.PathLike[str]

#: extensions (lower case) taken as images when a folder is listed.
IMAGE_EXTENSIONS: frozenset[str] = frozenset(
    {".jpg", ".jpeg", ".jpe", ".jfif", ".png", ".bmp", ".gif", ".tif", ".tiff", ".webp", ".ppm", ".pgm", ".pbm",
     ".pnm"}
)  # fmt: skip

#: default ``max_pixels`` of :func:`load_image`: Pillow's warning threshold (89,478,485 pixels ≈ 9459²).
DEFAULT_MAX_PIXELS: int = 89_478_485

_PIL_LIMIT_LOCK = threading.Lock()


class ImageLoadError(ValueError):
    """An image file that cannot be used; ``path`` and ``reason`` are kept as attributes."""

    def __init__(self, path: PathLike, reason: str) -> None:
        self.path = str(path)
        self.reason = reason
        super().__init__(f"{self.path}: {reason}")


def is_image_path(path: PathLike) -> bool:
    """Whether the file name has one of :data:`IMAGE_EXTENSIONS` (case-insensitive)."""
    return Path(path).suffix.lower() in IMAGE_EXTENSIONS


@contextlib.contextmanager
def _pil_pixel_limit(limit: int | None) -> Iterator[None]:
    """Pillow's global ``Image.MAX_IMAGE_PIXELS`` set to ``limit`` during the block (under a lock).

    Pillow checks image sizes against that module global inside ``Image.open`` (warning above it, error
    above twice it); we enforce our own ``max_pixels`` instead, so Pillow's check is lifted to ours for
    the duration of the call and restored afterwards.
    """
    with _PIL_LIMIT_LOCK:
        saved = Image.MAX_IMAGE_PIXELS
        Image.MAX_IMAGE_PIXELS = limit
        try:
            yield
        finally:
            Image.MAX_IMAGE_PIXELS = saved


def _scale_to_uint8(arr: np.ndarray, mode: str) -> np.ndarray:
    """A 16-bit / 32-bit / float single-channel array → uint8 (rules in the module docstring)."""
    if mode.startswith("I;16"):
        return np.rint(arr.astype(np.float64) / 257.0).astype(np.uint8)
    a = arr.astype(np.float64)
    if not np.isfinite(a).all():
        raise ValueError("the image contains NaN or infinite values")
    lo, hi = float(a.min()), float(a.max())
    if mode == "F" and lo >= 0.0 and hi <= 1.0:
        return np.rint(a * 255.0).astype(np.uint8)
    if mode == "I" and lo >= 0 and hi <= 255:
        return a.astype(np.uint8)
    if mode == "I" and lo >= 0 and hi <= 65535:
        return np.rint(a / 257.0).astype(np.uint8)
    if hi == lo:
        return np.zeros(a.shape, dtype=np.uint8)
    return np.rint((a - lo) * (255.0 / (hi - lo))).astype(np.uint8)


def _has_transparency(image: Image.Image) -> bool:
    return image.mode in ("RGBA", "LA", "PA", "RGBa", "La") or "transparency" in image.info


def to_rgb(image: Image.Image) -> Image.Image:
    """Any ``PIL.Image`` → mode ``RGB`` with the rules of the module docstring (no EXIF handling here).

    Transparent images are composited on white; 16-bit and float grayscale is scaled, not clipped.

    Raises:
        ValueError: not a PIL image, or a float image with NaN/inf values.
    """
    if not isinstance(image, Image.Image):
        raise ValueError(f"expected a PIL.Image, got {type(image).__name__}")
    mode = image.mode
    if mode == "RGB":
        return image
    if mode.startswith("I") or mode == "F":
        gray = Image.fromarray(_scale_to_uint8(np.asarray(image), mode), mode="L")
        return gray.convert("RGB")
    if _has_transparency(image):
        rgba = image.convert("RGBA")
        white = Image.new("RGBA", rgba.size, (255, 255, 255, 255))
        return Image.alpha_composite(white, rgba).convert("RGB")
    return image.convert("RGB")


def _open(p: Path, max_pixels: int | None) -> Image.Image:
    """``Image.open`` (header only) with Pillow's own bomb check no stricter than ``max_pixels``."""
    limit = Image.MAX_IMAGE_PIXELS
    lift = limit is not None and (max_pixels is None or max_pixels > limit)
    with warnings.catch_warnings():
        warnings.simplefilter("error", Image.DecompressionBombWarning)
        with _pil_pixel_limit(max_pixels) if lift else contextlib.nullcontext():
            return Image.open(p)


def load_image(path: PathLike, *, max_pixels: int | None = DEFAULT_MAX_PIXELS) -> Image.Image:
    """Read an image file as an upright RGB ``PIL.Image`` (fully decoded, file closed).

    Args:
        path: the file.
        max_pixels: largest accepted ``width × height`` (decompression-bomb guard); ``None`` = no limit.
            Checked on the header, before any pixel is decoded.

    Raises:
        ImageLoadError: missing path, a directory, an empty file, an unrecognized format, corrupt or
            truncated data, more than ``max_pixels`` pixels, or an unsupported mode; the message names the
            file and the reason.
        ValueError: an invalid ``max_pixels``.
    """
    p = Path(path)
    if max_pixels is not None and (isinstance(max_pixels, bool) or not isinstance(max_pixels, int) or max_pixels < 1):
        raise ValueError(f"max_pixels must be a positive int or None, got {max_pixels!r}")
    if not p.exists():
        raise ImageLoadError(p, "no such file")
    if p.is_dir():
        raise ImageLoadError(p, "is a directory, not an image file")
    try:
        size = p.stat().st_size
    except OSError as err:  # pragma: no cover - race or permissions
        raise ImageLoadError(p, f"cannot read the file ({err.strerror or err})") from None
    if size == 0:
        raise ImageLoadError(p, "empty file (0 bytes)")
    bomb = f"max_pixels={max_pixels} (decompression-bomb guard; raise max_pixels / --max-pixels to accept it)"
    try:
        im = _open(p, max_pixels)
    except (Image.DecompressionBombError, Image.DecompressionBombWarning) as err:
        raise ImageLoadError(p, f"too many pixels for Pillow's decompression-bomb limit ({err}); {bomb}") from None
    except UnidentifiedImageError:
        raise ImageLoadError(p, "not an image (Pillow cannot identify the format)") from None
    except PermissionError as err:
        raise ImageLoadError(p, f"cannot read the file ({err.strerror or err})") from None
    except (OSError, SyntaxError, ValueError, EOFError, IndexError, struct.error) as err:
        raise ImageLoadError(p, f"corrupt image header ({type(err).__name__}: {err})") from None
    with im:
        w, h = im.size
        if max_pixels is not None and w * h > max_pixels:
            raise ImageLoadError(p, f"image of {w}×{h} = {w * h} pixels, more than {bomb}")
        if w == 0 or h == 0:  # pragma: no cover - Pillow refuses such headers itself
            raise ImageLoadError(p, f"image has an empty size {w}×{h}")
        try:
            im.load()  # decode now: truncated / corrupt pixel data fails here
        except MemoryError:  # pragma: no cover
            raise ImageLoadError(p, "not enough memory to decode the image") from None
        except (OSError, SyntaxError, ValueError, EOFError, IndexError, struct.error) as err:
            raise ImageLoadError(p, f"corrupt or truncated image data ({type(err).__name__}: {err})") from None
        try:
            upright = ImageOps.exif_transpose(im)
        except Exception:  # a malformed EXIF block: keep the pixels as stored
            upright = im
        try:
            rgb = to_rgb(upright)
        except (ValueError, OSError) as err:
            raise ImageLoadError(p, f"cannot convert mode {upright.mode!r} to RGB ({err})") from None
        return rgb.copy() if rgb is im else rgb


def iter_images(
    inputs: Iterable[PathLike],
    recursive: bool = False,
    on_ignored: Callable[[Path, str], None] | None = None,
) -> Iterator[Path]:
    """Expand files and folders into image paths, in order.

    A file given explicitly is yielded whatever its extension (and even if it does not exist: :func:`load_image`
    then reports why it cannot be read). A folder yields its files with an :data:`IMAGE_EXTENSIONS`
    extension, sorted by path; with ``recursive`` its sub-folders too (``os.walk``, symbolic links to
    folders not followed). Other files of a folder are passed to ``on_ignored(path, reason)`` (hidden
    files, names starting with ``.``, are skipped silently).

    Args:
        inputs: files and folders.
        recursive: descend into sub-folders.
        on_ignored: called for each non-image file found in a folder.
    """
    if isinstance(inputs, str | os.PathLike):
        inputs = [inputs]
    for item in inputs:
        p = Path(item)
        if not p.is_dir():
            yield p
            continue
        files = _walk(p) if recursive else [c for c in p.iterdir() if c.is_file() and not c.name.startswith(".")]
        for f in sorted(files):
            if is_image_path(f):
                yield f
            elif on_ignored is not None:
                on_ignored(f, f"not an image file (extension {f.suffix or 'none'!r}); ignored")


def _walk(folder: Path) -> list[Path]:
    """Files under ``folder`` (hidden files and folders skipped, folder links not followed)."""
    out: list[Path] = []
    for root, dirs, names in os.walk(folder):
        dirs[:] = [d for d in dirs if not d.startswith(".")]
        out.extend(Path(root) / n for n in names if not n.startswith("."))
    return out
