"""python -m ensemble create OUT MODEL_DIR [MODEL_DIR ...] [--weights W ...] [--vote soft|hard] [--multibox DIR]

Combine model directories trained separately (other processes, other machines) into an
ensemble directory; the members are checked for matching classes and proposal settings.
Members trained each with its own MultiBox vote on the boxes of one of them: --multibox.
"""
from __future__ import annotations

import argparse
import os

from core.errors import UserError, run_cli


def main(argv=None) -> int:
    p = argparse.ArgumentParser(prog="python -m ensemble", description="Ensembles of detector models.")
    sub = p.add_subparsers(dest="command", required=True)
    c = sub.add_parser("create", help="write OUT/ensemble.json listing member model directories")
    c.add_argument("out")
    c.add_argument("members", nargs="+", metavar="MODEL_DIR")
    c.add_argument("--weights", type=float, nargs="+", help="one weight per member (default: equal)")
    c.add_argument("--vote", choices=("soft", "hard"), default="soft")
    c.add_argument("--multibox", metavar="DIR",
                   help="the MultiBox directory every member's proposals come from, e.g. MODEL_DIR/multibox "
                        "(default: the members' own, which must then be the same)")
    args = p.parse_args(argv)

    from . import load_predictor, write_ensemble
    if args.weights and len(args.weights) != len(args.members):
        raise UserError(f"{len(args.weights)} weights for {len(args.members)} members")
    os.makedirs(args.out, exist_ok=True)
    def rel(path):
        return os.path.relpath(os.path.abspath(path), os.path.abspath(args.out))
    write_ensemble(args.out, [rel(m) for m in args.members], args.weights, args.vote,
                   rel(args.multibox) if args.multibox else None)
    try:
        predictor = load_predictor(args.out)          # validates members now, not at detect time
    except UserError:
        os.unlink(os.path.join(args.out, "ensemble.json"))
        raise
    boxes = f", proposals from {args.multibox}" if args.multibox else ""
    print(f"{args.out}: ensemble of {len(predictor)} ({args.vote} vote), classes {', '.join(predictor.classes)}{boxes}")
    return 0


if __name__ == "__main__":
    run_cli(main)
