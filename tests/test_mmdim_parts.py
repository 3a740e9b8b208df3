"""MM-DiM parts: pad tokens keep the scan state at zero, the pooled (legacy) temporal branch, causality,
attention -> Mamba init in the real forward. The paper temporal branch: tests/test_temporal_branch.py."""

import torch

from m4v.blocks import DualStreamBlock, MMDiMMixer, build_stage_layout
from m4v.config import M4VConfig
from m4v.layers import QKV
from m4v.mamba import MambaMixer, init_mamba_from_attention
from m4v.ops import selective_scan
from m4v.temporal import PooledTemporalBranch


def perturbed(module):
    with torch.no_grad():
        for p in module.parameters():
            p.add_(0.1 * torch.randn_like(p))
    return module


def test_leading_pads_leave_the_scan_state_at_zero():
    """With k leading pad tokens the outputs of the real tokens equal those of the sequence without pads."""
    cfg = M4VConfig.tiny()
    mixer = MambaMixer(cfg)
    mixer.reset_parameters()
    perturbed(mixer)
    seq = torch.randn(2, 11, cfg.hidden_size)
    k = 5
    padded = torch.cat([torch.zeros(2, k, cfg.hidden_size), seq], dim=1)
    valid = torch.cat([torch.zeros(2, k, dtype=torch.bool), torch.ones(2, 11, dtype=torch.bool)], dim=1)
    with torch.no_grad():
        out_padded = mixer(padded, valid)
        out_plain = mixer(seq, torch.ones(2, 11, dtype=torch.bool))
    torch.testing.assert_close(out_padded[:, k:], out_plain, rtol=1e-5, atol=1e-6)
    assert torch.equal(out_padded[:, :k], torch.zeros_like(out_padded[:, :k]))
    # Without the mask the conv bias would leak into the state and change the real tokens' outputs.
    with torch.no_grad():
        unmasked = mixer(padded, torch.ones_like(valid))
    assert not torch.allclose(unmasked[:, k:], out_plain, atol=1e-4)


def test_pooled_temporal_branch_reads_history_and_writes_only_the_current_frame():
    cfg = M4VConfig.tiny()
    branch = perturbed(PooledTemporalBranch(cfg))
    sizes = [(2, 3), (2, 3), (4, 6), (4, 6)]
    video = torch.randn(1, sum(h * w for h, w in sizes), cfg.hidden_size)
    out = branch(video, sizes)
    assert out.shape == (1, 4 * 6, cfg.d_inner)             # the current frame's positions only
    changed = video.clone()
    changed[:, :6] += 1.0                                   # the oldest history frame
    assert not torch.allclose(branch(changed, sizes), out)


def test_mmdim_adds_the_pooled_temporal_branch_at_the_current_frame_only():
    cfg = M4VConfig.tiny(mixer="m4v", temporal_variant="pooled")
    mixer = perturbed(MMDiMMixer(cfg, 0))
    sizes, levels = [(2, 3), (2, 3), (4, 6)], [0, 1, 2]
    layout = build_stage_layout(cfg, sizes, levels, torch.ones(1, cfg.text_len, dtype=torch.bool))
    h = torch.randn(1, cfg.text_len + 36, cfg.hidden_size)
    registers = torch.randn(3, cfg.hidden_size)
    with torch.no_grad():
        with_branch = mixer(h, layout, registers)
        mixer.temporal = None
        without = mixer(h, layout, registers)
    n_before_current = cfg.text_len + 12
    torch.testing.assert_close(with_branch[:, :n_before_current], without[:, :n_before_current])
    assert not torch.allclose(with_branch[:, n_before_current:], without[:, n_before_current:])


def test_pooled_temporal_branch_zero_init_is_silent():
    cfg = M4VConfig.tiny()
    branch = PooledTemporalBranch(cfg)
    branch.zero_init()
    sizes = [(2, 3), (4, 6)]
    assert torch.count_nonzero(branch(torch.randn(1, 30, cfg.hidden_size), sizes)) == 0


