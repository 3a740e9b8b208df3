"""`m4v-bench`: the harness's command line. Each subcommand is one function registered in COMMANDS."""

from __future__ import annotations

import argparse
import sys
from pathlib import Path


def cmd_info(args) -> int:
    """Versions, scan backends usable here, CPU/GPU; with --config, parameter counts per variant."""
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
    if args.config:
        from m4v.config import TABLE4_VARIANTS, M4VConfig
        from m4v.transformer import build_model, count_parameters

        preset = getattr(M4VConfig, args.config)
        print(f"parameters at {args.config} size (built on the meta device):")
        for variant, mixer in TABLE4_VARIANTS.items():
            n = count_parameters(build_model(preset(mixer=mixer), device="meta"))
            print(f"  {variant:16s} {n / 1e9:8.3f} B  ({n:,})")
    return 0


def cmd_table4(args) -> int:
    """Mixer TFLOPs of the four architectures at paper size vs the paper's Table 4."""
    from benchmarks import table4

    df = table4.table4()
    print(df.to_markdown(index=False, floatfmt=".4g"))
    saving = table4.m4v_saving(df)
    print(f"M4V mixer saving vs full attention: {100 * saving:.1f}% (paper {100 * table4.TABLE4_M4V_SAVING:.1f}%)")
    worst = df["counter_rel_diff"].abs().max()
    print(f"fvcore vs FlopCounterMode: max relative difference {100 * worst:.3f}%")
    table4.write_table4(df, Path(args.out))
    print(f"wrote {args.out}/table4.csv and table4.json")
    return 1 if worst > 0.01 else 0


def cmd_flops_curve(args) -> int:
    """Mixer TFLOPs of full attention vs M4V over frame counts and resolutions (Fig. 1 analogue)."""
    from benchmarks import table4

    df = table4.flops_curve()
    print(df.pivot_table(index=["resolution", "video_frames"], columns="variant", values="mixer_tflops")
          .to_markdown(floatfmt=".3f"))
    png = table4.write_flops_curve(df, Path(args.out))
    print(f"wrote {args.out}/flops_curve.csv and {png}")
    return 0


def cmd_bench_mixer(args) -> int:
    """One paper-width single-stream block, attention vs MM-DiM, wall clock against FLOPs."""
    from benchmarks import mixer_bench

    df = mixer_bench.bench_mixer(points=args.points, repeats=args.repeats, device=args.device)
    print(df.to_markdown(index=False, floatfmt=".4g"))
    print(mixer_bench.summary(df))
    if args.out:
        mixer_bench.write(df, Path(args.out), vars(args))
        print(f"wrote {args.out}/bench_mixer.csv and bench_mixer.json")
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


def cmd_eval(args) -> int:
    """Score every video in a folder (VBench dimensions, CLIP score, consistency); tidy CSV + JSON."""
    from benchmarks import eval_videos

    dims = [d.strip() for d in args.dims.split(",") if d.strip()] if args.dims else None
    try:
        per_video = eval_videos.run_eval(args.videos, args.out, args.prompts, dims, args.backbone)
    except (ValueError, FileNotFoundError) as exc:
        print(f"m4v-bench eval: {exc}", file=sys.stderr)
        return 2
    summary = Path(args.out) / "summary.csv"
    import pandas as pd

    print(pd.read_csv(summary).to_markdown(index=False, floatfmt=".4f"))
    failed = per_video[per_video["status"] == "failed"]["video"].nunique()
    print(f"wrote {args.out}/per_video.csv, summary.csv, m4v_eval_results.json; {failed} video(s) failed")
    if not (per_video["status"] == "ok").any():  # every video unreadable or unscorable: a script must notice
        print(f"m4v-bench eval: no score computed for any video in {args.videos}", file=sys.stderr)
        return 1
    return 0


def cmd_bench_eval(args) -> int:
    """All 16 VBench dimensions with full-size backbones: frames/s per core, shared features vs VBench's loop."""
    from benchmarks import eval_bench

    cfg = eval_bench.BenchConfig(args.videos, args.frames, args.height, args.width, args.threads, args.device,
                                 small=args.small)
    summary, stages = eval_bench.bench_eval(cfg)
    print(summary.to_markdown(index=False, floatfmt=".4g"))
    print(stages.to_markdown(floatfmt=".3g"))
    speedup = float(summary["speedup"].iloc[-1])
    print(f"speed-up {speedup:.2f}x (target {eval_bench.TARGET_SPEEDUP}x)")
    return 0


