"""Performance measurement: throughput, FLOPs and MFU against diffusers (:mod:`ddlib.perf.bench`), and wall time
and peak memory of one call (:mod:`ddlib.perf.cost`). The core library never imports this package."""
