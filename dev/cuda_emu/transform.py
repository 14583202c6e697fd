"""
Source transform that lets g++ compile the project's CUDA sources against dev/cuda_emu/cuda_emu.h:
  kernel<<<grid, block[, smem[, stream]]>>>(args)   ->  emu_launch(grid, block[, smem[, stream]], [=]() { kernel(args); })
  extern __shared__ [__align__(n)] T name[];         ->  T *name = (T *)emu_dyn_smem;   (the launch's dynamic buffer)
  static __shared__                                  ->  __shared__                      (cuda_emu.h makes it static)
Everything else is left as it is, so the emulator runs the real kernels.
usage: python3 transform.py SRC DST
"""
import re
import sys


def find_close(s, j):
    """index of the ')' that closes the '(' at s[j]"""
    depth = 0
    while True:
        if s[j] == '(':
            depth += 1
        elif s[j] == ')':
            depth -= 1
            if depth == 0:
                return j
        j += 1


def rewrite_launches(s):
    out, i = [], 0
    while True:
        k = s.find('<<<', i)
        if k < 0:
            out.append(s[i:])
            return ''.join(out)
        # the kernel: an identifier, with template arguments <...> or not, right before <<<
        m = re.search(r'([A-Za-z_]\w*(?:<[^<>;]*>)?)\s*$', s[i:k])
        if m is None:
            raise SystemExit('transform.py: no kernel name before <<< at offset %d' % k)
        e = s.find('>>>', k)
        config = s[k + 3:e]
        j = e + 3
        while s[j].isspace():
            j += 1
        if s[j] != '(':
            raise SystemExit('transform.py: no argument list after >>> at offset %d' % e)
        close = find_close(s, j)
        out.append(s[i:i + m.start(1)])
        out.append('emu_launch(%s, [=]() { %s(%s); })' % (config, m.group(1), s[j + 1:close]))
        i = close + 1


def transform(s):
    s = s.replace('static __shared__', '__shared__')
    s = re.sub(r'extern\s+__shared__\s+(?:__align__\(\d+\)\s+)?([\w ]*?\w)\s+(?:__align__\(\d+\)\s+)?(\w+)\s*\[\s*\]\s*;',
               r'\1 *\2 = (\1 *)emu_dyn_smem;', s)
    if 'extern __shared__' in s:
        raise SystemExit('transform.py: an extern __shared__ declaration it does not know')
    return rewrite_launches(s)


if __name__ == '__main__':
    if len(sys.argv) != 3:
        raise SystemExit('usage: python3 transform.py SRC DST')
    with open(sys.argv[1]) as f:
        src = f.read()
    with open(sys.argv[2], 'w') as f:
        f.write(transform(src))
