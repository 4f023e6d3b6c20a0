"""Run one exercise of one submission in a process of its own, with a time limit and an output cap.

A *sandbox server* (``python -m ddlib.grading.sandbox``) imports torch, numpy and ddlib once, then reads one job per
line (JSON) on stdin and answers one result per line on stdout. Each job runs in a child forked from the server, so
it starts in milliseconds instead of the seconds a fresh interpreter needs to import torch, and nothing it does
reaches the next job. In the child:

- stdin is ``/dev/null``; stdout and stderr go to a file capped by ``RLIMIT_FSIZE`` (a write past the cap fails);
  on Linux its address space may grow by a fixed amount beyond what the server had mapped (``RLIMIT_AS``);
- the working directory is an empty temporary folder; torch uses one thread; ``torch``, ``numpy`` and ``random``
  are seeded with 0, so a run is repeatable;
- ddlib's own implementations of the exercises (:data:`FORBIDDEN`) raise ``PermissionError`` and ``diffusers``
  cannot be imported, so a submission that calls them instead of writing the formula fails its tests;
- the setup code and the student's cell run in one namespace; the tests run in a fresh one that receives only the
  functions the exercise asks for, so a helper the student defines cannot shadow one the tests use;
- the tests run statement by statement: a failing ``assert`` is recorded and the next statement runs; any other
  error is recorded and ends the tests (the statements after it usually depend on it).

The server kills the child's process group at the time limit. This isolates mistakes (a crash, an infinite loop,
megabytes of prints) — not a student set on attacking the grader, who could, e.g., reload a ddlib module; run the
grader in a container for that.
"""

from __future__ import annotations

import ast
import json
import linecache
import os
import random
import resource
import signal
import sys
import tempfile
import time
import traceback

# ddlib's implementations of the exercises, made to raise while grading: module -> attributes (Class.method allowed)
FORBIDDEN = {
    "ddlib.schedules": ("NoiseSchedule.__init__", "NoiseSchedule.add_noise", "NoiseSchedule.predict_x0", "make_schedule",
                        "linear_betas", "cosine_betas", "seed_cosine_betas"),
    "ddlib.samplers": ("ddpm_update", "ddpm_step", "ddim_update", "ddim_step", "ddim_timesteps", "ddpm_sample",
                       "ddim_sample"),
    "ddlib.guidance": ("GuidedModel.forward",),
    "ddlib.train": ("diffusion_loss",),
    "ddlib.metrics.stats": ("frechet_distance", "fid", "FIDStatistics.from_features"),
    "ddlib.metrics.reference": ("compute_fid",),
}
BLOCKED_MODULES = ("diffusers",)
SOLUTION_FILE = "<your solution>"
MESSAGE_LIMIT = 600  # characters of one failure message


def _forbidden(*args, **kwargs):
    # Its code replaces a forbidden function's; co_qualname is then that function's dotted name.
    raise PermissionError(__import__("sys")._getframe().f_code.co_qualname
                          + " is not available while grading: write this exercise yourself instead of calling it")


def forbid(table: dict[str, tuple[str, ...]] = FORBIDDEN) -> None:
    """Make every function in ``table`` raise ``PermissionError`` wherever it is referenced (its code is replaced)."""
    import importlib

    for module_name, attrs in table.items():
        module = importlib.import_module(module_name)
        for attr in attrs:
            owner, name = module, attr
            if "." in attr:
                cls_name, name = attr.split(".", 1)
                owner = getattr(module, cls_name, None)
            raw = vars(owner).get(name) if owner is not None else None
            if raw is None:  # renamed in ddlib: tests/test_grading.py checks that every entry exists
                continue
            func = getattr(raw, "__func__", raw)  # classmethod / staticmethod
            code = _forbidden.__code__.replace(co_name=name, co_qualname=f"{module_name}.{attr}")
            try:
                func.__code__ = code
            except (ValueError, AttributeError, TypeError):  # a closure or a builtin: replace the binding instead
                def stand_in(*args, _name=f"{module_name}.{attr}", **kwargs):
                    raise PermissionError(f"{_name} is not available while grading: write this exercise yourself")
                setattr(owner, name, stand_in)
    for name in BLOCKED_MODULES:
        sys.modules[name] = None  # import raises ImportError


