"""
pytest for the feedback-off baseline (f0) and the influence-by-distance probe (scripts/influence.py):
    python -m pytest -q dev/test/test_memory_probe.py
Model math in float64: tolerances are orders above float64 round-off and far below any real bug.
"""
import os
import subprocess
import sys

import numpy as np
import pytest
import torch
import torch.nn as nn

ROOT = os.path.abspath(os.path.join(os.path.dirname(__file__), "..", ".."))
sys.path.insert(0, ROOT)
sys.path.insert(0, os.path.join(ROOT, "scripts"))
import train_sessa as ts  # noqa: E402
import influence  # noqa: E402


def tiny_model(no_feedback, L=2, D=16, H=2, Hkv=1, V=29, T=10, seed=0, gamma_b=1.5):
    """float64 model with O(1) attention/feedback logits (Linear weights N(0, 1/sqrt(D)), as the reference dumps)"""
    torch.manual_seed(seed)
    cfg = ts.SessaConfig(T, V, L, H, Hkv, D, ts.pad_vocab(V), no_feedback=no_feedback)
    model = ts.SessaLM(cfg)
    with torch.no_grad():
        nn.init.normal_(model.wte, std=1.0)
        for layer in model.layers:
            m = layer.mixer
            for lin in (layer.lin_in, m.q, m.k, m.v, m.fb, m.o, layer.lin_out):
                if lin is not None:
                    nn.init.normal_(lin.weight, std=1 / D ** 0.5)
            if m.gamma_b is not None:
                m.gamma_b.fill_(gamma_b)
                m.gamma_w.normal_(std=0.1)
    return model.double().eval()

# ----------------------------------------------------------------------------- the f0 model


def test_f0_descriptor_and_errors():
    cfg = ts.config_from_descriptor("d4w256h4f0", 256, 64)
    assert (cfg.n_layer, cfg.d_model, cfg.n_head, cfg.no_feedback) == (4, 256, 4, 1)
    assert ts.config_from_descriptor("d4w256h4", 256, 64).no_feedback == 0
    for bad in ("d4w256h4f1", "d4w256h4f0x", "d4w256h4x", "d4f"):
        with pytest.raises(SystemExit, match="unknown suffix"):
            ts.config_from_descriptor(bad, 256, 64)


def test_f0_parameter_table_and_count():
    sessa, f0 = tiny_model(0), tiny_model(1)
    names = [n for n, _ in ts.checkpoint_tensors(f0)]
    assert not {"fb_w", "fb_b", "gamma_w", "gamma_b"} & set(names)
    assert names == [n for n, _ in ts.checkpoint_tensors(sessa) if n not in ("fb_w", "fb_b", "gamma_w", "gamma_b")]
    D, L = 16, 2
    assert ts.num_parameters(sessa.cfg) - ts.num_parameters(f0.cfg) == L * (2 * D * D + 2 * D + D + 1)
    assert sum(p.numel() for p in f0.parameters()) == ts.num_parameters(f0.cfg)


def test_f0_is_sessa_with_zero_gamma():
    """s = f: an f0 model gives the logits of the Sessa model with the same shared weights and gamma = 0
    (w_gamma = 0, gamma_b = 0, so gamma_t = gamma_max tanh(0) = 0), in the parallel and the recurrent form"""
    sessa, f0 = tiny_model(0), tiny_model(1, seed=1)
    with torch.no_grad():
        for layer in sessa.layers:
            layer.mixer.gamma_w.zero_()
            layer.mixer.gamma_b.zero_()
    missing = f0.load_state_dict(sessa.state_dict(), strict=False)
    assert not missing.missing_keys and all(".fb." in k or "gamma" in k for k in missing.unexpected_keys)
    idx = torch.randint(0, 29, (2, 10), generator=torch.Generator().manual_seed(3))
    with torch.no_grad():
        a, _ = sessa(idx)
        b, _ = f0(idx)
        caches = f0.new_caches(2)
        c = torch.stack([f0.step(idx[:, t], caches) for t in range(10)], dim=1)
    assert (a - b).abs().max() < 1e-12 and (c - b).abs().max() < 1e-12
    # and the feedback matters when gamma != 0 (the comparison is not vacuous)
    sessa_fb = tiny_model(0)
    with torch.no_grad():
        assert (sessa_fb(idx)[0] - b).abs().max() > 1e-2


