"""User-facing errors: the CLIs print these as one line and exit non-zero."""
from __future__ import annotations

import sys


class UserError(Exception):
    """A mistake in the user's input (a file, an argument, a dataset): no traceback."""


class DatasetError(UserError):
    """A dataset that cannot be read: names the file and the problem."""


def run_cli(main) -> None:
    """Run ``main()`` and turn a UserError or Ctrl-C into a message and an exit code."""
    try:
        code = main()
    except UserError as exc:
        print(f"error: {exc}", file=sys.stderr)
        code = 2
    except BrokenPipeError:             # e.g. piped into `head`: not an error of ours
        sys.stderr.close()
        code = 0
    except KeyboardInterrupt:
        print("interrupted", file=sys.stderr)
        code = 130
    sys.exit(code or 0)
