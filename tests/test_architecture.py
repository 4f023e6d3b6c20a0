"""The import contract of pyproject.toml: the core never imports the report lab, the benchmarks or the command line."""

import os
import shutil
import subprocess
import sys
from pathlib import Path

REPO = Path(__file__).resolve().parents[1]
LINT = Path(sys.executable).with_name("lint-imports")


def _lint(root: Path) -> subprocess.CompletedProcess:
    env = {**os.environ, "PYTHONPATH": str(root)}
    return subprocess.run([str(LINT), "--config", str(REPO / "pyproject.toml"), "--no-cache"], cwd=root, env=env,
                          capture_output=True, text=True, timeout=120)


def test_import_contract_holds():
    proc = _lint(REPO)
    assert proc.returncode == 0, proc.stdout[-2000:] + proc.stderr[-2000:]
    assert "broken" in proc.stdout and "0 broken" in proc.stdout


def test_import_contract_fails_when_a_core_module_imports_the_lab(tmp_path):
    shutil.copytree(REPO / "ddlib", tmp_path / "ddlib", ignore=shutil.ignore_patterns("__pycache__"))
    core = tmp_path / "ddlib" / "samplers.py"
    core.write_text(core.read_text() + "\nfrom ddlib.lab import figures  # a core module reaching into the lab\n")
    proc = _lint(tmp_path)
    assert proc.returncode != 0
    assert "ddlib.samplers -> ddlib.lab.figures" in proc.stdout
