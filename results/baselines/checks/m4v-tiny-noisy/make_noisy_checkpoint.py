import shutil, torch
from safetensors.torch import load_file, save_file
src, dst = "m4v/weights/m4v-tiny", "runs/m4v-tiny-noisy"
shutil.copytree(src, dst, dirs_exist_ok=True, ignore=shutil.ignore_patterns("state.pt", "loss.csv", "training.json"))
g = torch.Generator().manual_seed(0)
state = load_file(f"{src}/model.safetensors")
noisy = {k: (v + 0.3 * v.float().std() * torch.randn(v.shape, generator=g)).to(v.dtype) if v.is_floating_point() and v.numel() > 1 else v for k, v in state.items()}
save_file(noisy, f"{dst}/model.safetensors")
