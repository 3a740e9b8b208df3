"""VBench human_action: a UMT ViT-L/16 Kinetics-400 classifier reads the action of a "A person is <action>" video.

VBench's rule (vbench/human_action.py): 16 frames (VBench feeds every frame of its 2 s, 8 fps videos; other
lengths are middle-sampled to 16 here, as the reference notes say), shorter side 256 (bilinear), centre crop
224, ImageNet normalisation; sigmoid (not softmax) over the 400 logits; of the top 5 classes keep those whose
probability, rounded to 4 decimals, is >= 0.85; the video is right when its ground-truth label, parsed from
the file name, is among them. Aggregate: accuracy over videos.

The model is UMT's fine-tuning ViT (third_party/umt/models/modeling_finetune.py): a tubelet-1 Conv3d patch
embedding, a fixed sine-cosine position table made for 8 frames and linearly interpolated to 16, BEiT-style
blocks (q and v biases, no k bias), mean pooling and a LayerNorm before the head. No installed library ships it;
its blocks are timm's BEiT blocks (the same parameter names, so VBench's checkpoint
`l16_ptk710_ftk710_ftk400_f16_res224.pth` loads as is); the rest, a few lines, is written here.
"""

from __future__ import annotations

from dataclasses import dataclass
from functools import partial
from pathlib import Path

import numpy as np
import torch
import torch.nn as nn
import torch.nn.functional as F

from evaluators.backbone_loading import IMAGENET_MEAN, IMAGENET_STD, BackboneSpec, load_state_file
from evaluators.registry import Evaluator, Record, register
from evaluators.video import middle_frame_indices

TOP_K = 5
THRESHOLD = 0.85
RESIZE, CROP = 256, 224
# VBench 0.1.5 reads the label list from its own package (vbench/human_action.py build_dict); before January 2024
# it read it from the model folder, under this (misspelt) name; the UMT repo spells it right.
PACKAGE_LABEL_FILE = "third_party/umt/kinetics_400_categories.txt"
LABEL_FILES = ("kinetics_400_categroies.txt", "kinetics_400_categories.txt")