def test_f0_checkpoint_header_and_round_trip(tmp_path):
    model = tiny_model(1).float()
    path = str(tmp_path / "f0.bin")
    ts.write_checkpoint(model, path)
    h = np.fromfile(path, dtype="<i4", count=256)
    assert h[12] == 1 and not h[13:].any()
    assert os.path.getsize(path) == 1024 + 4 * ts.num_parameters(model.cfg)
    back = ts.read_checkpoint(path)
    assert back.cfg == model.cfg and back.cfg.no_feedback == 1
    for a, b in zip(model.parameters(), back.parameters()):
        assert torch.equal(a, b)
    # slot 12 holds only 0 or 1
    data = bytearray(open(path, "rb").read())
    data[48:52] = np.int32(2).tobytes()
    open(path, "wb").write(bytes(data))
    with pytest.raises(SystemExit, match="no_feedback must be 0"):
        ts.read_checkpoint(path)


@pytest.mark.skipif(not os.access(os.path.join(ROOT, "train_sessa"), os.X_OK), reason="./train_sessa not built")
def test_c_trainer_f0_checkpoint_and_bad_suffix(tmp_path):
    """./train_sessa -e d1w32h2f0 trains and saves an f0 checkpoint (header slot 12 = 1) that PyTorch reads and
    evaluates to the C trainer's val loss (fp32 both sides: ~1e-6, tolerance 1e-5); a bad suffix is an error"""
    def shard(path, toks):
        h = np.zeros(256, dtype="<i4")
        h[:3] = [20240520, 1, len(toks)]
        open(path, "wb").write(h.tobytes() + np.asarray(toks, dtype="<u2").tobytes())
    shard(str(tmp_path / "train.bin"), np.random.default_rng(0).integers(0, 64, 2000))
    shard(str(tmp_path / "val.bin"), np.random.default_rng(1).integers(0, 64, 200))
    base = [os.path.join(ROOT, "train_sessa"), "-i", "train.bin", "-j", "val.bin", "-o", "out", "-V", "64",
            "-b", "2", "-t", "16", "-x", "2", "-v", "2", "-m", "3", "-s", "0"]
    env = {**os.environ, "OMP_NUM_THREADS": "1"}
    out = subprocess.run(base + ["-e", "d1w32h2f0"], cwd=tmp_path, capture_output=True, text=True, env=env)
    assert out.returncode == 0, out.stdout + out.stderr
    c_val = float([l for l in out.stdout.splitlines() if l.startswith("step 2 | val loss")][0].split()[-1])
    path = str(tmp_path / "out" / "model_00000002.bin")
    assert np.fromfile(path, dtype="<i4", count=13)[12] == 1
    model = ts.read_checkpoint(path)
    assert model.cfg.no_feedback == 1
    py_val = ts.evaluate(model, ts.DataLoader(str(tmp_path / "val.bin"), 2, 16, 64), 3,
                         torch.autocast("cpu", enabled=False), torch.device("cpu"))
    assert abs(c_val - py_val) < 1e-5, (c_val, py_val)
    bad = subprocess.run(base + ["-e", "d1w32h2f1", "-o", "out2"], cwd=tmp_path, capture_output=True, text=True, env=env)
    assert bad.returncode != 0 and "unknown suffix 'f1'" in bad.stdout + bad.stderr, bad.stdout + bad.stderr

# ----------------------------------------------------------------------------- the probe


def unit_vectors(gen, B, D):
    """the draws of influence.probe_batch, in its order"""
    r = torch.randn((B, D), generator=gen, dtype=torch.float64)
    return r / r.norm(dim=-1, keepdim=True)


def fd_gradient(fn, x, b, t, r, eps=1e-6):
    """central differences of r . fn(x)[b, t] with respect to every element of x[b] -> (T, D)"""
    g = torch.zeros_like(x[b])
    with torch.no_grad():
        for j in range(x.shape[1]):
            for i in range(x.shape[2]):
                xp, xm = x.clone(), x.clone()
                xp[b, j, i] += eps
                xm[b, j, i] -= eps
                g[j, i] = ((fn(xp)[b, t] - fn(xm)[b, t]) @ r) / (2 * eps)
    return g


