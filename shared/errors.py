"""The base of the errors a person running a command can fix."""
from __future__ import annotations


class RecsysError(Exception):
    """A problem outside the program (a broker that does not answer, a port in use, a topic
    of the wrong size) whose message, one line, says what is wrong and what to do.

    The command line prints it as ``recsys <command>: <message>`` and exits with status 2,
    without a traceback: a traceback would point into the code, where nothing is to be
    fixed. :class:`shared.config.ConfigError` is printed the same way.
    """
