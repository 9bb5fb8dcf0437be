"""The bad-input corpus's one check: `tessel` exits 2 with exactly one line `error: ...`."""
import re

from tessel.cli import main


def refuses(capsys, argv: list[str], pattern: str) -> str:
    """Run the CLI; assert exit status 2 and one stderr line `error: ` matching `pattern`."""
    code = main([str(a) for a in argv])
    _, err = capsys.readouterr()
    assert code == 2, (code, err)
    assert err.startswith("error: ") and err.count("\n") == 1 and err.endswith("\n"), err
    assert re.search(pattern, err), (pattern, err)
    return err
