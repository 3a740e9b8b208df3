"""`m4v-bench`: the harness's command line. Each subcommand is one function registered in COMMANDS."""

from __future__ import annotations

import argparse
import sys
from pathlib import Path

from benchmarks.core.errors import Terminated  # SIGTERM as an exception (stdlib-only module: --help stays fast)


def cmd_info(args) -> int:
    """Versions, scan backends usable here, CPU/GPU; with --config, parameter counts per variant."""
    import torch

    from benchmarks.core.provenance import device_description, git_commit, library_versions
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
    from benchmarks.paper import table4

    df = table4.table4()
    print(df.to_markdown(index=False, floatfmt=".4g"))
    saving = table4.m4v_saving(df)
    print(f"M4V mixer saving vs full attention: {100 * saving:.1f}% (paper {100 * table4.TABLE4_M4V_SAVING:.1f}%); "
          f"{100 * table4.m4v_saving(df, 'paper_convention_tflops'):.1f}% under the paper's convention")
    worst = df["counter_rel_diff"].abs().max()
    print(f"fvcore vs FlopCounterMode: max relative difference {100 * worst:.3f}%")
    table4.write_table4(df, Path(args.out))
    print(f"wrote {args.out}/table4.csv and table4.json")
    return 1 if worst > 0.01 else 0


def cmd_table4_time(args) -> int:
    """Table 4's inference column: each architecture's forwards timed per layout, summed over the AR schedule."""
    from benchmarks.core.outputs import atomic_write_csv, atomic_write_json, json_safe, prepare_output_dir
    from benchmarks.core.provenance import git_commit, provenance
    from benchmarks.paper import table4_time

    commit = git_commit()
    df, layouts = table4_time.inference_table(args.size, args.device, args.repeats,  # refuses paper size on CPU
                                              warmup=args.warmup)
    print(df.to_markdown(index=False, floatfmt=".4g"))
    out = prepare_output_dir(args.out)
    setting = table4_time.PAPER_SETTING if args.size == "paper" else table4_time.TINY_SETTING
    atomic_write_csv(out / "table4_time.csv", df)
    atomic_write_csv(out / "table4_time_layouts.csv", layouts)
    atomic_write_json(out / "table4_time.json", json_safe({
        "provenance": provenance(config={"command": "m4v-bench " + " ".join(sys.argv[1:]),
                                         "setting": {**setting, "dtype": str(setting["dtype"])},
                                         "repeats": args.repeats, "warmup": args.warmup, "device": args.device},
                                 commit=commit),
        "machine_load": df.attrs.get("machine_load"), "rows": df.to_dict("records")}))
    print(f"wrote {out}/table4_time.csv, table4_time_layouts.csv, table4_time.json")
    return 0


def cmd_flops_curve(args) -> int:
    """Mixer TFLOPs of full attention vs M4V over frame counts and resolutions (Fig. 1 analogue)."""
    from benchmarks.paper import table4

    df = table4.flops_curve()
    print(df.pivot_table(index=["resolution", "video_frames"], columns="variant", values="mixer_tflops")
          .to_markdown(floatfmt=".3f"))
    png = table4.write_flops_curve(df, Path(args.out))
    print(f"wrote {args.out}/flops_curve.csv and {png}")
    return 0


def cmd_convert(args) -> int:
    """A Wan2.1 diffusers pipeline directory -> the same pipeline with our transformer (attention or MM-DiM)."""
    from benchmarks.core.outputs import atomic_write_json, json_safe
    from benchmarks.core.provenance import git_commit, provenance
    from m4v.wan_convert import RECORD, convert_wan

    commit = git_commit()
    record = convert_wan(                                    # checks mixer and source before --out is touched
        args.pipe_dir, args.out, args.mixer, args.init_mamba, args.seed)
    record["provenance"] = provenance(config={"command": "m4v-bench " + " ".join(sys.argv[1:]), "kind": args.kind},
                                      seeds=[args.seed], commit=commit)
    atomic_write_json(Path(args.out) / RECORD, json_safe(record))
    weights = record["weights"]
    print(f"wrote {args.out}: transformer {record['transformer_class'][1]} ({args.mixer}), "
          f"{len(weights['copied'])} weights copied, {len(weights['initialised'])} initialised"
          + (f" (init_mamba={args.init_mamba})" if args.mixer == "mm-dim" else "") + f"; record {RECORD}")
    return 0


def cmd_bench_mixer(args) -> int:
    """One paper-width single-stream block, attention vs MM-DiM, wall clock against FLOPs."""
    from benchmarks.perf import mixer_bench

    df = mixer_bench.bench_mixer(points=args.points, repeats=args.repeats, device=args.device, warmup=args.warmup)
    print(df.to_markdown(index=False, floatfmt=".4g"))
    print(mixer_bench.summary(df))
    if args.out:
        mixer_bench.write(df, Path(args.out), vars(args))
        print(f"wrote {args.out}/bench_mixer.csv and bench_mixer.json")
    return 0


def cmd_bench_scan(args) -> int:
    """Reference vs cpu (vs cuda) selective scan, side by side."""
    import torch

    from benchmarks.perf import scan_bench

    device = args.device
    if device == "auto":
        device = "cuda" if torch.cuda.is_available() else "cpu"
    if device == "cuda" and not torch.cuda.is_available():
        print("m4v-bench bench-scan: --device cuda but no CUDA device is visible", file=sys.stderr)
        return 2
    df = scan_bench.bench_scan(sizes=args.sizes, repeats=args.repeats,
                               reference_backward=args.reference_backward, device=device, warmup=args.warmup)
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


