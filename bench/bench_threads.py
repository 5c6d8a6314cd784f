#!/usr/bin/env python
"""Two trainings at once: one thread each, or one job with two threads?

    python bench/bench_threads.py [--steps 6]

Times a GoogLeNet training step (width 0.5, batch of 2 images of 416 x 544, SGD) three
ways on an otherwise idle machine: alone with 2 threads, alone with 1 thread, and two
1-thread processes side by side. Writes bench/results/bench_threads.md. This is why the
ablation's screening rows ran two at a time with OMP_NUM_THREADS=1.
"""
from __future__ import annotations

import argparse
import os
import subprocess
import sys
import time

ROOT = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
sys.path.insert(0, ROOT)


def step_seconds(threads: int, steps: int) -> float:
    """Median seconds per training step after 2 warm-up steps."""
    import torch

    from networks.googlenet import build_googlenet
    torch.set_num_threads(threads)
    torch.manual_seed(0)
    net = build_googlenet("googlenet", 4, width=0.5).train()
    opt = torch.optim.SGD(net.parameters(), lr=0.001)
    x, target = torch.randn(2, 3, 416, 544), torch.tensor([1, 2])
    times = []
    for i in range(steps + 2):
        t = time.perf_counter()
        logits, aux = net(x)
        loss = torch.nn.functional.cross_entropy(logits, target) + sum(
            0.3 * torch.nn.functional.cross_entropy(a, target) for a in aux)
        opt.zero_grad()
        loss.backward()
        opt.step()
        if i >= 2:
            times.append(time.perf_counter() - t)
    return sorted(times)[len(times) // 2]


def _child(threads: int, steps: int) -> subprocess.Popen:
    return subprocess.Popen([sys.executable, __file__, "--child", str(threads), "--steps", str(steps)],
                            stdout=subprocess.PIPE, text=True)


def main():
    p = argparse.ArgumentParser(description=__doc__.splitlines()[0],
                                formatter_class=argparse.ArgumentDefaultsHelpFormatter)
    p.add_argument("--steps", type=int, default=6, help="timed steps per measurement")
    p.add_argument("--child", type=int, help=argparse.SUPPRESS)
    args = p.parse_args()
    if args.child:
        print(step_seconds(args.child, args.steps))
        return
    alone = {n: float(_child(n, args.steps).communicate()[0]) for n in (2, 1)}
    pair = [_child(1, args.steps) for _ in range(2)]
    side_by_side = [float(c.communicate()[0]) for c in pair]
    rows = [("alone, 2 threads", alone[2], 1 / alone[2]), ("alone, 1 thread", alone[1], 1 / alone[1]),
            ("two 1-thread jobs side by side (each)", max(side_by_side), sum(1 / s for s in side_by_side))]
    lines = [f"# Thread layouts, {time.strftime('%Y-%m-%d')}, {os.cpu_count()} CPUs",
             "written by `python bench/bench_threads.py`: a GoogLeNet training step (width 0.5, 2 images "
             "416 x 544, SGD), median of the timed steps", "",
             "| layout | s per step | steps per s, all jobs |", "|---|---|---|"]
    lines += [f"| {name} | {s:.3f} | {rate:.2f} |" for name, s, rate in rows]
    from ablation import write_markdown
    write_markdown(os.path.join(ROOT, "bench", "results", "bench_threads.md"), lines)
    print("\n".join(lines))


if __name__ == "__main__":
    main()
