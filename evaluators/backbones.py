"""Feature backbones loaded from local paths only (no hub): open_clip CLIP models.

A backbone spec on the command line is `KIND=MODEL_NAME:WEIGHTS_PATH` with a local checkpoint file. The ones that
make a VBench dimension faithful (docs/vbench-fidelity.md has the table):
  clip=ViT-B-32-quickgelu:/models/vit_b_32_openai.safetensors   OpenAI CLIP ViT-B/32 (background_consistency,
                                                    appearance_style); OpenAI's weights need the -quickgelu config
  aesthetic_clip=ViT-L-14-quickgelu:/models/vit_l_14_openai.safetensors   OpenAI CLIP ViT-L/14 for
                                                    aesthetic_quality (clip= stays ViT-B/32 for the others)
  dino=dino_vitb16:/models/dino_vitbase16_pretrain.pth          DINO ViT-B/16 (subject_consistency), position
                                                    table interpolated as DINO's own module does
  aesthetic=linear:/models/sa_0_4_vit_l_14_linear.pth  LAION's aesthetic head on the CLIP embedding
  raft=raft_large:/models/raft-things.pth           RAFT-things (dynamic_degree, the static filter of
                                                    temporal_flickering): the original checkpoint or torchvision's
  amt=AMT-S:/models/amt-s.pth                       AMT-S (motion_smoothness), VBench's own AMT code
  umt=vit_large_patch16_224:/models/l16_ptk710_ftk710_ftk400_f16_res224.pth  VBench's human_action classifier
                                                    (UMT ViT-L/16; Kinetics-400 labels from the vbench package)
  musiq=musiq-spaq:/models/musiq_spaq_ckpt-358bb6af.pth   pyiqa's MUSIQ-SPAQ (imaging_quality)
  viclip=ViCLIP-L-14:/models/ViClip-InternVid-10M-FLT.pth   ViCLIP (temporal_style, overall_consistency)
`--vbench-cache DIR` gives all of these from VBench's own cache layout (evaluators/vbench_cache.py).
Others: clip=m4v-tiny-clip:m4v/weights/clip-tiny/open_clip_model.safetensors (the CLIP trained on the world),
fidelity=fidelity-tiny:m4v/weights/reward-tiny/model.safetensors (the world-trained image-quality model).
Without --backbone, `m4v-bench eval` uses the shipped world-trained models (default_backbones()).
"""

from __future__ import annotations

import math
from collections import OrderedDict

import numpy as np
import torch
import torch.nn.functional as F
from torchvision.transforms import CenterCrop, Compose, InterpolationMode, Lambda, Normalize, Resize, ToTensor

from evaluators.backbone_loading import (  # noqa: F401 - the shared loading helpers, re-exported
    BACKBONE_KINDS,
    BACKBONE_USAGE,
    CLIP_MEAN,
    CLIP_STD,
    IMAGENET_MEAN,
    IMAGENET_STD,
    BackboneSpec,
    frame_key,
    load_state_file,
    parse_backbone,
)


def default_backbones() -> list[str]:
    """Offline defaults: the tiny CLIP and fidelity models shipped in m4v/weights/ (those present)."""
    from m4v.checkpoint import WEIGHTS_DIR

    shipped = {"clip": ("m4v-tiny-clip", WEIGHTS_DIR / "clip-tiny" / "open_clip_model.safetensors"),
               "fidelity": ("fidelity-tiny", WEIGHTS_DIR / "reward-tiny" / "model.safetensors")}
    return [f"{kind}={model}:{path}" for kind, (model, path) in shipped.items() if path.is_file()]


def clip_transform(size: int) -> Compose:
    """VBench's clip_transform (vbench/utils.py) with torchvision's own ops, on the float32 (T, 3, H, W) 0..255
    tensor VBench's load_video returns: shorter side -> size (bicubic, antialias off, long side int()-truncated,
    no rounding or clamping on float), CenterCrop (offsets rounded as torchvision does), /255, CLIP normalisation."""
    return Compose([Resize(size, interpolation=InterpolationMode.BICUBIC, antialias=False), CenterCrop(size),
                    Lambda(lambda x: x.float().div(255.0)), Normalize(CLIP_MEAN, CLIP_STD)])


