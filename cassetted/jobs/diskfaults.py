"""Storage failures told as what they are: "no space left on the library disk", not
"LibsndfileError: System error." or a peewee traceback.

libsndfile reports a failed write as "System error." without the errno, so when no OSError
in the exception chain says why, the disk itself is asked (free space, read-only mount).
"""

from __future__ import annotations

import errno
import os
import shutil
from pathlib import Path

from cassetted.contract import errors

_NO_SPACE = {errno.ENOSPC, errno.EDQUOT, errno.EFBIG}
_READ_ONLY = {errno.EROFS, errno.EACCES, errno.EPERM}
_LOW_SPACE_BYTES = 4 * 1024 * 1024  # a song's file is larger than this


def _os_errors(error: BaseException) -> list[OSError]:
    found, seen = [], set()
    current: BaseException | None = error
    while current is not None and id(current) not in seen:
        seen.add(id(current))
        if isinstance(current, OSError) and current.errno is not None:
            found.append(current)
        current = current.__cause__ or current.__context__
    return found


def _existing(path: Path) -> Path:
    while not path.exists() and path != path.parent:
        path = path.parent
    return path


def disk_state(path: Path, what: str) -> errors.CassettedError | None:
    """A full or read-only disk under `path`, as the error to report; None if it is fine."""
    where = _existing(path)
    try:
        if shutil.disk_usage(where).free < _LOW_SPACE_BYTES:
            return errors.DiskFull(f"no space left on the {what} disk ({path})")
        if os.statvfs(where).f_flag & os.ST_RDONLY or not os.access(where, os.W_OK):
            return errors.StorageUnavailable(f"the {what} disk is read-only ({path})")
    except OSError:
        return errors.StorageUnavailable(f"the {what} disk cannot be read ({path})")
    return None


def write_failure(error: BaseException, path: Path, what: str = "library"
                  ) -> errors.CassettedError | None:
    """The storage fault behind a failed write under `path`, or None if it was not one."""
    for os_error in _os_errors(error):
        if os_error.errno in _NO_SPACE:
            return errors.DiskFull(f"no space left on the {what} disk ({path})")
        if os_error.errno in _READ_ONLY:
            return errors.StorageUnavailable(f"the {what} disk is read-only ({path})")
        if os_error.errno == errno.EIO:
            return errors.StorageUnavailable(f"input/output error on the {what} disk ({path})")
    if type(error).__name__ in ("LibsndfileError", "SoundFileRuntimeError", "MutagenError") \
            or _os_errors(error):
        return disk_state(path, what)
    return None


def database_failure(error: BaseException, where: str) -> errors.CassettedError | None:
    """A database error as a storage fault (`where`: the database, without credentials)."""
    import peewee

    if not isinstance(error, (peewee.DatabaseError, peewee.InterfaceError)):
        return None
    text = str(error).lower()
    if "full" in text or "no space" in text:
        return errors.DiskFull(f"no space left on the database disk ({where})")
    if "readonly" in text or "read-only" in text:
        return errors.StorageUnavailable(f"the database is read-only ({where})")
    if isinstance(error, (peewee.OperationalError, peewee.InterfaceError)):
        return errors.StorageUnavailable(f"the database cannot be written ({where}): "
                                         f"{type(error).__name__}")
    return None