def _clip(text: str) -> str:
    text = " ".join(str(text).split())
    return text if len(text) <= MESSAGE_LIMIT else text[: MESSAGE_LIMIT - 1] + "…"


def _describe(err: BaseException) -> str:
    """``Type: message`` and, when the error arose in the student's code, the line there."""
    where = ""
    for frame in reversed(traceback.extract_tb(err.__traceback__)):
        if frame.filename == SOLUTION_FILE:
            where = f" (line {frame.lineno} of your cell: {frame.line})" if frame.line else f" (line {frame.lineno} of your cell)"
            break
    text = str(err)
    return _clip(f"{type(err).__name__}{': ' + text if text else ''}{where}")


def _statement_text(code: str, node: ast.stmt) -> str:
    seg = ast.get_source_segment(code, node) or ""
    return _clip(seg.splitlines()[0] if seg else "")


def run_exercise(job: dict) -> dict:
    """Run setup, the student's cell and the tests in this process; the result as a dict (see module docstring)."""
    failures: list[str] = []
    ns: dict = {"__name__": "__main__"}
    try:
        exec(compile(job["setup"], "<setup>", "exec"), ns)
    except BaseException as err:  # the instructor's setup: a broken source, not the student's fault
        return {"passed": False, "failures": [f"the exercise's setup failed: {_describe(err)}"], "fault": "setup"}
    source = job["solution"]
    linecache.cache[SOLUTION_FILE] = (len(source), None, source.splitlines(True), SOLUTION_FILE)  # lines in messages
    try:
        exec(compile(source, SOLUTION_FILE, "exec"), ns)
    except SyntaxError as err:
        return {"passed": False, "failures": [_clip(f"your cell is not valid Python: {err.msg} (line {err.lineno})")]}
    except BaseException as err:
        return {"passed": False, "failures": [f"your cell raised {_describe(err)}"]}
    missing = [n for n in job["names"] if not callable(ns.get(n))]
    if missing:
        return {"passed": False, "failures": [f"your cell does not define {', '.join(missing)}"]}
    tests_ns: dict = {"__name__": "__main__"}
    exec(compile(job["setup"], "<setup>", "exec"), tests_ns)
    tests_ns.update({n: ns[n] for n in job["names"]})
    code = job["tests"]
    tree = ast.parse(code)
    for node in tree.body:
        try:
            exec(compile(ast.Module(body=[node], type_ignores=[]), "<tests>", "exec"), tests_ns)
        except AssertionError as err:
            msg = _clip(str(err)) or f"failed: {_statement_text(code, node)}"
            if msg not in failures:
                failures.append(msg)
        except BaseException as err:
            failures.append(f"{_describe(err)} — while testing `{_statement_text(code, node)}`")
            break
    return {"passed": not failures, "failures": failures}


def _limit_memory(extra: int) -> None:
    """Address space: what the process has mapped now (torch included) plus ``extra`` bytes (Linux; 0: no limit).

    Without it one ``[0] * 10**10`` in a submission would push the whole machine into swap; with it, a MemoryError.
    """
    if extra <= 0 or not os.path.exists("/proc/self/statm"):
        return
    with open("/proc/self/statm") as f:
        mapped = int(f.read().split()[0]) * os.sysconf("SC_PAGE_SIZE")
    resource.setrlimit(resource.RLIMIT_AS, (mapped + extra, resource.RLIM_INFINITY))


