"""Embedding inference options: precision (autocast), channels-last + torch.compile, the stream,
and `fpfast extract --gallery`."""
import numpy as np
import pytest
import torch

from _embed_synth import SPEC, save_folders
from fpfast.embed import EmbedError
from fpfast.gallery import Gallery


def _cos(a, b):
    return np.sum(a * b, axis=1)  # both unit vectors


def test_bf16_on_cpu_is_close_and_fp16_needs_cuda(embed_trained, embed_data):
    emb = embed_trained[0]
    x = torch.from_numpy(np.stack(embed_data[1][0]))
    ref = emb.embed(x, precision="fp32")
    np.testing.assert_array_equal(emb.embed(x), ref)  # auto on CPU is fp32
    low = emb.embed(x, precision="bf16")
    assert low.dtype == np.float32 and not np.array_equal(low, ref)  # it did run in bf16
    # bf16 keeps 8 mantissa bits: each layer adds ~0.4 % relative error; 0.98 bounds four layers
    assert _cos(low, ref).min() > 0.98
    with pytest.raises(EmbedError, match="CUDA"):
        emb.embed(x, precision="fp16")
    with pytest.raises(EmbedError, match="unknown precision"):
        emb.embed(x, precision="fp8")


@pytest.mark.slow
def test_compiled_network_matches_eager(embed_trained, embed_data):
    emb = embed_trained[0]
    x = torch.from_numpy(np.stack(embed_data[1][0][:8]))
    got = emb.embed(x, compile=True)
    # inductor fuses and reorders float32 sums: agreement to float32 rounding, not bit-exact
    np.testing.assert_allclose(got, emb.embed(x), atol=1e-5)


@pytest.mark.cuda
@pytest.mark.skipif(not torch.cuda.is_available(), reason="needs a CUDA GPU")
def test_cuda_fp16_channels_last_matches_cpu(embed_trained, embed_data):
    emb = embed_trained[0]
    x = torch.from_numpy(np.stack(embed_data[1][0]))
    ref = emb.embed(x)
    half = emb.embed(x, device="cuda")  # auto: fp16, channels-last
    assert _cos(half, ref).min() > 0.995  # fp16: 11 mantissa bits
    np.testing.assert_allclose(emb.embed(x, device="cuda", precision="fp32"), ref, atol=1e-4)


def test_extract_with_a_gallery_writes_its_embedding(tmp_path, embed_trained, embed_data):
    from click.testing import CliRunner
    from fpfast.cli import cli
    from fpfast.io.writers import read_rows
    emb = embed_trained[0]
    (x, y), (xt, yt) = embed_data
    g = Gallery.create(str(tmp_path / "g"), SPEC, normalize="none").with_embedding(emb)
    g.add("m0", emb.embed(torch.from_numpy(np.stack(x[:5]))))
    g.fit()
    g.save()
    q = tmp_path / "q"
    save_folders(q, xt[:6], ["all"] * 6)
    out = str(tmp_path / "out")
    r = CliRunner()
    res = r.invoke(cli, ["extract", str(q / "all"), "--out", out, "--gallery", g.path, "--device", "cpu", "-q"])
    assert res.exit_code == 0, res.output
    rows = sorted(read_rows(out), key=lambda r: r["path"])
    vecs = np.stack([np.asarray(r["vector"], np.float32) for r in rows])
    assert vecs.shape == (6, emb.dim)  # files 000..005 in order
    np.testing.assert_allclose(vecs, emb.embed(torch.from_numpy(np.stack(xt[:6]))), atol=1e-6)
    res = r.invoke(cli, ["extract", str(q), "--out", out + "2", "--gallery", g.path, "--spec", "default"])
    assert res.exit_code == 2 and "not both" in res.output
    res = r.invoke(cli, ["extract", str(q / "all"), "--out", out + "3", "--gallery", g.path, "--device", "cpu",
                         "--precision", "fp16"])
    assert res.exit_code == 2 and "CUDA" in res.output, res.output


def test_folded_batchnorm_network_matches_the_trained_one(embed_trained, embed_data):
    from fpfast.embed.model import fold_batchnorm
    emb = embed_trained[0]
    x = torch.from_numpy(np.stack(embed_data[1][0][:16])).permute(0, 3, 1, 2).float() / 255
    folded = fold_batchnorm(emb.net)
    n_bn = lambda m: sum(isinstance(x, torch.nn.BatchNorm2d) for x in m.modules())  # noqa: E731
    assert n_bn(folded) == 1 and n_bn(emb.net) > 1  # only the input BatchNorm is left
    with torch.inference_mode():
        # the same affine maps applied in another order: float32 rounding, not bit-exact
        np.testing.assert_allclose(folded(x).numpy(), emb.net(x).numpy(), atol=1e-5)
    assert emb.net.training is False and any(isinstance(m, torch.nn.BatchNorm2d) for m in emb.net.body.modules())


