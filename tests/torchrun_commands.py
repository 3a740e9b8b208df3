"""Several `m4v-bench` commands, one after another, in one torchrun rank process (the tests' launcher): each command
joins its own process group (a store on its own port, hosted by rank 0) and leaves it, as separate torchrun jobs
would, through the same `benchmarks.cli.main`. One interpreter a rank instead of one a command: a rank's start
(importing torch and the harness, ~5 s of CPU) is paid once for all of a test module's commands.

    torchrun --nproc-per-node 2 tests/torchrun_commands.py '[[PORT, ["train", ...]], ...]'
"""

import json
import os
import sys
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))   # this checkout's harness (as `-m benchmarks.cli`)

from benchmarks.cli import main  # noqa: E402

if __name__ == "__main__":
    os.environ["TORCHELASTIC_USE_AGENT_STORE"] = "False"   # each command's group hosts its own store on rank 0
    for port, argv in json.loads(sys.argv[1]):
        os.environ["MASTER_PORT"] = str(port)
        code = main(argv)
        if code:
            sys.exit(code)
