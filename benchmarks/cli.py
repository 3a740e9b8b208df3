"""`m4v-bench`: the harness's command line. Each subcommand is one function registered in COMMANDS."""

from __future__ import annotations

import argparse
import sys
from pathlib import Path


def cmd_info(args) -> int:
    """Versions, scan backends usable here, CPU/GPU."""
    import torch

    from benchmarks.provenance import device_description, git_commit, library_versions
    from m4v.ops import available_backends

    print(f"m4v-harness at commit {git_commit()}")
    print("versions:")
    for name, version in library_versions().items():
        print(f"  {name:16s} {version}")
    print("device:")
    for key, value in device_description().items():
        print(f"  {key:16s} {value}")
    backends = available_backends()
    print("selective_scan backends:")
    print(f"  {'cuda':16s} {'usable' if backends['cuda'] else 'not usable (needs a CUDA device and .[cuda])'}")
    print(f"  {'cpu':16s} usable (numba {__import__('numba').__version__}, {torch.get_num_threads()} threads)")
    print(f"  {'reference':16s} usable (plain torch)")
    print(f"  {'auto':16s} -> {backends['auto']}")
    return 0


def cmd_bench_scan(args) -> int:
    """Reference vs cpu (vs cuda) selective scan, side by side."""
    import torch

    from benchmarks import scan_bench

    device = args.device
    if device == "auto":
        device = "cuda" if torch.cuda.is_available() else "cpu"
    if device == "cuda" and not torch.cuda.is_available():
        print("m4v-bench bench-scan: --device cuda but no CUDA device is visible", file=sys.stderr)
        return 2
    df = scan_bench.bench_scan(sizes=args.sizes, repeats=args.repeats,
                               reference_backward=args.reference_backward, device=device)
    print(df.to_markdown(index=False, floatfmt=".4g"))
    if args.out:
        scan_bench.write(df, Path(args.out), config=vars(args) | {"sizes_def": scan_bench.SIZES})
        print(f"wrote {args.out}/bench_scan.csv and bench_scan.json")
    failures = scan_bench.check_targets(df) if "paper" in args.sizes else []
    for failure in failures:
        print(f"target missed: {failure}")
    if not failures and "paper" in args.sizes:
        print(f"targets met: cpu >= {scan_bench.TARGET_SPEEDUP}x reference, max abs err <= "
              f"{scan_bench.TARGET_MAX_ABS_ERR}")
    return 1 if (failures and args.check) else 0


def build_parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(prog="m4v-bench", description=__doc__)
    sub = parser.add_subparsers(dest="command", required=True)

    p = sub.add_parser("info", help=cmd_info.__doc__)
    p.set_defaults(func=cmd_info)

    p = sub.add_parser("bench-scan", help=cmd_bench_scan.__doc__)
    p.add_argument("--sizes", nargs="+", default=["small", "paper"], choices=["small", "paper"])
    p.add_argument("--repeats", type=int, default=3, help="timed repeats of the fast backends (best is kept)")
    p.add_argument("--device", default="auto", choices=["auto", "cpu", "cuda"],
                   help="cuda adds mamba-ssm's kernel, checked against the cpu backend")
    p.add_argument("--reference-backward", nargs="*", default=["small"], choices=["small", "paper"],
                   help="sizes at which autograd through the reference is timed (it takes 25 s at the small "
                        "size and far longer at the paper size)")
    p.add_argument("--out", help="directory for bench_scan.csv / .json (with provenance)")
    p.add_argument("--check", action="store_true", help="exit 1 when a target is missed")
    p.set_defaults(func=cmd_bench_scan)
    return parser


def main(argv=None) -> int:
    args = build_parser().parse_args(argv)
    return args.func(args)


if __name__ == "__main__":
    sys.exit(main())
