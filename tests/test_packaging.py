"""The package's set-up files agree with each other; the command line answers --help."""

import subprocess
import sys
import tomllib
from pathlib import Path

import pytest
import yaml

REPO = Path(__file__).resolve().parents[1]


def test_environment_yml_matches_pyproject():
    project = tomllib.loads((REPO / "pyproject.toml").read_text())["project"]
    extras = project["optional-dependencies"]
    wanted = set(project["dependencies"]) | set(extras["dev"]) | set(extras["course"])
    env = yaml.safe_load((REPO / "environment.yml").read_text())
    pip = next(d["pip"] for d in env["dependencies"] if isinstance(d, dict) and "pip" in d)
    assert set(pip) - {"-e ."} == wanted
    assert "-e ." in pip


def test_torch_pins_are_a_matching_release_pair():
    deps = tomllib.loads((REPO / "pyproject.toml").read_text())["project"]["dependencies"]
    assert "torch==2.14.1" in deps and "torchvision==0.29.1" in deps


@pytest.mark.slow  # one process per command: 8 s
def test_cli_help_lists_the_commands():
    out = subprocess.run([sys.executable, "-m", "ddlib", "--help"], capture_output=True, text=True, cwd=REPO)
    assert out.returncode == 0
    for command in ("train", "sample"):
        assert command in out.stdout
    sub = subprocess.run([sys.executable, "-m", "ddlib", "train", "--help"], capture_output=True, text=True, cwd=REPO)
    assert "--out" in sub.stdout and "resume" in sub.stdout


@pytest.mark.slow  # one process per bad input: 8 s
def test_cli_errors_are_one_line(tmp_path):
    out = subprocess.run([sys.executable, "-m", "ddlib", "sample", str(tmp_path), "--out", str(tmp_path / "s")],
                         capture_output=True, text=True, cwd=REPO)
    assert out.returncode == 2
    assert out.stderr.startswith("error: no checkpoint at") and out.stderr.count("\n") == 1
    bad = subprocess.run([sys.executable, "-m", "ddlib", "train", "--data", "mnist", "--out", str(tmp_path)],
                         capture_output=True, text=True, cwd=REPO)
    assert bad.returncode == 2 and bad.stderr.startswith("error: ") and "mnist" in bad.stderr
