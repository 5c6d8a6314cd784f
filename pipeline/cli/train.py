"""Train a detector (MultiBox proposals, then the GoogLeNet region classifier) from a recipe.

    python train.py --config configs/bccd.yaml --out runs/bccd
    torchrun --nproc-per-node 2 train.py --config configs/bccd.yaml --out runs/bccd

Under torchrun the batch sizes in the recipe (train.images_per_batch,
proposals.multibox.batch_size) are global: each of the N processes takes 1/N of every
minibatch, so the recipe means the same optimization whatever N is.
"""
from __future__ import annotations

import argparse
import logging

from core.errors import run_cli


def parse_args(argv=None):
    p = argparse.ArgumentParser(description=__doc__.splitlines()[0],
                                formatter_class=argparse.ArgumentDefaultsHelpFormatter)
    p.add_argument("--config", required=True, help="YAML recipe (configs/*.yaml)")
    p.add_argument("--out", required=True, help="model directory to write")
    p.add_argument("--stage", choices=("all", "multibox", "classifier"), default="all",
                   help="multibox: only the proposal network; classifier: assume MultiBox is trained")
    p.add_argument("--resume", action="store_true", help="continue from the checkpoints in --out")
    p.add_argument("--seed", type=int, help="override train.seed (and multibox.seed)")
    p.add_argument("--ensemble", type=int, default=0, metavar="N",
                   help="train N members (seeds seed..seed+N-1) into OUT/member-K, sharing MultiBox")
    p.add_argument("--dataset", help="override data.dataset")
    p.add_argument("--set", nargs="+", default=[], metavar="KEY=VALUE", dest="overrides",
                   help="override recipe keys, e.g. --set train.epochs=24 model.image_scale=600 "
                        "(values read as YAML; recorded in OUT/config.yaml)")
    p.add_argument("--cache-dir", help="proposal cache (default: ~/.cache/googlenet-detector)")
    p.add_argument("--workers", type=int, default=2, help="selective-search processes")
    p.add_argument("--device", default="cpu", help="cpu or cuda")
    p.add_argument("--max-steps", type=int, help="stop each stage after this many steps (smoke tests)")
    p.add_argument("--no-progress", action="store_true", help="no progress bars")
    return p.parse_args(argv)


def main(argv=None) -> int:
    args = parse_args(argv)
    from core import distributed
    # under torchrun rank 0 speaks for all
    logging.basicConfig(level=logging.INFO if distributed.is_main() else logging.ERROR,
                        format="%(asctime)s %(levelname)s: %(message)s", datefmt="%H:%M:%S")
    from pipeline.train import run_training
    run_training(args)
    return 0



def cli() -> None:
    """The console script's entry point."""
    run_cli(main)