@dataclass(frozen=True)
class UMTConfig:
    """UMT fine-tuning ViT hyper-parameters; the defaults are the ViT-L/16 VBench's human_action loads."""

    img_size: int = 224
    patch_size: int = 16
    embed_dim: int = 1024
    depth: int = 24
    num_heads: int = 16
    mlp_ratio: float = 4.0
    num_frames: int = 16
    tubelet_size: int = 1
    num_classes: int = 400
    table_frames: int = 8   # the frames the sine-cosine table is made for before temporal interpolation

    @property
    def patches_per_frame(self) -> int:
        return (self.img_size // self.patch_size) ** 2


UMT_CONFIGS = {"vit_large_patch16_224": UMTConfig()}


def sinusoid_position_table(cfg: UMTConfig) -> torch.Tensor:
    """(1, T * P, D): the 1-D sine-cosine table over table_frames * P positions (angle pos / 10000^(2(j//2)/D),
    sin on even j, cos on odd), then linearly interpolated along time to num_frames / tubelet_size frames, as
    UMT's get_sinusoid_encoding_table does for VBench's 16-frame model (equal to it bit for bit; tests). Other
    grid sizes (tests only) get a table of their own size, where UMT would interpolate its 14 x 14 one."""
    D, P, T0 = cfg.embed_dim, cfg.patches_per_frame, cfg.table_frames
    pos = torch.arange(T0 * P, dtype=torch.float64)[:, None]
    j = torch.arange(D, dtype=torch.float64)
    angle = pos / torch.pow(torch.tensor(10000.0, dtype=torch.float64), 2 * torch.div(j, 2, rounding_mode="floor") / D)
    table = torch.where(j % 2 == 0, torch.sin(angle), torch.cos(angle)).float()           # (T0 P, D)
    frames = cfg.num_frames // cfg.tubelet_size
    if frames != T0:
        side = int(P**0.5)
        table = table.reshape(1, T0, side, side, D).permute(0, 2, 3, 4, 1).reshape(-1, D, T0)  # (P, D, T0)
        table = F.interpolate(table, size=frames, mode="linear")                         # (P, D, T)
        table = table.reshape(1, side, side, D, frames).permute(0, 4, 1, 2, 3)
    return table.reshape(1, frames * P, D)


class TubeletEmbed(nn.Module):
    """(B, 3, T, H, W) -> (B, T/tubelet * P, D) patch tokens, frame-major."""

    def __init__(self, cfg: UMTConfig):
        super().__init__()
        kernel = (cfg.tubelet_size, cfg.patch_size, cfg.patch_size)
        self.proj = nn.Conv3d(3, cfg.embed_dim, kernel_size=kernel, stride=kernel)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.proj(x).flatten(2).transpose(1, 2)


class UMTVideoClassifier(nn.Module):
    """UMT's fine-tuning ViT: patch tokens + fixed position table -> BEiT blocks -> mean -> LayerNorm -> head."""

    def __init__(self, cfg: UMTConfig):
        super().__init__()
        from timm.models.beit import Block

        self.cfg = cfg
        norm = partial(nn.LayerNorm, eps=1e-6)
        self.patch_embed = TubeletEmbed(cfg)
        # A parameter, as in UMT once the table is interpolated, so a checkpoint's own table (if any) loads.
        self.pos_embed = nn.Parameter(sinusoid_position_table(cfg), requires_grad=False)
        self.blocks = nn.ModuleList(Block(cfg.embed_dim, cfg.num_heads, qkv_bias=True, mlp_ratio=cfg.mlp_ratio,
                                          norm_layer=norm) for _ in range(cfg.depth))
        self.fc_norm = norm(cfg.embed_dim)
        self.head = nn.Linear(cfg.embed_dim, cfg.num_classes)

    def forward(self, video: torch.Tensor) -> torch.Tensor:
        """video (B, 3, T, H, W), normalised -> logits (B, num_classes)."""
        x = self.patch_embed(video) + self.pos_embed                            # (B, T P, D)
        for block in self.blocks:
            x = block(x)
        return self.head(self.fc_norm(x.mean(1)))                              # (B, classes)


def read_labels(path: Path) -> dict[int, str]:
    """Kinetics label file, one "label<TAB>index" per line -> {index: lower-case label}."""
    labels = {}
    for n, line in enumerate(path.read_text().splitlines(), 1):
        if not line.strip():
            continue
        name, sep, index = line.strip().rpartition("\t")
        if not sep or not index.isdigit():
            raise ValueError(f"{path}:{n}: expected 'label<TAB>index', got {line!r}")
        labels[int(index)] = name.lower()
    return labels


def label_file(weights: Path) -> Path:
    """The Kinetics-400 label list: the installed vbench package's (VBench 0.1.5), else one beside the weights
    (VBench's layout before January 2024); a clear error naming both places otherwise."""
    from evaluators.vbench_cache import vbench_package_file

    packaged = vbench_package_file(PACKAGE_LABEL_FILE)
    if packaged is not None:
        return packaged
    beside = next((weights.parent / n for n in LABEL_FILES if (weights.parent / n).is_file()), None)
    if beside is None:
        raise FileNotFoundError(f"--backbone umt: the Kinetics-400 label list is neither in the vbench package "
                                f"(vbench/{PACKAGE_LABEL_FILE}: pip install --no-deps vbench==0.1.5) nor beside "
                                f"{weights} ({' or '.join(LABEL_FILES)})")
    return beside


def load_umt(spec: BackboneSpec, device: str = "cpu") -> tuple[UMTVideoClassifier, dict[int, str]]:
    """The classifier with the checkpoint's weights and the label list found beside it; clear errors otherwise."""
    if spec.model not in UMT_CONFIGS:
        raise ValueError(f"--backbone umt={spec.model}: unknown UMT model; known: {sorted(UMT_CONFIGS)}")
    weights = Path(spec.weights)
    labels = read_labels(label_file(weights))
    model = UMTVideoClassifier(UMT_CONFIGS[spec.model])
    state = load_state_file(weights)
    if isinstance(state, dict):  # training checkpoints wrap the weights
        state = state.get("model", state.get("module", state))
    if state and all(k.startswith("module.") for k in state):  # saved from DistributedDataParallel
        state = {k[len("module."):]: v for k, v in state.items()}
    # strict=False as VBench (the checkpoint may carry its own pos_embed or not), but a file that lacks any
    # weight of the network is refused rather than silently scoring with random ones.
    missing = [k for k in model.load_state_dict(state, strict=False).missing_keys if k != "pos_embed"]
    if missing:
        raise ValueError(f"--backbone umt: {weights} is not a {spec.model} checkpoint: {len(missing)} weights "
                         f"missing, e.g. {missing[:3]}")
    if len(labels) != model.cfg.num_classes:
        raise ValueError(f"{label_file}: {len(labels)} labels for a {model.cfg.num_classes}-class head")
    return model.to(device).eval(), labels


def umt_preprocess(frames: np.ndarray, resize: int = RESIZE, crop: int = CROP) -> torch.Tensor:
    """(T, H, W, 3) uint8 -> (3, T, crop, crop), as VBench's human_action data_transform on its uint8 frames:
    shorter side -> resize with cv2 INTER_LINEAR (uint8 out; the longer side truncated, none when the shorter
    side already matches), centre crop (offsets rounded), /255, ImageNet normalisation."""
    import cv2

    h, w = frames.shape[1:3]
    if min(h, w) != resize:
        new_h, new_w = (resize, int(resize * w / h)) if h <= w else (int(resize * h / w), resize)
        frames = np.stack([cv2.resize(f, (new_w, new_h), interpolation=cv2.INTER_LINEAR) for f in frames])
    h, w = frames.shape[1:3]
    top, left = int(round((h - crop) / 2.0)), int(round((w - crop) / 2.0))
    x = torch.from_numpy(np.ascontiguousarray(frames[:, top:top + crop, left:left + crop])).float() / 255.0
    mean, std = torch.tensor(IMAGENET_MEAN), torch.tensor(IMAGENET_STD)
    return ((x - mean) / std).permute(3, 0, 1, 2).contiguous()                  # (3, T, crop, crop)


def label_from_filename(source: str) -> str:
    """VBench's ground truth: the file name lower-cased, before the first '-', after "person is ", before '_'."""
    return Path(source).name.lower().split("-")[0].split("person is ")[-1].split("_")[0]


def confident_top_labels(probabilities: torch.Tensor, labels: dict[int, str]) -> list[str]:
    """Labels of the top-5 classes whose sigmoid probability, rounded to 4 decimals, is >= 0.85 (VBench)."""
    values, indices = torch.topk(probabilities, TOP_K)
    return [labels[int(i)] for v, i in zip(values.tolist(), indices.tolist()) if round(v, 4) >= THRESHOLD]


class UMTBackbone:
    """The UMT classifier and its labels, from `--backbone umt=vit_large_patch16_224:PATH`."""

    def __init__(self, spec: BackboneSpec, device: str = "cpu", model=None, labels=None):
        self.spec, self.device = spec, device
        self.model, self.labels = (model, labels) if model is not None else load_umt(spec, device)

    @torch.no_grad()
    def probabilities(self, frames: np.ndarray) -> torch.Tensor:
        """(T, H, W, 3) uint8, T >= 1 -> (num_classes,) sigmoid probabilities of 16 middle-sampled frames."""
        crop = self.model.cfg.img_size                    # VBench: 224 after a 256 resize; same ratio otherwise
        frames = frames[middle_frame_indices(len(frames), self.model.cfg.num_frames)]
        clip = umt_preprocess(frames, resize=round(crop * RESIZE / CROP), crop=crop)  # (3, 16, 224, 224)
        return torch.sigmoid(self.model(clip[None].to(self.device)).float())[0].cpu()


@register
class HumanAction(Evaluator):
    """Per video a bool (the labelled action among the confident top 5); aggregate = accuracy (VBench)."""

    name = "human_action"
    score_range = (0.0, 1.0)
    version = "1"
    backbones = ("umt",)
    faithful_backbone = "umt:vit_large_patch16_224@"

    def applies(self, video) -> bool:
        """Prompts of a suite written for human_action; without a suite (VBench's custom input) every file, its
        label read from the name as VBench does (a name with no Kinetics action scores 0)."""
        dims = video.aux.get("dimension") if video.aux else None
        return "human_action" in dims if dims is not None else True

    def evaluate_video(self, video) -> Record:
        truth = label_from_filename(video.source)
        kept = confident_top_labels(self.umt.probabilities(video.frames), self.umt.labels)
        return Record(video.source, self.name, float(truth in kept), self.backbone, video.num_frames,
                      {"label": truth, "confident_top5": kept})