def clip_transform_image(size: int) -> Compose:
    """VBench's clip_transform_Image: the same on a PIL image (PIL's bicubic, antialiased), for appearance_style."""
    return Compose([Resize(size, interpolation=InterpolationMode.BICUBIC, antialias=False), CenterCrop(size),
                    ToTensor(), Normalize(CLIP_MEAN, CLIP_STD)])


def dino_transform(size: int) -> Compose:
    """VBench's dino_transform: shorter side -> size (bilinear, antialias off, on the float32 tensor), no crop,
    ImageNet normalisation."""
    return Compose([Resize(size, antialias=False), Lambda(lambda x: x.float().div(255.0)),
                    Normalize(IMAGENET_MEAN, IMAGENET_STD)])


def to_chw_tensor(frames: np.ndarray) -> torch.Tensor:
    """(T, H, W, 3) uint8 -> (T, 3, H, W) float32 0..255, as VBench's load_video returns them
    (`torch.Tensor(frames).permute(0, 3, 1, 2)`): same values and same channels-last strides."""
    # Float, not uint8: torchvision rounds and clamps a uint8 resize back to uint8 (up to 0.0088 after
    # normalisation), while VBench's resize runs on float32 and keeps the fractions.
    return torch.from_numpy(np.ascontiguousarray(frames)).permute(0, 3, 1, 2).float()


def clip_preprocess(frames: np.ndarray, size: int) -> torch.Tensor:
    """(T, H, W, 3) uint8 -> (T, 3, size, size): VBench's clip_transform on load_video's float32 frames."""
    return clip_transform(size)(to_chw_tensor(frames))


def clip_preprocess_pil(frames: np.ndarray, size: int) -> torch.Tensor:
    """(T, H, W, 3) uint8 -> (T, 3, size, size): VBench's clip_transform_Image frame by frame (appearance_style,
    whose load_video(return_tensor=False) hands PIL the uint8 frames)."""
    from PIL import Image

    transform = clip_transform_image(size)
    return torch.stack([transform(Image.fromarray(np.ascontiguousarray(f))) for f in frames])


def dino_preprocess(frames: np.ndarray, size: int = 224) -> torch.Tensor:
    """(T, H, W, 3) uint8 -> (T, 3, h, w), shorter side `size`: VBench's dino_transform on load_video's float32
    frames."""
    return dino_transform(size)(to_chw_tensor(frames))


class FeatureMemo:
    """Per-frame features already computed, keyed by (preprocessing, frame content): every evaluator asking
    for the same frames' features gets them computed once (LRU, `capacity` frames)."""

    def __init__(self, capacity: int = 8192):
        self.capacity, self.store, self.hits, self.misses = capacity, OrderedDict(), 0, 0

    def get(self, key):
        value = self.store.get(key)
        if value is not None:
            self.store.move_to_end(key)
        return value

    def put(self, key, value) -> None:
        self.store[key] = value
        if len(self.store) > self.capacity:
            self.store.popitem(last=False)

    def clear(self) -> None:
        self.store.clear()


class _FrameEncoder:
    """Shared machinery: encode frames through `_encode_batch(frames, path)` with a per-frame memo, batching
    the missing frames (of one size) together, also across videos (`prefetch`)."""

    memo_enabled = True

    def _init_memo(self, batch_size: int) -> None:
        self.batch_size, self.memo = batch_size, FeatureMemo()

    def _encode_batch(self, frames: np.ndarray, path: str) -> torch.Tensor:
        raise NotImplementedError

    def encode(self, frames: np.ndarray, path: str) -> torch.Tensor:
        """(T, H, W, 3) uint8 -> (T, E), through the memo."""
        if self.memo_enabled:
            self.prefetch([frames], path)
            found = [self.memo.get((path, frame_key(f))) for f in frames]
            if all(feat is not None for feat in found):   # else more frames than the memo holds: no memo
                return torch.stack(found)
        return torch.cat([self._encode_batch(frames[s:s + self.batch_size], path)
                          for s in range(0, len(frames), self.batch_size)])

    def prefetch(self, videos, path: str) -> None:
        """Compute the not-yet-memoised frames of several videos, batched by frame size."""
        pending = {}                                              # key -> frame, distinct frames only
        for frames in videos:
            for frame in frames:
                key = (path, frame_key(frame))
                if self.memo.get(key) is None:
                    pending.setdefault(key, frame)
                    self.memo.misses += 1
                else:
                    self.memo.hits += 1
        by_shape = {}
        for key, frame in pending.items():
            by_shape.setdefault(frame.shape, []).append(key)
        for keys in by_shape.values():
            for start in range(0, len(keys), self.batch_size):
                chunk = keys[start:start + self.batch_size]
                feats = self._encode_batch(np.stack([pending[k] for k in chunk]), path)
                for key, feat in zip(chunk, feats):
                    self.memo.put(key, feat)


