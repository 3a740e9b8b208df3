"""`cmd:TEMPLATE`: a command that writes one video per call, as a Generator. TEMPLATE is split like a shell
line (no shell runs: a prompt cannot inject one) and each argument filled from {prompt}, {seed}, {out} (the mp4
to write), {frames}, {height}, {width}, {fps}, {steps}, {guidance}; `{{` is a literal brace. Fuse a value to
its option (`--prompt={prompt}`) so a prompt beginning with `-` is never read as an option. Seconds are
measured around the process; FLOPs and memory are declined (they happen in another process).
"""

from __future__ import annotations

import contextlib
import os
import shlex
import shutil
import signal
import subprocess
import tempfile
from pathlib import Path

from benchmarks.core.errors import GenerationFailed, GeneratorError
from benchmarks.core.hashing import file_sha256
from benchmarks.generators.base import Capabilities, Generation, Generator

PREFIX = "cmd:"
FIELDS = ("prompt", "seed", "out", "frames", "height", "width", "fps", "steps", "guidance")
DECLINED = "a command: its FLOPs run in another process, outside FlopCounterMode (seconds are measured around it)"


class CommandGenerator(Generator):
    """One process per video."""

    kind = "cmd"
    capabilities = Capabilities(max_batch=1, compute="declined", compute_reason=DECLINED, measures_memory=False)

    def __init__(self, spec: str, name: str, template: list[str]):
        super().__init__(spec, name)
        self.template = template

    def fingerprint(self) -> dict:
        # the command line and the files it names (the script): an edited script makes other videos
        named = [a for a in self.template if "{" not in a]
        named += [a.partition("=")[2] for a in named if a.startswith("-") and "=" in a]   # --ckpt=FILE
        files = {a: file_sha256(a) for a in named if a and Path(a).is_file()}
        program = shutil.which(self.template[0])
        if program and self.template[0] not in files and Path(program).is_file():
            files[self.template[0]] = file_sha256(program)
        return {"cmd": self.template, "files": files}

    def generate(self, prompts, seeds, sampling) -> Generation:
        from evaluators.video import VideoReadError, read_video

        videos = []
        for prompt, seed in zip(prompts, seeds):
            with tempfile.TemporaryDirectory(prefix="m4v-cmd-") as tmp:
                out = Path(tmp) / "video.mp4"
                fields = {"prompt": prompt, "seed": seed, "out": str(out), "frames": sampling.frames,
                          "height": sampling.height, "width": sampling.width, "fps": sampling.fps,
                          "steps": ",".join(map(str, sampling.steps)), "guidance": sampling.guidance}
                args = [a.format_map(fields) for a in self.template]
                code, stderr = run_reaped(args, Path(tmp))
                if code != 0:
                    last = (stderr.strip().splitlines() or ["(no stderr)"])[-1]
                    videos.append(GenerationFailed(f"command exited {code}: {last[:300]}"))
                elif not out.is_file():
                    videos.append(GenerationFailed(f"command exited 0 but wrote no video at {out}"))
                else:
                    try:
                        videos.append(read_video(out).frames)
                    except VideoReadError as exc:
                        videos.append(GenerationFailed(f"unreadable video: {exc}"))
        return Generation(videos)


def run_reaped(args: list[str], folder: Path) -> tuple[int, str]:
    """Run one command in its own session, its output to files in `folder` (never a pipe: a background child that
    keeps it open cannot hang the run), then kill whatever it left running in its process group; -> (exit code,
    its stderr decoded as UTF-8 with replacement: bytes that are not text never fail a good video)."""
    with open(folder / ".stdout", "wb") as stdout, open(folder / ".stderr", "wb") as stderr:
        process = subprocess.Popen(args, stdin=subprocess.DEVNULL, stdout=stdout, stderr=stderr,
                                   start_new_session=True)
        try:
            code = process.wait()
        finally:   # its children too (and the command itself when this process is interrupted)
            with contextlib.suppress(ProcessLookupError, PermissionError):
                os.killpg(process.pid, signal.SIGKILL)
            process.wait()
    return code, (folder / ".stderr").read_bytes()[-65536:].decode("utf-8", errors="replace")


def command_generator(spec: str) -> CommandGenerator:
    """Split and check the template: a known program, known placeholders, an {out}."""
    try:
        template = shlex.split(spec[len(PREFIX):])
    except ValueError as exc:
        raise GeneratorError(f"--models {spec}: cannot split the command ({exc})") from exc
    if not template:
        raise GeneratorError(f"--models {spec}: empty command")
    dummy = {f: "x" for f in FIELDS}
    for arg in template:
        try:
            arg.format_map(dummy)
        except (KeyError, IndexError, ValueError) as exc:
            known = ", ".join("{" + f + "}" for f in FIELDS)
            raise GeneratorError(f"--models {spec}: bad placeholder in {arg!r} ({exc}); known: {known} "
                                 "({{ for a brace)") from exc
    if not any("{out}" in a for a in template):
        raise GeneratorError(f"--models {spec}: the command needs {{out}}, the video file it writes")
    if shutil.which(template[0]) is None:
        raise GeneratorError(f"--models {spec}: program {template[0]!r} not found")
    script = next((a for a in template[1:] if "{" not in a and Path(a).is_file()), template[0])
    return CommandGenerator(spec, f"cmd:{Path(script).name}", template)
