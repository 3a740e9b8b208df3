"""`m4v-bench ARGS` run by `benchmarks.cli.main` in the test's own process, its exit code and output captured as
subprocess.run would give them: the same entry point without a new interpreter's start (~5 s of CPU importing torch
and the harness). For the tests that only read a command's outputs, code and lines; the ones about signals,
environments or a fresh interpreter keep subprocess.run."""

import contextlib
import io
import os
import subprocess


def cli(*args, cwd=None) -> subprocess.CompletedProcess:
    """main(ARGS) with stdout / stderr captured (argparse's exit is its code), optionally from directory `cwd`."""
    from benchmarks.cli import main

    argv = [str(a) for a in args]
    out, err = io.StringIO(), io.StringIO()
    here = os.getcwd()
    try:
        if cwd is not None:
            os.chdir(cwd)
        with contextlib.redirect_stdout(out), contextlib.redirect_stderr(err):
            try:
                code = main(argv)
            except SystemExit as exc:   # argparse refusing a flag
                code = exc.code if isinstance(exc.code, int) else 1
    finally:
        os.chdir(here)
    return subprocess.CompletedProcess(["m4v-bench", *argv], code, out.getvalue(), err.getvalue())
