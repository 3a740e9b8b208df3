"""Run a suite: work items (model, sample, batch of prompts) -> generation (any checkpoint) -> `Video`s ->
the evaluator registry -> records -> one tidy DataFrame -> the results writer. External videos enter at the
same point as generated ones. Every finished sample is cached (benchmarks/run/cache.py), so a rerun of the same
command skips it; under torchrun the work items are split across ranks and rank 0 writes.
"""

from __future__ import annotations

import json
import math
import re
import sys
from pathlib import Path

import numpy as np
import pandas as pd
from tqdm import tqdm

from benchmarks.core.errors import GenerationFailed, SuiteError
from benchmarks.core.hashing import file_sha256, key_of, tree_sha256
from benchmarks.core.provenance import cpu_kernels
from benchmarks.generators.base import (
    batch_seed,
    check_frames,
    is_interruption,
    per_video_seed,
    size_note,
    user_failure,
)
from benchmarks.run import distributed
from benchmarks.run.cache import RECORD_FIELDS, SampleCache, backbone_fingerprint
from benchmarks.run.suites import Suite, prompt_entries, samples_of
from evaluators import EVALUATORS
from evaluators.backbones import BACKBONE_USAGE, default_backbones, load_backbones, prefetch_features
from evaluators.registry import CUSTOM_INPUT_UNSUPPORTED, Declined, build_evaluator, runnable, score_problem
from evaluators.video import Video, VideoReadError, read_video, write_video

ROW_COLUMNS = ["model", "prompt", "seed", "sample", "dimension", "score", "status", "reason", "backbone",
               "faithful", "weights", "n_frames", "video", "extra"]
GENERATION_COLUMNS = ["model", "prompt", "seed", "sample", "video", "tflops", "mixer_tflops", "tflops_fvcore",
                      "seconds", "seconds_per_frame", "peak_mb", "forwards", "batch", "batch_index"]
_UNSAFE = re.compile(r"[/\\\x00-\x1f]")
MAX_NAME_BYTES = 200


def safe_name(prompt: str) -> str:
    """A prompt as a file-name stem: path separators and control characters replaced, no leading dot, at most
    200 bytes (a long prompt keeps its start and gains a hash), so no prompt can name a path outside OUT."""
    name = _UNSAFE.sub("_", prompt).strip() or "_"
    name = "_" + name[1:] if name.startswith(".") else name
    if len(name.encode()) > MAX_NAME_BYTES:
        digest = key_of(prompt)[:12]
        name = name.encode()[: MAX_NAME_BYTES - 13].decode(errors="ignore") + "~" + digest
    return name


def video_stems(prompts: list[str]) -> dict:
    """{prompt: its videos' file stem}: VBench's name (the prompt itself) where sanitising leaves every prompt its own
    name; where two prompts sanitise to one name (" a red circle" and "a red circle"), each altered one gains a
    short stable hash of itself, so no video overwrites another's and every row points at its own file."""
    by_stem: dict = {}
    for prompt in dict.fromkeys(prompts):
        by_stem.setdefault(safe_name(prompt), []).append(prompt)
    stems = {}
    for stem, group in by_stem.items():
        for prompt in group:
            unique = len(group) == 1 or stem == prompt
            stems[prompt] = stem if unique else f"{stem[:MAX_NAME_BYTES - 9]}~{key_of(prompt)[:8]}"
    return stems


