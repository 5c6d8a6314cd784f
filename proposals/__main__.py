"""python -m proposals report --dataset DIR --split NAME --method {ss,multibox,combined}"""
from __future__ import annotations

import argparse
import logging

from core.errors import run_cli


def parse_args(argv=None):
    p = argparse.ArgumentParser(prog="python -m proposals", description="Region proposals: quality report.")
    sub = p.add_subparsers(dest="command", required=True)
    r = sub.add_parser("report", help="recall@0.5/0.7, ABO, boxes and seconds per image",
                       description="Compute (or read from the cache) proposals for a split and report their quality.")
    r.add_argument("--dataset", required=True)
    r.add_argument("--split", required=True)
    r.add_argument("--method", required=True, choices=("ss", "multibox", "combined"))
    r.add_argument("--config", help="YAML recipe whose 'proposals' section to use (default: built-in defaults)")
    r.add_argument("--model", help="model or ensemble dir whose config and MultiBox to use")
    r.add_argument("--multibox", metavar="DIR", help="MultiBox model dir (default: <model>/multibox)")
    r.add_argument("--top-k", type=int, metavar="N", help="MultiBox boxes kept (default: the config's multibox_top_k)")
    r.add_argument("--cache-dir", help="proposal cache (default: ~/.cache/googlenet-detector)")
    r.add_argument("--workers", type=int, default=2, help="selective-search processes (default 2)")
    r.add_argument("--device", default="cpu")
    r.add_argument("--json", metavar="OUT")
    r.add_argument("--plot", metavar="PNG", help="recall against the number of proposals")
    return p.parse_args(argv)


def main(argv=None) -> int:
    args = parse_args(argv)
    logging.basicConfig(level=logging.ERROR, format="%(levelname)s: %(message)s")
    import os

    from core.config import Config, load_config
    from core.datasets import load_dataset
    from core.errors import UserError
    from core.fileio import write_json
    from core.images import read_image

    from .cache import proposal_source
    from .report import plot_recall, proposal_report

    model_dir = None
    if args.model:
        from core.modeldir import member_dirs
        model_dir = member_dirs(args.model)[0]     # an ensemble's members share their proposals
        cfg = load_config(os.path.join(model_dir, "config.yaml"))
    elif args.config:
        cfg = load_config(args.config)
    else:
        cfg = Config()
    cfg.proposals.method = args.method
    if args.top_k is not None:
        if args.top_k < 1:
            raise UserError(f"--top-k must be at least 1, got {args.top_k}")
        cfg.proposals.multibox_top_k = args.top_k
    multibox_dir = args.multibox or (os.path.join(model_dir, "multibox") if model_dir else None)
    dataset = load_dataset(args.dataset, args.split)
    source = proposal_source(cfg.proposals, multibox_dir, args.device, args.cache_dir, workers=args.workers)
    paths = [r.path for r in dataset.images]
    source.prepare(paths)
    boxes, seconds = zip(*(source.propose(read_image(p)) for p in paths)) if paths else ((), ())
    report = proposal_report(args.method, [r.boxes for r in dataset.images], list(boxes), list(seconds),
                             [r.labels for r in dataset.images], [dataset.display_name(c) for c in dataset.classes])
    print(report.format())
    if args.json:
        write_json(args.json, report.to_json())
    if args.plot:
        plot_recall([report], args.plot)
    return 0


if __name__ == "__main__":
    run_cli(main)
