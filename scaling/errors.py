"""The one exception family for mistakes a user can make: the CLIs print its message as one line."""


class UserError(Exception):
  """A mistake in what the user asked for (config, data, mesh, checkpoint); the message names the fix."""