def build_evaluators(dims: list[str] | None, backbones: list[str], with_prompts: bool = False,
                     defaults: bool = True, custom_input: bool = False) -> dict:
    """Evaluators for `dims` (default: every registered one whose backbones are at hand and, without a prompt
    suite, that needs no prompt; in VBench's custom-input mode, whose prompts are file names, every one that needs
    no prompt suite's auxiliary_info and that VBench runs in that mode). Backbones given on the command line
    replace the shipped world-trained defaults of their kind (defaults=False: none). Reads only the evaluators' own
    metadata."""
    loaded = load_backbones((default_backbones() if defaults else []) + list(backbones))
    if dims is None:
        dims = [name for name in runnable(loaded)
                if (with_prompts or not {"prompt", "prompt_info"} & set(EVALUATORS[name].needs))
                and not (custom_input and ("prompt_info" in EVALUATORS[name].needs
                                           or name in CUSTOM_INPUT_UNSUPPORTED))]
    unknown = [d for d in dims if d not in EVALUATORS]
    if unknown:
        raise ValueError(f"--dims: unknown {unknown}; available: {sorted(EVALUATORS)}")
    for d in dims:
        missing = [kind for kind in EVALUATORS[d].backbones if kind not in loaded]
        if missing:
            raise ValueError(f"--dims {d} needs backbone(s) {missing}: --backbone {BACKBONE_USAGE[missing[0]]}")
    return {d: build_evaluator(d, loaded) for d in dims}


def _reason(video: Video, exc: Exception) -> str:
    """The exception as a row's reason, without the video's path (the row names it; a cached reason must not carry
    the identity of the run that computed it)."""
    text = str(exc)
    return text[len(video.source) + 2:] if text.startswith(f"{video.source}: ") else text


def evaluate_record(video: Video, name: str, evaluator) -> tuple[dict, bool]:
    """-> (the evaluator's computed fields for this video, whether they may be cached). A score that could not be
    computed is a failed row with its reason, never ok with NaN; a declined video is a declined row; any exception
    is a failed row naming it (the run goes on, the bug stays visible in `reason`)."""
    try:
        record = evaluator.evaluate_video(video)
        score = float(record.score)
        if not math.isfinite(score):
            raise ValueError(f"{name} gave {score} (nothing to score on)")
        problem = score_problem(name, score)
        if problem:   # outside the evaluator's declared range: a bug, never an ok row
            raise ValueError(f"{name} gave a {problem}")
        computed = {"score": score, "status": "ok", "reason": "", "n_frames": record.n_frames,
                    "extra": json.dumps(record.extra, sort_keys=True, default=float)}
        cacheable = True
    except Declined as exc:
        computed = {"score": None, "status": "declined", "reason": _reason(video, exc), "n_frames": video.num_frames,
                    "extra": json.dumps(exc.extra, sort_keys=True, default=float)}
        cacheable = exc.cacheable
    except Exception as exc:  # noqa: BLE001 - one video's bug must not end the run; the row names it
        computed = {"score": None, "status": "failed", "reason": f"{type(exc).__name__}: {_reason(video, exc)}",
                    "n_frames": video.num_frames, "extra": "{}"}
        cacheable = True
    return json.loads(json.dumps(computed, allow_nan=False, default=float)), cacheable  # the cached form, exactly


def score_video(video: Video, evaluators: dict, base: dict, sample_key: str, cache: SampleCache) -> list[dict]:
    """Every applicable evaluator's row for one video: the run's identity (`base`: model, prompt, seed, sample,
    video) around what the evaluator computed, read from the cache where the same evaluator version and backbone
    files scored the same sample. The cache holds only computed fields, so identical checkpoints under two names
    get two identical sets of rows."""
    rows = []
    for name, evaluator in evaluators.items():
        if not evaluator.applies(video):
            continue
        fingerprint = backbone_fingerprint(evaluator)
        cached = cache.load_record(sample_key, evaluator, fingerprint)
        if cached is not None:   # verified on read (benchmarks/run/cache.py): sealed, in its schema
            computed = {k: cached[k] for k in RECORD_FIELDS}
        else:
            computed, cacheable = evaluate_record(video, name, evaluator)
            if cacheable:
                cache.store_record(sample_key, evaluator, fingerprint, computed)
        row = {**base, "dimension": name, "backbone": evaluator.backbone, "faithful": evaluator.faithful,
               "weights": evaluator.weights, **computed}
        evaluator.observe(video, row)
        rows.append(row)
    return rows