def cmd_train(args) -> int:
    """Train a tiny model (VAE, text encoder, CLIP, reward model, m4v-tiny, dit-tiny, reward tuning); resumable."""
    import torch

    from benchmarks.train import train

    if args.threads:
        torch.set_num_threads(args.threads)
    if args.device == "cuda" and not torch.cuda.is_available():
        print("m4v-bench train: --device cuda but no CUDA device is visible", file=sys.stderr)
        return 2
    options = {k: v for k, v in (("batch", args.batch), ("lr", args.lr), ("stage_weights", args.stage_weights),
                                 ("device", None if args.device == "cpu" else args.device)) if v is not None}
    try:
        record = train(args.model, args.out, args.steps, args.seed, args.weights, args.checkpoint_every,
                       progress=not args.quiet, snapshot_every=args.snapshot_every, **options)
    except (ValueError, FileNotFoundError) as exc:
        print(f"m4v-bench train: {exc}", file=sys.stderr)
        return 2
    print(f"trained {record['model']} for {record['steps']} steps in {record['train_seconds']} s: "
          f"{record['final_metrics']} -> {args.out}")
    return 0


def cmd_generate(args) -> int:
    """Generate a video from a prompt with a trained model (default: the shipped m4v-tiny); writes it with PyAV."""
    import json

    import torch

    from evaluators.video import write_video
    from m4v.generate import TextToVideo

    torch.manual_seed(args.seed)
    try:
        pipe = TextToVideo.from_pretrained(args.model, args.weights, vae=args.vae, text_encoder=args.text_encoder)
        videos, stats, timing = pipe([args.prompt], frames=args.frames, height=args.size, width=args.size,
                                     seed=args.seed, steps=[args.steps] * 3, guidance=args.guidance, progress=True)
        path = write_video(args.out, videos[0], fps=args.fps)
    except (ValueError, FileNotFoundError) as exc:
        print(f"m4v-bench generate: {exc}", file=sys.stderr)
        return 2
    record = {"model": args.model, "text_encoder": args.text_encoder, "vae": args.vae, "prompt": args.prompt,
              "frames": args.frames, "size": args.size, "seed": args.seed,
              "steps_per_stage": args.steps, "guidance": args.guidance, "fps": args.fps,
              "transformer_calls": stats.forwards, **{k: round(v, 3) for k, v in timing.items()}}
    Path(path).with_suffix(".json").write_text(json.dumps(record, indent=2))
    print(f"wrote {path} ({args.frames} frames, {args.size}x{args.size}) in {timing['total_s']:.1f} s")
    return 0


def cmd_world_quality(args) -> int:
    """Generate the world prompt suite with trained models; oracle scores beside mixer FLOPs (CSV/JSON/md)."""
    import torch

    from benchmarks.world_quality import world_quality

    if args.threads:
        torch.set_num_threads(args.threads)
    try:
        summary, _ = world_quality(args.models, args.per_kind, args.frames, args.seed, [args.steps] * 3,
                                   args.guidance, args.weights, args.out, args.vae_ceiling or None)
    except (ValueError, FileNotFoundError) as exc:
        print(f"m4v-bench world-quality: {exc}", file=sys.stderr)
        return 2
    print(summary.to_markdown(index=False, floatfmt=".3f"))
    return 0


def cmd_stage_quality(args) -> int:
    """Where generation loses the objects: sample from the true latent's start point of each pyramid stage."""
    import torch

    from benchmarks.stage_quality import stage_quality

    if args.threads:
        torch.set_num_threads(args.threads)
    if args.prompts < 1:
        print(f"m4v-bench stage-quality: --prompts must be >= 1, got {args.prompts}", file=sys.stderr)
        return 2
    try:
        table, confusion, motion, words = stage_quality(args.models, args.prompts, [args.steps] * 3,
                                                        args.guidance, args.seed, args.weights, args.out)
    except (ValueError, FileNotFoundError) as exc:
        print(f"m4v-bench stage-quality: {exc}", file=sys.stderr)
        return 2
    print(table.to_markdown(index=False, floatfmt=".3f"))
    print("\nlast stage, prompted shape word x shape read:\n" + confusion.to_markdown(index=False))
    print("\nmotion with the true first latent frame given:\n" + motion.to_markdown(index=False, floatfmt=".2f"))
    print("\nfirst-frame loss, and its rise with the shape / colour word swapped:\n"
          + words.to_markdown(index=False, floatfmt=".3f"))
    return 0


def cmd_compare(args) -> int:
    """Paired tests between two runs of one suite: exit 0 no significant regression, 1 regression, 2 bad input."""
    from benchmarks import compare

    try:
        options = compare.CompareOptions(alpha=args.alpha, pairs=compare.parse_pairs(args.pair),
                                         max_drop=compare.parse_tolerances(args.max_drop),
                                         allow_unpaired=args.allow_unpaired, n_resamples=args.resamples,
                                         seed=args.seed)
    except compare.CompareError as exc:
        print(f"m4v-bench compare: {exc}", file=sys.stderr)
        return compare.EXIT_BAD_INPUT
    return compare.run_compare(args.base, args.new, options, args.out)