def is_torchscript(path) -> bool:
    """Whether a weights file is a TorchScript archive (OpenAI's CLIP releases, which VBench's clip.load reads)."""
    import zipfile

    if not zipfile.is_zipfile(path):
        return False
    with zipfile.ZipFile(path) as archive:
        return any(name.endswith("constants.pkl") or "/code/" in name for name in archive.namelist())


def torchscript_clip_state(path) -> dict:
    """The state dict of an OpenAI TorchScript CLIP (torch.jit.load reads TorchScript, not pickled Python
    objects; torch.load(weights_only=True) refuses such archives), minus its three non-weight entries."""
    state = torch.jit.load(str(path), map_location="cpu").state_dict()
    for key in ("input_resolution", "context_length", "vocab_size"):   # as open_clip drops them
        state.pop(key, None)
    return state


class ClipBackbone(_FrameEncoder):
    """An open_clip model: L2-normalised image and text embeddings. OpenAI's weights need the `-quickgelu`
    configs (ViT-B-32-quickgelu, ViT-L-14-quickgelu): the plain ones use GELU and give other features."""

    def __init__(self, spec: BackboneSpec, device: str = "cpu", batch_size: int = 64):
        import open_clip

        self.spec, self.device = spec, device
        self._init_memo(batch_size)
        if spec.model == "m4v-tiny-clip":   # the world-trained CLIP (m4v/tiny_clip.py): not a built-in config
            from m4v.tiny_clip import register_tiny_clip

            register_tiny_clip()
        if spec.weights and is_torchscript(spec.weights):   # OpenAI's own files (VBench's ViT-B-32.pt, ViT-L-14.pt)
            self.model = open_clip.create_model(spec.model, pretrained=None)
            result = self.model.load_state_dict(torchscript_clip_state(spec.weights), strict=False)
            stray = [k for k in result.unexpected_keys if not k.endswith("attn_mask")]   # a buffer, rebuilt
            if result.missing_keys or stray:
                raise ValueError(f"{spec.weights}: not a {spec.model} CLIP (missing {result.missing_keys[:3]}, "
                                 f"unexpected {stray[:3]})")
            self.model.to(device)
        else:
            self.model, _, _ = open_clip.create_model_and_transforms(spec.model, pretrained=spec.weights,
                                                                     device=device)
        self.model.eval()
        self.tokenizer = open_clip.get_tokenizer(spec.model)
        size = self.model.visual.image_size
        self.image_size = size[0] if isinstance(size, (tuple, list)) else size
        self.text_memo = {}

    @torch.no_grad()
    def _encode_batch(self, frames: np.ndarray, path: str) -> torch.Tensor:
        preprocess = clip_preprocess_pil if path == "pil" else clip_preprocess
        batch = preprocess(frames, self.image_size).to(self.device)                  # (b, 3, S, S)
        return F.normalize(self.model.encode_image(batch).float(), dim=-1).cpu()

    def encode_frames(self, frames: np.ndarray, path: str = "tensor") -> torch.Tensor:
        """(T, H, W, 3) uint8 -> (T, E) unit vectors; path "tensor" (clip_transform) or "pil"
        (clip_transform_Image, VBench's appearance_style)."""
        return self.encode(frames, path)

    @torch.no_grad()
    def encode_text(self, prompts: list[str]) -> torch.Tensor:
        """(N,) strings -> (N, E) unit vectors (memoised per string)."""
        missing = [p for p in dict.fromkeys(prompts) if p not in self.text_memo]
        if missing:
            tokens = self.tokenizer(missing).to(self.device)
            for prompt, emb in zip(missing, F.normalize(self.model.encode_text(tokens).float(), dim=-1).cpu()):
                self.text_memo[prompt] = emb
        return torch.stack([self.text_memo[p] for p in prompts])