def backbone_weights(specs) -> dict:
    """{backbone label: {"sha256", "weights"}} of the backbones a run loads (the shipped defaults, then the
    suite's / command line's, a later one of a kind replacing an earlier one): which files, checked against the
    published hashes (evaluators/vbench_cache.py)."""
    from evaluators.backbone_loading import parse_backbone
    from evaluators.vbench_cache import verify_weights

    by_kind = {}
    for spec in (*default_backbones(), *specs):
        parsed = parse_backbone(spec)
        by_kind[parsed.kind] = parsed
    return {spec.label: {"path": str(spec.weights), "sha256": check.sha256, "weights": check.status}
            for spec, check in ((spec, verify_weights(spec.weights)) for spec in by_kind.values())}


def _backbones_of(evaluators: dict) -> dict:
    """{kind: loaded backbone} the evaluators were built with (each loaded once, shared)."""
    return {kind: getattr(e, kind) for e in evaluators.values() for kind in e.backbones
            if getattr(e, kind, None) is not None}


def _generation_row(base: dict, generation: dict, batch_index: int) -> dict:
    """A generated video's cost; `seconds` is its batch's wall clock / the batch size, `batch_index` with `sample`
    names the batch (timings are medians over batches)."""
    def tera(key):   # a count a generator does not have (no mixer split, no fvcore, declined): empty
        return float("nan") if generation.get(key) is None else generation[key] / 1e12

    def value(key):
        return float("nan") if generation.get(key) is None else generation[key]

    return {**{k: base[k] for k in ("model", "prompt", "seed", "sample", "video")}, "batch_index": batch_index,
            "tflops": tera("flops"), "mixer_tflops": tera("mixer_flops"), "tflops_fvcore": tera("flops_fvcore"),
            "seconds": generation["seconds"], "seconds_per_frame": value("seconds_per_frame"),
            "peak_mb": value("peak_mb"), "forwards": value("forwards"), "batch": generation["batch"]}


def generation_items(suite: Suite, models: list, entries: list[dict]) -> list[tuple]:
    """(model index, sample, batch index, entries of the batch): the unit of work, cache and sharding. Batch b
    of sample i is generated with seed = suite.seed + 1000 * i + b, whichever rank runs it; samples past
    `suite.samples` batch only the prompts that take more (`samples_per_dimension`)."""
    items = []
    counts = [samples_of(suite, e) for e in entries]
    for m in range(len(models)):
        for sample in range(max(counts)):
            mine = [e for e, n in zip(entries, counts) if n > sample]   # all of them below `samples`
            for b, start in enumerate(range(0, len(mine), suite.batch)):
                items.append((m, sample, b, mine[start:start + suite.batch]))
    return items


GENERATION_FAILED = "generation failed"   # a failed row's reason when the video could not be made
_MEMO_BATCHES = 4   # a control's base videos kept in memory: consecutive control videos share base batches


