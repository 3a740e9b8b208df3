"""text-tiny: the tiny T5 + CLIP text encoders over the world's vocabulary (with `train --data CAPTIONS`: and the
words of the user's captions, learnt from frames of the user's clips).

The T5 stays as built (frozen random features: the denoiser learns to read them, as M4V reads frozen T5 ones).
The CLIP text tower is trained, as CLIP-L's is before PyramidFlow uses its pooled output: contrastively against
clip-tiny's image tower, locked (LiT), on world frames and captions. Its pooled output (`text_embeds`) then lives
in clip-tiny's image space. The random tower's pooled vector barely told shapes apart (cosine 0.95 between
"a red square ..." and "a red circle ...", 0.81-0.91 between colours); denoisers conditioned on it drew circles
for nearly every shape word, and the trained tower (cosine 0.47-0.76) made their last stage follow the word.
"""

from __future__ import annotations

import torch
import torch.nn.functional as F

from m4v.recipes import BaseRecipe, weights_path
from m4v.recipes.clip import FrameSource, batch_top1, contrastive_loss, data_option, gather_rows, sum_row_gradients
from m4v.text_encoders import build_tiny_text_models, save_text_models
from m4v.tiny_clip import TINY_CLIP_CONFIG, load_tiny_clip, normalize_images
from m4v.world.dataset import world_vocabulary

TEXT_LEN = 16  # tokens; the longest world caption has 11 with </s>
POOLED_DIM = TINY_CLIP_CONFIG["embed_dim"]  # the CLIP text projection lands in clip-tiny's image space
DATA_SEED = 30_000  # frames disjoint from clip-tiny's own training batches


def caption_words(captions: list[str]) -> list[str]:
    """The words the word-level tokenizer sees in `captions` (its Whitespace pre-tokenizer: words and punctuation)."""
    from tokenizers import pre_tokenizers

    split = pre_tokenizers.Whitespace().pre_tokenize_str
    return sorted({word for text in captions for word, _ in split(text)})


class Recipe(BaseRecipe):
    """LiT: only the CLIP text tower learns; image tower and temperature are clip-tiny's, frozen. Under torchrun
    each rank encodes its rows; the features are gathered and the gradients summed (m4v/recipes/clip.py)."""

    default_steps = 600

    def __init__(self, name, seed=0, weights_root=None, batch: int = 64, lr: float = 1e-3, data: str | None = None):
        super().__init__(name, seed, weights_root, max_length=TEXT_LEN, batch=batch, lr=lr,
                         projection_dim=POOLED_DIM, **data_option(data))
        self.source = FrameSource(data)
        # the user's words join the world's: a word outside the vocabulary would read as <unk>
        words = world_vocabulary() + ([] if data is None else caption_words([c.text for c in self.source.clips]))
        self.tokenizer, self.t5, self.clip_text = build_tiny_text_models(
            words, max_length=TEXT_LEN, projection_dim=POOLED_DIM, seed=seed)
        self.image_tower = load_tiny_clip(weights_path("clip-tiny", weights_root))[0].requires_grad_(False)
        self.modules = {"clip_text": self.clip_text}
        self.optimizer = torch.optim.AdamW(self.clip_text.parameters(), lr=lr, weight_decay=0.05)

    def step(self, i: int) -> dict:
        images, captions = self.source.batch(DATA_SEED + self.seed, i, self.options["batch"], self.rank)
        rows = self.my_rows(len(captions)) or slice(None)   # this rank's rows of the batch (torchrun)
        with torch.no_grad():
            image_features = self.image_tower.encode_image(normalize_images(self.image_tower, images[rows]),
                                                           normalize=True)                      # (rows, E)
        tokens = self.tokenizer(captions[rows], padding="max_length", max_length=TEXT_LEN, truncation=True,
                                return_tensors="pt")
        self.clip_text.train()
        self.set_lr(i)
        text_features = F.normalize(self.clip_text(input_ids=tokens.input_ids,
                                                   attention_mask=tokens.attention_mask).text_embeds, dim=-1)
        image_features, text_features = gather_rows(self, image_features, text_features)   # (B, E) each
        loss = contrastive_loss(image_features, text_features, self.image_tower.logit_scale.exp(), captions)
        self.optimizer.zero_grad(set_to_none=True)
        loss.backward()
        sum_row_gradients(self, self.clip_text)
        self.optimizer.step()
        return {"loss": loss.item(), "batch_top1": batch_top1(image_features, text_features, captions)}

    def save(self, out) -> None:
        save_text_models(out, self.tokenizer, self.t5, self.clip_text.eval())
