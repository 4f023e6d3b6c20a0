"""ddlib.perf.cost.measure against allocations of known size.

Each check runs in a fresh interpreter: memory an earlier test freed (and the allocator kept) would be
reused without raising the resident size, which is the documented blind spot of a CPU measurement.
"""

import json
import subprocess
import sys

PROBE = """
import json, time, torch
from ddlib.perf.cost import measure, memory_method

def alloc():
    x = torch.ones(50 * 2**20)  # 200 MiB of float32, every page touched
    time.sleep(0.05)
    return float(x[-1])

cpu = torch.device("cpu")
s1, p1 = measure(alloc, cpu)
s0, p0 = measure(lambda: None, cpu)
print(json.dumps({"alloc": [s1, p1], "nothing": [s0, p0], "method": memory_method(cpu)}))
"""


def test_measure_sees_a_known_allocation_and_its_duration():
    out = subprocess.run([sys.executable, "-c", PROBE], capture_output=True, text=True, check=True, timeout=120)
    r = json.loads(out.stdout.strip().splitlines()[-1])
    seconds, peak = r["alloc"]
    assert 190 * 2**20 <= peak <= 260 * 2**20, peak / 2**20
    assert seconds >= 0.05
    seconds, peak = r["nothing"]
    assert peak < 8 * 2**20 and seconds < 0.5
    assert r["method"].startswith("peak RSS")
