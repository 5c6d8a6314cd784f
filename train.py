#!/usr/bin/env python
"""Train a detector (MultiBox proposals, then the GoogLeNet region classifier) from a recipe.

    python train.py --config configs/bccd.yaml --out runs/bccd
    torchrun --nproc-per-node 2 train.py --config configs/bccd.yaml --out runs/bccd

Under torchrun the batch sizes in the recipe (train.images_per_batch,
proposals.multibox.batch_size) are global: each of the N processes takes 1/N of every
minibatch, so the recipe means the same optimization whatever N is.
"""
from pipeline.cli.train import cli

if __name__ == "__main__":
    cli()
