"""``python -m cert_desk`` and the ``cert-desk`` launcher."""

from __future__ import annotations

import sys


def main() -> int:
    from cert_desk.cli import run

    return run(sys.argv[1:])


if __name__ == "__main__":
    sys.exit(main())
