"""`--gpu-calibration FILE.json`: malformed, non-UTF-8 or non-finite measurements are one line
naming the file and the field (JSON's Infinity and NaN parse, so they are checked)."""
import json
import math
from pathlib import Path

import pytest

from tests.bad_input import refuses

GOOD = json.loads((Path(__file__).parents[2] / "baselines" / "measurements" / "h200-2026-11-28.json").read_text())


def with_value(where: tuple, value) -> bytes:
    data = json.loads(json.dumps(GOOD))
    table = data
    for key in where[:-1]:
        table = table[key]
    table[where[-1]] = value
    return json.dumps(data).encode()


FIRST_TOKEN = next(iter(GOOD["tokens_ms"]))
CASES = [
    (json.dumps(GOOD).encode()[:-1] + b"\xff}", r"cal.json: not UTF-8 text \(byte \d+\)"),
    (b'{"kernels": [', r"cal.json:1:14: invalid JSON: Expecting value"),
    (with_value(("kernels", 0, "eager_us"), math.inf), r"field 'kernels\[0\].eager_us' must be a positive number, got inf"),
    (with_value(("kernels", 0, "graph_us"), math.nan), r"field 'kernels\[0\].graph_us' must be a positive number, got nan"),
    (with_value(("kernels", 0, "flops"), math.inf), r"cal.json: field 'kernels\[0\].flops' must be a positive number, got inf"),
    (with_value(("kernels", 0, "bytes"), 10 ** 400), r"field 'kernels\[0\].bytes' must be a positive number"),
    (with_value(("tokens_ms", FIRST_TOKEN), -math.inf), rf"field 'tokens_ms.{FIRST_TOKEN}' must be a positive number, got -inf"),
]


@pytest.mark.parametrize("raw, message", CASES, ids=[m[:40] for _, m in CASES])
def test_bad_calibrations_are_one_line_errors(tmp_path, capsys, raw, message):
    path = tmp_path / "cal.json"
    path.write_bytes(raw)
    refuses(capsys, ["sim", "--model", "gpt2", "--phase", "decode", "--kv", "4", "--no-functional",
                     "--gpu", "h200", "--gpu-calibration", path], message)
