"""Every simulation report carries GPU comparison columns (issue: GPU baselines)."""
import json
from pathlib import Path

import pytest

from tessel.cli import main

H200_RUN = Path(__file__).parents[2] / "baselines" / "measurements" / "h200-2026-11-28.json"


def test_json_has_gpu_rows_with_consistent_ratios(capsys, tmp_path, tiny_hf):
    out = tmp_path / "r.json"
    assert main(["sim", "--model", str(tiny_hf), "--seq", "8", "--no-functional", "--gpu", "t4,h200",
                 "--json", str(out)]) == 0
    report = json.loads(out.read_text())
    assert set(report["gpu"]) == {"gpu-t4", "gpu-h200"}
    for row in report["gpu"].values():
        assert row["speedup"] == pytest.approx(row["time_s"] / report["time_s"])
        assert row["energy_efficiency"] == pytest.approx(row["energy_j"] / report["energy_j"])
    assert "GPU baselines" in capsys.readouterr().out


def test_calibration_file_adds_a_calibrated_row(capsys, tmp_path, tiny_hf):
    out = tmp_path / "r.json"
    assert main(["sim", "--model", str(tiny_hf), "--seq", "8", "--no-functional", "--gpu", "none",
                 "--gpu-calibration", str(H200_RUN), "--json", str(out)]) == 0
    assert list(json.loads(out.read_text())["gpu"]) == ["gpu-h200@2026-11-28"]


@pytest.mark.parametrize("argv, message", [
    (["--gpu", "b200"], "--gpu: unknown GPU 'b200'"),
    (["--gpu-calibration", "missing.json"], "missing.json"),
])
def test_bad_gpu_arguments_exit_2(capsys, tiny_hf, argv, message):
    code = main(["sim", "--model", str(tiny_hf), "--seq", "4", "--no-functional", *argv])
    err = capsys.readouterr().err
    assert code == 2 and message in err and err.count("\n") == 1, err
