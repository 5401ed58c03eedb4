"""``python -m superpos`` and the ``superpos`` script; the command line itself is :mod:`superpos.cli`."""
from __future__ import annotations

import sys

try:  # a Ctrl-C while these import is one line too, as in main()
    from . import cli
    from .cli import build_parser, method_fields  # noqa: F401 - importable from here, as before
except KeyboardInterrupt:
    print("superpos: interrupted", file=sys.stderr)
    sys.exit(130)


def main(argv: list[str] | None = None) -> int:
    """:func:`superpos.cli.main`, its parser built by this module's ``build_parser`` (so that replacing
    ``superpos.__main__.build_parser`` reaches it)."""
    return cli.main(argv, parser_factory=build_parser)


if __name__ == "__main__":
    try:
        sys.exit(main())
    except KeyboardInterrupt:  # a Ctrl-C in the instant before main() or after it returned
        print("superpos: interrupted", file=sys.stderr)
        sys.exit(130)
