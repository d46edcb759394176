# bench/heapwalk.py: walks a live process's main glibc heap (x86-64 glibc
# chunk layout) and prints what pins it: the chunks in use, the free ones,
# and the last chunks before the top. Used to find what holds the echo
# server's RSS after its connections close (bench/results/memory.txt):
#
#   gdb -q -batch -p PID -ex 'source bench/heapwalk.py'
#
# A chunk counts as "used" when the next chunk's PREV_INUSE bit is set,
# which is also true of chunks sitting in glibc's tcache and fastbins: for
# the last used chunk the script prints its first words, where a tcache
# entry shows a mangled next pointer ((address >> 12) ^ next) and the
# tcache key instead of the record the program wrote there.
import struct
from collections import Counter

import gdb

inf = gdb.selected_inferior()
lo = hi = None
for line in open("/proc/%d/maps" % inf.pid):
    if line.rstrip().endswith("[heap]"):
        lo, hi = [int(x, 16) for x in line.split()[0].split("-")]
if lo is None:
    raise gdb.GdbError("no [heap] mapping")


def word(addr):
    return struct.unpack("<Q", bytes(inf.read_memory(addr, 8)))[0]


chunks = []
p = lo
while p < hi - 16:
    size = word(p + 8) & ~7
    if size == 0:
        break
    nxt = p + size
    if nxt >= hi - 16:
        chunks.append((p, size, "top"))
        break
    chunks.append((p, size, "used" if word(nxt + 8) & 1 else "free"))
    p = nxt

used = [c for c in chunks if c[2] == "used"]
free = [c for c in chunks if c[2] == "free"]
print("heap %x-%x: %d KiB, %d chunks" % (lo, hi, (hi - lo) // 1024, len(chunks)))
print("used (or cached): %d chunks, %d bytes; sizes %s"
      % (len(used), sum(c[1] for c in used), Counter(c[1] for c in used).most_common(8)))
print("free: %d chunks, %d KiB" % (len(free), sum(c[1] for c in free) // 1024))
print("last chunks (offset KiB, size, state):")
for c in chunks[-6:]:
    print("  %10d %10d %s" % ((c[0] - lo) // 1024, c[1], c[2]))
if used:
    u = used[-1][0] + 16
    w = struct.unpack("<4Q", bytes(inf.read_memory(u, 32)))
    print("last used chunk at %x: first words %s" % (u, " ".join("%x" % x for x in w)))
    print("  tcache entry if word 0 == (%x >> 12) ^ next: (%x >> 12) = %x"
          % (u, u, u >> 12))
