"""One exception type for every domain error, turned into one clear sentence at the CLI edge."""


class ForetellError(Exception):
    """A problem the user can act on: bad input, unknown model, corrupt file, and so on."""


class ModelFormatError(ForetellError):
    """A model folder that is corrupt, truncated, foreign or from a newer foretell."""
