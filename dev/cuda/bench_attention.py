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
--versions F:B,F:B,...: also time these Hopper forward:backward version pairs (SESSA_ATT_FWD_VERSION,
SESSA_ATT_BWD_VERSION; dev/cuda/attention_*.cu; default VERSIONS, '' for none) against the same SDPA timings, one
row per pair and shape after the trainer's (those rows skip the mma.sync timings; a pair that runs the same
kernels as one before it at that head width is skipped), then per version its worst ratio over the shapes and per
shape the fastest version: the one GPU run that picks the trainer's defaults.
usage (from the repo root, on a GPU machine):
    make -C dev/cuda bin/attention_backward && python3 dev/cuda/bench_attention.py [--quick] [--markdown] [--versions 5:4,7:5]
"""
import argparse
import os
import subprocess
import sys

# B*T = 16384 tokens; d=64 with H=12 (Hkv 12 and 4), d=128 with H=8 (Hkv 8 and 2); then d12's training shape
# (T = 8192: where version 15 switches from 9 to 14 at d = 64, between the measured lengths at d = 128)
SHAPES = [(B, T, H, Hkv, d)
          for (B, T) in [(16, 1024), (4, 4096), (2, 8192), (1, 16384)]
          for (H, Hkv, d) in [(12, 12, 64), (12, 4, 64), (8, 8, 128), (8, 2, 128)]] + [(8, 1024, 12, 12, 64)]
QUICK = [(8, 1024, 12, 12, 64), (8, 1024, 12, 4, 64), (4, 2048, 8, 2, 128)]   # the original table
# beside the trainer's 11:15 (dev/cuda/attention_*.cu; forward 11 is 9, 7 or 5 by shape; backward 15 is 14 at d = 64
# from T = 8192 on and at d = 128 from T = 16384 on, else 9): backward 9 (7 with the dQ kernel's consumers
# software-pipelined, at d = 64; 7 at d = 128) and 14 (dQ in the dK/dV kernel, added at L2 in key-block order by
# writer warps' TMA bulk reductions; at d = 128 each consumer warpgroup makes a column half), 17 (14 with 2 staging
# buffers per warpgroup; at d = 128 2 stages of Q, dO); the older ones (forward 5, 7, 9; backward 4-8, 10-13, 16)
# through --versions
VERSIONS = '11:9,11:14,11:17'


def backward15(d, T):
    """the backward version 15 runs (atth_bwd_version15 in llmc/attention_sm90_bwd.cuh: ATTH_BWD_T14, ATTH_BWD_T128)"""
    return 14 if T >= (8192 if d == 64 else 16384) else 9


def same_kernels(pair, d, T):
    """the pair as the kernels it runs at head width d and length T (backward 15: backward15; at d = 128: forward 6
    is 5, 8 is 7, 10 is 9; backward 8-11 are 7, the pipelined consumers being d = 64's only)"""
    f, b = pair
    if b == 15:
        b = backward15(d, T)
    if d != 128:
        return (f, b)
    return ({6: 5, 8: 7, 10: 9}.get(f, f), {8: 7, 9: 7, 10: 7, 11: 7}.get(b, b))


def fail(msg):
    print('bench_attention.py: ' + msg, file=sys.stderr)
    sys.exit(1)


def flops_fwd(B, T, H, d):
    return 4.0 * B * H * d * T * (T + 1) / 2


def ours(binary, shape, pair=None):
    env, extra = dict(os.environ), []
    if pair:   # a Hopper version pair, without the mma.sync timings
        env['SESSA_ATT_FWD_VERSION'], env['SESSA_ATT_BWD_VERSION'] = str(pair[0]), str(pair[1])
        extra = ['nomma']
    r = subprocess.run([binary, 'shape'] + [str(x) for x in shape] + extra, capture_output=True, text=True, env=env)
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
    ap.add_argument('--versions', default=VERSIONS, help='Hopper forward:backward version pairs to time too (default %(default)s)')
    a = ap.parse_args()
    try:
        pairs = [tuple(int(x) for x in p.split(':')) for p in a.versions.split(',') if p]
    except ValueError:
        pairs = [()]
    if any(len(p) != 2 for p in pairs):
        fail('--versions takes forward:backward pairs such as 5:4,7:5, not %r' % a.versions)
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
    worst, by_version, best = 1e9, {}, []   # by_version: ('fwd'|'bwd', kernel) -> worst ratio; best: per shape
    for shape in (QUICK if a.quick else SHAPES):
        B, T, H, Hkv, d = shape
        sf, sb = sdpa(torch, do_bench, shape)
        ff = flops_fwd(B, T, H, d)
        fastest, seen = {}, set()
        for pair in [None] + pairs:
            if pair is not None:
                if same_kernels(pair, d, T) in seen:
                    continue
                seen.add(same_kernels(pair, d, T))
            of, ob, kern, om, bkern, obm = ours(a.binary, shape, pair)
            tflops = lambda f, ms: '%.0f' % (f / ms / 1e9) if ms > 0 else '-'
            row = [B, T, H, Hkv, d, '%.3f' % of, tflops(ff, of), '%.3f' % sf, tflops(ff, sf), '%.2f' % (sf / of),
                   '%.3f' % ob, tflops(2.5 * ff, ob), '%.3f' % sb, tflops(2.5 * ff, sb), '%.2f' % (sb / ob),
                   kern, tflops(ff, om), bkern, tflops(2.5 * ff, obm)]
            if pair is None:
                worst = min(worst, sf / of, sb / ob)
                if kern.startswith('wgmma-v') and bkern.startswith('wgmma-v'):   # the trainer's pair: not again
                    seen.add(same_kernels((int(kern[7:]), int(bkern[7:])), d, T))
            for kind, k, ratio in (('fwd', kern, sf / of), ('bwd', bkern, sb / ob)):
                by_version[(kind, k)] = min(by_version.get((kind, k), 1e9), ratio)
                if ratio > fastest.get(kind, ('', 0))[1]:
                    fastest[kind] = (k, ratio)
            if a.markdown:
                print('| ' + ' | '.join(str(x) for x in row) + ' |')
            else:
                print(' '.join('%11s' % x for x in row))
            sys.stdout.flush()
        best.append((shape, fastest))
    print('# worst ratio (SDPA time / ours, fwd or bwd): %.2f' % worst)
    if pairs:
        for (kind, k), r in sorted(by_version.items()):
            print('# %s %s: worst ratio over the shapes %.2f' % (kind, k, r))
        for shape, fastest in best:
            print('# B=%d T=%d H=%d Hkv=%d d=%d fastest: fwd %s (%.2f), bwd %s (%.2f)'
                  % (shape + fastest['fwd'] + fastest['bwd']))


if __name__ == '__main__':
    main()
