"""CLIP score of a video against its prompt, as torchmetrics' CLIPScore computes it over the video's frames:
100 * cos(image, text) per frame, unclamped, their mean, then max(mean, 0)."""

from __future__ import annotations

from evaluators.registry import Evaluator, Record, register


def torchmetrics_clip_score(per_frame) -> float:
    """torchmetrics CLIPScore.compute over one update of the frames: max(sum / n, 0)."""
    return max(float(per_frame.sum()) / len(per_frame), 0.0)


@register
class ClipScore(Evaluator):
    """Per video max(mean over frames of 100 * cos(image, text), 0) (torchmetrics); aggregate = mean over videos."""

    name = "clip_score"
    score_range = (0.0, 100.0)   # max(100 cos, 0)
    version = "3"   # 3: CLIP frames resized on float32 (the shared clip_transform path, issue 29)
    needs = ("frames", "prompt")
    backbones = ("clip",)
    group = "clip"

    def evaluate_video(self, video) -> Record:
        if not video.prompt:
            raise ValueError(f"{video.source}: clip_score needs a prompt")
        images = self.clip.encode_frames(video.frames)                         # (T, E)
        text = self.clip.encode_text([video.prompt])                           # (1, E)
        per_frame = 100.0 * (images @ text.T).squeeze(1)                       # (T,), may be negative
        return Record(video.source, self.name, torchmetrics_clip_score(per_frame), self.backbone, video.num_frames,
                      {"per_frame": per_frame.tolist()})
