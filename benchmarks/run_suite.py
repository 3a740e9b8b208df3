"""`m4v-bench run`: a suite run end to end: claim OUT, the runner's rows, the results writer, a paper table when
the suite is one, `--check-against` a baseline. The runner below knows nothing of the paper tables or compare."""

from __future__ import annotations

import json
import sys
from pathlib import Path

import pandas as pd

from benchmarks.compute.measure import machine_load
from benchmarks.core.errors import SuiteError
from benchmarks.core.outputs import json_safe
from benchmarks.core.provenance import git_commit, provenance
from benchmarks.run import distributed
from benchmarks.run.cache import SampleCache
from benchmarks.run.runner import (
    GENERATION_FAILED,
    _check_shards_finished,
    backbone_weights,
    run_external,
    run_generate,
    run_shard,
    unscored_dimensions,
)
from benchmarks.run.suites import Suite
from evaluators import EVALUATORS
from evaluators.backbones import default_backbones


def _checkpoint_config(spec: str) -> dict:
    """A paper-table row's config.json: its model must be a checkpoint (the row's architecture is read off it)."""
    from benchmarks.generators import REGISTRY
    from m4v.checkpoint import read_config, weights_path

    if any(spec.startswith(prefix) for prefix in REGISTRY):
        raise SuiteError(f"--models {spec}: a paper table's rows are checkpoints (a shipped name or a directory with "
                         "config.json), whose architecture the row names")
    return read_config(weights_path(spec) / "config.json")


def default_pairs(baseline, models: list[str]) -> list[tuple[str, str]]:
    """--check-against without --pair: each new model against the baseline model of its name, else against the
    baseline's first model (the suite's reference, m4v-tiny for quality-vs-compute)."""
    path = Path(baseline)
    per_video = path / "per_video.csv" if path.is_dir() else path
    try:
        base_models = list(dict.fromkeys(pd.read_csv(per_video, usecols=["model"])["model"]))
    except (OSError, ValueError) as exc:
        raise SuiteError(f"--check-against {baseline}: no readable per_video.csv ({exc})") from exc
    if not base_models:
        raise SuiteError(f"--check-against {baseline}: the baseline holds no rows")
    return [(m if m in base_models else base_models[0], m) for m in models]


