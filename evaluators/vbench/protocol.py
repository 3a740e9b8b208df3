"""VBench's standard protocol in one place: which files it reads, how many samples, and what its leaderboard fixes.

Sources (VBench 0.1.5 and the VBench repository): `vbench/__init__.py` (VBench.build_full_info_json: standard mode
reads `<prompt>-<i><suffix>` for i in range(5); custom mode reads every .mp4/.gif/.jpg/.png with the prompt from
`vbench/utils.py` get_prompt_from_filename; `check_dimension_requires_extra_info`), `vbench/cli/static_filter.py`
(the first 5 static videos of each temporal_flickering prompt, copied to `<prompt>-0..4`), `prompts/README.md` ("For
each prompt, sample 5 videos. However, for the Temporal Flickering dimension, sample 25 videos"; a different random
seed per video, recorded), `sampled_videos/README.md` (the leaderboard lists each model's own resolution, fps and
frame count: VBench fixes none of them).
"""

from __future__ import annotations

import re

from evaluators.registry import CUSTOM_INPUT_UNSUPPORTED
from evaluators.vbench.static_filter import MAX_PER_PROMPT as STATIC_FILTER_KEEPS  # noqa: F401 (5 kept)

SAMPLES_PER_PROMPT = 5                              # prompts/README.md; __init__.py's range(5)
SAMPLES_PER_DIMENSION = {"temporal_flickering": 25}  # prompts/README.md: the static filter's input
FULL_INFO_FILE = "VBench_full_info.json"            # the prompt suite standard mode reads (shipped in the package)
DIMENSIONS = ("subject_consistency", "background_consistency", "aesthetic_quality", "imaging_quality",
              "object_class", "multiple_objects", "color", "spatial_relationship", "scene", "temporal_style",
              "overall_consistency", "human_action", "temporal_flickering", "motion_smoothness", "dynamic_degree",
              "appearance_style")                    # VBench.build_full_dimension_list
# custom-input mode runs every dimension but CUSTOM_INPUT_UNSUPPORTED (check_dimension_requires_extra_info)
CUSTOM_INPUT_DIMENSIONS = tuple(d for d in DIMENSIONS if d not in CUSTOM_INPUT_UNSUPPORTED)
CUSTOM_INPUT_SUFFIXES = (".mp4", ".gif", ".jpg", ".png")   # build_full_info_json, custom_input
SEED_RULE = "a different random seed for every video, not cherry-picked, recorded (prompts/README.md)"
PRECISION = "fp32, CLIP in fp16 on CUDA (VBench's own code)"
NUMBER_ENDING = r"-\d+$"                            # get_prompt_from_filename's pattern, kept as VBench writes it


def samples_read(dimension: str) -> int:
    """How many indices (`-0` .. `-{n-1}`) VBench reads of a prompt tagged with this dimension."""
    return SAMPLES_PER_DIMENSION.get(dimension, SAMPLES_PER_PROMPT)


def prompt_from_filename(name: str) -> str:
    """VBench's get_prompt_from_filename on a file's stem (or a frame folder's name): `prompt-0` -> `prompt`,
    `prompt` -> `prompt` (the same regex, `\\d` and `$` as Python reads them)."""
    if re.search(NUMBER_ENDING, name):
        return re.sub(NUMBER_ENDING, "", name)
    return name


def dimensions_reading(dimensions: list[str], index: int) -> list[str]:
    """The dimensions of a prompt's entry that read its `-index` file in standard mode (index 7 of a
    temporal_flickering prompt: temporal_flickering alone)."""
    return [d for d in dimensions if index < samples_read(d)]