class _Generation:
    """The videos of the run's work items, each from the cache or its generator: keys, seeds, one untimed warm-up
    per generator and process, compute measured by the harness, failures kept per video."""

    def __init__(self, suite: Suite, entries: list[dict], cache: SampleCache):
        self.suite, self.entries, self.cache = suite, entries, cache
        self.sampling = suite.definition()["sampling"]
        self.index = {e["prompt_en"]: i for i, e in enumerate(entries)}
        # the kernel ISA joins every key: another ISA's rounding gives another sample
        self.kernels = cpu_kernels()
        self.fingerprints, self.costs, self.memo, self.loaded = {}, {}, {}, None
        self.may_generate = True   # False when assembling only: a missing video is refused, never made
        # where each (prompt, sample) sits in the work items of any one model: a derived control finds its base's
        self.place = {(e["prompt_en"], sample): (b, j, batch)
                      for _, sample, b, batch in generation_items(suite, [None], entries)
                      for j, e in enumerate(batch)}

    def fingerprint(self, generator) -> dict:
        if id(generator) not in self.fingerprints:
            self.fingerprints[id(generator)] = generator.fingerprint()
        return self.fingerprints[id(generator)]

    def seeds(self, generator, sample: int, b: int, prompts: list[str]) -> list[int]:
        if generator.capabilities.per_video_seeds:
            return [per_video_seed(self.suite.seed, self.index[p], sample) for p in prompts]
        return [batch_seed(self.suite.seed, sample, b)] * len(prompts)

    def keys(self, generator, prompts: list[str], seeds: list[int]) -> list[str]:
        shared = {**self.fingerprint(generator), "kernels": self.kernels, "sampling": self.sampling}
        if generator.capabilities.per_video_seeds:   # the video does not depend on its batch
            return [key_of({**shared, "prompt": p, "seed": s}) for p, s in zip(prompts, seeds)]
        return [key_of({**shared, "prompt": p, "batch": prompts, "position": j, "seed": s})
                for j, (p, s) in enumerate(zip(prompts, seeds))]

    def cached(self, generator, sample: int, b: int, batch: list[dict]) -> bool:
        """Whether every video of one item is in the cache (a derived control: its base's), read nothing."""
        from benchmarks.generators.controls import DERIVED

        if getattr(generator, "control", None) in DERIVED:
            bases = [self.place[(generator.source_prompt(e["prompt_en"]), sample)] for e in batch]
            return all(self.cached(generator.base, sample, base_b, base_batch) for base_b, _, base_batch in bases)
        prompts = [e["prompt_en"] for e in batch]
        return all(self.cache.has_video(k) for k in self.keys(generator, prompts,
                                                              self.seeds(generator, sample, b, prompts)))

    def item(self, generator, sample: int, b: int, batch: list[dict]) -> list[tuple]:
        """[(frames or the exception that failed it, generation record or None, sample key, seed)] of one item."""
        from benchmarks.generators.controls import DERIVED

        if getattr(generator, "control", None) in DERIVED:
            return self._derived(generator, sample, batch)
        prompts = [e["prompt_en"] for e in batch]
        seeds = self.seeds(generator, sample, b, prompts)
        keys = self.keys(generator, prompts, seeds)
        cached = [self.cache.load_video(k) for k in keys]
        results = [None if c is None else (c[0], c[1] or None) for c in cached]
        # a batch-seeded generator's video depends on its whole batch: any miss regenerates the batch
        todo = [j for j, c in enumerate(results) if c is None]
        if todo and not generator.capabilities.per_video_seeds:
            todo = list(range(len(prompts)))
        if todo and not self.may_generate:
            raise SuiteError(f"--assemble-only: {generator.name}'s sample {sample} of {len(prompts)} prompt(s) is "
                             f"missing or damaged in the cache {self.cache.root}; rerun the shard that made it")
        if todo:
            if self.loaded is not None and self.loaded is not generator:
                self.loaded.close()   # one model's weights in memory at a time
            self.loaded = generator
            made = self._generate(generator, [prompts[j] for j in todo], [seeds[j] for j in todo])
            for j, (frames, record) in zip(todo, made):
                if not isinstance(frames, Exception):
                    self.cache.store_video(keys[j], frames, record or {})
                results[j] = (frames, record)
        return [(frames, record, key, seed) for (frames, record), key, seed in zip(results, keys, seeds)]

    def _generate(self, generator, prompts: list[str], seeds: list[int]) -> list[tuple]:
        """Generate (measured by the harness unless the generator measures itself); each video checked."""
        s = self.suite.sampling
        where = f"--models {generator.spec}"
        try:
            compute = generator.capabilities.compute
            if compute in ("own", "none"):
                import torch

                with torch.no_grad():
                    made = generator.generate(prompts, seeds, s)
                videos, records = list(made.videos), made.records or [None] * len(prompts)
            else:
                from benchmarks.generators.compute import measured_generate, warm_up

                if id(generator) not in self.costs:   # one untimed warm-up per generator and process, counted
                    first = self.entries[0]["prompt_en"]
                    self.costs[id(generator)] = warm_up(generator, first, per_video_seed(self.suite.seed, 0, 0), s)
                videos, records = measured_generate(generator, prompts, seeds, s, self.costs[id(generator)])
        except BaseException as exc:  # noqa: BLE001 - a generator's failure (sys.exit too) fails its videos
            if is_interruption(exc):
                raise
            return [(GenerationFailed(user_failure(exc)), None)] * len(prompts)
        out = []
        for video, record in zip(videos, records):
            try:
                frames = video if isinstance(video, Exception) else check_frames(video, where)
            except GenerationFailed as exc:
                frames = exc
            out.append((frames, None if isinstance(frames, Exception) else record))
        return out

    def _derived(self, control, sample: int, batch: list[dict]) -> list[tuple]:
        """A control made from its base generator's videos (the base's own work items, so its cache entries)."""
        out = []
        for entry in batch:
            source = control.source_prompt(entry["prompt_en"])
            b, j, base_batch = self.place[(source, sample)]
            memo_key = (id(control.base), sample, b)
            if memo_key not in self.memo:
                if len(self.memo) >= _MEMO_BATCHES:
                    self.memo.pop(next(iter(self.memo)))
                self.memo[memo_key] = self.item(control.base, sample, b, base_batch)
            frames, _, base_key, seed = self.memo[memo_key][j]
            key = key_of({"control": control.fingerprint(), "source": base_key, "prompt": entry["prompt_en"]})
            out.append((frames if isinstance(frames, Exception) else control.derive(frames), None, key, seed))
        return out

    def provenance(self, generator) -> dict:
        info = generator.provenance()
        cost = self.costs.get(id(generator))
        if cost is not None:
            info["warm_up_seconds"] = cost["warm_up_seconds"]
        return info


