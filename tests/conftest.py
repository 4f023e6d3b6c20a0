"""Test-session settings that must be in place before torch is imported."""

import os

# libgomp's default spin-waiting makes PyTorch's CPU threads crawl when the cores are shared with other work
# (the report pipeline sets the same for its kernels); passive waiting costs little when they are not.
os.environ.setdefault("OMP_WAIT_POLICY", "PASSIVE")