def _suite_from_args(args):
    """The suite a `run` / `eval` command line names, with its flags applied."""
    from benchmarks.run import suites

    suite = suites.load_suite_file(args.suite_file) if getattr(args, "suite_file", None) else suites.get_suite(
        getattr(args, "suite", None) or suites.DEFAULT_SUITE)
    if getattr(args, "full", False):
        suite = suite.with_overrides(**suite.full)
    if getattr(args, "suite_file", None) and getattr(args, "models", None) is None:
        _check_suite_code(args.suite_file, suite.models, getattr(args, "trust_suite_code", False))
    changes = {}
    for flag, field in (("models", "models"), ("per_kind", "per_kind"), ("samples", "samples"),
                        ("prompt_limit", "prompt_limit"), ("seed", "seed"), ("controls", "controls")):
        value = getattr(args, flag, None)
        if value is not None:
            changes[field] = tuple(value) if isinstance(value, list) else value
    if getattr(args, "dims", None) is not None:
        changes["evaluators"] = tuple(args.dims)
    cached = (_vbench_cache_backbones(args, changes.get("evaluators", suite.evaluators), suite.backbones)
              if suite.kind in ("generate", "external") else [])   # the suites that score videos
    if getattr(args, "backbone", None) or cached:
        changes["backbones"] = tuple(suite.backbones) + tuple(cached) + tuple(getattr(args, "backbone", None) or ())
    if getattr(args, "prompts", None) and suite.kind == "generate":
        changes["prompts"] = args.prompts
    return suite.with_overrides(**changes) if changes else suite


def _vbench_cache_backbones(args, dims, suite_backbones) -> list[str]:
    """`--backbone` specs for VBench's weight cache (--vbench-cache, else $VBENCH_CACHE_DIR, else ~/.cache/vbench
    when it exists), for the backbone kinds the dimensions need that no --backbone names."""
    if not hasattr(args, "vbench_cache"):
        return []
    from evaluators.backbone_loading import BACKBONE_KINDS
    from evaluators.vbench_cache import cache_backbones, resolve_cache_dir

    cache_dir, strict = resolve_cache_dir(args.vbench_cache)
    if cache_dir is None:
        return []
    given = {spec.partition("=")[0] for spec in (*suite_backbones, *(getattr(args, "backbone", None) or ()))}
    kinds = [k for k in BACKBONE_KINDS if k not in given]
    return cache_backbones(cache_dir, dims, kinds, strict, note=lambda line: print(line, file=sys.stderr))


def _check_suite_code(path, models, trusted: bool) -> None:
    """A suite file is data unless the user says otherwise: its python: / cmd: specs (a control's `of=` too) run
    code, so they run only with --trust-suite-code, checked before any spec is imported or called."""
    import re
    from urllib.parse import unquote_plus

    from benchmarks.core.errors import SuiteError

    code = [m for m in models if re.search(r"(^|[?&]of=)(python|cmd):", unquote_plus(m))]
    if code and not trusted:
        raise SuiteError(f"--suite {path}: key 'models': {code[0]!r} runs code the suite file names (python: / "
                         "cmd:); read the file, then pass --trust-suite-code to run it (or give it with --models)")


def cmd_run(args) -> int:
    """Run a suite: generate its prompts with each model, score through the evaluator registry, write one table
    of quality against compute (per_video.csv, summary.csv, results.json, report.md, pareto.png)."""
    import shlex

    from benchmarks.run_suite import run_suite

    suite = _suite_from_args(args)
    pairs = [tuple(p.split("=", 1)) for p in args.pair]
    if any(len(p) != 2 or not all(p) for p in pairs):
        raise ValueError(f"--pair {args.pair}: expected BASE_MODEL=NEW_MODEL")
    if args.shard is not None:   # every flag that would be ignored or lose the work: refused before any work
        if not args.cache_dir or args.no_cache:
            raise ValueError(f"--shard {args.shard} needs --cache-dir DIR (the cache every shard and the assembling "
                             "run share), without --no-cache")
        if args.assemble_only or args.check_against:
            raise ValueError(f"--shard writes no table: --{'assemble-only' if args.assemble_only else 'check-against'}"
                             " belongs to the assembling run (the same command without --shard)")
    if args.assemble_only and args.no_cache:
        raise ValueError("--assemble-only reads the cache: not with --no-cache")
    command = "m4v-bench " + " ".join(shlex.quote(a) for a in args.argv)
    return run_suite(suite, args.out, videos=args.videos, prompts=args.prompts, cache_dir=args.cache_dir,
                     use_cache=not args.no_cache, check_against=args.check_against, pairs=pairs, command=command,
                     device=args.device, overwrite=args.overwrite, source=getattr(args, "suite_file", None),
                     shard=args.shard, assemble_only=args.assemble_only)


def cmd_eval(args) -> int:
    """Score every video in a folder (the `external` suite): VBench dimensions, world checks, CLIP score,
    consistency; the same tables as `run`, plus VBench's own results JSON."""
    args.suite = "external"
    return cmd_run(args)


def cmd_bench_eval(args) -> int:
    """VBench's 16 dimensions on VBench's protocol: VBench's loop vs the shared path (and bf16), timed, checked."""
    from benchmarks.core.outputs import prepare_output_dir
    from benchmarks.core.provenance import git_commit
    from benchmarks.perf import eval_bench

    commit = git_commit()   # the code that runs, before this run's outputs can dirty the tree
    if args.out:
        prepare_output_dir(args.out)   # an unwritable --out fails now, not after the run
    cfg = eval_bench.BenchConfig(args.videos, args.frames, args.height, args.width, args.threads, args.device,
                                 small=args.small, prompts=args.prompts, repeats=args.repeats,
                                 warmup=not args.no_warmup, precision=args.precision)
    result = eval_bench.bench_eval(cfg, log=lambda m: print(m, file=sys.stderr))
    prov = eval_bench.run_provenance(cfg, commit)
    print(eval_bench.report_markdown(result, prov))
    print("speed-up: " + " ".join(eval_bench.goal_lines(result)))
    if args.out:
        for path in eval_bench.write_outputs(result, args.out, prov):
            print(f"wrote {path}")
    return 0