def dino_interpolate_pos_encoding(pos_embed: torch.Tensor, grid_h: int, grid_w: int,
                                  image_hw: tuple[int, int]) -> torch.Tensor:
    """DINO's VisionTransformer.interpolate_pos_encoding (facebookresearch/dino vision_transformer.py): the
    patch table resized bicubically with scale factors ((n + 0.1) / sqrt(N)), no antialiasing; unchanged only
    when the patch count is the table's and the *image* (image_hw, pixels) is square, as DINO tests it.
    pos_embed (1, 1 + N, D) -> (1, 1 + grid_h * grid_w, D)."""
    n_patches = pos_embed.shape[1] - 1
    # DINO compares the image's own sides (x.shape[2] == x.shape[3]), not the patch grid's: a 224 x 238 frame
    # has DINO's 14 x 14 grid yet is resampled by the factor 14.1 / 14 (not the identity).
    if grid_h * grid_w == n_patches and image_hw[0] == image_hw[1]:
        return pos_embed
    side, dim = int(math.sqrt(n_patches)), pos_embed.shape[-1]
    table = pos_embed[:, 1:].reshape(1, side, side, dim).permute(0, 3, 1, 2)          # (1, D, side, side)
    # DINO adds 0.1 "to avoid floating point error" and passes scale factors, not a size: the sampling grid
    # follows the factors, which is what makes it differ from a size-based resample.
    table = F.interpolate(table, scale_factor=((grid_h + 0.1) / side, (grid_w + 0.1) / side), mode="bicubic")
    if table.shape[-2:] != (grid_h, grid_w):
        raise RuntimeError(f"DINO position interpolation gave {tuple(table.shape[-2:])}, not {(grid_h, grid_w)}")
    table = table.permute(0, 2, 3, 1).reshape(1, grid_h * grid_w, dim)
    return torch.cat([pos_embed[:, :1], table], dim=1)


