"""Output paths of the command line: every output argument of every command is checked before
any work starts, with one line naming the argument and the path as given; SIGTERM and Ctrl-C
end a command with one line and 143 / 130, leaving no temporary file; files get the umask's
mode."""
import os
import signal
from pathlib import Path

import pytest

import tessel.cli as cli
from tessel.files import OutputError, check_output, check_output_dir
from tessel.sweep import load_spec, run_sweep

ROOT = Path(__file__).parents[2]

# (command line with OUT for the output path, the argument's name, the handler never to run)
OUTPUT_ARGS = [
    (["graph", "--model", "gpt2", "--emit", "OUT"], "--emit", "cmd_graph"),
    (["run", "--model", "gpt2", "--tokens", "1,2", "--logits", "OUT"], "--logits", "cmd_run"),
    (["compile", "--model", "gpt2", "-o", "OUT"], "-o/--output", "cmd_compile"),
    (["sim", "--model", "gpt2", "--json", "OUT"], "--json", "cmd_sim"),
    (["sim", "--model", "gpt2", "--logits", "OUT"], "--logits", "cmd_sim"),
    (["compare", "--model", "gpt2", "--json", "OUT"], "--json", "cmd_compare"),
    (["coe", "--models", "gpt2", "--json", "OUT"], "--json", "cmd_coe"),
    (["asm", "in.tasm", "--output", "OUT"], "-o/--output", "cmd_asm"),
    (["disasm", "in.tbin", "-o", "OUT"], "-o/--output", "cmd_disasm"),
]


@pytest.fixture
def unwritable_dir(tmp_path):
    """A folder no file can be created in: mode 0500, or for root (who ignores modes) /sys."""
    if os.geteuid() != 0:
        folder = tmp_path / "read-only"
        folder.mkdir(mode=0o500)
        yield folder
        folder.chmod(0o700)
    elif Path("/sys/kernel").is_dir():
        yield Path("/sys")
    else:
        pytest.skip("running as root without /sys: no folder refuses root")


def bad_outputs(tmp_path: Path, unwritable: Path) -> list[tuple[str, str]]:
    """(path as given, the error after the argument's name) for each way a path can be bad."""
    (tmp_path / "a-file").write_text("")
    (tmp_path / "a-folder").mkdir()
    return [("nope/out.x", "nope/out.x: directory nope does not exist"),
            ("a-folder", "a-folder: is a directory, expected a file"),
            ("a-file/out.x", "a-file/out.x: a-file is not a directory"),
            (f"{unwritable}/out.x", f"{unwritable}/out.x: cannot create a file in {unwritable} "
                                    "(Permission denied)")]


@pytest.mark.parametrize("argv, flag, handler", OUTPUT_ARGS, ids=[f"{a[0]} {f}" for a, f, _ in OUTPUT_ARGS])
def test_every_output_argument_is_checked_before_the_command_runs(capsys, monkeypatch, tmp_path,
                                                                   unwritable_dir, argv, flag, handler):
    monkeypatch.chdir(tmp_path)
    monkeypatch.setattr(cli, handler, lambda args: pytest.fail(f"{handler} ran"))
    for path, message in bad_outputs(tmp_path, unwritable_dir):
        assert cli.main([path if a == "OUT" else a for a in argv]) == 2
        _, err = capsys.readouterr()
        assert err == f"error: {flag} {message}\n"


def test_a_bad_json_path_fails_before_simulating(capsys, monkeypatch, tmp_path):
    def simulate(_request):
        pytest.fail("simulated before checking --json")

    monkeypatch.setattr("tessel.driver.run", simulate)
    monkeypatch.chdir(tmp_path)
    code = cli.main(["sim", "--model", "gpt2", "--phase", "decode", "--kv", "4", "--json", "missing/r.json"])
    _, err = capsys.readouterr()
    assert code == 2 and err == "error: --json missing/r.json: directory missing does not exist\n"


def test_check_output_accepts_new_and_existing_files_and_pipes(tmp_path):
    (tmp_path / "old.json").write_text("{}")
    os.mkfifo(tmp_path / "pipe")
    for name in ("old.json", "new.json", "pipe"):
        check_output(tmp_path / name, "--json")
    assert sorted(p.name for p in tmp_path.iterdir()) == ["old.json", "pipe"]   # the probe leaves nothing


def test_an_output_folder_may_be_missing_but_not_blocked_or_read_only(tmp_path, monkeypatch, unwritable_dir):
    monkeypatch.chdir(tmp_path)
    check_output_dir("new/deeper", "--out")
    (tmp_path / "a-file").write_text("")
    with pytest.raises(OutputError, match=r"^--out a-file/sub: a-file is not a directory$"):
        check_output_dir("a-file/sub", "--out")
    with pytest.raises(OutputError, match=rf"^--out {unwritable_dir}/sub: cannot create a file in "
                                          rf"{unwritable_dir} \(Permission denied\)$"):
        check_output_dir(unwritable_dir / "sub", "--out")
    assert not (tmp_path / "new").exists()


def test_a_sweep_whose_outputs_cannot_be_written_fails_before_any_point(tmp_path, monkeypatch):
    monkeypatch.setattr("tessel.sweep.runner.local_pool", lambda workers: pytest.fail("points ran"))
    monkeypatch.chdir(tmp_path)
    Path("s.toml").write_text(f'base = "systolic-32"\nmodels = ["{ROOT}/examples/mlp.graph"]\n'
                              "[parameters]\nrows = [8]\n")
    spec = load_spec(Path("s.toml"))
    Path("out/results.csv").mkdir(parents=True)
    with pytest.raises(OutputError, match=r"^--out out/results\.csv: is a directory, expected a file$"):
        run_sweep(spec, Path("out"), progress=False)
    Path("blocked").write_text("")
    with pytest.raises(OutputError, match=r"^--out blocked: blocked is not a directory$"):
        run_sweep(spec, Path("blocked"), progress=False)


def test_the_command_line_writes_files_with_the_umask_mode(capsys, tmp_path):
    old = os.umask(0o027)
    try:
        assert cli.main(["graph", "--model", str(ROOT / "examples/mlp.graph"),
                         "--emit", str(tmp_path / "g.graph")]) == 0
    finally:
        os.umask(old)
    assert (tmp_path / "g.graph").stat().st_mode & 0o777 == 0o640


def _keyboard_interrupt() -> None:
    raise KeyboardInterrupt                         # raised by code, not by a signal handler


@pytest.mark.parametrize("interrupt, status, name", [
    (lambda: signal.raise_signal(signal.SIGTERM), 143, "SIGTERM"),
    (lambda: signal.raise_signal(signal.SIGINT), 130, "SIGINT"),
    (_keyboard_interrupt, 130, "SIGINT"),
], ids=["sigterm", "sigint", "keyboard-interrupt"])
def test_an_interrupt_during_a_write_ends_with_one_line_and_leaves_no_temporary(
        capsys, monkeypatch, tmp_path, interrupt, status, name):
    before = signal.getsignal(signal.SIGTERM)
    real_fsync = os.fsync

    def interrupted_fsync(fd):
        interrupt()
        real_fsync(fd)
        pytest.fail("not interrupted")

    monkeypatch.setattr(os, "fsync", interrupted_fsync)
    monkeypatch.chdir(tmp_path)
    code = cli.main(["graph", "--model", str(ROOT / "examples/mlp.graph"), "--emit", "g.graph"])
    _, err = capsys.readouterr()
    assert (code, err) == (status, f"error: interrupted ({name})\n")
    assert list(tmp_path.iterdir()) == []
    assert signal.getsignal(signal.SIGTERM) == before
