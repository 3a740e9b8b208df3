"""VBench aesthetic_quality: a linear head on L2-normalised CLIP image embeddings, score / 10 per frame.

VBench uses OpenAI CLIP ViT-L/14 and LAION's `sa_0_4_vit_l_14_linear.pth`; both load from local files here
(`--backbone aesthetic_clip=ViT-L-14-quickgelu:PATH --backbone aesthetic=linear:HEAD_PATH`, or clip= when no
other dimension needs ViT-B/32; OpenAI's weights need
QuickGELU, which the plain `ViT-L-14` config does not use).
"""

from __future__ import annotations

from pathlib import Path

import torch

from evaluators.backbone_loading import load_state_file
from evaluators.registry import ANY_FINITE, Evaluator, Record, register


class AestheticHead:
    """LAION's linear aesthetic head as a backbone: `spec` (what was loaded) and `head`."""

    def __init__(self, spec, in_features: int):
        self.spec = spec
        self.head = load_linear_head(spec.weights, in_features)


def load_linear_head(path, in_features: int) -> torch.nn.Linear:
    """A Linear(in_features, 1) from a safetensors file or a torch state dict (weights_only)."""
    path = Path(path)
    state = {k.split(".")[-1]: v for k, v in load_state_file(path).items()}  # LAION's file may prefix the keys
    head = torch.nn.Linear(in_features, 1)
    try:
        head.load_state_dict({"weight": state["weight"], "bias": state["bias"]})
    except (KeyError, RuntimeError) as exc:
        raise ValueError(f"{path}: not a Linear({in_features}, 1) head ({exc})") from exc
    return head.eval()


@register
class AestheticQuality(Evaluator):
    """Per video the mean over frames of head(e) / 10; aggregate = mean over videos (VBench)."""

    name = "aesthetic_quality"
    score_range = ANY_FINITE   # a linear head on CLIP features / 10: not bounded
    version = "2"   # 2: CLIP frames resized on float32, as VBench's load_video hands them to clip_transform
    backbones = ("aesthetic",)
    # its own CLIP (VBench: ViT-L/14) when given as aesthetic_clip, so clip= can stay ViT-B/32 for the others
    optional_backbones = ("clip", "aesthetic_clip")
    faithful_backbone = "clip:ViT-L-14-quickgelu@"   # OpenAI's weights: QuickGELU (plain ViT-L-14 is GELU)

    def __init__(self, aesthetic, clip=None, aesthetic_clip=None):
        super().__init__(aesthetic=aesthetic, clip=clip, aesthetic_clip=aesthetic_clip)
        self.encoder = aesthetic_clip if aesthetic_clip is not None else clip
        if self.encoder is None:
            raise ValueError("aesthetic_quality needs a CLIP: --backbone aesthetic_clip=MODEL:PATH (or clip=)")
        clip_label = self.encoder.spec.label.replace(f"{self.encoder.spec.kind}:", "clip:", 1)
        self.backbone = f"{clip_label}+{aesthetic.spec.label}"

    def used_backbones(self) -> list:
        return [self.encoder, self.aesthetic]   # clip= is unused when aesthetic_clip= is given

    @torch.no_grad()
    def evaluate_video(self, video) -> Record:
        per_frame = (self.aesthetic.head(self.encoder.encode_frames(video.frames)).squeeze(-1) / 10).tolist()
        return Record(video.source, self.name, float(sum(per_frame) / len(per_frame)), self.backbone,
                      video.num_frames, {"per_frame": per_frame})
