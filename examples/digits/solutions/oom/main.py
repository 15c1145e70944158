"""Allocates far more than the 1 GiB memory limit: expected verdict MEMORY_LIMIT_EXCEEDED.

Each chunk is filled with non-zero bytes so the pages are really touched (a zeroed buffer
could stay virtual and never count against the limit).
"""

import sys

CHUNK = 64 << 20  # 64 MiB
TARGET = 8 << 30  # 8 GiB, eight times the limit

chunks = []
while len(chunks) * CHUNK < TARGET:
    chunks.append(b"\xa5" * CHUNK)
    if len(chunks) % 4 == 0:
        print(f"oom: holding {len(chunks) * CHUNK >> 20} MiB", file=sys.stderr, flush=True)

print("oom: allocated 8 GiB without being killed: the memory limit did not bite", flush=True)
