"""The smallest static ELF64 executables that exit 0, for x86-64 and aarch64: real binaries of a
given architecture (what `file` reports, and on x86-64 what runs) without a cross compiler."""

from __future__ import annotations

import struct

BASE = 0x400000
CODE = {
    # mov edi, 0 ; mov eax, 60 (exit) ; syscall
    0x3E: bytes.fromhex("bf00000000" "b83c000000" "0f05"),
    # movz x0, #0 ; movz x8, #93 (exit) ; svc #0
    0xB7: struct.pack("<3I", 0xD2800000, 0xD2800BA8, 0xD4000001),
}
MACHINES = {"linux-64": 0x3E, "linux-aarch64": 0xB7}


def tiny_elf(machine: int) -> bytes:
    """ELF header + one PT_LOAD program header + the code, loaded at BASE."""
    code = CODE[machine]
    header_size, phdr_size = 64, 56
    entry = BASE + header_size + phdr_size
    ident = b"\x7fELF" + bytes([2, 1, 1, 0]) + bytes(8)  # 64-bit, little endian, version 1, SysV
    header = ident + struct.pack("<HHIQQQIHHHHHH", 2, machine, 1, entry, header_size, 0, 0, header_size,
                                 phdr_size, 1, 0, 0, 0)
    total = header_size + phdr_size + len(code)
    phdr = struct.pack("<IIQQQQQQ", 1, 5, 0, BASE, BASE, total, total, 0x1000)  # PT_LOAD, R+X
    return header + phdr + code
