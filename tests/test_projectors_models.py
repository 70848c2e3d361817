"""Autoencoder and diffusion projectors vs plain diffusers computations; loading safety; offline."""
import os

import pytest
import torch

from _cpu_projectors import cpu_projectors  # noqa: F401  (autouse fixture)

pytest.importorskip("diffusers")
from diffusers import (AutoencoderKL, DDIMInverseScheduler, DDIMScheduler, UNet2DConditionModel,  # noqa: E402
                       UNet2DModel)

from fpfast.projectors import ProjectorError, load_projector  # noqa: E402
from fpfast.projectors.autoencoder import AutoencoderProjector, reconstruction_distances  # noqa: E402
from fpfast.projectors.diffusion import DiffusionProjector  # noqa: E402

os.environ.setdefault("HF_HUB_OFFLINE", "1")


def tiny_vae(seed=0):
    torch.manual_seed(seed)
    return AutoencoderKL(block_out_channels=(32,), norm_num_groups=8, latent_channels=4, sample_size=32).eval()


def tiny_unet(seed=0):
    torch.manual_seed(seed)
    return UNet2DModel(sample_size=32, block_out_channels=(32, 64), layers_per_block=1, norm_num_groups=8,
                       down_block_types=("DownBlock2D", "DownBlock2D"),
                       up_block_types=("UpBlock2D", "UpBlock2D")).eval()


@pytest.fixture(scope="module")
def vae_dirs(tmp_path_factory):
    out = []
    for seed in (0, 1):
        d = tmp_path_factory.mktemp(f"vae{seed}")
        tiny_vae(seed).save_pretrained(d)
        out.append(d)
    return out


@pytest.fixture(scope="module")
def unet_dir(tmp_path_factory):
    d = tmp_path_factory.mktemp("unet")
    tiny_unet().save_pretrained(d)
    return d


def images(n=3, size=32, seed=0):
    return torch.rand(n, 3, size, size, generator=torch.Generator().manual_seed(seed))


# ---------------------------------------------------------------------------- autoencoder
@torch.no_grad()
def plain_ae_residual(vae, x):
    z = vae.encode(2 * x - 1).latent_dist.mean
    return x - ((vae.decode(z).sample + 1) / 2).clamp(0, 1)


def test_autoencoder_residual_equals_diffusers(vae_dirs):
    x = images()
    p = AutoencoderProjector(vae_dirs[0], batch_size=2)
    want = plain_ae_residual(AutoencoderKL.from_pretrained(vae_dirs[0]).eval(), x)
    torch.testing.assert_close(p.residual(x), want, rtol=0, atol=1e-5)  # batching may reorder float sums


def test_which_autoencoder_reconstructs_best(vae_dirs):
    x = images(4)
    vaes = [AutoencoderKL.from_pretrained(d).eval() for d in vae_dirs]
    want = torch.stack([plain_ae_residual(v, x).pow(2).flatten(1).mean(1) for v in vaes], 1)
    d, best = reconstruction_distances(x, [str(v) for v in vae_dirs], batch_size=3)
    torch.testing.assert_close(d, want, rtol=1e-4, atol=1e-7)
    assert (best == want.argmin(1)).all()
    p = AutoencoderProjector([str(v) for v in vae_dirs], select="best")
    r = p.residual(x)
    res = torch.stack([plain_ae_residual(v, x) for v in vaes])
    torch.testing.assert_close(r, res[want.argmin(1), torch.arange(4)], rtol=0, atol=1e-5)


def test_autoencoder_errors(vae_dirs, unet_dir, tmp_path):
    with pytest.raises(ProjectorError, match="is a UNet2DModel, expected a AutoencoderKL"):
        AutoencoderProjector(unet_dir)
    with pytest.raises(ProjectorError, match="expected a AutoencoderKL, got a UNet2DModel"):
        AutoencoderProjector(tiny_unet())
    torch.manual_seed(0)
    vae2 = AutoencoderKL(block_out_channels=(32, 32), down_block_types=("DownEncoderBlock2D",) * 2,
                         up_block_types=("UpDecoderBlock2D",) * 2, norm_num_groups=8, latent_channels=4)
    with pytest.raises(ProjectorError, match="multiples of 2, got 33x33"):
        AutoencoderProjector(vae2).residual(images(1, 33))
    with pytest.raises(ProjectorError, match="neither an existing directory nor a hub id"):
        AutoencoderProjector(str(tmp_path / "missing" / "dir"))


def test_pickle_checkpoint_refused_unless_allowed(tmp_path):
    tiny_vae().save_pretrained(tmp_path, safe_serialization=False)
    assert not list(tmp_path.glob("*.safetensors")) and list(tmp_path.glob("*.bin"))
    with pytest.raises(ProjectorError, match="only pickle weights.*allow_pickle=True"):
        AutoencoderProjector(tmp_path)
    p = AutoencoderProjector(tmp_path, allow_pickle=True)
    assert p.sha256() == AutoencoderProjector(tiny_vae()).sha256()  # identity of weights, not files


def test_hub_id_offline_says_pass_a_local_path(monkeypatch, tmp_path):
    monkeypatch.setenv("HF_HUB_OFFLINE", "1")
    monkeypatch.setenv("HF_HOME", str(tmp_path))
    import huggingface_hub.constants as c
    monkeypatch.setattr(c, "HF_HUB_OFFLINE", True)
    monkeypatch.chdir(tmp_path)
    with pytest.raises(ProjectorError, match="pass its local path"):
        AutoencoderProjector("someorg/some-vae-that-is-not-cached")
    with pytest.raises(ProjectorError, match="pass its local path"):
        DiffusionProjector("someorg/some-unet-that-is-not-cached")


