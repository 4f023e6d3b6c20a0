"""Every fenced code block of README.md and docs/*.md is parsed (fast) and executed (slow), so the docs cannot rot.

The rules are written for readers in docs/testing.md ("Every code block runs"); in short:

- a fence must name its language; ``python``, ``bash`` and ``sh`` blocks run, ``text``/``yaml``/``json`` are shown;
- blocks of one document run in order in one fresh temporary folder (a later block may use an earlier block's
  files, as in a reader's shell), with ``$DDLIB_CACHE_DIR`` in a temporary folder shared by all documents,
  ``python`` this interpreter and the repository on ``PYTHONPATH``; Python blocks in their own process, bash
  blocks under ``bash -euo pipefail``;
- Python blocks are written at a toy size and run exactly as shown; bash blocks run after the substitutions of
  :data:`SUBSTITUTIONS` (real sizes → toy sizes), which docs/testing.md lists word for word;
- ``<!-- docs-test: skip (reason) -->`` right before a fence: not run (still parsed); the reason is required,
  and every skipped block is reported as a skipped test with its reason.
"""

from __future__ import annotations

import ast
import os
import re
import subprocess
import sys
from dataclasses import dataclass
from pathlib import Path

import pytest

REPO = Path(__file__).resolve().parents[1]
DOCUMENTS = [REPO / "README.md", *sorted((REPO / "docs").glob("*.md"))]
README_LIMIT = 12_000  # bytes

RUN_LANGS = {"python", "bash", "sh"}
SHOW_LANGS = {"text", "yaml", "json"}

# (regular expression in a bash block, replacement, why): what turns the documented sizes into toy sizes.
# docs/testing.md carries this table row for row (test_substitution_table_is_documented).
SUBSTITUTIONS: list[tuple[str, str, str]] = [
    (r"\bmake setup\b", ":", "the test already runs in the environment that `make setup` makes"),
    (r"\bmake test\b", 'python -m pytest --collect-only -q -p no:cacheprovider "$DOCS_REPO/tests"',
     "running the suite from inside itself would recurse; collecting it checks that it loads"),
    (r"\bmake report\b[^#\n]*", "python -m ddlib report --profile smoke --only 01 ",
     "the smoke profile's first notebook; `tests/test_report.py` runs the whole smoke report"),
    (r"\bmake exercises\b", "python -m ddlib exercises --out build/exercises",
     "what the Makefile target runs, without its `setup` step"),
    (r"\bmake grade SUBMISSIONS=(\S+)", r"python -m ddlib grade \1 --out build/grades",
     "what the Makefile target runs, without its `setup` step"),
    (r"--steps \d+", "--steps 3", "training and DDIM steps"),
    (r"--num \d+", "--num 4", "number of samples"),
    (r"--num-images \d+", "--num-images 4", "number of samples (its spelling under torchrun)"),
    (r"--nproc_per_node \d+", "--nproc_per_node 2", "processes per node: two CPU processes stand in for the GPUs"),
    (r"--limit \d+", "--limit 16", "FID inputs: images per source"),
    (r"^(\s*python -m ddlib (?:fid|stats)\b(?:(?!--limit)[^#\n])*?)([ \t]*#[^\n]*)?$", r"\1 --limit 16\2",
     "FID inputs without `--limit`: 16 images per source instead of whole splits"),
    (r"--batch \d+", "--batch 2", "benchmark training batch"),
    (r"--sample-batch \d+", "--sample-batch 2", "benchmark sampling batch"),
    (r"--sample-steps \d+", "--sample-steps 2", "benchmark DDIM steps"),
    (r"--rounds \d+", "--rounds 1", "benchmark rounds"),
]

FENCE = re.compile(r"^ {0,3}(`{3,})[ \t]*([^`\s]*)[^`]*$")
MARKER = re.compile(r"^<!--\s*docs-test:(.*?)-->\s*$")
SKIP = re.compile(r"^\s*skip\s*\((.*)\)\s*$")

# what a block needs besides this repository (checked before a document runs)
NEEDS_FID = re.compile(r"ddlib (?:fid|stats)\b|FIDEvaluator|compute_fid|reference_statistics|compute_features|"
                       r"make report|ddlib report")
NEEDS_DATA = {"cifar10": re.compile(r"cifar10:"), "tiny-imagenet-100": re.compile(r"tiny-imagenet-100:")}


@dataclass(frozen=True)
class Block:
    doc: str  # path relative to the repository
    line: int  # 1-based line of the opening fence
    lang: str
    code: str
    skip: str | None  # the reason, when marked skip

    @property
    def id(self) -> str:
        return f"{self.doc}:{self.line}"

    def runnable(self) -> str:
        """The code that runs: bash blocks after the substitution table, Python blocks as written."""
        if self.lang == "python":
            return self.code
        code = self.code
        for pattern, repl, _ in SUBSTITUTIONS:
            code = re.sub(pattern, repl, code, flags=re.M)
        return code