def _failed_rows(video: Video, evaluators: dict, base: dict, exc: Exception) -> list[dict]:
    """A video that could not be made: a failed row naming the cause for every evaluator that would score it."""
    return [{**base, "dimension": name, "backbone": e.backbone, "faithful": e.faithful, "weights": e.weights,
             "score": None,
             "status": "failed", "reason": f"{GENERATION_FAILED}: {exc}", "n_frames": 0, "extra": "{}"}
            for name, e in evaluators.items() if e.applies(video)]


def check_run_size(suite: Suite, n_models: int, entries: list[dict], where: str) -> str:
    """The run's work and memory, estimated before any work against the bounds table (benchmarks/core/flags.py): more
    videos than BOUNDS["videos"], or a batch whose working set cannot fit this machine, is refused with the
    estimate (one line naming the suite and its keys). -> the estimate, said in one line."""
    from benchmarks.core.flags import BOUNDS, check_fits

    s = suite.sampling
    videos = n_models * sum(samples_of(suite, e) for e in entries)
    if not BOUNDS["videos"].contains(videos):
        raise SuiteError(f"{where}: {n_models} model(s) x {len(entries)} prompts x their samples = {videos} videos, "
                         f"more than the {BOUNDS['videos'].high} one run may make; use fewer prompts or samples")
    try:
        need = check_fits(f"{where}: keys 'batch' x 'sampling'", min(suite.batch, len(entries)), s.frames, s.height,
                          s.width)
    except ValueError as exc:
        raise SuiteError(str(exc)) from None
    return (f"estimate: {videos} videos of {s.frames} frames at {s.height}x{s.width} "
            f"({videos * s.frames * s.height * s.width:.3g} pixel-frames), about {need / 2**30:.1f} GiB at once")


