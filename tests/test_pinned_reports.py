"""Pinned outputs: gpt2 prefill-128 and decode-kv-128 on every target, byte for byte.

Restructuring must leave programs, cycles, energy, logits and reports exactly as they are.
For each (target, phase) this stores the `tessel sim --json` report, the printed report and
the SHA-256 of the compiled `.tbin` (no data; written `--unroll`: the flat program the compact
one means, so rolling — compiler/roll.py — leaves the pin as it was), and compares them on every
run (the JSON without `sim_peak_rss_bytes`, the one figure that varies run to run). PIM prefill
runs timing only (6 M instructions; numerics there take minutes): its logits are held by the
PIM end-to-end tests on shorter prompts. Regenerate on purpose only, when a change is meant
to alter figures: `TESSEL_REPIN=1 pytest tests/test_pinned_reports.py`. A `.tbin` records the
architecture and the tessel version (docs/isa.md), so a version bump changes the `.tbin.sha256`
pins and nothing else.
"""
from __future__ import annotations

import contextlib
import hashlib
import io
import json
import os
from pathlib import Path

import pytest

from tessel.cli import main

PINNED = Path(__file__).parent / "pinned"
CASES = [(target, phase) for target in ("systolic", "pim", "dataflow") for phase in ("prefill", "decode")]
_PHASE_ARGS = {"prefill": ["--phase", "prefill", "--seq", "128"], "decode": ["--phase", "decode", "--kv", "128"]}


def _cli(argv: list[str]) -> str:
    out = io.StringIO()
    with contextlib.redirect_stdout(out):
        assert main(argv) == 0, argv
    return out.getvalue()


def _outputs(target: str, phase: str, tmp: Path) -> dict[str, bytes]:
    args = ["--model", "gpt2", "--target", target, *_PHASE_ARGS[phase]]
    numerics = ["--no-functional"] if (target, phase) == ("pim", "prefill") else []
    report = _cli(["sim", *args, *numerics, "--json", str(tmp / "r.json")])
    _cli(["compile", *args, "--unroll", "-o", str(tmp / "p.tbin")])
    digest = hashlib.sha256((tmp / "p.tbin").read_bytes()).hexdigest()
    return {"json": _without_peak_memory((tmp / "r.json").read_bytes()), "txt": report.encode(),
            "tbin.sha256": digest.encode()}


def _without_peak_memory(report: bytes) -> bytes:
    """The JSON as `tessel sim` writes it, less its last field `sim_peak_rss_bytes`: the
    process's peak memory varies run to run (tests/tessel/test_progress.py checks it)."""
    fields = json.loads(report)
    assert list(fields)[-1] == "sim_peak_rss_bytes" and fields.pop("sim_peak_rss_bytes") > 0
    return json.dumps(fields, indent=1).encode()


@pytest.mark.slow
@pytest.mark.parametrize("target,phase", CASES, ids=[f"{t}-{p}" for t, p in CASES])
def test_reports_and_programs_are_unchanged(target: str, phase: str, tmp_path: Path) -> None:
    got = _outputs(target, phase, tmp_path)
    for suffix, data in got.items():
        pinned = PINNED / f"gpt2-{target}-{phase}.{suffix}"
        if os.environ.get("TESSEL_REPIN"):
            PINNED.mkdir(exist_ok=True)
            pinned.write_bytes(data)
        if suffix == "json":
            data, want = (_numerics_apart(d) for d in (data, pinned.read_bytes()))
            assert data[1] == pytest.approx(want[1], rel=1e-9, abs=0), f"{pinned.name} changed"
            data, want = data[0], want[0]
        else:
            want = pinned.read_bytes()
        assert data == want, f"{pinned.name} changed"


def _numerics_apart(report: bytes) -> tuple[bytes, dict]:
    """(the report less its logits' error, that error): the error of float32 logits against
    the float64 reference moves in its last digits with numpy's and the BLAS's summation
    order (numpy 2.4.6's differs from earlier releases' by 5e-16 relative); every timing,
    energy and count field stays byte for byte."""
    fields = json.loads(report)
    numeric = {k: fields.pop(k) for k in ("logits_rel_error",) if k in fields}
    return json.dumps(fields, indent=1).encode(), numeric
