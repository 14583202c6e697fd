"""
pytest for the PyTorch reference train_sessa.py:  python -m pytest -q dev/test/test_reference.py
All model math here runs in float64, so the tolerances below are a few orders above float64 round-off
(1e-16 relative, grown by T-step chains and sums of a few hundred terms), and far below any real bug.
"""
import math
import os
import subprocess
import sys

import numpy as np
import pytest
import torch

ROOT = os.path.abspath(os.path.join(os.path.dirname(__file__), "..", ".."))
sys.path.insert(0, ROOT)
import train_sessa as ts  # noqa: E402

TOL = 1e-10  # float64 everywhere; observed errors are ~1e-15


def assert_close(name, got, want, tol=TOL):
    err = (got - want).abs().max().item()
    scale = want.abs().max().item()
    print(f"{name:10s} max abs err {err:.2e} (scale {scale:.2e}, tol {tol:.0e})")
    assert err <= tol * max(1.0, scale), name

# ----------------------------------------------------------------------------- the model


@pytest.mark.parametrize("name", ["gqa_rope", "mh1_norope", "odd_t", "gamma_hi"])
def test_parallel_equals_recurrent(name):
    """logits at every position: triangular solve over the sequence == one token at a time with caches"""
    model, B, T, _ = ts.reference_model(name)
    model = model.double()
    idx = torch.randint(0, model.cfg.vocab_size, (B, T), generator=torch.Generator().manual_seed(0))
    with torch.no_grad():
        parallel, _ = model(idx)
        caches = model.new_caches(B)
        recurrent = torch.stack([model.step(idx[:, t], caches) for t in range(T)], dim=1)
    assert_close("logits", recurrent, parallel)


def test_padded_vocab_rows_never_produce_logits():
    model, B, T, _ = ts.reference_model("gqa_rope")
    cfg = model.cfg
    idx = torch.randint(0, cfg.vocab_size, (B, T))
    with torch.no_grad():
        logits, _ = model(idx)
        model.wte[cfg.vocab_size:] = 100.0
        logits2, _ = model(idx)
    assert logits.shape == (B, T, cfg.vocab_size)
    assert torch.equal(logits, logits2)


def random_feedback_inputs(B=2, T=12, D=16, gamma_b=2.0, seed=0):
    g = torch.Generator().manual_seed(seed)
    r = lambda *s: torch.randn(*s, generator=g, dtype=torch.float64)  # noqa: E731
    return dict(f=r(B, T, D), qb=r(B, T, D), kb=r(B, T, D), abar=r(B, T, D),
                w_gamma=0.3 * r(D), gamma_b=torch.tensor([gamma_b], dtype=torch.float64))


def test_solve_equals_explicit_recurrence():
    """s_t = f_t + gamma_t sum_{j<t} alpha[t,j] s_j, written as a loop, vs the triangular solve"""
    x = random_feedback_inputs()
    alpha = ts.feedback_alpha(ts.feedback_logits(x["qb"], x["kb"]))
    gamma = ts.feedback_gamma(x["abar"], x["w_gamma"], x["gamma_b"], 0.999)
    s = ts.feedback_solve(x["f"], gamma, alpha)
    T = s.shape[1]
    assert torch.all(alpha[:, 0] == 0) and torch.all(alpha.triu() == 0)
    assert_close("row sums", alpha[:, 1:].sum(-1), torch.ones_like(alpha[:, 1:, 0]))
    loop = []
    for t in range(T):
        acc = sum((alpha[:, t, j, None] * loop[j] for j in range(t)), torch.zeros_like(x["f"][:, 0]))
        loop.append(x["f"][:, t] + gamma[:, t, None] * acc)
    assert_close("s", s, torch.stack(loop, dim=1))


