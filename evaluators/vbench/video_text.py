"""The video-text cosine shared by temporal_style and overall_consistency (VBench: ViCLIP on 8 "middle"
frames, raw cosine per video, mean over videos).

With `--backbone viclip=ViCLIP-L-14:ViClip-InternVid-10M-FLT.pth` it is VBench's own computation (viclip.py).
Without it the video embedding is the mean of the CLIP image embeddings of the same 8 frames, re-normalised; those
rows carry the CLIP backbone's label with "+frame-mean" and are never reported as VBench scores (substitute).
"""

from __future__ import annotations

import torch.nn.functional as F

from evaluators.registry import Evaluator, Record
from evaluators.video import middle_frame_indices

N_FRAMES = 8  # ViCLIP's clip length in VBench


class VideoTextSimilarity(Evaluator):
    """cos(video embedding of 8 middle frames, prompt embedding) per video (ViCLIP, else the CLIP frame mean);
    aggregate mean over videos."""

    needs = ("frames", "prompt")
    backbones = ("clip",)
    optional_backbones = ("viclip",)
    faithful_backbone = "viclip:ViCLIP-L-14@"
    version = "2"   # 2: CLIP frames resized on float32 (VBench's clip_transform path)

    def __init__(self, clip, viclip=None):
        super().__init__(clip=clip, viclip=viclip)
        self.backbone = viclip.spec.label if viclip is not None else f"{clip.spec.label}+frame-mean"

    def evaluate_video(self, video) -> Record:
        if not video.prompt:
            raise ValueError(f"{video.source}: {self.name} needs a prompt")
        if self.viclip is not None:
            video_emb, text_emb = self.viclip.encode_video(video.frames), self.viclip.encode_text([video.prompt])
            return Record(video.source, self.name, float((video_emb @ text_emb.T).item()), self.backbone, N_FRAMES)
        frames = video.frames[middle_frame_indices(video.num_frames, N_FRAMES)]
        video_emb = F.normalize(self.clip.encode_frames(frames).mean(0, keepdim=True), dim=-1)   # (1, E)
        text_emb = self.clip.encode_text([video.prompt])                                         # (1, E)
        return Record(video.source, self.name, float((video_emb @ text_emb.T).item()), self.backbone, len(frames))
