"""CLIP score of a video against its prompt: 100 * max(cos, 0) per frame (torchmetrics' convention), mean."""

from __future__ import annotations

from evaluators.registry import Evaluator, Record, register


@register
class ClipScore(Evaluator):
    """Per video the mean over frames of 100 * max(cos(image, text), 0); aggregate = mean over videos."""

    name = "clip_score"
    version = "1"
    needs = ("frames", "prompt")
    backbones = ("clip",)
    group = "clip"

    def evaluate_video(self, video) -> Record:
        if not video.prompt:
            raise ValueError(f"{video.source}: clip_score needs a prompt")
        images = self.clip.encode_frames(video.frames)                         # (T, E)
        text = self.clip.encode_text([video.prompt])                           # (1, E)
        per_frame = (100.0 * (images @ text.T).squeeze(1)).clamp(min=0)       # (T,)
        return Record(video.source, self.name, float(per_frame.mean()), self.backbone, video.num_frames,
                      {"per_frame": per_frame.tolist()})