def test_feedback_backward_matches_spec_formulas():
    """autograd through the feedback branch vs the closed-form backward of DESIGN.md section 2"""
    gamma_max = 0.999
    x = {k: v.requires_grad_() for k, v in random_feedback_inputs(gamma_b=3.0, seed=1).items()}
    f, qb, kb, abar, w_gamma, gamma_b = (x[k] for k in ("f", "qb", "kb", "abar", "w_gamma", "gamma_b"))
    B, T, D = f.shape
    Z = ts.feedback_logits(qb, kb)
    alpha = ts.feedback_alpha(Z)
    gamma = ts.feedback_gamma(abar, w_gamma, gamma_b, gamma_max)
    s = ts.feedback_solve(f, gamma, alpha)
    Z.retain_grad()
    gamma.retain_grad()
    gs = torch.randn(B, T, D, generator=torch.Generator().manual_seed(2), dtype=torch.float64)
    (s * gs).sum().backward()

    with torch.no_grad():
        # u_j = gs_j + sum_{t>j} gamma_t alpha[t,j] u_t, from t = T-1 down to 0
        u = torch.zeros_like(gs)
        for j in reversed(range(T)):
            u[:, j] = gs[:, j] + torch.einsum("bt,bt,btd->bd", gamma[:, j + 1:], alpha[:, j + 1:, j], u[:, j + 1:])
        c = alpha @ s                                                        # c_t = sum_{j<t} alpha[t,j] s_j
        dgamma = (u * c).sum(-1)                                             # u_t . c_t
        dZ = gamma[..., None] * alpha * (u @ s.transpose(1, 2) - dgamma[..., None])
        dqb = dZ @ kb / math.sqrt(D)
        dkb = dZ.transpose(1, 2) @ qb / math.sqrt(D)
        r = gamma_b + abar @ w_gamma
        dr = dgamma * gamma_max * (1 - torch.tanh(r) ** 2)
        dgamma_b = dr.sum().reshape(1)
        dw_gamma = torch.einsum("bt,btd->d", dr, abar)
        dabar = dr[..., None] * w_gamma

    assert gamma.mean() > 0.9  # gamma mostly near 1: the long feedback chain is exercised
    assert_close("u", f.grad, u)
    assert_close("dgamma", gamma.grad, dgamma)
    assert_close("dZ", Z.grad, dZ)
    assert_close("dqb", qb.grad, dqb)
    assert_close("dkb", kb.grad, dkb)
    assert_close("dw_gamma", w_gamma.grad, dw_gamma)
    assert_close("dgamma_b", gamma_b.grad, dgamma_b)
    assert_close("dabar", abar.grad, dabar)


def test_rope_matches_spec_formula():
    x = torch.randn(1, 5, 2, 8, dtype=torch.float64)
    y = ts.apply_rope(x, 3)
    t, i, h = 4, 1, 1  # position 3 + 1, pair 1, head 1
    th = (3 + t) * 10000 ** (-2 * i / 8)
    a, b = x[0, t, h, 2 * i], x[0, t, h, 2 * i + 1]
    want = torch.stack((a * math.cos(th) - b * math.sin(th), a * math.sin(th) + b * math.cos(th)))
    assert_close("rope", y[0, t, h, 2 * i:2 * i + 2], want)

# ----------------------------------------------------------------------------- files


def spec_layout(cfg):
    """[(name, shape)] in the checkpoint order of DESIGN.md section 4, written out independently of train_sessa.py"""
    L, D, H, Hkv, d = cfg.n_layer, cfg.d_model, cfg.n_head, cfg.n_kv_head, cfg.d_model // cfg.n_head
    out = [("wte", (cfg.padded_vocab, D)), ("ln_w", (L, D)), ("ln_b", (L, D)), ("in_w", (L, 2 * D, D)),
           ("in_b", (L, 2 * D)), ("q_w", (L, H * d, D)), ("q_b", (L, H * d)), ("k_w", (L, Hkv * d, D)),
           ("k_b", (L, Hkv * d)), ("v_w", (L, Hkv * d, D)), ("v_b", (L, Hkv * d)), ("fb_w", (L, 2 * D, D)),
           ("fb_b", (L, 2 * D))]
    out += [("o_w", (L, D, D))] if H > 1 else []
    return out + [("gamma_w", (L, D)), ("gamma_b", (L,)), ("out_w", (L, D, D)), ("out_b", (L, D)),
                  ("lnf_w", (D,)), ("lnf_b", (D,))]