def test_mmdit_block_is_temporally_causal():
    """Changing the current frame leaves the history tokens' outputs unchanged (PyramidFlow's causal mask)."""
    cfg = M4VConfig.tiny()
    block = perturbed(DualStreamBlock(cfg))
    sizes, levels = [(2, 3), (2, 3), (4, 6)], [0, 1, 2]
    mask = torch.ones(1, cfg.text_len, dtype=torch.bool)
    mask[:, -3:] = False
    layout = build_stage_layout(cfg, sizes, levels, mask)
    video = torch.randn(1, 36, cfg.hidden_size)
    text = torch.randn(1, cfg.text_len, cfg.hidden_size)
    temb = torch.randn(1, cfg.hidden_size)
    v1, t1 = block(video, text, temb, layout)
    changed = video.clone()
    changed[:, 12:] += 1.0                                  # the current frame
    v2, t2 = block(changed, text, temb, layout)
    torch.testing.assert_close(v1[:, :12], v2[:, :12])      # history frames
    torch.testing.assert_close(t1, t2)                      # text sees only text and frame 0
    assert not torch.allclose(v1[:, 12:], v2[:, 12:])
    changed_first = video.clone()
    changed_first[:, :6] += 1.0                             # frame 0 is visible to every later frame
    v3, _ = block(changed_first, text, temb, layout)
    assert not torch.allclose(v1[:, 6:12], v3[:, 6:12])


def seeded_mamba(cfg):
    """A Mamba mixer seeded from a random attention layer, and that layer."""
    attn = perturbed(QKV(cfg.hidden_size, cfg.num_heads))
    mixer = MambaMixer(cfg)
    mixer.reset_parameters()
    perturbed(mixer)
    signs = init_mamba_from_attention(mixer, attn.to_q, attn.to_k, attn.to_v)
    return mixer, attn, signs


def test_init_mamba_from_attention_holds_in_the_forward():
    """B and C as the forward computes them (in_proj -> causal conv -> SiLU -> x_proj) are W_K h and W_Q h."""
    cfg = M4VConfig.tiny()
    mixer, attn, _ = seeded_mamba(cfg)
    h = torch.randn(2, 9, cfg.hidden_size)                                 # longer than the conv kernel
    with torch.no_grad():
        _, _, B, C, _ = mixer.ssm_inputs(h, torch.ones(2, 9, dtype=torch.bool))
    N = cfg.d_state
    torch.testing.assert_close(B, (h @ attn.to_k.weight[:N].t()).transpose(1, 2), rtol=1e-3, atol=2e-3)
    torch.testing.assert_close(C, (h @ attn.to_q.weight[:N].t()).transpose(1, 2), rtol=1e-3, atol=2e-3)


def test_seeded_mamba_pairs_scan_the_attention_values():
    """Read through the pair signs, the mixer's output is the gated selective scan of W_V h (with the forward's
    own delta, B, C, z): a causal linear attention with values W_V h."""
    cfg = M4VConfig.tiny()
    mixer, attn, signs = seeded_mamba(cfg)
    h = torch.randn(2, 9, cfg.hidden_size)
    valid = torch.ones(2, 9, dtype=torch.bool)
    D, pairs = cfg.hidden_size, cfg.d_inner // (2 * cfg.hidden_size)
    with torch.no_grad():
        y = mixer(h, valid)                                                 # (B, S, E)
        _, delta, B, C, z = mixer.ssm_inputs(h, valid)
        values = (h @ attn.to_v.weight.t()).transpose(1, 2)                 # (B, D, S)
        expected = selective_scan(values, delta[:, :D], -torch.exp(mixer.A_log[:D]), B, C, mixer.D[:D],
                                  z[:, :D], mixer.dt_proj.bias[:D], delta_softplus=True, backend="reference")
    read = (y * signs).view(2, 9, 2 * pairs, D).sum(2) / pairs               # (B, S, D)
    torch.testing.assert_close(read, expected.transpose(1, 2), rtol=1e-4, atol=1e-4)
