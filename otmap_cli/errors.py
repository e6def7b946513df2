"""The two kinds of failure the command line distinguishes (exit codes are documented in the README)."""


class OtmapError(Exception):
    """Base class: the message is shown to the user as one line, without a traceback."""

    exit_code = 1


class InputError(OtmapError):
    """Bad usage or bad input (missing file, corrupt image, invalid number): exit code 2."""

    exit_code = 2