def module_tensor(model, name):
    """the named DESIGN.md tensor, stacked over layers, read straight from the modules"""
    ls = model.layers
    per_layer = {"ln_w": lambda l: l.ln.weight, "ln_b": lambda l: l.ln.bias, "in_w": lambda l: l.lin_in.weight,
                 "in_b": lambda l: l.lin_in.bias, "q_w": lambda l: l.mixer.q.weight, "q_b": lambda l: l.mixer.q.bias,
                 "k_w": lambda l: l.mixer.k.weight, "k_b": lambda l: l.mixer.k.bias,
                 "v_w": lambda l: l.mixer.v.weight, "v_b": lambda l: l.mixer.v.bias,
                 "fb_w": lambda l: l.mixer.fb.weight, "fb_b": lambda l: l.mixer.fb.bias,
                 "o_w": lambda l: l.mixer.o.weight, "gamma_w": lambda l: l.mixer.gamma_w,
                 "gamma_b": lambda l: l.mixer.gamma_b[0], "out_w": lambda l: l.lin_out.weight,
                 "out_b": lambda l: l.lin_out.bias}
    if name in per_layer:
        return torch.stack([per_layer[name](l) for l in ls]).detach()
    return {"wte": model.wte, "lnf_w": model.lnf.weight, "lnf_b": model.lnf.bias}[name].detach()


def bf16_rne_bits(x):
    """float32 -> bf16 bits, round to nearest even, done on the integer bits (independent of torch)"""
    b = np.asarray(x, dtype="<f4").view("<u4").astype(np.uint64)
    return ((b + 0x7FFF + ((b >> 16) & 1)) >> 16).astype("<u2")


@pytest.mark.parametrize("name", ["gqa_rope", "mh1_norope"])
def test_checkpoint_layout_and_round_trip(tmp_path, name):
    model, _, _, _ = ts.reference_model(name)
    cfg = model.cfg
    p1, p2 = str(tmp_path / "m.bin"), str(tmp_path / "m_bf16.bin")
    ts.write_checkpoint(model, p1, 1)
    ts.write_checkpoint(model, p2, 2)
    h = np.fromfile(p1, dtype="<i4", count=256)
    assert list(h[:10]) == [20261122, 1, cfg.max_seq_len, cfg.vocab_size, cfg.n_layer, cfg.n_head,
                            cfg.n_kv_head, cfg.d_model, cfg.padded_vocab, cfg.use_rope]
    assert h[10:12].view("<f4").tolist() == [np.float32(0.999), np.float32(1e-5)] and not h[12:].any()
    assert np.fromfile(p2, dtype="<i4", count=2).tolist() == [20261122, 2]
    # every tensor at its DESIGN.md offset, fp32 exact and bf16 rounded to nearest even
    v1 = np.fromfile(p1, dtype="<f4", offset=1024)
    v2 = np.fromfile(p2, dtype="<u2", offset=1024)
    off = 0
    for pname, shape in spec_layout(cfg):
        want = module_tensor(model, pname).numpy()
        n = want.size
        assert want.shape == shape, pname
        assert np.array_equal(v1[off:off + n].reshape(shape), want), pname
        assert np.array_equal(v2[off:off + n], bf16_rne_bits(want.reshape(-1))), pname
        off += n
    assert off == v1.size == v2.size
    # read back
    m1, m2 = ts.read_checkpoint(p1), ts.read_checkpoint(p2)
    assert m1.cfg == cfg and m2.cfg == cfg
    for (pname, _), a, b, c in zip(spec_layout(cfg), model.parameters(), m1.parameters(), m2.parameters()):
        assert torch.equal(a, b), pname
        assert torch.equal(a.detach().to(torch.bfloat16).float(), c), pname


def test_debug_state_layout(tmp_path):
    ts.write_refs(str(tmp_path), ["odd_t"])
    model = ts.read_checkpoint(str(tmp_path / "odd_t_model.bin"))
    cfg, B, T, n = model.cfg, 3, 13, 5
    P = sum(p.numel() for p in model.parameters())
    path = str(tmp_path / "odd_t_debug.bin")
    assert os.path.getsize(path) == 1024 + 4 * (2 * B * T + B * T * cfg.vocab_size + 1 + P + n)
    h = np.fromfile(path, dtype="<i4", count=256)
    assert list(h[:5]) == [20261123, 1, B, T, n] and not h[10:].any()
    assert np.allclose(h[5:10].view("<f4"), [1e-3, 0.1, 0.9, 0.95, 1e-8], rtol=1e-7, atol=0)
    body = np.fromfile(path, dtype="<u1", offset=1024)
    ints = body[:8 * B * T].view("<i4")
    floats = body[8 * B * T:].view("<f4")
    inputs, targets = torch.from_numpy(ints[:B * T].astype(np.int64)), torch.from_numpy(ints[B * T:].astype(np.int64))
    logits, loss = floats[:B * T * cfg.vocab_size], floats[B * T * cfg.vocab_size]
    grads, losses = floats[B * T * cfg.vocab_size + 1:-n], floats[-n:]
    assert inputs.min() >= 0 and inputs.max() < cfg.vocab_size and targets.max() < cfg.vocab_size
    # the dump agrees with the fp32 checkpoint evaluated here in float64 (float32 rounding: rel 1e-6)
    with torch.no_grad():
        want_logits, want_loss = model.double()(inputs.view(B, T), targets.view(B, T))
    assert np.allclose(logits, want_logits.numpy().reshape(-1), rtol=1e-6, atol=1e-7)
    assert losses[0] == loss and abs(loss - want_loss.item()) < 1e-6
    assert losses[-1] < losses[0]  # 4 AdamW steps on one batch lower its loss
    assert not grads[cfg.vocab_size * cfg.d_model:cfg.padded_vocab * cfg.d_model].any()  # padded wte rows
    assert np.abs(grads).max() > 0