def cmd_train(args) -> int:
    """Train a tiny model (VAE, text encoder, CLIP, reward model, m4v-tiny, dit-tiny, reward tuning); resumable."""
    import torch

    from benchmarks.core.outputs import snapshot_dir
    from benchmarks.train import check_arch_size, parse_arch_overrides, parse_recipe_options, train

    if args.threads:
        torch.set_num_threads(args.threads)
    if args.device == "cuda" and not torch.cuda.is_available():
        raise ValueError("--device cuda but no CUDA device is visible")
    arch = parse_arch_overrides(args.mixer, args.set)  # checked against the config before anything runs
    check_arch_size(args.model, arch)                   # and against this machine's memory
    options = {k: v for k, v in (("batch", args.batch), ("lr", args.lr), ("stage_weights", args.stage_weights),
                                 ("dataset_size", args.dataset_size), ("arch", arch or None),
                                 ("device", None if args.device == "cpu" else args.device),
                                 ("init_from", args.init_from), ("data", args.data)) if v is not None}
    # KEY=VALUE recipe options, typed and checked against the bounds table before anything runs
    options.update(parse_recipe_options(args.model, args.option))
    record = train(args.model, args.out, args.steps, args.seed, args.weights, args.checkpoint_every,
                   progress=not args.quiet, snapshot_every=args.snapshot_every, overwrite=args.overwrite,
                   stop_after=args.stop_after, bf16=args.bf16, grad_checkpoint=args.grad_checkpoint, **options)
    if record is None:   # a torchrun rank other than 0: rank 0 says what was trained
        return 0
    if "of_steps" in record:  # --stop-after: the snapshot of that step, the schedule not finished
        print(f"stopped {record['model']} at step {record['step']} of {record['of_steps']} after "
              f"{record['train_seconds']} s: {record['metrics']} -> {snapshot_dir(args.out, record['step'])}")
        return 0
    print(f"trained {record['model']} for {record['steps']} steps in {record['train_seconds']} s: "
          f"{record['final_metrics']} -> {args.out}")
    return 0


def cmd_generate(args) -> int:
    """Generate a video from a prompt with a trained model (default: the shipped m4v-tiny); writes it with PyAV."""
    import torch

    from benchmarks.core.outputs import atomic_write_json, prepare_output_dir
    from evaluators.video import WRITABLE_SUFFIXES, read_video, write_video
    from m4v.text_to_video import TINY_GUIDANCE, TINY_STEPS, TextToVideo

    args.steps = TINY_STEPS[0] if args.steps is None else args.steps
    args.guidance = TINY_GUIDANCE if args.guidance is None else args.guidance
    out, steps = Path(args.out), [args.steps] * len(TINY_STEPS)
    record_path = out.with_suffix(".json")
    if out.is_dir():
        raise ValueError(f"--out {out}: is a directory; give a video file name")
    if out.suffix.lower() not in WRITABLE_SUFFIXES:
        raise ValueError(f"--out {out}: the suffix names the video format; one of {', '.join(WRITABLE_SUFFIXES)}")
    if not args.prompt.strip():
        raise ValueError("--prompt is empty")
    existing = [str(p) for p in (out, record_path) if p.exists()]
    if existing and not args.overwrite:
        raise ValueError(f"--out {out}: {' and '.join(existing)} already exist(s); --overwrite replaces them")
    prepare_output_dir(out.parent, flag="--out's folder")  # before any work: a folder that cannot be written
    pipe = TextToVideo.from_pretrained(args.model, args.weights, vae=args.vae, text_encoder=args.text_encoder)
    pipe.check_request(args.frames, args.size, args.size, steps, args.guidance)
    prompt_report = pipe.describe_prompt(args.prompt)
    for encoder, report in prompt_report.items():
        if report["truncated"]:
            print(f"m4v-bench generate: warning: --prompt is {report['tokens']} {encoder} tokens; the text encoder "
                  f"reads the first {report['max_tokens']}", file=sys.stderr)
        if report["unknown_tokens"]:
            print(f"m4v-bench generate: warning: {report['unknown_tokens']} {encoder} token(s) of --prompt are "
                  "unknown to the text encoder's vocabulary (read as <unk>)", file=sys.stderr)
    torch.manual_seed(args.seed)
    videos, stats, timing = pipe([args.prompt], frames=args.frames, height=args.size, width=args.size,
                                 seed=args.seed, steps=steps, guidance=args.guidance, progress=True)
    path = write_video(out, videos[0], fps=args.fps, overwrite=args.overwrite)
    written = read_video(path)  # the record holds what the file holds (a GIF stores delays in 1/100 s)
    if abs(written.fps - args.fps) > 1e-6 * args.fps:
        print(f"m4v-bench generate: note: {out.suffix} stores {written.fps:.4g} fps for --fps {args.fps:g}; "
              "recorded as written", file=sys.stderr)
    record = {"model": args.model, "text_encoder": args.text_encoder, "vae": args.vae, "prompt": args.prompt,
              "prompt_tokens": prompt_report, "frames": written.num_frames, "size": args.size,
              "height": written.height, "width": written.width, "seed": args.seed, "steps_per_stage": args.steps,
              "guidance": args.guidance, "fps": written.fps, "fps_requested": args.fps,
              "transformer_calls": stats.forwards, **{k: round(v, 3) for k, v in timing.items()}}
    atomic_write_json(record_path, record)
    print(f"wrote {path} ({written.num_frames} frames, {written.width}x{written.height}) in {timing['total_s']:.1f} s")
    return 0


