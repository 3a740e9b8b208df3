#!/bin/bash
# The GPU check behind results/gpu_h100/: build mamba-ssm and causal-conv1d from their sdists for one
# architecture, run the CUDA tests, time the scan and the mixer on the GPU.
#   usage: bash benchmarks/gpu_check.sh SDIST_DIR OUT_DIR [SM]   (SM default 90; SDIST_DIR holds the unpacked
#   mamba_ssm-*/ and causal_conv1d-*/ sdists, e.g. from `pip download --no-binary :all: --no-deps
#   --no-build-isolation mamba-ssm causal-conv1d` and tar xzf)
# Why patch setup.py: both packages compile every architecture from sm_75 to sm_121 and ignore
# TORCH_CUDA_ARCH_LIST; one architecture cut mamba-ssm's build to 336 s on 16 cores.
# Written from the commands of that check (same patch, builds, tests and benches); this file itself has not
# yet run on a GPU.
set -u
SDIST_DIR=$(realpath "$1"); OUT=$(mkdir -p "$2" && realpath "$2"); SM=${3:-90}
export PYTHONUNBUFFERED=1 MAX_JOBS=${MAX_JOBS:-16} MAMBA_FORCE_BUILD=TRUE CAUSAL_CONV1D_FORCE_BUILD=TRUE
for pkg in "$SDIST_DIR"/mamba_ssm-* "$SDIST_DIR"/causal_conv1d-*; do
  [ -f "$pkg/setup.py" ] || { echo "gpu_check: no setup.py in $pkg" >&2; exit 2; }
  grep -q "M4V_ONE_ARCH" "$pkg/setup.py" || python3 - "$pkg/setup.py" <<'PY'
import sys
from pathlib import Path
path = Path(sys.argv[1]); text = path.read_text()
marker = "    # HACK: The compiler flag -D_GLIBCXX_USE_CXX11_ABI"
assert text.count(marker) == 1, f"{path}: setup.py layout changed, patch by hand"
patch = ("    if os.getenv('M4V_ONE_ARCH') and not HIP_BUILD:\n"
         "        cc_flag = ['-gencode', f\"arch=compute_{os.environ['M4V_ONE_ARCH']},code=sm_{os.environ['M4V_ONE_ARCH']}\"]\n")
path.write_text(text.replace(marker, patch + marker))
PY
done
export M4V_ONE_ARCH=$SM
for pkg in "$SDIST_DIR"/mamba_ssm-* "$SDIST_DIR"/causal_conv1d-*; do
  name=$(basename "$pkg")
  ( cd "$pkg" && python3 -m pip install -v --no-build-isolation --no-deps --no-index --target "/tmp/site_$name" . ) \
    > "$OUT/build_$name.log" 2>&1 &
done
wait
for pkg in "$SDIST_DIR"/mamba_ssm-* "$SDIST_DIR"/causal_conv1d-*; do
  export PYTHONPATH="/tmp/site_$(basename "$pkg")${PYTHONPATH:+:$PYTHONPATH}"
done
export PYTHONPATH="$PWD:$PYTHONPATH"
python3 -m pytest -q -p no:cacheprovider tests/test_cuda_backends.py -rs 2>&1 | tee "$OUT/pytest_cuda_backends.log"
python3 -m benchmarks.cli bench-mixer --device cuda --repeats 3 --out "$OUT"
python3 -m benchmarks.cli bench-scan --device cuda --out "$OUT"
