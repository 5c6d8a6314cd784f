"""Running under torchrun: one process per rank, sharing the work and the file system.

    torchrun --nproc-per-node N train.py ...      (gloo on the CPU, nccl on CUDA)

torchrun sets RANK, WORLD_SIZE, LOCAL_RANK and the rendezvous variables; without them
everything here is a no-op for a single process (rank 0 of 1), so the library code calls
these functions unconditionally. Conventions every stage follows:

* work lists (images to cache, to detect, to train on) are split with ``shard``:
  rank r takes items r, r+N, r+2N, ... -- balanced, and the same split on every run;
* rank 0 alone writes shared files (checkpoints, model dirs, results, reports);
  the others wait at a ``barrier`` where they must read what it wrote;
* results are brought together with ``gather`` (picklable Python objects).
"""
from __future__ import annotations

import os


def world_size() -> int:
    return int(os.environ.get("WORLD_SIZE", "1"))


def rank() -> int:
    return int(os.environ.get("RANK", "0"))


def is_main() -> bool:
    return rank() == 0


def active() -> bool:
    import torch.distributed as dist
    return dist.is_available() and dist.is_initialized()


def init(device):
    """Join the process group when launched by torchrun; return the device of this rank
    (with CUDA, the GPU numbered LOCAL_RANK)."""
    import torch
    import torch.distributed as dist
    device = torch.device(device)
    if world_size() <= 1 or active():
        return device
    if device.type == "cuda":
        device = torch.device("cuda", int(os.environ.get("LOCAL_RANK", "0")))
        torch.cuda.set_device(device)
    dist.init_process_group("nccl" if device.type == "cuda" else "gloo")
    return device


def shutdown(failed: bool = False) -> None:
    """Leave the process group. After a normal run every rank first waits for the others:
    a rank that tears down its gloo connections while a peer is still finishing the last
    collective can abort that peer ("terminate called without an active exception", seen
    once in CI). After a failure (``failed``) it leaves at once, as the others may never come."""
    if active():
        import torch.distributed as dist
        if not failed:
            dist.barrier()
        dist.destroy_process_group()


def shard(items: list) -> list:
    """This rank's share of ``items``."""
    return list(items)[rank()::world_size()] if world_size() > 1 else list(items)


def barrier() -> None:
    if active():
        import torch.distributed as dist
        dist.barrier()


def gather(obj) -> list:
    """Every rank's ``obj``, in rank order (on every rank)."""
    if not active():
        return [obj]
    import torch.distributed as dist
    out = [None] * world_size()
    dist.all_gather_object(out, obj)
    return out


def unshard(parts: list[list]) -> list:
    """Undo ``shard``: the gathered per-rank lists back in the original order."""
    out = []
    for i in range(max((len(p) for p in parts), default=0)):
        out.extend(p[i] for p in parts if i < len(p))
    return out