def cmd_stage_quality(args) -> int:
    """Where generation loses the objects: sample from the true latent's start point of each pyramid stage."""
    import torch

    from benchmarks.diagnostics.stage_quality import stage_quality
    from m4v.text_to_video import TINY_GUIDANCE, TINY_STEPS

    args.steps = TINY_STEPS[0] if args.steps is None else args.steps
    args.guidance = TINY_GUIDANCE if args.guidance is None else args.guidance

    if args.threads:
        torch.set_num_threads(args.threads)
    from benchmarks.core.flags import check_fits
    from benchmarks.diagnostics.stage_quality import WORLD_SIZE

    # every prompt's first frame is sampled and decoded in one batch: refused with the estimate if it cannot fit
    check_fits(f"--prompts {args.prompts}", args.prompts, 1, WORLD_SIZE, WORLD_SIZE)
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
    from benchmarks.core.errors import CompareError
    from benchmarks.core.flags import parse_pairs

    try:
        options = compare.CompareOptions(alpha=args.alpha, pairs=parse_pairs(args.pair),
                                         max_drop=compare.parse_tolerances(args.max_drop),
                                         allow_unpaired=args.allow_unpaired, n_resamples=args.resamples,
                                         seed=args.seed)
    except CompareError as exc:
        print(f"m4v-bench compare: {exc}", file=sys.stderr)
        return compare.EXIT_BAD_INPUT
    return compare.run_compare(args.base, args.new, options, args.out)


def cmd_plan(args) -> int:
    """Prompts x samples a decision needs per metric, from a run's per-video spread (or a paper directions CSV)."""
    from benchmarks.reporting import plan

    args.alpha = plan.ALPHA if args.alpha is None else args.alpha
    args.power = plan.POWER if args.power is None else args.power
    return plan.cmd_plan(args)


def cmd_report(args) -> int:
    """(Re)write report.html of a run directory from its files (e.g. a run made before report.html existed)."""
    from benchmarks.reporting import report_html

    return report_html.cmd_report(args)


# ---- the parser: one small function per command; nothing here imports torch, evaluators, pandas or m4v's
# models (`m4v-bench --help` answers at once); a registry's names are checked when the flag is parsed ----------

class _Parser(argparse.ArgumentParser):
    """An ArgumentParser whose epilog may be a function: called only when the help is shown (`eval --help` lists
    the faithful backbones, which needs the evaluators imported); no flag abbreviations (`train --data` must never
    be read as --dataset-size), for the top level and every command."""

    def __init__(self, *args, **kwargs):
        kwargs.setdefault("allow_abbrev", False)
        super().__init__(*args, **kwargs)

    def format_help(self) -> str:
        if callable(self.epilog):
            self.epilog = self.epilog()
        return super().format_help()


def _recipe_name(text: str) -> str:
    """argparse type of `train --model`: a key of m4v.recipes.RECIPES (imported when `train` is parsed)."""
    from m4v.recipes import RECIPES

    if text not in RECIPES:
        raise argparse.ArgumentTypeError(f"invalid choice: {text!r} (choose from {', '.join(map(repr, RECIPES))})")
    return text


def _faithful_help() -> str:
    from evaluators.backbones import faithful_help

    return faithful_help()


def _add_scoring_arguments(p) -> None:
    """Flags shared by run and eval: what is scored, with which backbones, where results and cache go."""
    from benchmarks.core import flags
    from benchmarks.run.shards import parse_shard  # numpy, no torch

    p.add_argument("--prompts", help="VBench full_info JSON: the prompts to generate (run), or the entries of "
                                     "videos named <prompt>-<index>.mp4 (eval, run external)")
    p.add_argument("--dims", type=flags.name_list,
                   help="comma-separated evaluators (default: every one that can run offline)")
    p.add_argument("--backbone", action="append", default=[],
                   help="KIND=MODEL:PATH, local weights, repeatable; KIND one of clip, aesthetic_clip, dino, "
                        "aesthetic, fidelity, umt, raft, amt (eval --help lists the faithful ones)")
    p.add_argument("--vbench-cache", metavar="DIR",
                   help="VBench's weight cache, as VBench lays it out (clip_model/, dino_model/, raft_model/, "
                        "amt_model/, umt_model/, aesthetic_model/; ~/.cache/clip and torch hub as fallbacks): every "
                        "backbone a dimension needs from it, so every exact dimension is VBench's; a missing file "
                        "is an error naming it (default $VBENCH_CACHE_DIR, else ~/.cache/vbench when it exists; "
                        "'none': not used)")
    p.add_argument("--out", required=True, help="output directory (locked while the run writes; a rerun of the same "
                                                "suite resumes from OUT/cache and replaces the earlier outputs)")
    p.add_argument("--overwrite", action="store_true",
                   help="write into an OUT holding another suite's run (its outputs are removed) or other files")
    p.add_argument("--cache-dir", help="per-sample cache (default OUT/cache)")
    p.add_argument("--no-cache", action="store_true", help="neither read nor write the cache")
    p.add_argument("--device", default="cpu", choices=["cpu", "cuda"], help="torch device")
    p.add_argument("--shard", type=parse_shard, metavar="I/N",
                   help="only shard I of N (from 0) of the work, into --cache-dir; no table (docs/distributed.md)")
    p.add_argument("--assemble-only", action="store_true",
                   help="the table from the cache the shards filled; refuse, naming what is missing, if incomplete")


def _add_info(sub) -> None:
    p = sub.add_parser("info", help=cmd_info.__doc__)
    p.add_argument("--config", choices=["paper", "tiny"], help="also count parameters of the four variants")
    p.set_defaults(func=cmd_info)


def _add_table4(sub) -> None:
    p = sub.add_parser("table4", help=cmd_table4.__doc__)
    p.add_argument("--out", default="results", help="directory for table4.csv / table4.json (default results/)")
    p.set_defaults(func=cmd_table4)


def _add_table4_time(sub) -> None:
    from benchmarks.core import flags

    p = sub.add_parser("table4-time", help=cmd_table4_time.__doc__)
    p.add_argument("--size", choices=("paper", "tiny"), default="tiny",
                   help="paper: 768x1280, 241 frames, bf16 (needs --device cuda); tiny: the tiny models' schedule")
    p.add_argument("--device", choices=("cpu", "cuda"), default="cpu")
    p.add_argument("--repeats", type=flags.BOUNDS["repeats"], default=3,
                   help="timed forwards per layout (median with its interval and min-max)")
    p.add_argument("--warmup", type=flags.BOUNDS["warmup"], default=1, help="untimed forwards per layout first")
    p.add_argument("--out", required=True, help="directory for table4_time.csv / _layouts.csv / .json")
    p.set_defaults(func=cmd_table4_time)


