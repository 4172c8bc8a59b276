"""``python -m cert_desk`` and the ``cert-desk`` launcher."""

from __future__ import annotations

import sys


def main() -> int:
    if len(sys.argv) == 3 and sys.argv[1] == "--probe-pkcs11-library":  # a bundled cert-desk's own probe
        from cert_desk.nss.tools import probe_main

        probe_main()
    from cert_desk.cli import run

    return run(sys.argv[1:])


if __name__ == "__main__":
    sys.exit(main())
