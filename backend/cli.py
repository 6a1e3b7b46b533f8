"""The command-line convention of every entry point (the server, `client.*`, `hrnet.export`).

A user's mistake (a bad flag, a missing or unreadable file, a port in use) ends in ONE line on
stderr, `error: <what is wrong> - <what to do>`, and exit code EXIT_FAILED: no traceback, no usage
dump. The exit codes mean the same in every command, and each `--help` lists the ones it uses
(`exit_codes_help`), so the text and the code cannot disagree.
"""

from __future__ import annotations

import argparse
import sys
import textwrap
from typing import NoReturn

EXIT_OK = 0
EXIT_FAILED = 1        # a user error, or the run failed (some requests or images failed)
EXIT_UNAVAILABLE = 2   # clients: the server is unreachable or the model is not ready
EXIT_UNSTABLE = 3      # client.perf: some concurrency level never gave a stable measurement
EXIT_INTERRUPTED = 130

_MEANINGS = {
    EXIT_OK: "success",
    EXIT_FAILED: "a usage error (bad argument or file; one line on stderr) or a failed run",
    EXIT_UNAVAILABLE: "the server is unreachable or the model is not ready",
    EXIT_UNSTABLE: "no stable measurement at some concurrency (the figures are printed, marked)",
    EXIT_INTERRUPTED: "interrupted (Ctrl-C)",
}


class UserError(Exception):
    """A mistake of the person running the command; the message is the one line they see."""


def report(message: str) -> None:
    """Print `error: message` on stderr, as one line."""
    print(f"error: {' '.join(str(message).split())}", file=sys.stderr, flush=True)


def fail(message: str, code: int = EXIT_FAILED) -> NoReturn:
    """Report `message` and exit with `code`."""
    report(message)
    raise SystemExit(code)


def exit_codes_help(*codes: int, details: dict[int, str] | None = None) -> str:
    """The 'Exit codes:' paragraph of a --help text; `details` refine a code's meaning."""
    details = details or {}
    return textwrap.fill("Exit codes: " + "; ".join(
        f"{code} {details.get(code, _MEANINGS[code])}" for code in (EXIT_OK, EXIT_FAILED, *codes))
        + ".", width=78)


class ArgumentParser(argparse.ArgumentParser):
    """argparse with the convention: a usage error is one line and EXIT_FAILED (not argparse's 2,
    which the clients' --help texts give to an unreachable server)."""

    def error(self, message: str) -> NoReturn:
        fail(f"{message} (see {self.prog} --help)")


def run(main, argv: list[str] | None = None) -> int:
    """`main(argv)`'s exit code; a UserError is reported in one line and gives EXIT_FAILED."""
    try:
        return main(argv)
    except UserError as err:
        report(str(err))
        return EXIT_FAILED
