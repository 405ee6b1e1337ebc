#!/usr/bin/env python3
"""Which parts of a running server's own binary are resident, by ELF section.

    bench/resident.py PID [--order server/symbol-order.txt]

Reads the section table of /proc/PID/exe (readelf) and the presence bit of every page the
process maps from that file (/proc/PID/pagemap). With --order, also how much of .text is
resident beyond the functions the list names (the block server/build.rs lays out first):
code the list misses. Works for any binary, e.g. a peer server's. Run as root (or the
process's owner) on Linux.
"""
import argparse
import os
import re
import struct
import subprocess

PAGE = os.sysconf("SC_PAGE_SIZE")


def sections(binary):
    """(name, address, size) of every allocated section."""
    out = subprocess.run(["readelf", "-SW", binary], capture_output=True, text=True, check=True)
    found = []
    for line in out.stdout.splitlines():
        m = re.match(r"\s*\[\s*\d+\]\s+(\S+)\s+\S+\s+([0-9a-f]+)\s+[0-9a-f]+\s+([0-9a-f]+)", line)
        if m and int(m.group(2), 16):
            found.append((m.group(1), int(m.group(2), 16), int(m.group(3), 16)))
    return found


def resident_pages(pid, binary):
    """ELF virtual addresses of the resident pages mapped from `binary`."""
    maps = []
    with open(f"/proc/{pid}/maps") as f:
        for line in f:
            fields = line.split()
            if len(fields) >= 6 and fields[5] == binary:
                start, end = (int(x, 16) for x in fields[0].split("-"))
                maps.append((start, end, int(fields[2], 16)))
    base = min(start - offset for start, _, offset in maps)
    pages = []
    with open(f"/proc/{pid}/pagemap", "rb") as pagemap:
        for start, end, _ in maps:
            for page in range(start, end, PAGE):
                pagemap.seek(page // PAGE * 8)
                (entry,) = struct.unpack("Q", pagemap.read(8))
                if entry >> 63:
                    pages.append(page - base)
    return pages


def listed_end(binary, order):
    """End address of the last function of the ordering list in `binary`."""
    names = {line.strip() for line in open(order) if line.strip() and not line.startswith("#")}
    out = subprocess.run(["nm", "-S", "--defined-only", binary], capture_output=True, text=True, check=True)
    end = 0
    for line in out.stdout.splitlines():
        fields = line.split()
        if len(fields) == 4 and fields[3] in names:
            end = max(end, int(fields[0], 16) + int(fields[1], 16))
    return end


def main():
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("pid", type=int)
    parser.add_argument("--order", help="symbol ordering list (server/symbol-order.txt)")
    args = parser.parse_args()
    binary = os.readlink(f"/proc/{args.pid}/exe")
    table = sections(binary)
    pages = resident_pages(args.pid, binary)
    per_section = {}
    for page in pages:
        name = next((n for n, a, s in table if a <= page < a + s), "(between sections)")
        per_section[name] = per_section.get(name, 0) + PAGE
    print(f"{binary}: {len(pages) * PAGE // 1024} KB resident")
    for name, size in sorted(per_section.items(), key=lambda item: -item[1]):
        total = next((s for n, _, s in table if n == name), 0)
        print(f"  {size // 1024:6} KB  {name} (of {total // 1024} KB)")
    if args.order:
        end = listed_end(binary, args.order)
        text = next((a, s) for n, a, s in table if n == ".text")
        beyond = sum(PAGE for page in pages if end <= page < text[0] + text[1])
        print(f"  .text beyond the listed functions: {beyond // 1024} KB")


if __name__ == "__main__":
    main()
