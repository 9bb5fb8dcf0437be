"""Fuzz the user-facing parsers outside the test suite: N mutated inputs per parser.

    .venv/bin/python tools/fuzz_parsers.py 100000            # every parser
    .venv/bin/python tools/fuzz_parsers.py 100000 .tbin      # one

Each input is written to a file and run as the command line would (tests/fuzz/targets.py);
anything but a project user error is a failure, printed with the input that caused it
(hypothesis shrinks it first). Prints inputs run, user errors and seconds per parser.
"""
from __future__ import annotations

import sys
import tempfile
import time
from pathlib import Path

from hypothesis import HealthCheck, given, settings

sys.path.insert(0, str(Path(__file__).parents[1]))
from tests.fuzz.targets import TARGETS_BY_SUFFIX  # noqa: E402
from tessel.errors import USER_ERRORS  # noqa: E402


def fuzz(suffix: str, count: int, folder: Path) -> tuple[int, int, float]:
    inputs, run = TARGETS_BY_SUFFIX[suffix]
    ran = refused = 0
    path = folder / f"fuzz{suffix}"

    @settings(max_examples=count, deadline=None, database=None, derandomize=False,
              suppress_health_check=list(HealthCheck))
    @given(data=inputs())
    def check(data: bytes) -> None:
        nonlocal ran, refused
        ran += 1
        try:
            run(path, data)
        except USER_ERRORS:        # run() swallows these; counted for the report only
            refused += 1

    start = time.perf_counter()
    check()
    return ran, refused, time.perf_counter() - start


def main(argv: list[str]) -> int:
    count = int(argv[0]) if argv else 100_000
    suffixes = argv[1:] or sorted(TARGETS_BY_SUFFIX)
    with tempfile.TemporaryDirectory() as tmp:
        for suffix in suffixes:
            ran, _, seconds = fuzz(suffix, count, Path(tmp))
            print(f"{suffix}: {ran:,} inputs, no exception other than the project's user errors "
                  f"({seconds:.0f} s)", flush=True)
    return 0


if __name__ == "__main__":
    sys.exit(main(sys.argv[1:]))
