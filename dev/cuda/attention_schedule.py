"""
The wave-tail model behind the Hopper attention's block order (llmc/attention_sm90.cuh atth_block_order, forward
versions 7, 8 and backward versions 5-7): how busy the GPU's SMs stay when the CTAs of a causal attention kernel are
started in launch order, each on the first SM that is free, one CTA per SM (all our warp-specialized kernels), a
CTA taking time in proportion to its key tiles (forward, dQ kernel) or work items (dK/dV kernel). It prints, per
benchmark shape (dev/cuda/bench_attention.py) and kernel, the SMs' busy share in the old order (each head's blocks
in turn, longest first) and in the new one (the longest blocks of all heads of an L2 section first; the forward
also LEAN), and the gain (old time / new time).
No GPU: a model, not a measurement (bench_attention.py measures); the timing of the real CTAs differs (the diagonal
tiles, a block's fixed cost: 0.5-1 tile here, the forward's empty warpgroups: LEAN, about half a block's time).
usage: python3 dev/cuda/attention_schedule.py
"""
import heapq
import math

SMS = 132                   # H200
L2_BUDGET = 32 << 20        # atth_l2_budget
SHAPES = [(B, T, H, Hkv, d)
          for (B, T) in [(16, 1024), (4, 4096), (1, 16384)]
          for (H, Hkv, d) in [(12, 12, 64), (12, 4, 64), (8, 8, 128), (8, 2, 128)]]


def block_order(nb, nh, sec):
    """atth_block_order for every CTA L of the 1-d grid: (rank, head-batch pair)"""
    out = []
    for L in range(nb * nh):
        s0 = L // (sec * nb) * sec
        n, r = min(sec, nh - s0), L - s0 * nb
        out.append((r // n, s0 + r % n))
    return out


def section(bytes_per_unit, unit, nh):
    """atth_section: sections of equal size, each within the budget"""
    units, nu = max(1, L2_BUDGET // bytes_per_unit), nh // unit
    nsec = -(-nu // units)
    return -(-nu // nsec) * unit


def makespan(durations):
    """each CTA, in launch order, to the SM that is free first"""
    free = [0.0] * SMS
    for t in durations:
        heapq.heappush(free, heapq.heappop(free) + t)
    return max(free)


def kernels(B, T, H, Hkv, d):
    """(name, blocks per pair, pairs, section, duration of the block of rank r) of the forward and backward"""
    grp = H // Hkv
    bq = 192 if d == 64 else 128          # forward version 7: 3 consumer warpgroups at d = 64
    nbf = math.ceil(T / bq)
    nbb = math.ceil(T / 128)
    def fwd(r, lean):
        i0 = (nbf - 1 - r) * bq
        tiles = (min(i0 + bq, T) - 1) // 128 + 1
        empty = i0 + bq > T and (T - i0) <= bq - 64   # some warpgroup of the block has no rows
        return 0.5 + tiles * (0.5 if (lean and empty) else 1.0)
    return [
        ('forward (v5 -> v7)', nbf, B * H, section(T * d * 4, grp, B * H), fwd),
        ('backward dK/dV', nbb, B * Hkv, section(grp * T * d * 4, 1, B * Hkv),
         lambda r, lean: 1.0 + grp * math.ceil((T - 128 * r) / 64)),
        ('backward dQ', nbb, B * H, section(T * d * 4, grp, B * H),
         lambda r, lean: 1.0 + 0.75 * ((min((nbb - 1 - r) * 128 + 128, T) - 1) // 64 + 1)),
    ]


def main():
    print('%-26s %-28s %5s %5s %8s %8s %6s' % ('shape B T H Hkv d', 'kernel', 'CTAs', 'sec', 'old', 'new', 'gain'))
    for shape in SHAPES:
        for name, nb, nh, sec, dur in kernels(*shape):
            old = [dur(r, False) for r, _ in block_order(nb, nh, 1)]
            new = [dur(r, True) for r, _ in block_order(nb, nh, sec)]
            print('%-26s %-28s %5d %5d %8.3f %8.3f %6.3f' % (
                ' '.join(str(x) for x in shape), name, nb * nh, sec, sum(old) / SMS / makespan(old),
                sum(new) / SMS / makespan(new), makespan(old) / makespan(new)))


if __name__ == '__main__':
    main()