def run_suite(suite: Suite, out, *, videos=None, prompts=None, cache_dir=None, use_cache: bool = True,
              check_against=None, pairs=(), command: str = "", device: str = "cpu", log=print,
              overwrite: bool = False, source=None, shard=None, assemble_only: bool = False) -> int:
    """Run the suite into OUT (locked while running, COMPLETE when every file is in place); -> exit code:
    0 done, 1 when a dimension could score no video (or --check-against found a regression). OUT is the run's:
    another suite's run or files no run wrote are refused unless `overwrite`; an earlier run's outputs are cleared.
    `source`: the suite's TOML file, named in errors about its keys. `shard` (benchmarks/run/shards.py): only that
    shard's work into the cache, OUT untouched; `assemble_only`: the table from the cache alone."""
    from benchmarks.core.outputs import (
        OutputLock,
        claim_run_dir,
        mark_complete,
        mark_incomplete,
        own_run_dir,
        prepare_output_dir,
    )
    from benchmarks.paper import table4
    from benchmarks.reporting.aggregate import primary_metric
    from benchmarks.reporting.writers import summarize, write_results

    commit = git_commit()  # the code that runs, before this run's outputs can dirty the tree
    if device.startswith("cuda"):
        import torch

        if not torch.cuda.is_available():   # never a CPU run recorded under --device cuda
            raise SuiteError("--device cuda: no CUDA device is visible to torch")
    distributed.init_from_env(device)
    if shard is not None:
        return run_shard(suite, shard, videos, prompts, cache_dir, command, log, source)
    out = claim_run_dir(out, suite.name, overwrite)
    if check_against is not None and not Path(check_against).exists():
        raise SuiteError(f"--check-against {check_against}: no such baseline directory")
    if use_cache and cache_dir is not None:   # a file or a read-only folder fails now, not after the generation
        prepare_output_dir(cache_dir, "--cache-dir")
    lock = OutputLock(out) if distributed.is_main() else None
    try:
        if lock:
            lock.__enter__()
            mark_incomplete(out)
        cache = SampleCache(Path(cache_dir) if cache_dir else out / "cache", enabled=use_cache)
        load_at_start = machine_load()   # timings are read beside the load they were taken under
        definition = suite.definition()
        prov = {**provenance(config={"command": command}, seeds=[suite.seed], commit=commit),
                "command": command, "suite": definition, "suite_hash": suite.hash()}
        if suite.kind in ("table4", "flops-curve", "wan-flops"):   # one computed table, no generation
            if distributed.is_main():
                from benchmarks.paper import wan_flops

                make, write = {"table4": (table4.table4, table4.write_table4),
                               "flops-curve": (table4.flops_curve, table4.write_flops_curve),
                               "wan-flops": (wan_flops.wan_flops, wan_flops.write_wan_flops)}[suite.kind]
                df = make()
                own_run_dir(out, suite.name)
                write(df, out)
                log(df.to_markdown(index=False, floatfmt=".4g"))
                log(f"wrote {out}/")
                mark_complete(out, [p.name for p in out.iterdir() if not p.name.startswith(".")])
            return 0
        if suite.kind == "external":
            if videos is None:
                raise SuiteError("suite external needs --videos DIR")
            if assemble_only:
                _check_shards_finished(cache.root, suite)
            per_video, generation, checkpoints = run_external(videos, prompts, suite, cache, log)
            written = []   # an external run writes no video
            models = ["external"]
        else:
            if suite.paper_table:  # before any generation: the models must fill the table's rows
                from benchmarks.paper.paper_tables import check_models

                check_models(suite.paper_table, list(suite.models))  # the count first, then each row's model
                check_models(suite.paper_table, list(suite.models), [_checkpoint_config(m) for m in suite.models])
            where = f"--suite {source}" if source else None
            per_video, generation, checkpoints, written = run_generate(suite, out, cache, log, where,
                                                                       assemble_only=assemble_only)
            models = list(checkpoints)
        counts = distributed.gather_rows([(cache.hits, cache.misses)])   # every rank's work, not rank 0's alone
        if not distributed.is_main():
            return 0
        hits, misses = ({k: sum(c[i][k] for c in counts) for k in ("videos", "records")} for i in (0, 1))
        log(f"videos: {hits['videos']} from the cache, {misses['videos']} generated; records: "
            f"{hits['records']} from the cache, {misses['records']} computed")
        summary = summarize(per_video, generation, models, checkpoints)
        prov["checkpoints"] = checkpoints
        # the code that scored each dimension: compare refuses two runs scored by different evaluator versions
        scored_dims = set(per_video["dimension"])
        prov["evaluators"] = {d: {"version": EVALUATORS[d].version, "score_range": list(EVALUATORS[d].score_range)}
                              for d in EVALUATORS if d in scored_dims}
        prov["machine_load"] = {"start": load_at_start, "end": machine_load()}
        prov["backbone_weights"] = backbone_weights(suite.backbones)
        from benchmarks.run.protocol_card import protocol_card

        scored = ([Path(v) for v in per_video["video"].dropna() if v] if suite.kind == "external"
                  else [out / w for w in written])
        prov["protocol"] = protocol_card(suite, per_video, scored, prompts if suite.kind == "external" else None,
                                         [*default_backbones(), *suite.backbones], checkpoints)
        primary = primary_metric(summary, suite.primary_metric)
        extra = {}
        if suite.kind == "external":  # VBench's own results layout too, for its faithfully computed dimensions
            from benchmarks.run.external import vbench_results_json

            extra["m4v_eval_results.json"] = json.dumps(json_safe(vbench_results_json(
                per_video, summary.iloc[0].to_dict())), indent=2, allow_nan=False) + "\n"
            # VBench's algorithm and backbone on weights no published hash confirms: apart, never as VBench's
            unverified = vbench_results_json(per_video, summary.iloc[0].to_dict(), weights="unverified")
            if unverified:
                extra["m4v_eval_results_weights_unverified.json"] = json.dumps(
                    json_safe(unverified), indent=2, allow_nan=False) + "\n"
        if suite.paper_table:
            from benchmarks.paper.paper_tables import build_table, directions, markdown

            # Table 4's compute column at paper size, counted now by FlopCounterMode (fvcore agrees: table4.csv)
            paper_size = (table4.table4(counters=("torch",)).set_index("variant")
                          if suite.paper_table == "table4" else None)
            table = build_table(suite.paper_table, per_video, summary, models, paper_size)
            signs = directions(suite.paper_table, per_video, models)
            stem = f"paper_{suite.paper_table}"
            extra.update({f"{stem}.csv": table.to_csv(index=False),
                          f"{stem}.md": markdown(suite.paper_table, table, signs),
                          f"{stem}.json": json.dumps(json_safe({"provenance": prov, "rows": table.to_dict("records"),
                                                                "directions": signs.to_dict("records")}),
                                                     indent=2, allow_nan=False) + "\n"})
            if len(signs):
                extra[f"{stem}_directions.csv"] = signs.to_csv(index=False)
        roles = {name: info.get("role", "model") for name, info in checkpoints.items()}
        # no earlier run's file beside these; a video a row names (an external one inside OUT) is never removed
        own_run_dir(out, suite.name, keep=[*written, *per_video["video"].dropna()])
        write_results(out, per_video, generation, summary, prov, suite.name, primary, extra, roles=roles)
        log((out / "report.md").read_text())
        if suite.paper_table:
            log((out / f"paper_{suite.paper_table}.md").read_text())
        log(f"wrote {out}/: per_video.csv, summary.csv, results.json, report.md, report.html" + (
            ", generation.csv, pareto.png" if len(generation) else ""))
        empty = unscored_dimensions(per_video)
        if empty:
            print(f"no score computed for any video on: {', '.join(empty)}", file=sys.stderr)
        failed = per_video[per_video["reason"].fillna("").str.startswith(GENERATION_FAILED)]
        for model, part in failed.groupby("model", sort=False):   # nothing lost: said, and the exit code says it
            print(f"{model}: {part['video'].nunique()} video(s) not generated: {part['reason'].iloc[0]}",
                  file=sys.stderr)
        code = 1 if empty or len(failed) else 0
        if check_against is not None:
            from benchmarks.compare import CompareOptions, run_compare

            pairs = list(pairs) or default_pairs(check_against, models)
            # Same suite, same samples: a metric scored on one side only (e.g. color, where the new model never
            # draws the object) is a difference between the models, not a bad input; compare says how many.
            code = max(code, run_compare(check_against, out, CompareOptions(pairs=pairs, allow_unpaired=True),
                                         out=out, prog="m4v-bench run --check-against", own=out))
            # the comparison belongs to the run: COMPLETE lists its files too
            listed = json.loads((out / "COMPLETE").read_text())["files"]
            mark_complete(out, sorted(set(listed) | {p.name for p in out.glob("compare.*")}))
        return code
    finally:
        if lock:
            lock.__exit__(None, None, None)
        distributed.shutdown()
