"""The BIOS e820 memory map of a simulated PC (arch/x86/kernel/e820.c).

The map has the holes every PC has: the real-mode IVT page, the EBDA and option/BIOS ROMs
below 1 MiB, ACPI tables at the top of low RAM, the 32-bit PCI/MMIO hole below 4 GiB
(IOAPIC, local APIC, BIOS flash) and the rest of RAM above 4 GiB.
"""

from __future__ import annotations

from dataclasses import dataclass

GiB = 1 << 30
MiB = 1 << 20

# enum e820_type (arch/x86/include/asm/e820/types.h); values are fixed by the BIOS interface.
E820_TYPE_RAM = 1
E820_TYPE_RESERVED = 2
E820_TYPE_ACPI = 3
E820_TYPE_NVS = 4

E820_NAMES = {
    E820_TYPE_RAM: "System RAM",
    E820_TYPE_RESERVED: "Reserved",
    E820_TYPE_ACPI: "ACPI Tables",
    E820_TYPE_NVS: "ACPI Non-volatile Storage",
}

LOWMEM_TOP = 3 * GiB  # where the 32-bit PCI hole starts on this simulated chipset
ACPI_SIZE = 128 * 1024


@dataclass(frozen=True)
class E820Entry:
    addr: int
    size: int
    type: int

    @property
    def end(self) -> int:
        return self.addr + self.size


def build_e820(ram: int) -> list[E820Entry]:
    """The firmware map for ``ram`` bytes of installed memory (a multiple of 128 MiB)."""
    low = min(ram, LOWMEM_TOP)
    high = ram - low
    m = [
        E820Entry(0, 0x1000, E820_TYPE_RESERVED),
        E820Entry(0x1000, 0x9FC00 - 0x1000, E820_TYPE_RAM),
        E820Entry(0x9FC00, 0xA0000 - 0x9FC00, E820_TYPE_RESERVED),
        E820Entry(0xF0000, 0x10000, E820_TYPE_RESERVED),
        E820Entry(0x100000, low - ACPI_SIZE - 0x100000, E820_TYPE_RAM),
        E820Entry(low - ACPI_SIZE, ACPI_SIZE // 2, E820_TYPE_ACPI),
        E820Entry(low - ACPI_SIZE // 2, ACPI_SIZE // 2, E820_TYPE_NVS),
        E820Entry(0xFEC00000, 0x1000, E820_TYPE_RESERVED),
        E820Entry(0xFEE00000, 0x1000, E820_TYPE_RESERVED),
        E820Entry(0xFFFC0000, 0x40000, E820_TYPE_RESERVED),
    ]
    if high:
        m.append(E820Entry(4 * GiB, high, E820_TYPE_RAM))
    return m


def ram_ranges(e820: list[E820Entry]) -> list[tuple[int, int]]:
    return [(e.addr, e.end) for e in e820 if e.type == E820_TYPE_RAM]
