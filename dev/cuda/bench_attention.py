"""
Side-by-side benchmark: our causal GQA attention (llmc/attention.cuh, through `dev/cuda/bin/attention_backward
shape B T H Hkv d`) against torch.nn.functional.scaled_dot_product_attention(is_causal=True) in bf16, same shapes,
same GPU, one run. Our forward is the trainer's choice (the Hopper wgmma kernel of llmc/attention_sm90.cuh on an
sm_90 GPU for d = 64, 128; else mma.sync: column "fwd kernel"), and so is our backward (the Hopper wgmma kernels of
llmc/attention_sm90_bwd.cuh there: column "bwd kernel"); "mma fwd" / "mma bwd" are the mma.sync kernels at the same
shape (SESSA_ATT_SM90=0 makes all of them mma.sync). Time is the median (ours: median of 7 timings of 20 calls; SDPA: triton.testing.do_bench's
median); TFLOP/s count the causal FLOPs once: forward 4 B H d T(T+1)/2, backward 2.5x that; ratio = SDPA time /
our time (> 1: we are faster). SDPA gets the same memory layout as ours ((B,T,H,d) seen as (B,H,T,d)) and
enable_gqa=True for Hkv < H; PyTorch picks its backend.
usage (from the repo root, on a GPU machine):
    make -C dev/cuda bin/attention_backward && python3 dev/cuda/bench_attention.py [--quick] [--markdown]
"""
import argparse
import os
import subprocess
import sys

# B*T = 16384 tokens; d=64 with H=12 (Hkv 12 and 4), d=128 with H=8 (Hkv 8 and 2)
SHAPES = [(B, T, H, Hkv, d)
          for (B, T) in [(16, 1024), (4, 4096), (1, 16384)]
          for (H, Hkv, d) in [(12, 12, 64), (12, 4, 64), (8, 8, 128), (8, 2, 128)]]
QUICK = [(8, 1024, 12, 12, 64), (8, 1024, 12, 4, 64), (4, 2048, 8, 2, 128)]   # the original table


def fail(msg):
    print('bench_attention.py: ' + msg, file=sys.stderr)
    sys.exit(1)


def flops_fwd(B, T, H, d):
    return 4.0 * B * H * d * T * (T + 1) / 2


def ours(binary, shape):
    r = subprocess.run([binary, 'shape'] + [str(x) for x in shape], capture_output=True, text=True)
    if r.returncode != 0:
        fail('%s shape %s failed (exit %d): %s' % (binary, shape, r.returncode, (r.stderr + r.stdout).strip()))
    line = [l for l in r.stdout.splitlines() if l.startswith('ours ')]
    if not line:
        fail('no "ours" line from %s: %s' % (binary, r.stdout))
    f = line[-1].split()
    if len(f) < 16:
        fail('%s printed an old "ours" line (rebuild it): %s' % (binary, line[-1]))
    # fwd ms, bwd ms, fwd kernel, mma.sync fwd ms, bwd kernel, mma.sync bwd ms
    return float(f[6]), float(f[8]), f[10], float(f[11]), f[13], float(f[14])


def sdpa(torch, do_bench, shape):
    B, T, H, Hkv, d = shape
    F = torch.nn.functional
    g = torch.Generator(device='cuda').manual_seed(0)
    def mk(h):
        return torch.randn(B, T, h, d, device='cuda', dtype=torch.bfloat16, generator=g).transpose(1, 2).requires_grad_()
    q, k, v = mk(H), mk(Hkv), mk(Hkv)
    gqa = dict(enable_gqa=True) if Hkv != H else {}
    fwd = lambda: F.scaled_dot_product_attention(q, k, v, is_causal=True, **gqa)
    out = fwd()
    dout = torch.randn_like(out)
    bwd = lambda: torch.autograd.grad(out, (q, k, v), dout, retain_graph=True)
    return do_bench(fwd, return_mode='median'), do_bench(bwd, return_mode='median')


def main():
    ap = argparse.ArgumentParser()
    ap.add_argument('--quick', action='store_true', help="only the issue's three original shapes")
    ap.add_argument('--markdown', action='store_true', help='a markdown table (for README.md)')
    ap.add_argument('--binary', default=os.path.join(os.path.dirname(os.path.abspath(__file__)), 'bin', 'attention_backward'))
    a = ap.parse_args()
    if not os.path.exists(a.binary):
        fail('%s not found: build it with make -C dev/cuda bin/attention_backward' % a.binary)
    try:
        import torch
        from triton.testing import do_bench
    except ImportError as e:
        fail('needs PyTorch and Triton (%s)' % e)
    if not torch.cuda.is_available():
        fail('no CUDA GPU visible to PyTorch: this benchmark needs one')
    print('# %s, PyTorch %s' % (torch.cuda.get_device_name(0), torch.__version__))
    hdr = ['B', 'T', 'H', 'Hkv', 'd', 'ours fwd ms', 'TFLOP/s', 'SDPA fwd ms', 'TFLOP/s', 'ratio',
           'ours bwd ms', 'TFLOP/s', 'SDPA bwd ms', 'TFLOP/s', 'ratio', 'fwd kernel', 'mma fwd TFLOP/s',
           'bwd kernel', 'mma bwd TFLOP/s']
    if a.markdown:
        print('| ' + ' | '.join(hdr) + ' |')
        print('|' + '---|' * len(hdr))
    else:
        print(' '.join('%11s' % h for h in hdr))
    worst = 1e9
    for shape in (QUICK if a.quick else SHAPES):
        B, T, H, Hkv, d = shape
        of, ob, kern, om, bkern, obm = ours(a.binary, shape)
        sf, sb = sdpa(torch, do_bench, shape)
        ff = flops_fwd(B, T, H, d)
        row = [B, T, H, Hkv, d, '%.3f' % of, '%.0f' % (ff / of / 1e9), '%.3f' % sf, '%.0f' % (ff / sf / 1e9), '%.2f' % (sf / of),
               '%.3f' % ob, '%.0f' % (2.5 * ff / ob / 1e9), '%.3f' % sb, '%.0f' % (2.5 * ff / sb / 1e9), '%.2f' % (sb / ob),
               kern, '%.0f' % (ff / om / 1e9), bkern, '%.0f' % (2.5 * ff / obm / 1e9)]
        worst = min(worst, sf / of, sb / ob)
        if a.markdown:
            print('| ' + ' | '.join(str(x) for x in row) + ' |')
        else:
            print(' '.join('%11s' % x for x in row))
        sys.stdout.flush()
    print('# worst ratio (SDPA time / ours, fwd or bwd): %.2f' % worst)


if __name__ == '__main__':
    main()
