"""Entry-point plumbing shared by every script: run ``main`` and turn expected
failures (``UserError``) into a one-paragraph message and a non-zero exit."""

import sys
import textwrap

from util.core.errors import UserError


def format_error(err):
    """Return the message printed for an expected failure, wrapped to 100 columns."""
    # never split a word: file paths must stay whole (and copyable), also at their hyphens
    body = "\n".join(textwrap.fill(p, 100, break_on_hyphens=False, break_long_words=False) if len(p) > 100 else p
                     for p in str(err).split("\n"))
    return "error: " + body


def run_main(main, argv=None):
    """Call ``main(argv)``; print ``UserError`` messages cleanly and exit with their code."""
    try:
        code = main(argv)
    except UserError as err:
        print(format_error(err), file=sys.stderr)
        sys.exit(err.exit_code)
    except KeyboardInterrupt:
        print("interrupted", file=sys.stderr)
        sys.exit(130)
    sys.exit(code or 0)