@pytest.mark.parametrize("damage, message", [
    (lambda b: b[:1000], "truncated"),
    (lambda b: b[:-2], "truncated or not matching"),
    (lambda b: np.int32(123).tobytes() + b[4:], "bad magic"),
    (lambda b: b[:4] + np.int32(7).tobytes() + b[8:], "unsupported version"),
    (lambda b: b[:4 * 5] + np.int32(3).tobytes() + b[4 * 6:], "not a multiple of n_kv_head"),
    (lambda b: b[:4 * 4] + np.int32(1 << 30).tobytes() + b[4 * 5:], "not matching its header"),  # huge L
])
def test_bad_checkpoint_errors(tmp_path, damage, message):
    model, _, _, _ = ts.reference_model("gqa_rope")
    path = str(tmp_path / "m.bin")
    ts.write_checkpoint(model, path)
    data = open(path, "rb").read()
    open(path, "wb").write(damage(data))
    with pytest.raises(SystemExit, match=message):
        ts.read_checkpoint(path)


def write_shard(path, tokens, version=1, n=None):
    h = np.zeros(256, dtype="<i4")
    h[:3] = [20240520, version, len(tokens) if n is None else n]
    with open(path, "wb") as fp:
        fp.write(h.tobytes())
        fp.write(np.asarray(tokens, dtype="<u2" if version == 1 else "<u4").tobytes())


