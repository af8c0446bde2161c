"""The ``amplink`` console script: :func:`amplink.app.cli.main`, with a Ctrl-C that
comes while the command is still importing the stack ending it quietly.

Until :func:`~amplink.app.cli.main` takes over SIGINT at its first line
(:mod:`amplink.app.signals`: the command then ends with 130), and again once it has
given it back, SIGINT keeps its default action: the process ends, and the shell
reports 130 as for any interrupted command.  Never a ``KeyboardInterrupt`` traceback,
neither from the middle of an import nor from argparse (Python's own handler, which
raises it, is never put back).
"""

from __future__ import annotations

# The built-in C module, imported at once: ``signal`` itself imports enum, functools
# and collections first, and a Ctrl-C during those would still be a traceback.
import _signal  # type: ignore[import-not-found]  # no stubs; the API of signal


def main() -> int:
    """Run the ``amplink`` command."""
    try:
        _signal.signal(_signal.SIGINT, _signal.SIG_DFL)
    except KeyboardInterrupt:  # a Ctrl-C that came before: signal.signal() runs the
        return 130  # old handler of a pending signal first (seen on a loaded machine)
    from amplink.app import cli  # noqa: PLC0415 - imported once SIGINT ends us quietly

    return cli.main()  # takes SIGINT over at its first line
