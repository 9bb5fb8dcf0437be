"""Fuzzing in the suite: mutated `.graph`, `.tasm` and `.tbin` files give a result or one of
the project's user errors, never another exception (tests/fuzz/targets.py). A few hundred
inputs per parser here; `tools/fuzz_parsers.py` runs 10^5 and more outside the suite."""
from __future__ import annotations

import pytest
from hypothesis import HealthCheck, given, settings

from tests.fuzz.targets import TARGETS_BY_SUFFIX

SETTINGS = settings(max_examples=300, deadline=None, database=None,
                    suppress_health_check=[HealthCheck.too_slow, HealthCheck.function_scoped_fixture])


@pytest.mark.slow      # hundreds of files per parser
@pytest.mark.parametrize("suffix", sorted(TARGETS_BY_SUFFIX))
def test_mutated_files_give_a_result_or_a_user_error(suffix, tmp_path):
    inputs, run = TARGETS_BY_SUFFIX[suffix]

    @SETTINGS
    @given(data=inputs())
    def check(data: bytes) -> None:
        run(tmp_path / f"fuzz{suffix}", data)

    check()