def test_dataloader_and_shard_errors(tmp_path):
    tokens = np.arange(100) % 50
    write_shard(str(tmp_path / "a.bin"), tokens, version=2)
    loader = ts.DataLoader(str(tmp_path / "a.bin"), 2, 4, 50)
    x, y = loader.next_batch()
    assert x.tolist() == [[0, 1, 2, 3], [4, 5, 6, 7]] and y.tolist() == [[1, 2, 3, 4], [5, 6, 7, 8]]
    # shuffled: one epoch reads each of the (100-1)//4 = 24 rows once, in another order, then a new epoch begins
    write_shard(str(tmp_path / "b.bin"), np.arange(100))
    loader = ts.DataLoader(str(tmp_path / "b.bin"), 2, 4, 100, shuffle=True, seed=5)
    assert loader.steps_per_epoch == 12
    rows = torch.cat([loader.next_batch()[0][:, 0] // 4 for _ in range(12)]).tolist()
    assert sorted(rows) == list(range(24)) and rows != list(range(24)) and loader.epoch == 0
    loader.next_batch()
    assert loader.epoch == 1
    for i, (kw, message) in enumerate([(dict(tokens=tokens, n=101), "truncated"),
                                       (dict(tokens=tokens, version=3), "unsupported version"),
                                       (dict(tokens=tokens[:8]), "holds one batch")]):
        write_shard(str(tmp_path / f"bad{i}.bin"), **kw)
        with pytest.raises(SystemExit, match=message):
            ts.DataLoader(str(tmp_path / f"bad{i}.bin"), 2, 4, 50)
    write_shard(str(tmp_path / "big.bin"), np.full(100, 50))
    with pytest.raises(SystemExit, match="out of range"):
        ts.DataLoader(str(tmp_path / "big.bin"), 2, 4, 50).next_batch()
    with pytest.raises(SystemExit, match="no shard matches"):
        ts.DataLoader(str(tmp_path / "none_*.bin"), 2, 4, 50)


def test_train_eval_sample_command_lines(tmp_path, monkeypatch, capsys):
    """main() in-process: a few steps on a repetitive shard, the loss falls, one line per step ends in tok/s,
    the checkpoint written by the trainer evaluates and samples (in tmp_path: no default data/ or tokenizer)"""
    monkeypatch.chdir(tmp_path)

    def run(*argv):
        monkeypatch.setattr(sys, "argv", ["train_sessa.py", "--threads", "2", *argv])
        ts.main()
        return capsys.readouterr().out

    write_shard("train.bin", np.tile(np.arange(32), 64))
    out = run("-i", "train.bin", "-j", "train.bin", "-o", "out", "-e", "d1w32h2k1", "-V", "32", "-b", "2", "-t", "16",
              "-d", "64", "-x", "20", "-l", "1e-2", "-v", "10", "-m", "2", "-s", "0")
    steps = [l for l in out.splitlines() if l.startswith("step ") and "tok/s" in l]
    assert len(steps) == 20 and all(l.endswith("tok/s") for l in steps), out
    first, last = (float(l.split("| loss ")[1].split()[0]) for l in (steps[0], steps[-1]))
    assert last < first - 1.0, out  # a 32-token cycle is easy to learn
    log = open("out/main.log").read().splitlines()
    assert log[0].startswith("step 0 val_loss ") and log[1].startswith("step 1 train_loss ")
    ckpt = "out/model_00000020.bin"
    assert run("--eval", ckpt, "-j", "train.bin", "-b", "2", "-t", "16", "-m", "2").startswith("val loss ")
    sm = run("--sample", ckpt, "-g", "5")
    assert len(sm.split()) == 5 and all(0 <= int(t) < 32 for t in sm.split())
    tok = np.zeros(256, dtype="<i4")
    tok[:4] = [20240328, 2, 32, 31]  # 32 one-byte tokens 'A'.. , end-of-text 31
    open("tok.bin", "wb").write(tok.tobytes() + b"".join(bytes([1, 65 + i]) for i in range(32)))
    sm = run("--sample", ckpt, "-g", "7", "-k", "tok.bin").strip()
    assert len(sm) == 7 and all("A" <= ch <= "`" for ch in sm)
    with pytest.raises(SystemExit, match="bad magic"):
        run("--eval", "train.bin", "-j", "train.bin")
    with pytest.raises(SystemExit, match="multiple of B.T"):
        run("-i", "train.bin", "-e", "d1w32h2k1", "-V", "32", "-b", "2", "-t", "16", "-d", "40")


@pytest.mark.skipif(not os.access(os.path.join(ROOT, "train_sessa"), os.X_OK), reason="./train_sessa not built")
def test_checkpoint_of_the_c_trainer(tmp_path):
    """./train_sessa trains 2 steps and saves; this model, read from its checkpoint, gives the same val loss
    on the same batches (fp32 both sides, different summation order: agreement to ~1e-6, tolerance 1e-5)"""
    write_shard(str(tmp_path / "train.bin"), np.random.default_rng(0).integers(0, 64, 2000))
    write_shard(str(tmp_path / "val.bin"), np.random.default_rng(1).integers(0, 64, 200))
    cmd = [os.path.join(ROOT, "train_sessa"), "-i", "train.bin", "-j", "val.bin", "-o", "out", "-e", "d1w32h2k1",
           "-V", "64", "-b", "2", "-t", "16", "-x", "2", "-v", "2", "-m", "3", "-s", "0"]
    out = subprocess.run(cmd, cwd=tmp_path, capture_output=True, text=True, env={**os.environ, "OMP_NUM_THREADS": "2"})
    assert out.returncode == 0, out.stdout + out.stderr
    c_val = float([l for l in out.stdout.splitlines() if l.startswith("step 2 | val loss")][0].split()[-1])
    model = ts.read_checkpoint(str(tmp_path / "out" / "model_00000002.bin"))
    loader = ts.DataLoader(str(tmp_path / "val.bin"), 2, 16, 64)
    py_val = ts.evaluate(model, loader, 3, torch.autocast("cpu", enabled=False), torch.device("cpu"))
    print(f"val loss: C {c_val:.6f}  PyTorch {py_val:.6f}")
    assert abs(c_val - py_val) < 1e-5
