"""The one exception for mistakes a user can make: a one-line message, exit status 2."""

import click


class UserError(click.ClickException):
    """Bad input, a missing file, an impossible request: said in one line, never a traceback."""

    exit_code = 2
