"""The exception for data mistakes a user can make."""

from scaling.errors import UserError


class DataError(UserError, ValueError):
  """A missing dataset, an empty glob, a bad tokenizer path...: its message is the one line shown."""
