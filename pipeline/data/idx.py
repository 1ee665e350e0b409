"""Read and write the IDX format that MNIST ships in.

An IDX file is a 4-byte magic number ``00 00 TT DD`` (TT = element type, DD = number of
dimensions), DD big-endian uint32 sizes, then the elements in C order. MNIST uses only
TT = 0x08 (unsigned byte): images are ``(n, 28, 28)`` and labels ``(n,)``.
"""

from __future__ import annotations

import struct
from pathlib import Path

import numpy as np

from pipeline.errors import InputError

UBYTE = 0x08


class IDXError(InputError):
    """A file is not the IDX file it claims to be."""


def parse_idx(data: bytes, name: str = "<bytes>", expect_ndim: int | None = None) -> np.ndarray:
    """Parse IDX bytes into a uint8 array, checking magic, dimensions and byte count."""
    if len(data) < 4:
        raise IDXError(f"{name}: {len(data)} bytes is too short for an IDX header (need 4).")
    zero0, zero1, dtype_code, ndim = data[0], data[1], data[2], data[3]
    if zero0 != 0 or zero1 != 0 or dtype_code != UBYTE or ndim == 0:
        raise IDXError(
            f"{name}: bad magic number 0x{data[:4].hex()} (expected 0x000008NN, unsigned bytes "
            "with NN dimensions). Is it gzip-compressed or not an MNIST file? "
            "Decompress it or fetch it again."
        )
    if expect_ndim is not None and ndim != expect_ndim:
        raise IDXError(f"{name}: has {ndim} dimensions, expected {expect_ndim}.")
    header = 4 + 4 * ndim
    if len(data) < header:
        raise IDXError(f"{name}: truncated header ({len(data)} bytes, need {header}).")
    shape = struct.unpack(f">{ndim}I", data[4:header])
    expected = header + int(np.prod(shape, dtype=np.int64))
    if len(data) != expected:
        raise IDXError(
            f"{name}: header says shape {shape} ({expected} bytes in all) but the file has "
            f"{len(data)} bytes ({'truncated' if len(data) < expected else 'trailing data'}). "
            "Delete it and fetch it again."
        )
    return np.frombuffer(data, dtype=np.uint8, offset=header).reshape(shape)


def read_idx(path: str | Path, expect_ndim: int | None = None) -> np.ndarray:
    """Read an IDX file from disk (see :func:`parse_idx`)."""
    path = Path(path)
    return parse_idx(path.read_bytes(), name=str(path), expect_ndim=expect_ndim)


def encode_idx(array: np.ndarray) -> bytes:
    """Encode a uint8 array as IDX bytes (the tests build their IDX files with it)."""
    array = np.ascontiguousarray(array, dtype=np.uint8)
    header = bytes([0, 0, UBYTE, array.ndim]) + struct.pack(f">{array.ndim}I", *array.shape)
    return header + array.tobytes()
