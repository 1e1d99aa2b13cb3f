"""The one exception the CLI turns into a one-line message and exit status 1."""


class DropcliError(Exception):
    """A failure the user can fix; str(error) says what to do."""