def parse(path: Path) -> tuple[list[Block], list[str]]:
    """The fenced blocks of a Markdown file, and the problems found on the way (unnamed fences, bad markers)."""
    rel = str(path.relative_to(REPO))
    lines = path.read_text(encoding="utf-8").splitlines()
    blocks, problems = [], []
    marker: tuple[int, str] | None = None  # (line, text) of a docs-test comment awaiting its fence
    i = 0
    while i < len(lines):
        line = lines[i]
        m = MARKER.match(line.strip())
        if m:
            if marker:
                problems.append(f"{rel}:{marker[0]}: docs-test comment not followed by a fence")
            marker = (i + 1, m.group(1))
            i += 1
            continue
        fence = FENCE.match(line)
        if not fence:
            if marker and line.strip():
                problems.append(f"{rel}:{marker[0]}: docs-test comment not right before a fence")
                marker = None
            i += 1
            continue
        ticks, lang = fence.group(1), fence.group(2).lower()
        end = next((j for j in range(i + 1, len(lines)) if re.match(rf"^ {{0,3}}{ticks}`*\s*$", lines[j])), None)
        if end is None:
            problems.append(f"{rel}:{i + 1}: fence never closed")
            break
        skip = None
        if marker:
            s = SKIP.match(marker[1])
            if not s or not s.group(1).strip():
                problems.append(f"{rel}:{marker[0]}: write `<!-- docs-test: skip (reason) -->`; a reason is required")
            else:
                skip = s.group(1).strip()
            marker = None
        if not lang:
            problems.append(f"{rel}:{i + 1}: a fence must name its language ({', '.join(sorted(RUN_LANGS | SHOW_LANGS))})")
        elif lang not in RUN_LANGS | SHOW_LANGS:
            problems.append(f"{rel}:{i + 1}: fence language {lang!r} is neither run ({', '.join(sorted(RUN_LANGS))}) "
                            f"nor shown ({', '.join(sorted(SHOW_LANGS))})")
        blocks.append(Block(rel, i + 1, lang, "\n".join(lines[i + 1:end]) + "\n", skip))
        i = end + 1
    if marker:
        problems.append(f"{rel}:{marker[0]}: docs-test comment not followed by a fence")
    return blocks, problems


def all_blocks() -> list[Block]:
    return [b for doc in DOCUMENTS for b in parse(doc)[0]]


def code_blocks() -> list[Block]:
    return [b for b in all_blocks() if b.lang in RUN_LANGS]


# ---------------------------------------------------------------------------------------------- fast


def test_readme_is_short_and_opens_with_the_two_commands():
    readme = REPO / "README.md"
    assert readme.stat().st_size <= README_LIMIT, f"README.md is {readme.stat().st_size} bytes (limit {README_LIMIT})"
    text = readme.read_text(encoding="utf-8")
    first = parse(readme)[0][0]
    assert text.find("```") < text.find("\n## "), "the two commands must come before the first section"
    commands = [ln.split("#")[0].strip() for ln in first.code.splitlines() if ln.split("#")[0].strip()]
    assert first.lang == "bash" and commands == ["make report", "make test"], commands


def test_fences_and_markers_are_well_formed():
    problems = [p for doc in DOCUMENTS for p in parse(doc)[1]]
    assert not problems, "\n".join(problems)
    assert len(code_blocks()) >= 10  # the parser found the blocks at all


def test_every_block_parses():
    failures = []
    for b in code_blocks():
        if b.lang == "python":
            try:
                ast.parse(b.code, filename=b.id)
            except SyntaxError as err:
                failures.append(f"{b.id}: {err}")
        else:
            for code in {b.code, b.runnable()}:  # as shown and as run
                proc = subprocess.run(["bash", "-n"], input=code, capture_output=True, text=True, timeout=30)
                if proc.returncode:
                    failures.append(f"{b.id}: {proc.stderr.strip()}")
    assert not failures, "\n".join(failures)


def test_substitution_table_is_documented():
    """docs/testing.md shows the table the test applies, row for row (`|` escaped as `\\|` in Markdown)."""
    rows = []
    for line in (REPO / "docs" / "testing.md").read_text(encoding="utf-8").splitlines():
        cells = [c.strip() for c in re.split(r"(?<!\\)\|", line.strip())[1:-1]]
        if len(cells) == 3 and cells[0].startswith("`") and cells[1].startswith("`"):
            rows.append(tuple(c[1:-1].replace("\\|", "|") for c in cells[:2]))
    assert rows == [(p, r) for p, r, _ in SUBSTITUTIONS]


def test_every_substitution_is_used_and_changes_only_what_it_names():
    bash = [b for b in code_blocks() if b.lang != "python" and not b.skip]
    for pattern, repl, why in SUBSTITUTIONS:
        assert any(re.search(pattern, b.code, flags=re.M) for b in bash), f"no block uses {pattern!r} ({why})"
    for b in bash:  # a line no rule matches runs as written
        for shown, run in zip(b.code.splitlines(), b.runnable().splitlines()):
            if shown != run:
                assert any(re.search(p, shown) for p, _, _ in SUBSTITUTIONS), (b.id, shown)
    sub = next(b for b in bash if "ddlib fid" in b.code).runnable()  # the appended --limit keeps comments
    assert all("--limit 16" in ln.split("#")[0] for ln in sub.splitlines() if re.match(r"\s*python -m ddlib (fid|stats)", ln))


