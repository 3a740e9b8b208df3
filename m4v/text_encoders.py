"""Text conditioning through transformers: T5 sequence features + pooled CLIP text features, from local dirs.

Paper size uses T5-XXL (4096-d, 128 tokens, right-padded with a mask) and CLIP-L's pooled feature, read as the
model was trained (M4VConfig.pooled_text_feature): the projected `CLIPTextModelWithProjection.text_embeds`
("text_embeds", PyramidFlow's SD3 text stack, the project's models) or the unprojected
`CLIPTextModel.pooler_output` ("pooler_output", PyramidFlow-miniFLUX's modeling_text_encoder.py), 768-d each.
The loading code is the real transformers one (`from_pretrained(..., local_files_only=True)`);
`build_tiny_text_models` makes small ones with a word-level tokenizer (tokenizers) for CPU work and tests.
"""

from __future__ import annotations

from pathlib import Path

import torch

from m4v.config import POOLED_TEXT_FEATURES
from m4v.sampling import TextCondition

T5_SUBDIR, CLIP_SUBDIR = "t5", "clip_text"
SPECIAL_TOKENS = ["<pad>", "</s>", "<unk>"]


class TextEncoders:
    """T5EncoderModel (sequence) + CLIP text model (pooled feature `pooled`), each with its tokenizer, frozen."""

    def __init__(self, t5, t5_tokenizer, clip, clip_tokenizer, max_length: int = 128, pooled: str = "text_embeds"):
        if pooled not in POOLED_TEXT_FEATURES:
            raise ValueError(f"pooled text feature must be one of {POOLED_TEXT_FEATURES}, got {pooled!r}")
        self.t5, self.t5_tokenizer = t5.eval().requires_grad_(False), t5_tokenizer
        self.clip, self.clip_tokenizer = clip.eval().requires_grad_(False), clip_tokenizer
        self.max_length, self.pooled = max_length, pooled

    @property
    def pooled_width(self) -> int:
        """Width of the pooled feature: CLIP's projection, or its hidden size for `pooler_output`."""
        config = self.clip.config
        return config.projection_dim if self.pooled == "text_embeds" else config.hidden_size

    @classmethod
    def from_dir(cls, directory, max_length: int = 128, pooled: str = "text_embeds") -> TextEncoders:
        """Load from DIR/t5 and DIR/clip_text (save_pretrained layouts); never touches a hub. The CLIP class is
        the one whose output `pooled` names (a CLIPTextModel checkpoint has no projection to load)."""
        from transformers import AutoTokenizer, CLIPTextModel, CLIPTextModelWithProjection, T5EncoderModel

        directory = Path(directory)
        for sub in (T5_SUBDIR, CLIP_SUBDIR):
            if not (directory / sub / "config.json").is_file():
                raise FileNotFoundError(f"--text-encoder {directory}: missing {sub}/config.json")
        t5 = T5EncoderModel.from_pretrained(directory / T5_SUBDIR, local_files_only=True)
        t5_tok = AutoTokenizer.from_pretrained(directory / T5_SUBDIR, local_files_only=True)
        clip_class = CLIPTextModelWithProjection if pooled == "text_embeds" else CLIPTextModel
        clip = clip_class.from_pretrained(directory / CLIP_SUBDIR, local_files_only=True)
        clip_tok = AutoTokenizer.from_pretrained(directory / CLIP_SUBDIR, local_files_only=True)
        return cls(t5, t5_tok, clip, clip_tok, max_length, pooled)

    @torch.no_grad()
    def encode(self, prompts: list[str], unconditional: bool = True) -> TextCondition:
        """(B, max_length, d_t5) features right-padded with a mask, and (B, d_clip) pooled features; with
        `unconditional`, the empty prompt's features repeated B times attached (CFG's null, as PyramidFlow's
        caption dropout replaces a caption by '')."""
        cond = self._encode(prompts)
        if unconditional:
            empty = self._encode([""])  # its own call: batching it with the prompts could change their numerics
            n = len(prompts)
            cond.unconditional = TextCondition(empty.tokens.expand(n, -1, -1), empty.mask.expand(n, -1),
                                               empty.pooled.expand(n, -1))
        return cond

    def _encode(self, prompts: list[str]) -> TextCondition:
        t5_in = self.t5_tokenizer(prompts, padding="max_length", max_length=self.max_length, truncation=True,
                                  return_tensors="pt")
        tokens = self.t5(input_ids=t5_in.input_ids, attention_mask=t5_in.attention_mask).last_hidden_state
        clip_in = self.clip_tokenizer(prompts, padding="max_length", truncation=True, return_tensors="pt",
                                      max_length=self.clip.config.max_position_embeddings)
        clip_out = self.clip(input_ids=clip_in.input_ids, attention_mask=clip_in.attention_mask)
        return TextCondition(tokens, t5_in.attention_mask.bool(), getattr(clip_out, self.pooled))


def build_tiny_text_models(words, t5_dim: int = 32, clip_dim: int = 32, projection_dim: int = 16,
                           max_length: int = 8, seed: int = 0):
    """(word-level tokenizer over `words`, 2-layer T5 encoder, 2-layer CLIP text model with projection), freshly
    initialised from `seed`."""
    from tokenizers import Tokenizer, models, pre_tokenizers, processors
    from transformers import (
        CLIPTextConfig,
        CLIPTextModelWithProjection,
        PreTrainedTokenizerFast,
        T5Config,
        T5EncoderModel,
    )

    vocab = {tok: i for i, tok in enumerate(SPECIAL_TOKENS + sorted(set(words)))}
    core = Tokenizer(models.WordLevel(vocab, unk_token="<unk>"))
    core.pre_tokenizer = pre_tokenizers.Whitespace()
    # End every prompt with </s>, as T5 does; CLIP's pooled output is read at that token.
    core.post_processor = processors.TemplateProcessing(single="$A </s>", special_tokens=[("</s>", vocab["</s>"])])
    tokenizer = PreTrainedTokenizerFast(tokenizer_object=core, pad_token="<pad>", eos_token="</s>",
                                        unk_token="<unk>", model_max_length=max_length)
    torch.manual_seed(seed)
    t5 = T5EncoderModel(T5Config(vocab_size=len(vocab), d_model=t5_dim, d_kv=8, d_ff=2 * t5_dim, num_layers=2,
                                 num_heads=4, pad_token_id=0, eos_token_id=1, decoder_start_token_id=0))
    clip = CLIPTextModelWithProjection(CLIPTextConfig(
        vocab_size=len(vocab), hidden_size=clip_dim, intermediate_size=2 * clip_dim, projection_dim=projection_dim,
        num_hidden_layers=2, num_attention_heads=2, max_position_embeddings=max_length, pad_token_id=0,
        bos_token_id=1, eos_token_id=1))
    return tokenizer, t5, clip


def save_text_models(directory, tokenizer, t5, clip) -> Path:
    """DIR/t5 and DIR/clip_text in save_pretrained layouts (what `TextEncoders.from_dir` loads)."""
    directory = Path(directory)
    for sub, model in ((T5_SUBDIR, t5), (CLIP_SUBDIR, clip)):
        model.save_pretrained(directory / sub)
        tokenizer.save_pretrained(directory / sub)
    return directory


def build_tiny_text_encoders(directory, words, max_length: int = 8, seed: int = 0, **dims) -> Path:
    """`build_tiny_text_models` saved to `directory` untrained (tests; the shipped text-tiny trains its CLIP)."""
    return save_text_models(directory, *build_tiny_text_models(words, max_length=max_length, seed=seed, **dims))
