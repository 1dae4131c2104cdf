"""The one exception type for data mistakes a user can make."""


class DataError(ValueError):
  """A missing dataset, an empty glob, a bad tokenizer path...: its message is the one line shown."""