@pytest.mark.parametrize("backend", ["torch", "cpp", "triton"])
def test_inference_takes_the_residual_from_the_backend_op(embed_trained, embed_data, backend, monkeypatch):
    from fpfast import backends
    if backends.why_unusable(backend, "cpu"):
        pytest.skip(backends.why_unusable(backend, "cpu"))
    emb = embed_trained[0]
    x = torch.from_numpy(np.stack(embed_data[1][0][:16]))
    with torch.inference_mode():
        ref = emb.net(x.permute(0, 3, 1, 2).float() / 255).numpy()  # the trained path: torch residual
    if backend == "cpp":  # the network's own torch residual is not used at inference
        import fpfast.embed.model as model

        def refuse(*a, **k):
            raise AssertionError("inference ran the network's torch residual")
        monkeypatch.setattr(model, "reference_residual", refuse)
    # triton has no residual kernel: it names the handcrafted op's backend, the residual takes cpp / torch
    # the cpp residual rounds its float32 sums in another order (1e-7 on the residual): float32 rounding
    np.testing.assert_allclose(emb.embed(x, backend=backend), ref, atol=1e-5)


def test_unshuffle_stem_embeds_odd_sizes_and_round_trips():
    from fpfast.embed import Embedder, ResidualEmbedNet
    from fpfast.embed.model import resolve_arch
    assert resolve_arch({"stem": "conv"}) == resolve_arch(None)  # the default is not written: old identities hold
    with pytest.raises(EmbedError, match="unknown stem"):
        resolve_arch({"stem": "pool"})
    torch.manual_seed(0)
    net = ResidualEmbedNet({"stem": "unshuffle", "widths": [4, 8], "blocks": [1, 1], "dim": 8}).eval()
    assert net.stem[0].in_channels == 12  # the 4 phases of each colour channel
    emb = Embedder(net, {"spec": SPEC.to_dict()})
    x = torch.randint(0, 256, (3, 33, 31, 3), dtype=torch.uint8)
    z = emb.embed(x)
    assert z.shape == (3, 8) and np.allclose(np.linalg.norm(z, axis=1), 1, atol=1e-5)
    back = Embedder.from_bytes(*emb.to_bytes())
    assert back.identity == emb.identity and back.arch["stem"] == "unshuffle"
    np.testing.assert_array_equal(back.embed(x), z)


def test_narrow_strided_shortcut_trains_on_channels_last_input():
    # the pretraining loop feeds channels-last batches; a strided 1x1 shortcut with 4 input channels
    # corrupted the heap in backward (torch 2.13 CPU) before its input was made contiguous. A child
    # process: a relapse crashes it, not the test session
    import subprocess
    import sys
    code = """if True:
        import torch
        from fpfast.embed import ResidualEmbedNet
        torch.manual_seed(0)
        net = ResidualEmbedNet({"widths": [4, 8], "blocks": [1, 1], "dim": 8})
        for _ in range(3):
            net(torch.rand(4, 16, 16, 3).permute(0, 3, 1, 2)).sum().backward()
        assert all(torch.isfinite(p.grad).all() for p in net.parameters() if p.grad is not None)
        print("ok")
    """
    r = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, timeout=300)
    assert r.returncode == 0 and r.stdout.strip() == "ok", (r.returncode, r.stderr[-2000:])


def test_shipped_network_fine_tunes_on_64px_images():
    # fine-tuning the shipped 8-wide network (`fpfast train` on a default gallery) on 64-px images
    # corrupted the heap in a strided shortcut's backward (8 input channels, channels-last, > 32 px;
    # torch 2.13 CPU, oneDNN issue 6035) and killed the process. A child process, as above
    import subprocess
    import sys
    code = """if True:
        import numpy as np
        from fpfast.embed import train_embedding
        from fpfast.embed.universal import load_card
        init = load_card()[0]
        rng = np.random.default_rng(0)
        imgs = [rng.integers(0, 256, (64, 64, 3), dtype=np.uint8) for _ in range(32)]
        emb, hist = train_embedding(imgs, [i % 2 for i in range(32)], init.config["spec"], init=init.plain(),
                                    epochs=2, batch_size=16)
        assert emb.arch["widths"] == init.arch["widths"] and np.isfinite(hist[-1]["loss"])
        print("ok")
    """
    r = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, timeout=300)
    assert r.returncode == 0 and r.stdout.strip() == "ok", (r.returncode, r.stderr[-2000:])


def test_inference_blocks_compute_in_place_the_same_values(embed_trained, embed_data):
    # without autograd the blocks ReLU and sum in place (fewer tensors); the values must not change
    emb = embed_trained[0]
    x = torch.from_numpy(np.stack(embed_data[1][0][:8])).permute(0, 3, 1, 2).float() / 255
    with torch.no_grad():
        fast = emb.net(x)
    with torch.enable_grad():
        ref = emb.net(x)
    assert ref.requires_grad and not fast.requires_grad
    np.testing.assert_array_equal(fast.numpy(), ref.detach().numpy())
