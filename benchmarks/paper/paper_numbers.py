"""Numbers reported in the M4V paper (CVPR 2026 / arXiv v2 numbering), from ../shared/reference/m4v-paper-spec.md §4."""

# Table 4: mixer TFLOPs at 768x1280, 241 frames, single A100; inference seconds; fast-protocol Avg. score.
TABLE4 = {
    "full_attn": {"tflops": 55.44, "seconds": 812, "avg_score": 59.84},
    "parallel": {"tflops": 82.03, "seconds": 858, "avg_score": 59.97},
    "pure_mamba": {"tflops": 26.64, "seconds": 570, "avg_score": 57.10},
    "m4v": {"tflops": 29.52, "seconds": 613, "avg_score": 58.75},
}
TABLE4_M4V_SAVING = 1 - TABLE4["m4v"]["tflops"] / TABLE4["full_attn"]["tflops"]  # 0.468, quoted as "45%"
TABLE4_SETTING = {"height": 768, "width": 1280, "video_frames": 241}

# Table 3: component ablation, fast protocol (50 prompts, 20k steps per variant); "Avg." averages more columns
# than the three shown (spec §4).
TABLE3 = {
    "none": {"overall_consistency": 19.77, "aesthetic_quality": 46.60, "imaging_quality": 63.16, "avg": 55.70},
    "text": {"overall_consistency": 21.23, "aesthetic_quality": 45.39, "imaging_quality": 54.83, "avg": 53.41},
    "registers": {"overall_consistency": 18.86, "aesthetic_quality": 48.69, "imaging_quality": 64.18, "avg": 56.79},
    "text+registers": {"overall_consistency": 21.26, "aesthetic_quality": 49.82, "imaging_quality": 63.79,
                       "avg": 57.10},
    "text+registers+temporal": {"overall_consistency": 21.68, "aesthetic_quality": 51.25, "imaging_quality": 66.38,
                                "avg": 58.75},
}

# Table 5: training improvements, official VBench (Quality derived from Total = (4 Quality + Semantic) / 5).
TABLE5 = {
    "m4v": {"total": 81.55, "semantic": 74.47, "quality": 83.32},
    "reward_learning": {"total": 81.71, "semantic": 75.27, "quality": 83.32},
    "synthetic_data": {"total": 81.91, "semantic": 76.10, "quality": 83.36},
}
