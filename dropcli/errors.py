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


WORDS = "dropcli_words"  # the type of a pydantic error whose message is dropcli's sentence after the option's name
_PYDANTIC_WORDS = {  # pydantic's error type (Typer checks an option's type and range with pydantic) -> ours
    "greater_than_equal": ("ge", "must be at least"), "greater_than": ("gt", "must be above"),
    "less_than_equal": ("le", "must be at most"), "less_than": ("lt", "must be below"),
}


def option_message(e: Exception) -> str:
    """The one line a bad value of an option or argument gets (e: click's exception, as Typer
    raises it): where Typer's type and range checks use pydantic's wording ('Input should be
    greater than or equal to 1'), dropcli's ('--steps must be at least 1 (got 0)'); a message
    that already names its option is not prefixed with "Invalid value for '--x':" again."""
    param, cause = getattr(e, "param", None), e.__cause__
    name = next((o for o in getattr(param, "opts", ()) if o.startswith("--")), None) or getattr(
        param, "human_readable_name", None)
    errors = cause.errors() if type(cause).__name__ == "ValidationError" and hasattr(cause, "errors") else []
    if name and errors:
        kind, got, ctx = errors[0].get("type"), errors[0].get("input"), errors[0].get("ctx") or {}
        if kind == WORDS:  # a check of dropcli's own, worded in full (cli_options.Int)
            return f"{name} {errors[0].get('msg', '')}"
        if kind in ("int_parsing", "int_from_float", "int_type"):
            return f"{name} takes a whole number (got {got!r})"
        if str(got).strip().lower().lstrip("+-") == "nan":  # nan fails a range check: it is no number at all
            return f"{name} takes a number (got {got})"
        if kind in _PYDANTIC_WORDS:
            bound, words = _PYDANTIC_WORDS[kind]
            limit = ctx.get(bound)
            limit = f"{limit:,}" if isinstance(limit, int) and not isinstance(limit, bool) else f"{limit:g}"
            return f"{name} {words} {limit} (got {got})"
        if kind in ("float_parsing", "float_type", "finite_number"):
            return f"{name} takes a number (got {got!r})"
        if kind == "value_error":  # a choice: "Value error, 'x' is not one of 'a', 'b'."
            return f"{name}: {errors[0].get('msg', '').removeprefix('Value error, ').rstrip('.')}"
    message = e.format_message() if hasattr(e, "format_message") else str(e)
    said = getattr(e, "message", "")
    if name and name.startswith("--") and isinstance(said, str) and said and type(e).__name__ == "BadParameter":
        return said if said.startswith(name) else f"{name}: {said}"  # not "Invalid value for '--lrs': --lrs takes"
    return message