def _add_flops_curve(sub) -> None:
    p = sub.add_parser("flops-curve", help=cmd_flops_curve.__doc__)
    p.add_argument("--out", default="results", help="directory for flops_curve.csv / .png (default results/)")
    p.set_defaults(func=cmd_flops_curve)


def _add_run(sub) -> None:
    from benchmarks.core import flags
    from benchmarks.generators import CONTROL_KINDS  # numpy, no torch
    from benchmarks.run.suites import BUILT_IN, DEFAULT_SUITE  # the standard library only

    p = sub.add_parser("run", help=cmd_run.__doc__)
    p.add_argument("suite", nargs="?", help=f"built-in suite (default {DEFAULT_SUITE}): {', '.join(BUILT_IN)}")
    p.add_argument("--suite", dest="suite_file", metavar="FILE.toml", help="a suite defined in a TOML file")
    p.add_argument("--models", nargs="+", help="generator specs, replacing the suite's: shipped names, save_pretrained "
                   "directories, reconstruction:VAE, control:KIND, python:MODULE:FACTORY, diffusers:PATH, "
                   "'cmd:SCRIPT --prompt={prompt} --seed={seed} --out={out}' (docs/generators.md)")
    p.add_argument("--controls", nargs="?", const=list(CONTROL_KINDS), type=flags.name_list, metavar="KIND,...",
                   help="add validity floors (default all: " + ", ".join(CONTROL_KINDS) + "); report.md flags "
                        "metrics on which a model is not separated from them")
    p.add_argument("--full", action="store_true", help="the suite's full size (committed results)")
    p.add_argument("--trust-suite-code", action="store_true",
                   help="run the python: / cmd: specs a --suite file names (its code runs as you; without the flag "
                        "such a suite is refused before anything is imported)")
    p.add_argument("--per-kind", type=flags.BOUNDS["per_kind"], help="world prompts per kind (8 kinds)")
    p.add_argument("--samples", type=flags.BOUNDS["samples"], help="videos per prompt (VBench: 5)")
    p.add_argument("--prompt-limit", type=flags.BOUNDS["prompt_limit"], help="only the first N prompts")
    p.add_argument("--seed", type=flags.seed_int, help="base seed (batch b of sample i uses seed + 1000 i + b)")
    p.add_argument("--videos", help="suite external: the folder of videos to score")
    _add_scoring_arguments(p)
    p.add_argument("--check-against", metavar="BASELINE_DIR",
                   help="compare with a baseline run (results/baselines/SUITE): exit 1 on a significant regression")
    p.add_argument("--pair", action="append", default=[], metavar="BASE_MODEL=NEW_MODEL",
                   help="with --check-against: which baseline model each new model is compared with")
    p.set_defaults(func=cmd_run)


