"""The one exception type users see.

A :class:`DDLibError` carries a single line that names the problem and says what to do about it.
The command line prints it as ``error: …`` without a traceback; library callers can catch it (it is
a ``ValueError``) or let it propagate.
"""


class DDLibError(ValueError):
    """Bad input or state that the user can fix; the message says how."""
