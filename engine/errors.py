"""One exception type for every domain error, turned into one clear sentence at the CLI edge."""


class ForetellError(Exception):
    """A problem the user can act on: bad input, unknown model, corrupt file, and so on."""


class ModelFormatError(ForetellError):
    """A model folder that is corrupt, truncated, foreign or from a newer foretell."""


def out_of_space(exc: OSError) -> bool:
    """Whether a failed write ran out of room: ENOSPC, a file-size limit (EFBIG), or numpy's
    short-write error ("N requested and M written"), which carries no errno."""
    import errno

    return exc.errno in (errno.ENOSPC, errno.EFBIG, errno.EDQUOT) or " requested and " in str(exc)