def _add_eval(sub) -> None:
    p = sub.add_parser("eval", help=cmd_eval.__doc__, epilog=_faithful_help,
                       formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("--videos", required=True, help="folder of video files (mp4/webm/gif/...) or frame folders")
    _add_scoring_arguments(p)
    p.set_defaults(func=cmd_eval, check_against=None, pair=[])


def _add_bench_eval(sub) -> None:
    from benchmarks.core import flags

    p = sub.add_parser("bench-eval", help=cmd_bench_eval.__doc__)
    p.add_argument("--videos", type=flags.BOUNDS["samples"], default=2, help="videos per prompt (VBench: 5)")
    p.add_argument("--prompts", type=flags.BOUNDS["prompts"], default=1,
                   help="prompts per VBench prompt list (11 lists)")
    p.add_argument("--repeats", type=flags.BOUNDS["repeats"], default=3, help="timed repeats per mode")
    p.add_argument("--no-warmup", action="store_true", help="skip the untimed warm-up (tests)")
    p.add_argument("--precision", default="fp32", choices=["fp32", "bf16"],
                   help="bf16: also time the shared path under autocast (bf16 on CPU, fp16 on CUDA) and check it")
    p.add_argument("--out", help="directory for bench_eval_*.csv, bench_eval.md and bench_eval.json (provenance)")
    p.add_argument("--frames", type=flags.BOUNDS["video_frames"], default=16)
    p.add_argument("--height", type=flags.BOUNDS["video_side"], default=320,
                   help="VBench's videos: 320x512 (or 480x854)")
    p.add_argument("--width", type=flags.BOUNDS["video_side"], default=512)
    p.add_argument("--threads", type=flags.threads_int, default=1)
    p.add_argument("--device", default="cpu", choices=["cpu", "cuda"])
    p.add_argument("--small", action="store_true", help="tiny backbones and DIS flow (tests), not VBench's sizes")
    p.set_defaults(func=cmd_bench_eval)


def _add_bench_mixer(sub) -> None:
    from benchmarks.core import flags

    p = sub.add_parser("bench-mixer", help=cmd_bench_mixer.__doc__)
    p.add_argument("--points", nargs="+", default=None,
                   help="sequence points as RES/LATENT_FRAMES, e.g. 384p/1 768p/31 (default: 960 to 15,360 "
                        "visual tokens)")
    p.add_argument("--repeats", type=flags.BOUNDS["repeats"], default=3,
                   help="timed calls of the mixer and of the block at each point (median with interval, min-max)")
    p.add_argument("--warmup", type=flags.BOUNDS["warmup"], default=1, help="untimed calls of each first")
    p.add_argument("--device", default="cpu", choices=["cpu", "cuda"])
    p.add_argument("--out", help="directory for bench_mixer.csv / .json")
    p.set_defaults(func=cmd_bench_mixer)


def _add_train(sub) -> None:
    from benchmarks.core import flags
    from m4v.config import MIXERS  # the standard library only

    p = sub.add_parser("train", help=cmd_train.__doc__)
    p.add_argument("--model", required=True, type=_recipe_name, metavar="MODEL",
                   help="a recipe of m4v/recipes: vae-tiny, text-tiny, clip-tiny, reward-tiny, m4v-tiny, dit-tiny, "
                        "m4v-tiny-reward, wan (a Wan pipeline directory's transformer, given by --init-from), "
                        "wan-tiny, m4v-wan-tiny (the world-trained Wan2.1 / M4V*(Wan2.1); --init-from: its start), "
                        "m4v-wan-tiny-reward (reward learning on the whole latent; --init-from: a Wan transformer "
                        "directory, default m4v-wan-tiny; wan takes it as --option reward_weight=W)")
    p.add_argument("--steps", type=flags.steps_int, help="optimisation steps (default: the recipe's)")
    p.add_argument("--out", required=True, help="run directory: weights, loss.csv, training.json, state.pt")
    p.add_argument("--overwrite", action="store_true",
                   help="train into a directory that already holds a model (it is replaced); without it such a "
                        "directory is refused unless its own state.pt is resumed")
    p.add_argument("--seed", type=flags.seed_int, default=0)
    p.add_argument("--batch", type=flags.BOUNDS["batch"], help="batch size (default: the recipe's)")
    p.add_argument("--lr", type=flags.learning_rate, help="learning rate (default: the recipe's)")
    p.add_argument("--weights", help="where the models it builds on live (default: the shipped m4v/weights/)")
    p.add_argument("--stage-weights", type=flags.nonnegative_float, nargs=3, metavar=("S0", "S1", "S2"),
                   help="m4v-tiny / dit-tiny: relative frequency of each pyramid stage per step (default: uniform)")
    p.add_argument("--mixer", choices=list(MIXERS),
                   help="m4v-tiny / dit-tiny: the single-stream mixer (default: the model's, m4v / attention)")
    p.add_argument("--set", action="append", default=[], metavar="KEY=VALUE",
                   help="m4v-tiny / dit-tiny: an M4VConfig field of the trained architecture, repeatable, e.g. "
                        "text_recomposition=false, registers=false, zigzag=false, width=240 (alias of "
                        "hidden_size), rope_axes=6,12,12; recorded in training.json")
    p.add_argument("--bf16", action="store_true", help="bfloat16 autocast of the forward (--device cuda only)")
    p.add_argument("--grad-checkpoint", action="store_true",
                   help="m4v-tiny / dit-tiny / m4v-tiny-reward: recompute each block in the backward (less memory)")
    p.add_argument("--data", metavar="CAPTIONS", help="train on your videos: a CSV or JSONL with path, text (optional "
                   "fps), paths relative to it (every recipe but the Wan ones; docs/distributed.md); "
                   "default: the world")
    p.add_argument("--dataset-size", type=flags.BOUNDS["dataset_size"],
                   help="m4v-tiny / dit-tiny: world clips encoded once and sampled from (default: the recipe's)")
    p.add_argument("--checkpoint-every", type=flags.steps_int, default=200)
    p.add_argument("--snapshot-every", type=flags.steps_int, metavar="N",
                   help="also save the model as shipped every N steps to OUT/snapshots/step-NNNNNN/ (with its "
                        "training.json), for quality against training steps")
    p.add_argument("--stop-after", type=flags.steps_int, metavar="N",
                   help="stop the --steps schedule after step N and save that step's snapshot (as --snapshot-every "
                        "would); rerunning without it resumes to the schedule's end")
    p.add_argument("--device", default="cpu", choices=["cpu", "cuda"],
                   help="vae-tiny / m4v-tiny / dit-tiny: where to train (same random stream on either; the shipped "
                        "models were trained on the CPU)")
    p.add_argument("--threads", type=flags.threads_int, help="torch CPU threads")
    p.add_argument("--quiet", action="store_true", help="no progress bar")
    p.add_argument("--init-from", metavar="DIR", help="m4v-tiny / dit-tiny: start from an attention model (e.g. "
                   "dit-tiny's directory) or a PyramidFlow-miniFLUX checkpoint (m4v/convert.py); wan: a Wan pipeline "
                   "directory (m4v-bench convert wan); wan-tiny / m4v-wan-tiny / m4v-wan-tiny-reward: a Wan "
                   "transformer directory (default the shipped wan-tiny / m4v-wan-tiny)")
    p.add_argument("--option", action="append", default=[], metavar="KEY=VALUE",
                   help="a recipe option (m4v-tiny / dit-tiny: see m4v/recipes/denoiser.py)")
    p.set_defaults(func=cmd_train)


def _add_convert(sub) -> None:
    p = sub.add_parser("convert", help=cmd_convert.__doc__)
    p.add_argument("kind", choices=["wan"], help="the source's family: wan (a diffusers WanPipeline directory)")
    p.add_argument("pipe_dir", metavar="PIPE_DIR", help="the source pipeline directory (model_index.json)")
    p.add_argument("--out", required=True, help="the new pipeline directory (runs as diffusers:OUT)")
    # mixer and init checked by convert_wan: a wrong one is one line (argparse's choices print the usage too)
    p.add_argument("--mixer", required=True, metavar="{attention,mm-dim}",
                   help="attention: Wan2.1 itself (same videos); mm-dim: M4V*(Wan2.1), every self-attention an MM-DiM")
    p.add_argument("--init-mamba", default="default", metavar="{default,attention}",
                   help="mm-dim: Mamba's own init (default, as train --init-from) or seeded from q / k / v")
    p.add_argument("--seed", type=int, default=0, help="seed of the weights that are not copied")
    p.set_defaults(func=cmd_convert)


def _add_generate(sub) -> None:
    from benchmarks.core import flags

    p = sub.add_parser("generate", help=cmd_generate.__doc__)
    p.add_argument("--model", default="m4v-tiny", help="m4v-tiny | dit-tiny | m4v-tiny-reward | a trained directory")
    p.add_argument("--prompt", required=True)
    p.add_argument("--frames", type=flags.frames_int, default=16)
    p.add_argument("--size", type=flags.size_int, default=64, help="height = width in pixels (multiple of 64)")
    p.add_argument("--seed", type=flags.seed_int, default=0)
    p.add_argument("--steps", type=flags.sampling_steps_int,
                   help="Euler steps per pyramid stage (default: the tiny models', m4v.text_to_video.TINY_STEPS)")
    p.add_argument("--guidance", type=flags.guidance_float,
                   help="classifier-free guidance scale (1: none; default: the tiny models', TINY_GUIDANCE)")
    p.add_argument("--fps", type=flags.fps_float, default=8.0,
                   help="frame rate written into the file; the .json records the rate the file holds")
    p.add_argument("--weights", help="weights root (default: the shipped m4v/weights/)")
    p.add_argument("--text-encoder", default="text-tiny",
                   help="T5 + CLIP text encoders: a name under the weights root or a directory holding t5/ and "
                        "clip_text/ (transformers save_pretrained layouts; never downloaded)")
    p.add_argument("--vae", default="vae-tiny", help="video VAE: a name under the weights root or a directory")
    p.add_argument("--out", required=True,
                   help="video file (.mp4, .webm, .gif or .mkv: evaluators.video.WRITABLE_SUFFIXES); a .json "
                        "with the settings beside it")
    p.add_argument("--overwrite", action="store_true", help="replace an existing video / .json at --out")
    p.set_defaults(func=cmd_generate)


def _add_stage_quality(sub) -> None:
    from benchmarks.core import flags

    p = sub.add_parser("stage-quality", help=cmd_stage_quality.__doc__)
    p.add_argument("--models", nargs="+", default=["m4v-tiny", "dit-tiny"])
    p.add_argument("--prompts", type=flags.BOUNDS["prompts"], default=30,
                   help="held-out single-object prompts (first frame each)")
    p.add_argument("--seed", type=flags.seed_int, default=0)
    p.add_argument("--steps", type=flags.sampling_steps_int,
                   help="Euler steps per pyramid stage (default: the tiny models')")
    p.add_argument("--guidance", type=flags.guidance_float, help="guidance scale (default: the tiny models')")
    p.add_argument("--weights", help="weights root (default: the shipped m4v/weights/)")
    p.add_argument("--threads", type=flags.threads_int, help="torch CPU threads")
    p.add_argument("--out", help="directory for stage_quality.csv / .json / .md and shape_confusion.csv")
    p.set_defaults(func=cmd_stage_quality)


def _add_bench_scan(sub) -> None:
    from benchmarks.core import flags

    p = sub.add_parser("bench-scan", help=cmd_bench_scan.__doc__)
    p.add_argument("--sizes", nargs="+", default=["small", "paper"], choices=["small", "paper"])
    p.add_argument("--repeats", type=flags.BOUNDS["repeats"], default=3,
                   help="timed repeats of each backend (median with interval, min-max; the paper-size reference "
                        "is timed once)")
    p.add_argument("--warmup", type=flags.BOUNDS["warmup"], default=1, help="untimed calls of each backend first")
    p.add_argument("--device", default="auto", choices=["auto", "cpu", "cuda"],
                   help="cuda adds mamba-ssm's kernel, checked against the cpu backend")
    p.add_argument("--reference-backward", nargs="*", default=["small"], choices=["small", "paper"],
                   help="sizes at which autograd through the reference is timed (it takes 25 s at the small "
                        "size and far longer at the paper size)")
    p.add_argument("--out", help="directory for bench_scan.csv / .json (with provenance)")
    p.add_argument("--check", action="store_true", help="exit 1 when a target is missed")
    p.set_defaults(func=cmd_bench_scan)


def _add_compare(sub) -> None:
    from benchmarks.core import flags

    p = sub.add_parser("compare", help=cmd_compare.__doc__)
    p.add_argument("base", help="reference: a result directory of `run`, or its per_video.csv")
    p.add_argument("new", help="candidate: a result directory of `run`, or its per_video.csv")
    p.add_argument("--pair", action="append", default=[], metavar="BASE_MODEL=NEW_MODEL",
                   help="compare these models (repeatable; default: same names, or one-to-one when each side has "
                        "one model)")
    p.add_argument("--max-drop", action="append", default=[], metavar="METRIC=X",
                   help="tolerated change in the worse direction, absolute (0.02) or of the base mean (5%%); "
                        "repeatable")
    p.add_argument("--alpha", type=flags.BOUNDS["probability"], default=0.05,
                   help="family-wise significance level (Holm) per model")
    p.add_argument("--allow-unpaired", action="store_true",
                   help="compare the samples present and scored on both sides instead of refusing")
    # typed by the bounds table (argparse names the flag and the bound, exit 2); CompareOptions checks the library
    p.add_argument("--resamples", type=flags.BOUNDS["resamples"], default=9999,
                   help="bootstrap resamples for the 95%% interval")
    p.add_argument("--seed", type=flags.seed_int, default=0, help="bootstrap seed")
    p.add_argument("--out", help="directory for compare.csv / compare.json (default: NEW's directory)")
    p.set_defaults(func=cmd_compare)


def _add_plan(sub) -> None:
    from benchmarks.core import flags

    p = sub.add_parser("plan", help=cmd_plan.__doc__)
    p.add_argument("--from", dest="source", required=True, metavar="RUN",
                   help="a result directory of `run` (or its per_video.csv), or a paper_tableN_directions.csv")
    p.add_argument("--metric", help="one metric only")
    p.add_argument("--detect", type=flags.BOUNDS["difference"], metavar="DELTA",
                   help="the difference to detect (and the interval half-width to reach), in the metric's units")
    p.add_argument("--pair", action="append", default=[], metavar="BASE=NEW",
                   help="models whose paired spread to plan with (default: each model against the first)")
    p.add_argument("--alpha", type=flags.BOUNDS["probability"],
                   help="family-wise level (Holm across the run's metrics; default 0.05)")
    p.add_argument("--power", type=flags.BOUNDS["probability"], help="power to detect --detect (default 0.8)")
    p.add_argument("--samples", type=flags.BOUNDS["samples"], metavar="M",
                   help="plan for M samples a prompt (default: the run's), through the run's within-prompt "
                        "correlation")
    p.set_defaults(func=cmd_plan)


def _add_report(sub) -> None:
    p = sub.add_parser("report", help=cmd_report.__doc__)
    p.add_argument("run", help="a result directory of `m4v-bench run`")
    p.set_defaults(func=cmd_report)


# the commands in the order `m4v-bench --help` lists them
COMMANDS = (
    _add_info, _add_table4, _add_table4_time, _add_flops_curve, _add_run, _add_eval, _add_bench_eval,
    _add_bench_mixer, _add_train, _add_generate, _add_stage_quality, _add_bench_scan, _add_compare, _add_plan,
    _add_report, _add_convert,
)


def build_parser() -> argparse.ArgumentParser:
    parser = _Parser(prog="m4v-bench", description=__doc__)
    sub = parser.add_subparsers(dest="command", required=True)
    for add in COMMANDS:
        add(sub)
    _add_debug_flag(parser, sub)
    return parser


def _add_debug_flag(parser: argparse.ArgumentParser, sub) -> None:
    """--debug before or after the command name: a user error keeps its traceback."""
    debug_help = "on a user error, show the traceback instead of one line (also M4V_DEBUG=1)"
    parser.add_argument("--debug", action="store_true", help=debug_help)
    for command in sub.choices.values():  # SUPPRESS: a subcommand without the flag keeps the top-level value
        command.add_argument("--debug", action="store_true", default=argparse.SUPPRESS, help=debug_help)


def _user_errors() -> tuple:
    """What a user's input or environment causes (a bad file, flag or directory), as opposed to a bug: these
    print one line and exit 2; anything else keeps its traceback."""
    from benchmarks.core.errors import OutputError

    # a class of a module that was never imported cannot have been raised: none is imported only to be listed
    lazy = tuple(getattr(sys.modules[module], name) for module, name in (
        ("torch", "OutOfMemoryError"),                    # a size the machine cannot hold is the request's
        ("evaluators.video", "VideoReadError"),
        ("safetensors", "SafetensorError"))               # a truncated weights file, wherever a library loads it
        if module in sys.modules)
    return (ValueError, OSError, MemoryError, OutputError, *lazy)


def _one_line(exc: BaseException) -> str:
    """The exception's message on one line (a message never needs the traceback to be understood)."""
    return " ".join(str(exc).split()) or type(exc).__name__


def _created_root(path: Path) -> Path | None:
    """The outermost directory that writing to `path` would create (None: `path`'s parent already exists and
    `path` too): the one to remove again when the run is refused."""
    path, root = path.absolute(), None
    for candidate in (path, *path.parents):
        try:
            if candidate.exists():
                break
        except OSError:  # a name the file system refuses (too long): the command reports it
            return None
        root = candidate
    return root


def _remove_if_empty(root: Path) -> None:
    """Remove a directory this run created if it holds no file but the lock / probe (a refused run)."""
    import shutil

    from benchmarks.core.errors import OutputError
    from benchmarks.core.outputs import LOCK_NAME, RUN_MARKER, OutputLock

    if not root.is_dir() or any(p.is_file() and p.name not in (LOCK_NAME, RUN_MARKER) for p in root.rglob("*")):
        return
    for locked in root.rglob(LOCK_NAME):  # another run may have made the same new directory and hold it
        try:
            with OutputLock(locked.parent):
                pass
        except (OutputError, OSError):
            return
    shutil.rmtree(root, ignore_errors=True)


def main(argv=None) -> int:
    """Parse, run the command; user errors (see _user_errors) -> one line on stderr and exit 2, and an output
    directory the refused run created is removed again when nothing was written into it. --debug (or
    M4V_DEBUG=1) re-raises with the traceback."""
    import os

    argv = list(sys.argv[1:] if argv is None else argv)
    args = build_parser().parse_args(argv)
    args.argv = argv  # recorded in run's provenance
    debug = getattr(args, "debug", False) or os.environ.get("M4V_DEBUG") == "1"
    previous_debug = os.environ.get("M4V_DEBUG")
    if debug:   # adapters read it: third-party warnings and progress bars are shown only then
        os.environ["M4V_DEBUG"] = "1"
    out = getattr(args, "out", None)
    created = _created_root(Path(out)) if out else None
    rc = 2
    previous = _terminate_as_exception()
    try:
        rc = args.func(args)
        return rc
    except _user_errors() as exc:
        if debug:
            raise
        print(f"m4v-bench {args.command}: {_one_line(exc)}", file=sys.stderr)
        return 2
    except KeyboardInterrupt:
        if debug:
            raise
        print(f"m4v-bench {args.command}: interrupted", file=sys.stderr)
        return 130
    except Terminated:
        print(f"m4v-bench {args.command}: terminated (SIGTERM); what finished is cached, rerun to resume",
              file=sys.stderr)
        rc = 143
        return rc
    except Exception as exc:  # noqa: BLE001 - a bug is exit 3, never 1 (1 means "regression" to a CI gate)
        if debug:
            raise
        print(f"m4v-bench {args.command}: internal error: {type(exc).__name__}: {_one_line(exc)} (rerun with "
              "--debug for the traceback)", file=sys.stderr)
        rc = 3
        return rc
    finally:
        _restore_terminate(previous)
        if previous_debug is None:
            os.environ.pop("M4V_DEBUG", None)
        if created is not None and rc != 0:
            _remove_if_empty(created)


def _terminate_as_exception():
    """SIGTERM raises Terminated (exit 143 with one line, no COMPLETE written); -> the previous handler."""
    import signal
    import threading

    if threading.current_thread() is not threading.main_thread():
        return None

    def handler(signum, frame):
        raise Terminated()

    return signal.signal(signal.SIGTERM, handler)


def _restore_terminate(previous) -> None:
    import signal

    if previous is not None:
        signal.signal(signal.SIGTERM, previous)


if __name__ == "__main__":
    sys.exit(main())