def run_generate(suite: Suite, out: Path | None, cache: SampleCache, log=print, where: str | None = None,
                 shard=None, assemble_only: bool = False) -> tuple[pd.DataFrame, pd.DataFrame, dict, list]:
    """Generate and score every (model, prompt, sample) of the suite; -> (rows, generation rows, checkpoints, the
    run's video files relative to OUT, every rank's). Every model is a Generator (benchmarks/generators/): the runner
    asks it for its fingerprint, capabilities and videos, nothing else. `where` names the suite in errors (its TOML
    file). `shard` (benchmarks/run/shards.py): only that shard's items, into the cache, no video written (out=None);
    `assemble_only`: every video must be in the cache (refused before any work, naming what is missing)."""
    from benchmarks.generators import resolve_generators
    from benchmarks.run import shards

    generators = resolve_generators(suite.models, suite.vae, suite.text_encoder, suite.controls or ())
    entries = prompt_entries(suite)
    if not entries:
        raise SuiteError(f"suite {suite.name}: no prompts")
    for generator in generators:   # before any work: a generator that cannot run on these prompts or sizes says so
        generator.bind(entries)
        problem = generator.sampling_problem(suite.sampling)
        if problem:
            raise SuiteError(f"{where or f'suite {suite.name}'}: {problem}")
    log(check_run_size(suite, len(generators), entries, where or f"suite {suite.name}"))
    evaluators = build_evaluators(suite.evaluators, suite.backbones, with_prompts=True)
    work = _Generation(suite, entries, cache)
    stems = video_stems([e["prompt_en"] for e in entries])
    every = generation_items(suite, generators, entries)
    keys = [shards.item_key(generators[m].name, sample, [e["prompt_en"] for e in batch])
            for m, sample, _, batch in every]
    mine = every
    if shard is not None:
        mine = [item for item, owner in zip(every, shards.owners(keys, shard.count)) if owner == shard.index]
        log(f"shard {shard}: {len(mine)} of {len(every)} work items")
    if assemble_only:
        work.may_generate = False
        missing = [(key, generators[m].name, len(batch)) for key, (m, sample, b, batch) in zip(keys, every)
                   if not work.cached(generators[m], sample, b, batch)]
        if missing:
            raise SuiteError(shards.missing_message(cache.root, suite.hash(), missing, keys, len(every)))
    items = distributed.my_share(mine)
    rows, generation_rows = [], []
    dim_order = {name: i for i, name in enumerate(evaluators)}
    for m, sample, b, batch in tqdm(items, desc=f"{suite.name}: batches", unit="batch", file=sys.stderr,
                                    disable=not distributed.is_main()):
        generator = generators[m]
        made = work.item(generator, sample, b, batch)
        fps = generator.fps(suite.sampling)
        prefetch_features(_backbones_of(evaluators),   # batched across videos
                          [frames for frames, *_ in made if not isinstance(frames, Exception)])
        for j, (entry, (frames, generation, key, seed)) in enumerate(zip(batch, made)):
            relative = _video_path(generator, stems[entry["prompt_en"]], sample)
            base = {"model": generator.name, "prompt": entry["prompt_en"], "seed": seed, "sample": sample,
                    "video": str(relative)}
            order = (m, sample, b * suite.batch + j)
            if isinstance(frames, Exception):
                # what would score it, `compute` included (a generation that failed has no cost to report)
                placeholder = Video(np.zeros((1, 1, 1, 3), np.uint8), float(fps), entry["prompt_en"], str(relative),
                                    {**entry, "generation": {}})
                rows += [{**r, "_order": (*order, dim_order[r["dimension"]])}
                         for r in _failed_rows(placeholder, evaluators, base, frames)]
                continue
            if out is not None:
                write_video(out / relative, frames, fps=fps)  # VBench naming, whole or not at all
            aux = {**entry, "generation": generation} if generation else dict(entry)
            video = Video(frames, float(fps), entry["prompt_en"], str(relative), aux)
            note = size_note(frames, suite.sampling)   # scored as made, said in every row of the video
            rows += [{**r, "_order": (*order, dim_order[r["dimension"]]),
                      **({"reason": "; ".join(x for x in (r["reason"], note) if x)} if note else {})}
                     for r in score_video(video, evaluators, base, key, cache)]
            if generation:
                generation_rows.append({**_generation_row(base, generation, b), "_order": order})
    checkpoints = {g.name: work.provenance(g) for g in generators}
    for g in generators:
        g.close()
    videos = [] if out is None else [str(_video_path(generators[m], stems[e["prompt_en"]], sample))
                                     for m, sample, _, batch in every for e in batch]
    return (*_gather(rows, generation_rows, checkpoints, evaluators), videos)


def model_folder(name: str) -> str:
    """A model's videos/ folder: its name where that is a safe file name; where sanitising changes it (a `/` in a
    python: spec's path or option), the sanitised name + `~` + a short hash of the whole name, so two models (whose
    names differ: generators.resolve_generators) never share a folder."""
    safe = safe_name(name)
    return safe if safe == name else f"{safe[:MAX_NAME_BYTES - 9]}~{key_of(name)[:8]}"


