"""Minimal hand-made ICC v2 profiles (grey, CMYK) for tests: no profile files ship with the system."""

import struct
import numpy as np

def _s15(v):
    return struct.pack(">i", round(v * 65536))

def _tag_desc(text):
    ascii_ = text.encode() + b"\0"
    return b"desc" + b"\0" * 4 + struct.pack(">I", len(ascii_)) + ascii_ + b"\0" * 4 + b"\0" * 4 + b"\0" * 3 + b"\0" * 67

def _tag_xyz(x, y, z):
    return b"XYZ " + b"\0" * 4 + _s15(x) + _s15(y) + _s15(z)

def icc_profile(space, tags, pcs=b"XYZ ", cls=b"mntr"):
    """Minimal ICC v2 profile (header + tag table + tag data), enough for LittleCMS."""
    tags = {b"desc": _tag_desc("test"), b"wtpt": _tag_xyz(0.9642, 1.0, 0.8249), **tags}
    table_len = 4 + 12 * len(tags)
    offset = 128 + table_len
    entries, data = b"", b""
    for sig, body in tags.items():
        body += b"\0" * (-len(body) % 4)
        entries += sig + struct.pack(">II", offset + len(data), len(body))
        data += body
    size = 128 + table_len + len(data)
    header = (struct.pack(">I", size) + b"\0" * 4 + bytes([2, 0x10, 0, 0]) + cls + space + pcs + b"\0" * 12 + b"acsp"
              + b"\0" * 24 + struct.pack(">I", 0) + _s15(0.9642) + _s15(1.0) + _s15(0.8249) + b"\0" * 4 + b"\0" * 16 + b"\0" * 28)
    assert len(header) == 128
    return header + struct.pack(">I", len(tags)) + entries + data

def gray_profile(gamma=1.0):
    curv = b"curv" + b"\0" * 4 + struct.pack(">I", 1) + struct.pack(">H", round(gamma * 256))
    return icc_profile(b"GRAY", {b"kTRC": curv})

def cmyk_profile():
    """CMYK -> Lab lut8: lightness falls with K and with the mean of C, M, Y; neutral a, b."""
    grid = 2
    clut = bytearray()
    for c in range(grid):
        for m in range(grid):
            for y in range(grid):
                for k in range(grid):
                    light = (1 - k) * (1 - 0.8 * (c + m + y) / 3)
                    clut += bytes([round(255 * light), 128, 128])
    identity = bytes(range(256))
    lut = (b"mft1" + b"\0" * 4 + bytes([4, 3, grid, 0]) + b"".join(_s15(v) for v in (1, 0, 0, 0, 1, 0, 0, 0, 1))
           + identity * 4 + bytes(clut) + identity * 3)
    return icc_profile(b"CMYK", {b"A2B0": lut}, pcs=b"Lab ", cls=b"prtr")
