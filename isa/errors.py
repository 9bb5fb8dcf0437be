"""Exceptions of the ISA package: one root (`IsaError`) so callers can catch everything at once.

Every message is a single line that names the file, instruction or field at fault; the CLI
prints it as is.
"""

from __future__ import annotations

__all__ = [
    "IsaError",
    "FieldError",
    "DecodeError",
    "AsmError",
    "ProgramFileError",
    "VerifyError",
    "LoopError",
]


def one_line(text: str) -> str:
    """Collapse whitespace runs so that a message stays on one line whatever it quotes."""
    return " ".join(str(text).split())


class IsaError(ValueError):
    """Root of every error raised by `isa`; a ValueError because the input is at fault.

    `index` is the offending instruction's position when there is one, else None.
    """

    def __init__(self, message: str, index: int | None = None) -> None:
        super().__init__(one_line(message))
        self.index = index


class FieldError(IsaError):
    """An operand value that its field cannot hold (wrong type, out of range, unknown name)."""


class DecodeError(IsaError):
    """A binary instruction word that does not decode (unknown opcode, bad enum, padding)."""


class AsmError(IsaError):
    """A `.tasm` text that does not assemble; the message starts with `file:line:col: `."""


class ProgramFileError(IsaError):
    """A program file that cannot be read or written; the message starts with the path."""


class VerifyError(IsaError):
    """A program that is not valid for a machine (`index` is None for program-level problems
    such as spaces, symbols and data)."""


class LoopError(IsaError):
    """Loop words that do not form loops (a stride past its body, on a non-address field, a
    body past its enclosing one); `index` is the loop's header."""