def _video_path(generator, stem: str, sample: int) -> Path:
    """Where a generated video is written, relative to OUT (VBench naming under the model's folder)."""
    return Path("videos") / model_folder(generator.name) / f"{stem}-{sample}.mp4"


def run_external(videos_dir, prompts_path, suite: Suite, cache: SampleCache, log=print, shard=None):
    """Score a folder of videos made elsewhere (VBench naming `<prompt>-<i>.mp4` links a file to its prompt
    entry); an unreadable video is a failed row per evaluator, the rest are scored. `shard`: only its videos."""
    from benchmarks.run.external import discover_videos, select_videos
    from benchmarks.run.suites import load_full_info
    from evaluators.prompts import prompts_by_text

    prompts = None
    if prompts_path is not None:
        prompts = prompts_by_text(load_full_info(prompts_path), prompts_path)
    refused = [d for d in (suite.evaluators or ()) if d in CUSTOM_INPUT_UNSUPPORTED]
    if prompts is None and refused:   # VBench.check_dimension_requires_extra_info asserts the same
        raise SuiteError(f"--dims {refused[0]}: needs a prompt file's auxiliary_info (--prompts FULL_INFO.json); "
                         "VBench refuses it in custom-input mode too")
    # Custom input (no prompt file): VBench's dimensions read the prompt from the file name; none reads a suite's
    # auxiliary_info. With a prompt file: every evaluator.
    evaluators = build_evaluators(suite.evaluators, suite.backbones, with_prompts=True,
                                  custom_input=prompts is None)
    selection = select_videos(discover_videos(Path(videos_dir)), prompts)
    if not selection.videos:
        ignored = sum(len(names) for names in selection.ignored.values())
        raise SuiteError(f"--videos {videos_dir}: none of its {ignored} files is named <prompt>-<index> after a "
                         f"prompt of --prompts {prompts_path} with an index VBench reads; without --prompts every "
                         "file is scored (prompt from its name)")
    line = selection.ignored_line(f"--videos {videos_dir}")
    if line and distributed.is_main():
        print(line, file=sys.stderr)
    rows = []
    dim_order = {name: i for i, name in enumerate(evaluators)}
    paths = list(enumerate(selection.videos))
    if shard is not None:
        from benchmarks.run import shards

        owner = shards.owners([key_of(str(v.path.relative_to(videos_dir))) for _, v in paths], shard.count)
        paths = [item for item, o in zip(paths, owner) if o == shard.index]
        log(f"shard {shard}: {len(paths)} videos")
    paths = distributed.my_share(paths)
    for index, chosen in tqdm(paths, desc="videos", unit="video", file=sys.stderr, disable=not distributed.is_main()):
        path, prompt, entry, sample = chosen.path, chosen.prompt, chosen.entry, chosen.sample
        base = {"model": "external", "prompt": prompt, "seed": None, "sample": sample, "video": str(path)}
        try:
            video = read_video(path, prompt=prompt, aux=entry)
        except VideoReadError as exc:
            log(f"failed: {exc}")
            # a failed row for each dimension that would read this file (its prompt entry's, as a readable one)
            placeholder = Video(np.zeros((1, 1, 1, 3), np.uint8), 8.0, prompt, str(path), entry)
            rows += [{**base, "dimension": n, "score": None, "status": "failed", "reason": str(exc),
                      "backbone": e.backbone, "faithful": e.faithful, "weights": e.weights, "n_frames": 0,
                      "extra": "{}", "_order": (index, dim_order[n])}
                     for n, e in evaluators.items() if e.applies(placeholder)]
            continue
        # The name is part of what determines a record (VBench reads labels from it, e.g. human_action).
        key = key_of({"file": file_sha256(path) if path.is_file() else tree_sha256(path), "name": path.name,
                      "prompt": prompt, "entry": entry})
        rows += [{**r, "_order": (index, dim_order[r["dimension"]])}
                 for r in score_video(video, evaluators, base, key, cache)]
    return _gather(rows, [], {}, evaluators)