@pytest.mark.parametrize("no_feedback", [0, 1])
def test_probe_against_finite_differences(no_feedback):
    """every norm the probe reports (whole stack and each layer, every k) equals the norm of a central-difference
    gradient of the same scalar r . out_t. Float64 with eps 1e-6: truncation ~eps^2 |f'''| ~1e-12, rounding
    ~1e-16/eps = 1e-10, so rtol 1e-6 (observed ~1e-9) and atol 1e-9 for the exact zeros (none expected: k <= t)"""
    model = tiny_model(no_feedback)
    B, T, K = 2, 10, 6
    idx = torch.randint(0, 29, (B, T), generator=torch.Generator().manual_seed(5))
    ts_ = torch.tensor([9, 7])
    res = influence.probe_batch(model, idx, ts_, K, torch.Generator().manual_seed(11))
    gen = torch.Generator().manual_seed(11)
    x0 = model.wte[idx].detach()
    with torch.no_grad():
        _, xs = influence.stack_forward(model, x0)
    fns = [("stack", lambda x: influence.stack_forward(model, x)[0], x0)] + \
          [(f"layer{l}", layer, xs[l]) for l, layer in enumerate(model.layers)]
    rs = {name: unit_vectors(gen, B, model.cfg.d_model) for name, _, _ in fns}
    worst = 0.0
    for name, fn, x in fns:
        assert res[name].shape == (B, K + 1)
        for b in range(B):
            t = int(ts_[b])
            g = fd_gradient(fn, x, b, t, rs[name][b])
            want = torch.stack([g[t - k].norm() for k in range(K + 1)])
            err = (res[name][b] - want).abs()
            assert (err <= 1e-6 * want + 1e-9).all(), (name, b, res[name][b], want)
            assert (g[t + 1:].abs().max() if t + 1 < T else 0.0) < 1e-9   # causal: nothing from the future
            worst = max(worst, (err / want.clamp_min(1e-30)).max().item())
    print(f"probe vs finite differences: max rel err {worst:.2e}")
    assert res["stack"][:, 1:].min() > 1e-8   # the gradients are not trivially zero


def test_probe_distance_errors(tmp_path):
    h = np.zeros(256, dtype="<i4")
    h[:3] = [20240520, 1, 400]
    open(tmp_path / "val.bin", "wb").write(h.tobytes() + (np.arange(400) % 29).astype("<u2").tobytes())
    model = tiny_model(0)
    loader = ts.DataLoader(str(tmp_path / "val.bin"), 2, 10, 29)
    with pytest.raises(SystemExit, match="probe distance K=10 must be in"):
        influence.run_probe(model, loader, 10, 4)
    with pytest.raises(SystemExit, match="--jmin 5 must be in"):
        influence.run_probe(model, loader, 5, 4, jmin=5)
    k, mean, fits = influence.run_probe(model, loader, 9, 4)
    assert len(k) == 10 and set(mean) == {"stack", "layer0", "layer1"} and "power_law" in fits["stack"]
    ckpt = str(tmp_path / "m.bin")
    ts.write_checkpoint(model.float(), ckpt)
    cmd = [sys.executable, os.path.join(ROOT, "scripts", "influence.py"), ckpt, "-j", str(tmp_path / "val.bin"),
           "-t", "10", "-b", "2", "-n", "4", "-o", str(tmp_path / "i.csv")]
    out = subprocess.run(cmd + ["-K", "10"], capture_output=True, text=True)
    assert out.returncode != 0 and "probe distance -K 10 must be in [0, T)" in out.stderr, out.stderr
    out = subprocess.run(cmd + ["-K", "8", "--plot", str(tmp_path / "i.png")], capture_output=True, text=True)
    assert out.returncode == 0, out.stderr
    k2, mean2 = influence.read_csv(str(tmp_path / "i.csv"))
    assert list(k2) == list(range(9)) and os.path.getsize(tmp_path / "i.png") > 1000


def test_fits_recover_known_decays():
    k = np.arange(2, 200)
    f = influence.fit_decay(k, 3.0 * k ** -1.5)
    assert abs(f["power_law"]["exponent_p"] - 1.5) < 1e-9 and f["power_law"]["r2_log"] > 1 - 1e-12
    f = influence.fit_decay(k, 2.0 * np.exp(-k / 10.0))
    assert abs(f["exponential"]["decay_length"] - 10.0) < 1e-9 and f["exponential"]["r2_log"] > 1 - 1e-12
    assert f["power_law"]["r2_log"] < 0.99   # and the wrong law fits worse
