"""VBench's weight cache (`$VBENCH_CACHE_DIR`, else `~/.cache/vbench`) mapped to `--backbone` specs, and the
published hashes that say whether a weight file is the checkpoint VBench downloads.

Layout and fallbacks from VBench 0.1.5's own source: `vbench/utils.py` init_submodules (the `CACHE_DIR/...` paths
of `--load_ckpt_from_local`), `vbench/aesthetic_quality.py` (the LAION head under aesthetic_model/emb_reader),
and VBench's default (non-local) mode, where OpenAI's `clip.load` keeps its files in `~/.cache/clip` and
`torch.hub.load('facebookresearch/dino:main', ...)` keeps DINO's in torch hub's `checkpoints/` folder.
Importing this module imports neither torch nor a backbone library.
"""

from __future__ import annotations

import os
import re
from dataclasses import dataclass
from functools import lru_cache
from pathlib import Path

from m4v.file_hash import file_sha256


@dataclass(frozen=True)
class CachedWeights:
    """One weight file VBench downloads: where it sits, what it is, and which dimensions need it."""

    kind: str                        # backbone kind (--backbone KIND=...)
    model: str                       # MODEL in KIND=MODEL:PATH
    path: str                        # relative to VBench's cache dir, as init_submodules writes it
    dimensions: tuple[str, ...]      # the VBench dimensions that are exact only with this file
    fallbacks: tuple[str, ...] = ()  # where VBench's default mode finds the same file: "clip:NAME", "hub:NAME"
    sha256: str = ""                 # the published checkpoint's hash, or its prefix as the file name carries it
    url: str = ""                    # where VBench downloads it from (for the missing-file message)


OPENAI_CLIP = "https://openaipublic.azureedge.net/clip/models"
VBENCH_FILES = (
    CachedWeights("clip", "ViT-B-32-quickgelu", "clip_model/ViT-B-32.pt",
                  ("background_consistency", "appearance_style"), ("clip:ViT-B-32.pt",),
                  "40d365715913c9da98579312b702a82c18be219cc2a73407c4526f58eba950af",
                  f"{OPENAI_CLIP}/40d365715913c9da98579312b702a82c18be219cc2a73407c4526f58eba950af/ViT-B-32.pt"),
    CachedWeights("aesthetic_clip", "ViT-L-14-quickgelu", "clip_model/ViT-L-14.pt", ("aesthetic_quality",),
                  ("clip:ViT-L-14.pt",), "b8cca3fd41ae0c99ba7e8951adf17d267cdb84cd88be6f7c2e0eca1737a03836",
                  f"{OPENAI_CLIP}/b8cca3fd41ae0c99ba7e8951adf17d267cdb84cd88be6f7c2e0eca1737a03836/ViT-L-14.pt"),
    CachedWeights("aesthetic", "linear", "aesthetic_model/emb_reader/sa_0_4_vit_l_14_linear.pth",
                  ("aesthetic_quality",),
                  url="https://github.com/LAION-AI/aesthetic-predictor/blob/main/sa_0_4_vit_l_14_linear.pth?raw=true"),
    CachedWeights("dino", "dino_vitb16", "dino_model/dino_vitbase16_pretrain.pth", ("subject_consistency",),
                  ("hub:dino_vitbase16_pretrain.pth",),
                  url="https://dl.fbaipublicfiles.com/dino/dino_vitbase16_pretrain/dino_vitbase16_pretrain.pth"),
    CachedWeights("raft", "raft_large", "raft_model/models/raft-things.pth",
                  ("dynamic_degree", "temporal_flickering"),
                  url="https://dl.dropboxusercontent.com/s/4j4z58wuv8o0mfz/models.zip (unzipped)"),
    CachedWeights("amt", "AMT-S", "amt_model/amt-s.pth", ("motion_smoothness",),
                  url="https://huggingface.co/lalala125/AMT/resolve/main/amt-s.pth"),
    CachedWeights("umt", "vit_large_patch16_224", "umt_model/l16_ptk710_ftk710_ftk400_f16_res224.pth",
                  ("human_action",),
                  url="https://huggingface.co/OpenGVLab/VBench_Used_Models/resolve/main/"
                      "l16_ptk710_ftk710_ftk400_f16_res224.pth"),
    # The backbone kinds of issue 37 item 4 (MUSIQ, ViCLIP).
    CachedWeights("musiq", "musiq-spaq", "pyiqa_model/musiq_spaq_ckpt-358bb6af.pth", ("imaging_quality",),
                  sha256="358bb6af",
                  url="https://github.com/chaofengc/IQA-PyTorch/releases/download/v0.1-weights/"
                      "musiq_spaq_ckpt-358bb6af.pth"),
    CachedWeights("viclip", "ViCLIP-L-14", "ViCLIP/ViClip-InternVid-10M-FLT.pth",
                  ("temporal_style", "overall_consistency"),
                  url="https://huggingface.co/OpenGVLab/VBench_Used_Models/resolve/main/ViClip-InternVid-10M-FLT.pth"),
)
ENV = "VBENCH_CACHE_DIR"
NO_CACHE = "none"   # `--vbench-cache none`: do not use VBench's cache even where one exists


def default_cache_dir() -> Path:
    """VBench's CACHE_DIR rule (vbench/utils.py): $VBENCH_CACHE_DIR, else ~/.cache/vbench."""
    return Path(os.environ.get(ENV) or Path.home() / ".cache" / "vbench")