def _slug(heading: str) -> str:
    """GitHub's anchor for a heading: lower case, punctuation dropped, spaces to hyphens."""
    return re.sub(r"[^\w\- ]", "", heading.strip().lower()).replace(" ", "-")


def test_links_between_pages_resolve():
    broken = []
    for doc in DOCUMENTS:
        text = doc.read_text(encoding="utf-8")
        for target in re.findall(r"\]\(([^)\s]+)\)", text):
            if re.match(r"[a-z]+:", target):
                continue  # http(s), mailto: not checked offline
            path, _, anchor = target.partition("#")
            dest = (doc.parent / path).resolve() if path else doc
            if not dest.exists():
                broken.append(f"{doc.name}: {target} (no such file)")
            elif anchor and dest.suffix == ".md":
                headings = {_slug(h) for h in re.findall(r"^#+ (.+)$", dest.read_text(encoding="utf-8"), flags=re.M)}
                if anchor not in headings:
                    broken.append(f"{doc.name}: {target} (no heading with that anchor)")
    assert not broken, "\n".join(broken)


@pytest.mark.parametrize("block", [b for b in code_blocks() if b.skip], ids=lambda b: b.id)
def test_block_marked_skip(block):
    """Each block marked skip, listed with its reason (`pytest -ra` prints the list)."""
    pytest.skip(f"{block.id} ({block.lang}): {block.skip}")


# ---------------------------------------------------------------------------------------------- slow


@pytest.fixture(scope="session")
def docs_env(tmp_path_factory) -> dict:
    """The environment every block runs in; FID weights and data archives as this machine has them."""
    env = {k: v for k, v in os.environ.items() if not k.startswith("DDLIB_")}
    env.update(
        PATH=f"{Path(sys.executable).parent}{os.pathsep}{env.get('PATH', '')}",
        PYTHONPATH=os.pathsep.join(p for p in (str(REPO), os.environ.get("PYTHONPATH")) if p),
        DDLIB_CACHE_DIR=str(tmp_path_factory.mktemp("docs-cache")),
        DOCS_REPO=str(REPO),
        OMP_WAIT_POLICY=os.environ.get("OMP_WAIT_POLICY", "PASSIVE"),
        MPLBACKEND="Agg",
    )
    if "DDLIB_DATA_DIR" in os.environ:
        env["DDLIB_DATA_DIR"] = os.environ["DDLIB_DATA_DIR"]
    from ddlib.errors import DDLibError
    from ddlib.metrics import inception

    try:
        env["DDLIB_FID_WEIGHTS"] = str(inception.resolve_weights())
    except DDLibError as err:
        env["_MISSING_FID"] = str(err)
    return env


def _missing(blocks: list[Block], env: dict) -> list[str]:
    from ddlib.data import default_data_dir

    data_dir = default_data_dir()
    missing = []
    for b in blocks:
        if "_MISSING_FID" in env and NEEDS_FID.search(b.code):
            missing.append(f"{b.id} needs the FID weights: {env['_MISSING_FID']}")
        for name, pattern in NEEDS_DATA.items():
            if pattern.search(b.code) and not any(data_dir.glob(f"{name}*")):
                missing.append(f"{b.id} needs the {name} archive in {data_dir}")
    return missing


def _runnable_documents() -> list[str]:
    return sorted({b.doc for b in code_blocks() if not b.skip}, key=lambda d: (d != "README.md", d))


@pytest.mark.slow
@pytest.mark.parametrize("doc", _runnable_documents())
def test_document_blocks_run(doc, docs_env, tmp_path):
    blocks = [b for b in code_blocks() if b.doc == doc and not b.skip]
    missing = _missing(blocks, docs_env)
    if missing:
        pytest.skip("; ".join(missing))
    env = {k: v for k, v in docs_env.items() if not k.startswith("_")}
    if (REPO / ".venv").exists():  # `source .venv/bin/activate` as in the repository
        (tmp_path / ".venv").symlink_to(REPO / ".venv")
    for b in blocks:
        code = b.runnable()
        script = tmp_path / f"block_{b.line}.{'py' if b.lang == 'python' else 'sh'}"
        script.write_text(code, encoding="utf-8")
        cmd = [sys.executable, script.name] if b.lang == "python" else ["bash", "-euo", "pipefail", script.name]
        proc = subprocess.run(cmd, cwd=tmp_path, env=env, capture_output=True, text=True, timeout=900)
        assert proc.returncode == 0, (f"{b.id} failed (exit {proc.returncode}); it ran:\n{code}\n"
                                      f"--- output (end) ---\n{(proc.stdout + proc.stderr)[-3000:]}")
