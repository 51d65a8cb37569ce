"""Protocol-buffer wire encoding, the little gRPC needs: varints and length-delimited fields.

Shared by the gRPC echo server and the kubelet's gRPC health probe (kubewire carries no protobuf
runtime for two tiny messages).
"""

from __future__ import annotations


def varint(value: int) -> bytes:
    """``value`` as a base-128 varint (negative numbers as their 64-bit two's complement)."""
    value &= (1 << 64) - 1
    out = bytearray()
    while True:
        byte = value & 0x7F
        value >>= 7
        if value:
            out.append(byte | 0x80)
        else:
            out.append(byte)
            return bytes(out)
