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
