"""Acceleration the core may switch on: CUDA graphs (:mod:`ddlib.accel.graphs`). A leaf package: it imports
nothing of ddlib but :mod:`ddlib.errors`, so a reader of the algorithms can skip it."""