# ---------------------------------------------------------------------------- diffusion
@torch.no_grad()
def plain_dire(unet, x, steps, cond=None):
    """DDIM inversion then DDIM sampling with diffusers' own schedulers (eta 0, no clipping)."""
    inv = DDIMInverseScheduler(clip_sample=False)
    fwd = DDIMScheduler(clip_sample=False)
    inv.set_timesteps(steps)
    fwd.set_timesteps(steps)
    kw = {} if cond is None else {"encoder_hidden_states": cond.expand(x.shape[0], -1, -1)}
    z = 2 * x - 1
    for t in inv.timesteps:
        z = inv.step(unet(z, t, **kw).sample, t, z).prev_sample
    for t in fwd.timesteps:
        z = fwd.step(unet(z, t, **kw).sample, t, z).prev_sample
    return x - ((z + 1) / 2).clamp(0, 1)


@pytest.mark.parametrize("steps", [1, 3])
def test_diffusion_residual_equals_diffusers(unet_dir, steps):
    x = images(3)
    p = DiffusionProjector(unet_dir, steps=steps, batch_size=2)
    assert p.timesteps() == [k * (1000 // steps) for k in range(steps)]
    want = plain_dire(UNet2DModel.from_pretrained(unet_dir).eval(), x, steps)
    torch.testing.assert_close(p.residual(x), want, rtol=0, atol=1e-4)


def test_conditional_unet_with_empty_prompt_embedding(tmp_path):
    torch.manual_seed(0)
    unet = UNet2DConditionModel(sample_size=16, in_channels=3, out_channels=3, block_out_channels=(32, 64),
                                layers_per_block=1, norm_num_groups=8, cross_attention_dim=16,
                                attention_head_dim=4,
                                down_block_types=("CrossAttnDownBlock2D", "DownBlock2D"),
                                up_block_types=("UpBlock2D", "CrossAttnUpBlock2D")).eval()
    emb = torch.randn(1, 5, 16, generator=torch.Generator().manual_seed(3))
    from safetensors.torch import save_file
    save_file({"prompt_embeds": emb}, tmp_path / "empty.safetensors")
    x = images(2, 16)
    p = DiffusionProjector(unet, steps=2, empty_embedding=tmp_path / "empty.safetensors")
    torch.testing.assert_close(p.residual(x), plain_dire(unet, x, 2, emb), rtol=0, atol=1e-4)
    with pytest.raises(ProjectorError, match="empty-prompt embedding"):
        DiffusionProjector(unet, steps=2)


def test_latent_unet_needs_and_uses_a_vae(tmp_path):
    torch.manual_seed(0)
    unet = UNet2DModel(sample_size=16, in_channels=4, out_channels=4, block_out_channels=(32, 64),
                       layers_per_block=1, norm_num_groups=8, down_block_types=("DownBlock2D",) * 2,
                       up_block_types=("UpBlock2D",) * 2).eval()
    vae = AutoencoderKL(block_out_channels=(32, 32), down_block_types=("DownEncoderBlock2D",) * 2,
                        up_block_types=("UpDecoderBlock2D",) * 2, norm_num_groups=8, latent_channels=4).eval()
    with pytest.raises(ProjectorError, match="pass vae="):
        DiffusionProjector(unet)
    p = DiffusionProjector(unet, vae=vae, steps=2)
    x = images(2, 32)
    with torch.no_grad():
        sf = vae.config.scaling_factor
        z = vae.encode(2 * x - 1).latent_dist.mean * sf
        inv, fwd = DDIMInverseScheduler(clip_sample=False), DDIMScheduler(clip_sample=False)
        inv.set_timesteps(2)
        fwd.set_timesteps(2)
        for t in inv.timesteps:
            z = inv.step(unet(z, t).sample, t, z).prev_sample
        for t in fwd.timesteps:
            z = fwd.step(unet(z, t).sample, t, z).prev_sample
        want = x - ((vae.decode(z / sf).sample + 1) / 2).clamp(0, 1)
    torch.testing.assert_close(p.residual(x), want, rtol=0, atol=1e-4)


def test_diffusion_errors(unet_dir, vae_dirs):
    p = DiffusionProjector(unet_dir, steps=2)
    with pytest.raises(ProjectorError, match="trained at 32x32 px, these images are 64x64"):
        p.residual(images(1, 64))
    with pytest.raises(ProjectorError, match="is a AutoencoderKL, expected a UNet2DModel or UNet2DConditionModel"):
        DiffusionProjector(vae_dirs[0])
    with pytest.raises(ProjectorError, match="steps"):
        DiffusionProjector(unet_dir, steps=0)


def test_identity_survives_spec_and_catches_another_model(unet_dir, tmp_path):
    p = DiffusionProjector(unet_dir, steps=2)
    spec = p.spec("default")
    q = load_projector(spec.projector)
    assert q.sha256() == p.sha256() and q.steps == 2
    tiny_unet(seed=5).save_pretrained(tmp_path)
    with pytest.raises(ProjectorError, match="different model"):
        load_projector({**spec.projector, "source": {"unet": str(tmp_path)}})
    other = DiffusionProjector(tmp_path, steps=2).spec("default")
    with pytest.raises(Exception, match="projector.identity"):
        spec.require_same(other)
