#!/usr/bin/env python3
"""Repack tiny-imagenet-100.tar.gz for a machine that takes little data: all images of the first K classes
(train and val) and, of every other class, its first image only (the loader refuses empty class folders).
Loaded with limit=K*500 (train) / K*50 (val) it gives exactly what the full archive gives with that limit."""
import sys
import tarfile

if len(sys.argv) != 4:
    raise SystemExit("usage: gpu_tiny_subset.py SRC.tar.gz DST.tar.gz K")
src, dst, K = sys.argv[1], sys.argv[2], int(sys.argv[3])
with tarfile.open(src, "r:gz") as tin:
    members = tin.getmembers()
    wnids = sorted({m.name.split("/")[2] for m in members if len(m.name.split("/")) >= 3 and m.name.split("/")[1] == "train"})
    keep = set(wnids[:K])
    first = {}
    for m in members:
        p = m.name.split("/")
        if len(p) == 4 and m.isfile() and p[2] not in keep:
            key = (p[1], p[2])
            first[key] = min(first.get(key, p[3]), p[3])
    with tarfile.open(dst, "w:gz", compresslevel=9) as tout:
        for m in members:
            p = m.name.split("/")
            if m.isdir() or len(p) <= 2 or (len(p) == 4 and (p[2] in keep or first.get((p[1], p[2])) == p[3])):
                tout.addfile(m, tin.extractfile(m) if m.isfile() else None)
print(len(wnids), "classes; all images of", K)
