"""Train a detector (MultiBox proposals, then the GoogLeNet region classifier).

    python train.py --dataset DIR --out runs/mine --minutes 60     # your data, default recipe
    python train.py --config configs/bccd.yaml --out runs/bccd      # a recipe
    torchrun --nproc-per-node 2 train.py --config configs/bccd.yaml --out runs/bccd

Under torchrun the batch sizes in the recipe (train.images_per_batch,
proposals.multibox.batch_size) are global: each of the N processes takes 1/N of every
minibatch, so the recipe means the same optimization whatever N is.
"""
from __future__ import annotations

import argparse
import logging

from core.errors import run_cli

EPILOG = """\
With --dataset and no --config, configs/default.yaml is adapted to the data (classes,
image and object sizes; printed at the start and saved in OUT/config.yaml), validation
mAP is measured every 2 epochs on the dataset's val split or on a held-out 15%% of the
training images, and the best epoch is kept. --minutes fits the number of epochs to a
time budget (MultiBox, proposals, classifier and heads together). Watch OUT/history.csv
and OUT/curves.png while it runs.
"""


def parse_args(argv=None):
    p = argparse.ArgumentParser(description=__doc__.splitlines()[0], epilog=EPILOG,
                                formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("--dataset", help="dataset root (VOC, ILSVRC DET or COCO layout); overrides data.dataset")
    p.add_argument("--config", help="YAML recipe (configs/*.yaml); default: configs/default.yaml adapted "
                                    "to --dataset")
    p.add_argument("--out", required=True, help="model directory to write")
    p.add_argument("--minutes", type=float, help="time budget for the whole run; sets the number of epochs "
                                                 "(default: the recipe's epochs)")
    p.add_argument("--set", nargs="+", default=[], metavar="KEY=VALUE", dest="overrides",
                   help="override recipe keys, e.g. --set train.epochs=24 model.image_scale=600 "
                        "(values read as YAML; recorded in OUT/config.yaml)")
    p.add_argument("--resume", action="store_true", help="continue from the checkpoints in --out")
    p.add_argument("--seed", type=int, help="override train.seed and multibox.seed (default: the recipe's, 0)")
    p.add_argument("--ensemble", type=int, default=0, metavar="N",
                   help="train N members (seeds seed..seed+N-1) into OUT/member-K, sharing MultiBox")
    p.add_argument("--stage", choices=("all", "multibox", "classifier"), default="all",
                   help="multibox: only the proposal network; classifier: assume MultiBox is trained "
                        "(default: all)")
    p.add_argument("--cache-dir", help="proposal cache (default: ~/.cache/googlenet-detector)")
    p.add_argument("--workers", type=int, default=2, help="selective-search processes (default: 2)")
    p.add_argument("--device", default="cpu", help="cpu or cuda (default: cpu)")
    p.add_argument("--max-steps", type=int, help="stop each stage after this many steps (smoke tests)")
    p.add_argument("--no-progress", action="store_true", help="no progress bars")
    p.add_argument("--tensorboard", action="store_true",
                   help="also write TensorBoard scalars to OUT/tensorboard (pip install -e '.[tensorboard]')")
    args = p.parse_args(argv)
    if not args.config and not args.dataset:
        p.error("give --dataset (the default recipe adapts to it) or --config")
    if args.minutes is not None and args.minutes <= 0:
        p.error("--minutes must be positive")
    return args


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