def dino_vit(arch: str):
    """A timm ViT that runs as DINO's own module does on any (B, 3, H, W): remainder rows / columns dropped by
    the patch step, position table interpolated by DINO's rule (the parameter names are DINO's: its
    checkpoints load as they are)."""
    import timm
    from timm.models.vision_transformer import VisionTransformer

    class DinoViT(VisionTransformer):
        """timm's ViT with DINO's patch step and interpolate_pos_encoding in place of timm's."""

        image_hw = (0, 0)   # the input's pixel size, set by forward_features for _pos_embed's square test

        def forward_features(self, x: torch.Tensor, *args, **kwargs) -> torch.Tensor:
            """DINO's stride-p patch conv drops the remainder rows / columns; timm asserts instead, so crop, after
            noting the uncropped size DINO's position rule reads."""
            ph, pw = self.patch_embed.patch_size
            self.image_hw = tuple(x.shape[-2:])
            x = x[..., : x.shape[-2] // ph * ph, : x.shape[-1] // pw * pw]
            return super().forward_features(x, *args, **kwargs)

        def _pos_embed(self, x: torch.Tensor) -> torch.Tensor:
            batch, grid_h, grid_w, dim = x.shape                                   # (B, h, w, D) patch grid
            x = torch.cat([self.cls_token.expand(batch, -1, -1), x.reshape(batch, grid_h * grid_w, dim)], dim=1)
            table = dino_interpolate_pos_encoding(self.pos_embed, grid_h, grid_w, self.image_hw)
            return self.pos_drop(x + table)

    model = timm.create_model(arch, pretrained=False, num_classes=0, dynamic_img_size=True)
    model.__class__ = DinoViT   # same modules and parameters; only the patch and position steps differ
    return model


DINO_ARCHS = {"dino_vitb16": "vit_base_patch16_224", "dino_vits16": "vit_small_patch16_224",
              "dino_vitb8": "vit_base_patch8_224", "dino_vits8": "vit_small_patch8_224"}


class DinoBackbone(_FrameEncoder):
    """DINO (torch.hub `dino_vitb16`, VBench's subject_consistency) from a local checkpoint, e.g.
    `dino=dino_vitb16:/models/dino_vitbase16_pretrain.pth`; MODEL is a DINO hub name or a timm ViT name.
    Patch step and position table as DINO's; CLS feature after the final norm."""

    def __init__(self, spec: BackboneSpec, device: str = "cpu", batch_size: int = 16):
        self.spec, self.device = spec, device
        self._init_memo(batch_size)
        arch = DINO_ARCHS.get(spec.model, spec.model.split(".")[0])
        self.model = dino_vit(arch)
        if spec.weights:
            state = load_state_file(spec.weights)
            state = state.get("model", state) if isinstance(state, dict) else state
            state = {k.removeprefix("module.").removeprefix("backbone."): v for k, v in state.items()}
            state = {k: v for k, v in state.items() if not k.startswith("head")}
            try:
                self.model.load_state_dict(state)
            except RuntimeError as exc:
                raise ValueError(f"{spec.weights}: not a {arch} DINO checkpoint ({str(exc).splitlines()[0]})") from exc
        self.model.to(device).eval()

    @torch.no_grad()
    def _encode_batch(self, frames: np.ndarray, path: str) -> torch.Tensor:
        x = dino_preprocess(frames)                                                  # (b, 3, h, w)
        return F.normalize(self.model(x.to(self.device)).float(), dim=-1).cpu()

    def encode_frames(self, frames: np.ndarray) -> torch.Tensor:
        """(T, H, W, 3) uint8 -> (T, E) unit vectors."""
        return self.encode(frames, "dino")


def _explained(spec: BackboneSpec, load):
    """Run one backbone loader; an unknown model name, truncated or foreign weights, or weights of another
    architecture (each library raises its own type, several with pages of text) -> one line naming the spec."""
    from safetensors import SafetensorError

    try:
        return load()
    except (RuntimeError, AssertionError, SafetensorError, KeyError, ValueError, OSError) as exc:
        text = " ".join(str(exc).split())
        text = text if len(text) <= 200 else text[:200] + " ..."
        raise ValueError(f"--backbone {spec.kind}={spec.model}:{spec.weights}: cannot load "
                         f"({type(exc).__name__}: {text})") from exc


def load_backbones(specs, device: str = "cpu") -> dict:
    """{kind: loaded backbone} for backbone specs (strings or BackboneSpec): the one place that maps a backbone
    kind to its loader. Every loaded backbone carries `.spec`, whose label the records show."""
    specs = [parse_backbone(s) if isinstance(s, str) else s for s in specs]
    by_kind = {spec.kind: spec for spec in specs}   # a later spec of the same kind replaces an earlier one
    loaded = {}
    # aesthetic last: its head's width is its CLIP's
    for kind in ("clip", "aesthetic_clip", "dino", "fidelity", "umt", "raft", "amt", "musiq", "viclip"):
        spec = by_kind.get(kind)
        if spec is None:
            continue
        loaded[kind] = _explained(spec, lambda spec=spec: _load_one(spec, device))
    if "aesthetic" in by_kind:
        encoder = loaded.get("aesthetic_clip", loaded.get("clip"))
        if encoder is None:
            raise ValueError("--backbone aesthetic=...: the aesthetic head reads CLIP embeddings; give "
                             "aesthetic_clip=MODEL:PATH (or clip=MODEL:PATH)")
        from evaluators.aesthetic import AestheticHead

        spec = by_kind["aesthetic"]
        loaded["aesthetic"] = _explained(spec, lambda: AestheticHead(spec, encoder.model.visual.output_dim))
    return loaded


def _load_one(spec: BackboneSpec, device: str):
    """The loader of one backbone kind (aesthetic aside: it needs its CLIP's width)."""
    if spec.kind in ("clip", "aesthetic_clip"):
        return ClipBackbone(spec, device)
    if spec.kind == "dino":
        return DinoBackbone(spec, device)
    if spec.kind == "raft":
        from evaluators.vbench.flow import RaftFlow

        return RaftFlow(spec, device)
    if spec.kind == "amt":
        from evaluators.vbench.motion_smoothness import AmtInterpolator

        return AmtInterpolator(spec, device)
    if spec.kind == "fidelity":
        from evaluators.vbench.imaging_quality import FidelityBackbone

        return FidelityBackbone(spec, device)
    if spec.kind == "musiq":
        from evaluators.vbench.imaging_quality import MusiqBackbone

        return MusiqBackbone(spec, device)
    if spec.kind == "viclip":
        from evaluators.vbench.viclip import ViclipBackbone

        return ViclipBackbone(spec, device)
    from evaluators.vbench.human_action import UMTBackbone

    return UMTBackbone(spec, device)


# Per VBench dimension: the --backbone that makes it faithful (VBench's own weights file), or why it cannot be.
FAITHFUL_BACKBONES = {
    "subject_consistency": "dino=dino_vitb16:dino_vitbase16_pretrain.pth",
    "background_consistency": "clip=ViT-B-32-quickgelu:ViT-B-32.pt (OpenAI's file, as VBench caches it)",
    "temporal_flickering": "raft=raft_large:raft-things.pth (its static filter; the score is weight-free)",
    "motion_smoothness": "amt=AMT-S:amt-s.pth (VBench's own AMT code, from the installed vbench package)",
    "dynamic_degree": "raft=raft_large:raft-things.pth",
    "aesthetic_quality": "aesthetic_clip=ViT-L-14-quickgelu:ViT-L-14.pt + aesthetic=linear:sa_0_4_vit_l_14_linear.pth",
    "imaging_quality": "musiq=musiq-spaq:musiq_spaq_ckpt-358bb6af.pth (pyiqa's MUSIQ; else the fidelity substitute)",
    "object_class": "substitute: the world oracle (GRiT needs detectron2, not on PyPI)",
    "multiple_objects": "substitute: the world oracle (GRiT)",
    "human_action": "umt=vit_large_patch16_224:l16_ptk710_ftk710_ftk400_f16_res224.pth (labels: the vbench package's)",
    "color": "substitute: the world oracle (GRiT)",
    "spatial_relationship": "substitute: the world oracle (GRiT), VBench's rule on its boxes",
    "scene": "substitute: the world oracle (Tag2Text's text model comes only from a model hub), VBench's word rule",
    "appearance_style": "clip=ViT-B-32-quickgelu:ViT-B-32.pt",
    "temporal_style": "viclip=ViCLIP-L-14:ViClip-InternVid-10M-FLT.pth (else the CLIP frame-mean substitute)",
    "overall_consistency": "viclip=ViCLIP-L-14:ViClip-InternVid-10M-FLT.pth",
}
# Why the remaining substitutes stay substitutes (eval --help and docs/vbench-fidelity.md say the same).
SUBSTITUTE_REASONS = (
    "object_class, multiple_objects, color, spatial_relationship: VBench detects with GRiT, which needs detectron2 "
    "(not on PyPI: built from source against one torch / CUDA pair); the world oracle's boxes stand in.",
    "scene: VBench captions with Tag2Text, which loads its BERT tokenizer and text model from the Hugging Face hub "
    "(from_pretrained('bert-base-uncased')), not from a local file; the world oracle's caption stands in.",
)


def faithful_help() -> str:
    """The per-dimension table for `m4v-bench eval --help`, and why the substitutes remain."""
    import textwrap

    width = max(map(len, FAITHFUL_BACKBONES))
    lines = ["--vbench-cache DIR (default $VBENCH_CACHE_DIR, else ~/.cache/vbench) gives every file below from "
             "VBench's cache.",
             "Faithful also needs the published weights: a file is checked against the published sha256 where one is",
             "known (OpenAI's CLIP files); otherwise the row says `weights unverified`, the dimension is not",
             "faithful, and m4v_eval_results_weights_unverified.json holds it apart.",
             "", "VBench-faithful with (per dimension):"]
    lines += [f"  {dim:<{width}}  {what}" for dim, what in FAITHFUL_BACKBONES.items()]
    lines += ["Substitutes (their rows name the stand-in and are not faithful):"]
    lines += [textwrap.fill(why, 116, initial_indent="  ", subsequent_indent="    ") for why in SUBSTITUTE_REASONS]
    return "\n".join(lines)


def prefetch_features(loaded: dict, frame_arrays, pil_path: bool = True) -> None:
    """Fill the loaded backbones' per-frame memos for several decoded videos at once, frames batched across
    videos; the evaluators then find every feature computed. pil_path: also CLIP's PIL-path features
    (appearance_style)."""
    frame_arrays = list(frame_arrays)
    for kind, path in (("clip", "tensor"), ("aesthetic_clip", "tensor"), ("dino", "dino")):
        if loaded.get(kind) is not None:
            loaded[kind].prefetch(frame_arrays, path)
    if pil_path and loaded.get("clip") is not None:
        loaded["clip"].prefetch(frame_arrays, "pil")
