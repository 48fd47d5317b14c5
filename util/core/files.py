"""The one atomic file writer.

``atomic_write(path, data)`` replaces ``path`` all at once: the bytes go to a
temporary file beside it (same folder, so the rename stays on one file
system), are flushed and fsynced, and the temporary file is renamed over
``path``. A failure at any moment (an exception, disk full, Ctrl-C) leaves
``path`` as it was and no temporary file behind. ``data`` is bytes, a str
(written as UTF-8), or a callable given the open binary temporary file, for
writers that want a file object (``np.savez``, Pillow's ``Image.save``: the
format is then theirs to choose from the final name, never from the temporary
one). ``write_temp`` is the first half alone, for writers that rename several
files together (``util.core.checkpoint``). Pure Python.
"""

import os


def temp_name(path):
    """The temporary name of ``path`` while it is being written (``PATH.tmpPID``)."""
    return f"{path}.tmp{os.getpid()}"


def _remove(path):
    if os.path.exists(path):
        os.remove(path)


def write_temp(path, data):
    """Write ``data`` (bytes, str or writer(file)) to the temporary file of ``path``, flushed and fsynced, and
    return its name; on any failure the temporary file is removed and the error raised."""
    tmp = temp_name(path)
    try:
        with open(tmp, "wb") as f:
            if callable(data):
                data(f)
            else:
                f.write(data.encode() if isinstance(data, str) else data)
            f.flush()
            os.fsync(f.fileno())
    except BaseException:  # e.g. disk full or Ctrl-C: leave no partial temp file behind
        _remove(tmp)
        raise
    return tmp


def atomic_write(path, data):
    """Replace ``path`` with ``data`` (bytes, str or writer(file)) atomically, creating its folder; returns
    ``path``."""
    os.makedirs(os.path.dirname(os.path.abspath(path)), exist_ok=True)
    tmp = write_temp(path, data)
    try:
        os.replace(tmp, path)
    except BaseException:
        _remove(tmp)
        raise
    return path
