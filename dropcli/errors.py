"""The error classes the command line turns into one line on stderr, each with its exit status.

The library raises them with a message that names the fix; the CLI prints `Error: <message>` and
exits with `exit_code`: 2 for usage errors (the command as typed cannot work), 1 for failures.
"""


class DropcliError(Exception):
    """A failure the user can fix; str(error) says what to do."""

    exit_code = 1


class UsageError(DropcliError):
    """The command as typed cannot work (a bad option value, a device this machine lacks, an output
    folder that belongs to something else)."""

    exit_code = 2


class StudyMismatch(UsageError):
    """The output folder holds another study."""


class WriteError(DropcliError):
    """A file could not be written (a full or read-only disk, a library's write failure); the
    message names the path and the fix. Raised by files.atomic_write for every writer."""