def _child(job: dict, workdir: str, out_path: str, result_path: str) -> None:
    """The forked child: confine, run, write the result; never returns."""
    status = 1
    try:
        os.setpgid(0, 0)
        os.chdir(workdir)
        null = os.open(os.devnull, os.O_RDONLY)
        os.dup2(null, 0)
        out = os.open(out_path, os.O_WRONLY | os.O_CREAT | os.O_TRUNC, 0o600)
        os.dup2(out, 1)
        os.dup2(out, 2)
        import numpy as np
        import torch

        torch.set_num_threads(1)
        torch.manual_seed(0)
        np.random.seed(0)
        random.seed(0)
        forbid()
        _limit_memory(int(job.get("memory_limit", 0)))
        # The cap applies to every file this process writes: the result is written after lifting it (soft limit only).
        limit = int(job["output_limit"])
        resource.setrlimit(resource.RLIMIT_FSIZE, (limit, resource.RLIM_INFINITY))
        result = run_exercise(job)
        resource.setrlimit(resource.RLIMIT_FSIZE, (resource.RLIM_INFINITY, resource.RLIM_INFINITY))
        with open(result_path, "w") as f:
            json.dump(result, f)
        status = 0
    except BaseException:  # noqa: BLE001 — anything here is reported by the parent as a crash
        pass
    finally:
        os._exit(status)


def run_forked(job: dict) -> dict:
    """Fork a child for ``job`` (keys: setup, solution, tests, names, time_limit, output_limit) and wait for it."""
    with tempfile.TemporaryDirectory(prefix="ddlib-grade-") as tmp:
        workdir = os.path.join(tmp, "work")
        os.mkdir(workdir)
        out_path, result_path = os.path.join(tmp, "output"), os.path.join(tmp, "result.json")
        sys.stdout.flush()
        sys.stderr.flush()
        pid = os.fork()
        if pid == 0:
            _child(job, workdir, out_path, result_path)
        deadline = time.monotonic() + float(job["time_limit"])
        timed_out, status, pause = False, 0, 0.001
        while True:
            done, status = os.waitpid(pid, os.WNOHANG)
            if done:
                break
            if time.monotonic() > deadline:
                timed_out = True
                try:
                    os.killpg(pid, signal.SIGKILL)
                except ProcessLookupError:
                    pass
                _, status = os.waitpid(pid, 0)
                break
            time.sleep(pause)
            pause = min(pause * 2, 0.02)
        try:
            os.killpg(pid, signal.SIGKILL)  # whatever the submission left running
        except (ProcessLookupError, PermissionError):
            pass
        printed = os.path.getsize(out_path) if os.path.exists(out_path) else 0
        limit = int(job["output_limit"])
        if timed_out:
            return {"passed": False, "failures": [f"stopped after the time limit of {job['time_limit']:g} s "
                                                  "(an infinite loop, or far too slow)"]}
        if printed >= limit:
            return {"passed": False, "failures": [f"printed more than the output cap of {limit} bytes"]}
        if os.path.exists(result_path):
            with open(result_path) as f:
                return json.load(f)
        how = f"signal {-os.waitstatus_to_exitcode(status)}" if os.WIFSIGNALED(status) else \
            f"exit status {os.waitstatus_to_exitcode(status)}"
        return {"passed": False, "failures": [f"the grading process of this exercise died ({how}) before its tests finished"]}


def serve() -> None:
    """The server loop: a line "ready", then one JSON result line per JSON job line, until stdin closes."""
    import numpy  # noqa: F401  (imported once here, inherited by every child)
    import torch  # noqa: F401

    import importlib

    for module_name in FORBIDDEN:
        importlib.import_module(module_name)
    proto = sys.stdout
    proto.write("ready\n")
    proto.flush()
    for line in sys.stdin:
        if not line.strip():
            continue
        job = json.loads(line)
        try:
            result = run_forked(job)
        except Exception as err:  # the server itself must keep answering
            result = {"passed": False, "failures": [f"grader error: {type(err).__name__}: {err}"], "fault": "grader"}
        proto.write(json.dumps(result) + "\n")
        proto.flush()


if __name__ == "__main__":
    serve()
