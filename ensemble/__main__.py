"""python -m ensemble create OUT MODEL_DIR [MODEL_DIR ...] [--weights W ...] [--vote soft|hard]

Combine model directories trained separately (other processes, other machines) into an
ensemble directory; the members are checked for matching classes and proposal settings.
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
    args = p.parse_args(argv)

    from . import load_predictor, write_ensemble
    if args.weights and len(args.weights) != len(args.members):
        raise UserError(f"{len(args.weights)} weights for {len(args.members)} members")
    os.makedirs(args.out, exist_ok=True)
    rel = [os.path.relpath(os.path.abspath(m), os.path.abspath(args.out)) for m in args.members]
    write_ensemble(args.out, rel, args.weights, args.vote)
    try:
        predictor = load_predictor(args.out)          # validates members now, not at detect time
    except UserError:
        os.unlink(os.path.join(args.out, "ensemble.json"))
        raise
    print(f"{args.out}: ensemble of {len(predictor)} ({args.vote} vote), classes {', '.join(predictor.classes)}")
    return 0


if __name__ == "__main__":
    run_cli(main)