def resolve_cache_dir(flag: str | None) -> tuple[Path | None, bool]:
    """(VBench cache dir to use or None, whether it was asked for): the flag, else $VBENCH_CACHE_DIR (both must
    be folders), else ~/.cache/vbench when it exists (then a missing file is only a note)."""
    if flag == NO_CACHE:
        return None, False
    explicit = flag or os.environ.get(ENV)
    if explicit:
        where = "--vbench-cache" if flag else f"${ENV}"
        path = Path(explicit).expanduser()
        if not path.is_dir():
            raise FileNotFoundError(f"{where} {explicit}: not a folder (VBench's weight cache: clip_model/, "
                                    "dino_model/, raft_model/, ...)")
        return path, True
    path = default_cache_dir()
    return (path, False) if path.is_dir() else (None, False)


def fallback_path(fallback: str) -> Path:
    """Where VBench's default mode keeps a file: OpenAI clip.load's ~/.cache/clip, or torch hub's checkpoints."""
    place, _, name = fallback.partition(":")
    if place == "clip":
        return Path.home() / ".cache" / "clip" / name
    import torch

    return Path(torch.hub.get_dir()) / "checkpoints" / name


def locate(entry: CachedWeights, cache_dir: Path) -> Path | None:
    """The file of one entry: VBench's cache layout first, then its default mode's places."""
    for path in (cache_dir / entry.path, *map(fallback_path, entry.fallbacks)):
        if path.is_file():
            return path
    return None


def entries_for(dims, kinds) -> list[CachedWeights]:
    """The entries of backbone kinds this harness loads (`kinds`) that the dimensions `dims` need (None: all)."""
    return [e for e in VBENCH_FILES if e.kind in kinds and (dims is None or set(e.dimensions) & set(dims))]


def cache_backbones(cache_dir: Path, dims, kinds, strict: bool, note=None) -> list[str]:
    """`KIND=MODEL:PATH` specs for every file of VBench's cache the dimensions need. strict: a missing file is a
    FileNotFoundError naming every missing file and the dimensions that need it (one line); otherwise each is
    a `note` and the others load."""
    specs, missing = [], []
    for entry in entries_for(dims, kinds):
        path = locate(entry, cache_dir)
        if path is None:
            needed = [d for d in entry.dimensions if dims is None or d in dims]
            places = [str(cache_dir / entry.path), *(str(fallback_path(f)) for f in entry.fallbacks)]
            missing.append(f"{' or '.join(places)} (needed by {', '.join(needed)}; VBench downloads {entry.url})")
        else:
            specs.append(f"{entry.kind}={entry.model}:{path}")
    if missing and strict:
        raise FileNotFoundError(f"VBench cache {cache_dir}: missing " + "; ".join(missing))
    for line in missing if note else ():
        note(f"VBench cache {cache_dir}: missing {line}: without it those dimensions run on a substitute, or not")
    return specs


def vbench_package_dir() -> Path | None:
    """The installed vbench package's folder, found without importing it (its __init__ needs decord)."""
    import importlib.util

    try:
        spec = importlib.util.find_spec("vbench")
    except (ImportError, ValueError):   # ValueError: a module in sys.modules without a spec (a test's stub)
        return None
    locations = list(spec.submodule_search_locations or []) if spec is not None else []
    return Path(locations[0]) if locations else None


def vbench_package_file(relative: str) -> Path | None:
    """A file shipped inside the installed vbench package (e.g. UMT's Kinetics label list), or None."""
    root = vbench_package_dir()
    return root / relative if root is not None and (root / relative).is_file() else None


# ---- published hashes ------------------------------------------------------------------------------------------
@lru_cache(maxsize=1)
def published_hashes() -> dict[str, str]:
    """{published file name: its sha256 or the prefix the name carries}: VBench's table above, OpenAI's CLIP
    releases (their download URLs in open_clip's pretrained table embed the full sha256) and torchvision's RAFT
    weights (torch hub's `-<sha256 prefix>` file names)."""
    known = {Path(e.path).name: e.sha256 for e in VBENCH_FILES if e.sha256}
    try:
        import open_clip

        for model, tag in open_clip.list_pretrained():
            url = open_clip.get_pretrained_cfg(model, tag).get("url", "")
            match = re.search(r"/clip/models/([0-9a-f]{64})/([^/]+\.pt)$", url)
            if match:
                known[match.group(2)] = match.group(1)
    except ImportError:   # open_clip is a dependency; without it only the table above is known
        pass
    from torchvision.models.optical_flow import Raft_Large_Weights, Raft_Small_Weights

    for weights in (*Raft_Large_Weights, *Raft_Small_Weights):
        name = weights.url.rsplit("/", 1)[-1]
        match = re.search(r"-([0-9a-f]{8,64})\.\w+$", name)
        if match:
            known[name] = match.group(1)
    return known


@dataclass(frozen=True)
class WeightsCheck:
    """What the weight file of a backbone was found to be."""

    status: str   # verified | unverified | mismatch | none (weight-free or random-init)
    sha256: str = ""
    expected: str = ""

    @property
    def note(self) -> str:
        """What a row records: `weights verified`, `weights unverified`, ..."""
        if self.status == "mismatch":
            return f"weights mismatch (sha256 {self.sha256[:12]}, published {self.expected[:12]})"
        return f"weights {self.status}"


def verify_weights(path) -> WeightsCheck:
    """A weight file against the published hashes: verified when its sha256 is a published checkpoint's (by name,
    or the full hash under any name), a mismatch when its name is a published one and the hash is not, else
    unverified (no published hash to check: random weights in that file cannot be told apart)."""
    if path is None:
        return WeightsCheck("none")
    path = Path(path)
    digest = file_sha256(path)
    known = published_hashes()
    expected = known.get(path.name)
    if expected is not None:
        return WeightsCheck("verified" if digest.startswith(expected) else "mismatch", digest, expected)
    if any(len(h) == 64 and h == digest for h in known.values()):
        return WeightsCheck("verified", digest, digest)
    return WeightsCheck("unverified", digest)
