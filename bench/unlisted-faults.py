#!/usr/bin/env python3
"""Functions of a binary whose code was first touched outside a symbol ordering list.

    perf script -i FAULTS -F addr,ip,dso --show-mmap-events | bench/unlisted-faults.py BINARY LIST

FAULTS is a `perf record -e page-faults -c 1 -d` of a process running BINARY. A fault whose
address is the instruction pointer is code touched for the first time; this prints, once
each and in order, the functions such faults landed in that LIST (server/symbol-order.txt,
or any file of names) does not name. bench/symbol-order.sh adds them to the list; each one
left out costs up to 64 KiB resident (the kernel maps code around every fault).
"""
import bisect
import re
import subprocess
import sys


def main():
    binary, listed = sys.argv[1], set(open(sys.argv[2]).read().split())
    syms = []
    nm = subprocess.run(["nm", "-S", "--defined-only", binary], capture_output=True, text=True)
    for line in nm.stdout.splitlines():
        f = line.split()
        if len(f) == 4 and f[2] in "tT":
            syms.append((int(f[0], 16), int(f[1], 16), f[3]))
    syms.sort()
    starts = [s[0] for s in syms]
    base, new = None, []
    for line in sys.stdin:
        if "MMAP" in line and binary in line and base is None:
            m = re.search(r"\[0x([0-9a-f]+)\(0x[0-9a-f]+\) @ 0 ", line)
            base = int(m.group(1), 16) if m else None
            continue
        m = re.match(r"\s*([0-9a-f]+) \(([^)]*)\)\s+([0-9a-f]+) \(([^)]*)\)", line)
        if base is None or not m or m.group(1) != m.group(3) or m.group(2) != binary:
            continue
        va = int(m.group(1), 16) - base
        i = bisect.bisect_right(starts, va) - 1
        hits = [s[2] for s in syms if s[0] == syms[i][0] and va < s[0] + s[1]] if i >= 0 else []
        if hits and not listed.intersection(hits):
            new += [h for h in hits if h not in new]
    print("\n".join(new))


if __name__ == "__main__":
    main()