def _gather(rows, generation_rows, checkpoints, evaluators: dict):
    """Rank 0 receives every rank's rows (a 1-process run: its own), sorted, and applies each dimension's run-level
    rule (`Evaluator.finalize`), so the tables do not depend on how the work was split."""
    rows, generation_rows = distributed.gather_rows(rows), distributed.gather_rows(generation_rows)
    if rows is None:
        return None, None, checkpoints
    rows = sorted(rows, key=lambda r: r["_order"])
    for name, evaluator in evaluators.items():
        mine = [i for i, r in enumerate(rows) if r["dimension"] == name]
        for i, row in zip(mine, type(evaluator).finalize([rows[i] for i in mine])):
            rows[i] = row
    generation_rows = sorted(generation_rows, key=lambda r: r["_order"])
    df = pd.DataFrame(rows, columns=ROW_COLUMNS)
    gen = pd.DataFrame(generation_rows, columns=GENERATION_COLUMNS)
    return df, gen, checkpoints


def unscored_dimensions(per_video: pd.DataFrame) -> list[str]:
    """Dimensions where some applicable video failed and none scored: the run's failure (exit 1). A dimension with
    no applicable video, or whose videos were all declined (no video passes the static filter, the object is never
    seen), has nothing to score: not a failure."""
    status = per_video.groupby("dimension", sort=False)["status"]
    return [d for d, s in status if (s == "failed").any() and not (s == "ok").any()]


def _check_shards_finished(cache_root: Path, suite: Suite) -> None:
    """--assemble-only of an external suite: every shard of some sharding finished, else one line naming the rest."""
    from benchmarks.run.shards import read_manifests

    manifests = read_manifests(cache_root, suite.hash())
    if not manifests:
        raise SuiteError(f"--assemble-only: no shard of this suite (hash {suite.hash()}) wrote to the cache "
                         f"{cache_root}: run `--shard I/N` first")
    count = max(manifests, key=lambda n: len(manifests[n]))
    unfinished = [f"shard {i}/{count} ({manifests[count].get(i, 'never started')})" for i in range(count)
                  if manifests[count].get(i) != "finished"]
    if unfinished:
        raise SuiteError(f"--assemble-only: not finished in the cache {cache_root}: {', '.join(unfinished)}")


def run_shard(suite: Suite, shard, videos, prompts, cache_dir, command: str, log=print, source=None) -> int:
    """One shard of the suite's work items, generated and scored into the shared cache; no table, OUT untouched.
    -> 0, or 1 when a video of the shard could not be generated (nothing cached for it: the assembly will say so)."""
    from benchmarks.core.outputs import prepare_output_dir
    from benchmarks.run import shards

    if suite.kind in ("table4", "flops-curve", "wan-flops"):
        raise SuiteError(f"--shard: suite {suite.name} computes one table, no work items to share out")
    prepare_output_dir(cache_dir, "--cache-dir")
    cache = SampleCache(Path(cache_dir))
    try:
        if distributed.is_main():
            shards.write_manifest(cache.root, suite.hash(), shard, 0, "started", command)
        if suite.kind == "external":
            if videos is None:
                raise SuiteError("suite external needs --videos DIR")
            per_video = run_external(videos, prompts, suite, cache, log, shard=shard)[0]
        else:
            where = f"--suite {source}" if source else None
            per_video = run_generate(suite, None, cache, log, where, shard=shard)[0]
        if not distributed.is_main():
            return 0
        failed = per_video[per_video["reason"].fillna("").str.startswith(GENERATION_FAILED)]
        items = per_video[["model", "video"]].drop_duplicates().shape[0]
        if len(failed):
            log(f"shard {shard}: {failed['video'].nunique()} video(s) not generated: {failed['reason'].iloc[0]}")
            return 1
        shards.write_manifest(cache.root, suite.hash(), shard, items, "finished", command)
        log(f"shard {shard}: {items} videos scored into {cache.root}; no table written (assemble it with the same "
            "command without --shard)")
        return 0
    finally:
        distributed.shutdown()


