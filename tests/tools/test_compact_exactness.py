"""tools/compact_exactness.py refuses a target or phase it cannot run in one usage line."""
from __future__ import annotations

import importlib.util
import sys
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parents[2]
spec = importlib.util.spec_from_file_location("compact_exactness", ROOT / "tools" / "compact_exactness.py")
tool = importlib.util.module_from_spec(spec)
sys.modules[spec.name] = tool
spec.loader.exec_module(tool)


@pytest.mark.parametrize("argv", [["--targets", "gpu"], ["--phases", "prefill"],
                                  ["--phases", "decode-0"], ["--phases", "train-8"]])
def test_bad_arguments_are_one_line_usage_errors(argv, capsys):
    with pytest.raises(SystemExit) as exit_:
        tool.main(argv)
    last = capsys.readouterr().err.strip().splitlines()[-1]
    assert exit_.value.code == 2 and f"error: {argv[0]}" in last
