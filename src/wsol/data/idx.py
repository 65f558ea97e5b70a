"""Reader and writer for the IDX format of the MNIST files (LeCun et al., http://yann.lecun.com/exdb/mnist/).

Layout of an IDX file (all integers big-endian)::

    bytes 0-1   0x00 0x00            magic, always zero
    byte  2     dtype code           0x08 uint8, 0x09 int8, 0x0B int16, 0x0C int32, 0x0D float32, 0x0E float64
    byte  3     ndim                 number of dimensions
    4 * ndim    uint32 sizes         size of each dimension
    ...         data                 prod(sizes) * itemsize bytes, C order

Files compressed with gzip (``*.gz``, as distributed) are detected from their first two bytes, not from their
name. torchvision has an equivalent private reader; this one is written out because it must report truncated or
malformed files with a clear ``ValueError`` naming the file and the expected vs actual size, which the MNIST
download tooling does not do.
"""

from __future__ import annotations

import gzip
import os
import struct
import zlib
from pathlib import Path

import numpy as np

from wsol.atomic import atomic_write_bytes

__all__ = ["IDX_DTYPES", "read_idx", "write_idx"]

#: IDX dtype code -> numpy dtype (big-endian where it matters).
IDX_DTYPES: dict[int, np.dtype] = {
    0x08: np.dtype(np.uint8),
    0x09: np.dtype(np.int8),
    0x0B: np.dtype(">i2"),
    0x0C: np.dtype(">i4"),
    0x0D: np.dtype(">f4"),
    0x0E: np.dtype(">f8"),
}
_GZIP_MAGIC = b"\x1f\x8b"


def _read_bytes(path: Path) -> bytes:
    """Return the (decompressed) content of ``path``; gzip is detected from the magic bytes."""
    if not path.is_file():
        raise ValueError(f"IDX file {str(path)!r} does not exist or is not a regular file")
    raw = path.read_bytes()
    if raw[:2] != _GZIP_MAGIC:
        return raw
    try:
        return gzip.decompress(raw)
    except (EOFError, OSError, zlib.error) as exc:
        raise ValueError(f"IDX file {str(path)!r} is a corrupt or truncated gzip file: {exc}") from exc


def read_idx(path: str | os.PathLike[str]) -> np.ndarray:
    """Read an IDX file (optionally gzip-compressed) into a native-endian numpy array.

    Args:
        path: file to read, e.g. ``train-images-idx3-ubyte`` or ``train-images-idx3-ubyte.gz``.

    Returns:
        Array of shape ``sizes`` and the dtype given by the header (native byte order).

    Raises:
        ValueError: missing file, bad magic number, unknown dtype code, truncated header or data, or
            trailing bytes after the data; the message names the file and, for size problems, the expected
            and actual byte counts.
    """
    path = Path(path)
    data = _read_bytes(path)
    name = str(path)
    if len(data) < 4:
        raise ValueError(f"IDX file {name!r} is truncated: {len(data)} bytes, the header alone needs 4")
    zero0, zero1, code, ndim = data[0], data[1], data[2], data[3]
    if zero0 != 0 or zero1 != 0:
        raise ValueError(
            f"IDX file {name!r} has a bad magic number 0x{data[:4].hex()} (first two bytes must be zero); "
            "is it an IDX file?"
        )
    if code not in IDX_DTYPES:
        raise ValueError(
            f"IDX file {name!r} has unknown dtype code 0x{code:02x}; "
            f"expected one of {[hex(c) for c in IDX_DTYPES]}"
        )
    if ndim == 0:
        raise ValueError(f"IDX file {name!r} declares 0 dimensions")
    header_size = 4 + 4 * ndim
    if len(data) < header_size:
        raise ValueError(
            f"IDX file {name!r} is truncated inside its header: expected at least {header_size} bytes, "
            f"got {len(data)}"
        )
    shape = struct.unpack(f">{ndim}I", data[4:header_size])
    dtype = IDX_DTYPES[code]
    expected = header_size + int(np.prod(shape, dtype=np.int64)) * dtype.itemsize
    if len(data) != expected:
        what = "truncated" if len(data) < expected else "longer than its header says"
        raise ValueError(
            f"IDX file {name!r} is {what}: header {shape} of {dtype.name} needs {expected} bytes "
            f"(decompressed), got {len(data)}"
        )
    arr = np.frombuffer(data, dtype=dtype, offset=header_size).reshape(shape)
    return arr.astype(dtype.newbyteorder("="), copy=True)


def write_idx(path: str | os.PathLike[str], array: np.ndarray, compress: bool | None = None) -> None:
    """Write ``array`` as an IDX file, atomically (temporary file in the same folder + ``os.replace``).

    Args:
        path: destination; gzip-compressed when ``compress`` is True, or when it is None and the name ends
            with ``.gz``.
        array: array whose dtype is one of :data:`IDX_DTYPES` (byte order is converted as needed).
        compress: force (True) or forbid (False) gzip compression.

    Raises:
        ValueError: unsupported dtype, 0-d array or a dimension larger than 2**32 - 1.
    """
    path = Path(path)
    arr = np.asarray(array)
    codes = {dt.newbyteorder("="): c for c, dt in IDX_DTYPES.items()}
    native = arr.dtype.newbyteorder("=")
    if native not in codes:
        raise ValueError(f"array dtype {arr.dtype} cannot be stored in IDX; use one of uint8, int8, int16, "
                         "int32, float32, float64")
    if arr.ndim == 0 or arr.ndim > 255 or any(s > 0xFFFFFFFF for s in arr.shape):
        raise ValueError(f"array shape {arr.shape} cannot be stored in IDX")
    code = codes[native]
    payload = struct.pack(">BBBB", 0, 0, code, arr.ndim) + struct.pack(f">{arr.ndim}I", *arr.shape)
    payload += np.ascontiguousarray(arr, dtype=IDX_DTYPES[code]).tobytes()
    if compress if compress is not None else path.suffix == ".gz":
        payload = gzip.compress(payload, mtime=0)
    atomic_write_bytes(path, payload)
