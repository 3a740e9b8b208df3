"""Causal 3D VAE: 8x space and time with the first frame alone, causality, normalisation, paper-size build."""

import pytest
import torch

from m4v.vae import CausalVideoVAE, VAEConfig, denormalize_latent, normalize_latent


@pytest.fixture(scope="module")
def vae():
    torch.manual_seed(0)
    return CausalVideoVAE(VAEConfig.tiny()).eval()


def test_shapes(vae):
    video = torch.rand(1, 3, 17, 32, 48) * 2 - 1                # 1 + 8 * 2 frames
    mean, logvar = vae.encode(video)
    assert mean.shape == logvar.shape == (1, 16, 3, 4, 6)
    assert vae.decode(mean).shape == video.shape
    assert vae.encode(video[:, :, :1])[0].shape == (1, 16, 1, 4, 6)  # an image is one latent frame


def test_latents_are_causal_in_time(vae):
    video = torch.rand(1, 3, 17, 32, 32) * 2 - 1
    changed = video.clone()
    changed[:, :, 9:] += 0.5                                   # pixel frames 9.. belong to latent frame 2 only
    with torch.no_grad():
        a, _ = vae.encode(video)
        b, _ = vae.encode(changed)
    torch.testing.assert_close(a[:, :, :2], b[:, :, :2])
    assert not torch.allclose(a[:, :, 2], b[:, :, 2])


def test_bad_frame_count_is_rejected(vae):
    with pytest.raises(ValueError, match="1 \\+ 8k"):
        vae.encode(torch.zeros(1, 3, 4, 32, 32))


def test_normalisation_round_trip():
    z = torch.randn(2, 16, 5, 4, 4)
    torch.testing.assert_close(denormalize_latent(normalize_latent(z)), z)
    # frame 0 uses the image statistics (miniFLUX), frames 1.. the video ones
    assert normalize_latent(torch.full((1, 1, 2, 1, 1), -0.04))[0, 0, 0].item() == pytest.approx(0.0)
    assert normalize_latent(torch.full((1, 1, 2, 1, 1), -0.2343))[0, 0, 1].item() == pytest.approx(0.0)


def test_paper_size_builds_on_meta():
    with torch.device("meta"):
        vae = CausalVideoVAE(VAEConfig.paper())
        mean, _ = vae.encode(torch.empty(1, 3, 9, 64, 64))
    assert mean.shape == (1, 16, 2, 8, 8)
    n = sum(p.numel() for p in vae.parameters())
    assert 1e8 < n < 1e9


def test_inflated_vae_treats_a_video_as_its_frames():
    """After causal inflation every conv sees only the current frame: latent frame j encodes pixel frame 8j
    alone, and decoded frame t (t >= 1) comes from latent frame ceil(t / 8) alone."""
    torch.manual_seed(0)
    vae = CausalVideoVAE(VAEConfig.tiny()).eval()
    vae.inflate_from_image()
    video = torch.randn(1, 3, 17, 32, 32)
    with torch.no_grad():
        mean = vae.encode(video)[0]
        for j in range(3):
            torch.testing.assert_close(mean[:, :, j], vae.encode(video[:, :, 8 * j: 8 * j + 1])[0][:, :, 0],
                                       rtol=1e-4, atol=1e-4)
        decoded = vae.decode(mean)
        for t in (0, 1, 8, 9, 16):
            j = -(-t // 8)
            torch.testing.assert_close(decoded[:, :, t], vae.decode(mean[:, :, j: j + 1])[:, :, 0],
                                       rtol=1e-4, atol=1e-4)
