"""The video-text cosine shared by temporal_style and overall_consistency (VBench: ViCLIP on 8 "middle"
frames, raw cosine per video, mean over videos).

ViCLIP's weights and architecture are not available offline, so the video embedding here is the mean of the
CLIP image embeddings of the same 8 frames, re-normalised; the rows carry the CLIP backbone's label with
"+frame-mean" and are never reported as VBench scores (substitute).
"""

from __future__ import annotations

import torch.nn.functional as F

from evaluators.registry import Evaluator, Record
from evaluators.video import middle_frame_indices

N_FRAMES = 8  # ViCLIP's clip length in VBench


class VideoTextSimilarity(Evaluator):
    """cos(mean CLIP embedding of 8 middle frames, prompt embedding) per video; aggregate mean over videos."""

    needs = ("frames", "prompt")
    backbones = ("clip",)
    version = "2"   # 2: CLIP frames resized on float32 (VBench's clip_transform path)

    def __init__(self, clip):
        super().__init__(clip=clip)
        self.backbone = f"{clip.spec.label}+frame-mean"

    def evaluate_video(self, video) -> Record:
        if not video.prompt:
            raise ValueError(f"{video.source}: {self.name} needs a prompt")
        frames = video.frames[middle_frame_indices(video.num_frames, N_FRAMES)]
        video_emb = F.normalize(self.clip.encode_frames(frames).mean(0, keepdim=True), dim=-1)   # (1, E)
        text_emb = self.clip.encode_text([video.prompt])                                         # (1, E)
        return Record(video.source, self.name, float((video_emb @ text_emb.T).item()), self.backbone, len(frames))
