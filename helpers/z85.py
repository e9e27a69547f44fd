"""Z85 (ZeroMQ base-85), the text encoding Delta uses for deletion vector ids and inline vectors.

Stage 0: used by the server (the DV file a descriptor names) and by the recipients' lean loader (inline
vectors), which may import nothing of the provider's side.
"""

from __future__ import annotations

__all__ = ["z85_decode"]

_Z85 = "0123456789abcdefghijklmnopqrstuvwxyzABCDEFGHIJKLMNOPQRSTUVWXYZ.-:+=^!/*?&<>()[]{}@%$#"
_Z85_VALUE = {c: i for i, c in enumerate(_Z85)}


def z85_decode(text: str) -> bytes:
    """Z85 (ZeroMQ base-85) text as bytes. :raises ValueError: not Z85 of a multiple of 4 bytes."""
    if len(text) % 5:
        raise ValueError("Z85 text length is not a multiple of 5")
    out = bytearray()
    for i in range(0, len(text), 5):
        value = 0
        for c in text[i : i + 5]:
            try:
                value = value * 85 + _Z85_VALUE[c]
            except KeyError:
                raise ValueError(f"{c!r} is not a Z85 character") from None
        if value >= 1 << 32:
            raise ValueError("Z85 group out of range")
        out += value.to_bytes(4, "big")
    return bytes(out)