def build_parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(prog="m4v-bench", description=__doc__)
    sub = parser.add_subparsers(dest="command", required=True)

    p = sub.add_parser("info", help=cmd_info.__doc__)
    p.add_argument("--config", choices=["paper", "tiny"], help="also count parameters of the four variants")
    p.set_defaults(func=cmd_info)

    p = sub.add_parser("table4", help=cmd_table4.__doc__)
    p.add_argument("--out", default="results", help="directory for table4.csv / table4.json (default results/)")
    p.set_defaults(func=cmd_table4)

    p = sub.add_parser("flops-curve", help=cmd_flops_curve.__doc__)
    p.add_argument("--out", default="results", help="directory for flops_curve.csv / .png (default results/)")
    p.set_defaults(func=cmd_flops_curve)

    from evaluators.backbones import faithful_help

    p = sub.add_parser("eval", help=cmd_eval.__doc__, epilog=faithful_help(),
                       formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("--videos", required=True, help="folder of video files (mp4/webm/gif/...) or frame folders")
    p.add_argument("--prompts", help="VBench full_info JSON; videos named <prompt>-<index>.mp4 get its prompt")
    p.add_argument("--dims", help="comma-separated evaluators (default: all that can run offline)")
    p.add_argument("--backbone", action="append", default=[],
                   help="KIND=MODEL:PATH, local weights, repeatable; KIND one of clip, aesthetic_clip, dino, "
                        "aesthetic, fidelity, umt, raft (evaluators/backbones.py lists examples)")
    p.add_argument("--out", required=True)
    p.set_defaults(func=cmd_eval)

    p = sub.add_parser("bench-eval", help=cmd_bench_eval.__doc__)
    p.add_argument("--videos", type=int, default=2)
    p.add_argument("--frames", type=int, default=16)
    p.add_argument("--height", type=int, default=320, help="VBench's videos: 320x512 (or 480x854)")
    p.add_argument("--width", type=int, default=512)
    p.add_argument("--threads", type=int, default=1)
    p.add_argument("--device", default="cpu", choices=["cpu", "cuda"])
    p.add_argument("--small", action="store_true", help="tiny backbones and DIS flow (tests), not VBench's sizes")
    p.set_defaults(func=cmd_bench_eval)

    p = sub.add_parser("bench-mixer", help=cmd_bench_mixer.__doc__)
    p.add_argument("--points", nargs="+", default=None,
                   help="sequence points as RES/LATENT_FRAMES, e.g. 384p/1 768p/31 (default: 960 to 15,360 "
                        "visual tokens)")
    p.add_argument("--repeats", type=int, default=1)
    p.add_argument("--device", default="cpu", choices=["cpu", "cuda"])
    p.add_argument("--out", help="directory for bench_mixer.csv / .json")
    p.set_defaults(func=cmd_bench_mixer)

    from m4v.recipes import RECIPES

    p = sub.add_parser("train", help=cmd_train.__doc__)
    p.add_argument("--model", required=True, choices=list(RECIPES))
    p.add_argument("--steps", type=int, help="optimisation steps (default: the recipe's)")
    p.add_argument("--out", required=True, help="run directory: weights, loss.csv, training.json, state.pt")
    p.add_argument("--seed", type=int, default=0)
    p.add_argument("--batch", type=int, help="batch size (default: the recipe's)")
    p.add_argument("--lr", type=float, help="learning rate (default: the recipe's)")
    p.add_argument("--weights", help="where the models it builds on live (default: the shipped m4v/weights/)")
    p.add_argument("--stage-weights", type=float, nargs=3, metavar=("S0", "S1", "S2"),
                   help="m4v-tiny / dit-tiny: relative frequency of each pyramid stage per step (default: uniform)")
    p.add_argument("--checkpoint-every", type=int, default=200)
    p.add_argument("--snapshot-every", type=int, metavar="N",
                   help="also save the model as shipped every N steps to OUT/snapshots/step-NNNNNN/ (with its "
                        "training.json), for quality against training steps")
    p.add_argument("--device", default="cpu", choices=["cpu", "cuda"],
                   help="vae-tiny / m4v-tiny / dit-tiny: where to train (same random stream on either; the shipped "
                        "models were trained on the CPU)")
    p.add_argument("--threads", type=int, help="torch CPU threads")
    p.add_argument("--quiet", action="store_true", help="no progress bar")
    p.set_defaults(func=cmd_train)

    from m4v.generate import TINY_GUIDANCE, TINY_STEPS

    p = sub.add_parser("generate", help=cmd_generate.__doc__)
    p.add_argument("--model", default="m4v-tiny", help="m4v-tiny | dit-tiny | m4v-tiny-reward | a trained directory")
    p.add_argument("--prompt", required=True)
    p.add_argument("--frames", type=int, default=16)
    p.add_argument("--size", type=int, default=64, help="height = width in pixels (multiple of 64)")
    p.add_argument("--seed", type=int, default=0)
    p.add_argument("--steps", type=int, default=TINY_STEPS[0], help="Euler steps per pyramid stage")
    p.add_argument("--guidance", type=float, default=TINY_GUIDANCE, help="classifier-free guidance scale")
    p.add_argument("--fps", type=float, default=8.0)
    p.add_argument("--weights", help="weights root (default: the shipped m4v/weights/)")
    p.add_argument("--text-encoder", default="text-tiny",
                   help="T5 + CLIP text encoders: a name under the weights root or a directory holding t5/ and "
                        "clip_text/ (transformers save_pretrained layouts; never downloaded)")
    p.add_argument("--vae", default="vae-tiny", help="video VAE: a name under the weights root or a directory")
    p.add_argument("--out", required=True, help="video file (.mp4, .webm, .gif); a .json with the settings beside it")
    p.set_defaults(func=cmd_generate)

    p = sub.add_parser("world-quality", help=cmd_world_quality.__doc__)
    p.add_argument("--models", nargs="+", default=["m4v-tiny", "dit-tiny", "m4v-tiny-reward"])
    p.add_argument("--per-kind", type=int, default=4, help="prompts per world prompt kind (8 kinds)")
    p.add_argument("--frames", type=int, default=16)
    p.add_argument("--seed", type=int, default=0)
    p.add_argument("--steps", type=int, default=TINY_STEPS[0], help="Euler steps per pyramid stage")
    p.add_argument("--guidance", type=float, default=TINY_GUIDANCE)
    p.add_argument("--weights", help="weights root (default: the shipped m4v/weights/)")
    p.add_argument("--threads", type=int, help="torch CPU threads")
    p.add_argument("--vae-ceiling", default="vae-tiny",
                   help="also score the true videos through this VAE (the ceiling of its denoisers); '' for none")
    p.add_argument("--out", help="directory for world_quality.csv / .json / .md")
    p.set_defaults(func=cmd_world_quality)

    p = sub.add_parser("stage-quality", help=cmd_stage_quality.__doc__)
    p.add_argument("--models", nargs="+", default=["m4v-tiny", "dit-tiny"])
    p.add_argument("--prompts", type=int, default=30, help="held-out single-object prompts (first frame each)")
    p.add_argument("--seed", type=int, default=0)
    p.add_argument("--steps", type=int, default=TINY_STEPS[0], help="Euler steps per pyramid stage")
    p.add_argument("--guidance", type=float, default=TINY_GUIDANCE)
    p.add_argument("--weights", help="weights root (default: the shipped m4v/weights/)")
    p.add_argument("--threads", type=int, help="torch CPU threads")
    p.add_argument("--out", help="directory for stage_quality.csv / .json / .md and shape_confusion.csv")
    p.set_defaults(func=cmd_stage_quality)

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

    p = sub.add_parser("compare", help=cmd_compare.__doc__)
    p.add_argument("base", help="reference: a result directory of `run`, or its per_video.csv")
    p.add_argument("new", help="candidate: a result directory of `run`, or its per_video.csv")
    p.add_argument("--pair", action="append", default=[], metavar="BASE_MODEL=NEW_MODEL",
                   help="compare these models (repeatable; default: same names, or one-to-one when each side has "
                        "one model)")
    p.add_argument("--max-drop", action="append", default=[], metavar="METRIC=X",
                   help="tolerated change in the worse direction, absolute (0.02) or of the base mean (5%%); "
                        "repeatable")
    p.add_argument("--alpha", type=float, default=0.05, help="family-wise significance level (Holm) per model")
    p.add_argument("--allow-unpaired", action="store_true",
                   help="compare the samples present and scored on both sides instead of refusing")
    p.add_argument("--resamples", type=int, default=9999, help="bootstrap resamples for the 95%% interval")
    p.add_argument("--seed", type=int, default=0, help="bootstrap seed")
    p.add_argument("--out", help="directory for compare.csv / compare.json (default: NEW's directory)")
    p.set_defaults(func=cmd_compare)
    return parser


def main(argv=None) -> int:
    args = build_parser().parse_args(argv)
    return args.func(args)


if __name__ == "__main__":
    sys.exit(main())
