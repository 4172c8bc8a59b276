"""Coverage-guided fuzzing of cert-desk's parsers with atheris (``pip install atheris``), for long local runs.

The targets and their contract are tests/test_fuzz.py's :data:`TARGETS` and :func:`check`; the first
byte of an input picks the target, the rest is its input. A crash is saved by libFuzzer as
``crash-<sha1>``; turn it into a regression file with::

    python tests/fuzz_atheris.py --save crash-<sha1> short-name   # -> tests/data/fuzz/<target>-short-name.bin

Run from the repository root: ``python tests/fuzz_atheris.py [libFuzzer options, e.g. -max_total_time=600]``.
"""

from __future__ import annotations

import sys
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parent.parent))

from tests.test_fuzz import DATA, TARGETS, check

NAMES = sorted(TARGETS)


def encode_input(target: str, data: bytes) -> bytes:
    """The atheris input that runs ``target`` on ``data``."""
    return bytes([NAMES.index(target)]) + data


def one_input(data: bytes) -> None:
    if data:
        check(NAMES[data[0] % len(NAMES)], data[1:])


def main() -> None:
    if sys.argv[1:2] == ["--save"]:
        crash, name = Path(sys.argv[2]), sys.argv[3]
        raw = crash.read_bytes()
        target = NAMES[raw[0] % len(NAMES)]
        (DATA / f"{target}-{name}.bin").write_bytes(raw[1:])
        return
    import atheris  # type: ignore[import-untyped]

    atheris.instrument_all()  # coverage of cert_desk (imported above) guides the fuzzer
    atheris.Setup(sys.argv, one_input)
    atheris.Fuzz()


if __name__ == "__main__":
    main()
