"""Named byte logs on the flash filesystem (interfaces.py: Storage). Board only.

    store = Rp2Storage()                # files under /data on the Pico's littlefs
    store.append("sessions.0", b"...")  # -> bytes written; on flash when it returns
    store.read("sessions.0", 0, 256)    # b"" past the end or for a missing file
    store.size("sessions.0")            # 0 for a missing file
    store.remove("sessions.0")          # a missing file is not an error

The same interface as firmware/ram_storage.py, on files. The folder (and its parents) is made
by the first append: building the driver touches no filesystem, and until then every file reads
as missing. Names are plain file names (no "/"): any other name raises ValueError, a
programming error rather than an ordinary condition. append() opens the file for appending,
writes and closes it before it returns: littlefs commits a file's new data when it is closed,
copy-on-write, so a power cut loses at most the record being written and never what was
committed before (the program store and the session log mend a torn last line at boot). A
missing file is ENOENT and reported as the interface says; any other OSError (a full or failing
flash) is passed on to the caller, which turns it into E_STORAGE. Only
open/seek/read/write/close and os.stat/os.mkdir/os.remove are used: they behave the same under
CPython, where the tests run this very class over a temporary folder.
"""

import os
from errno import EEXIST, ENOENT


def _missing(exc: OSError) -> bool:
    return len(exc.args) > 0 and exc.args[0] == ENOENT


class Rp2Storage:
    def __init__(self, root: str = "/data"):
        while len(root) > 1 and root.endswith("/"):
            root = root[:-1]
        self.root = root
        self._made = False  # the folder exists (made or found by the first append)

    def append(self, name: str, data: bytes) -> int:
        """Append data; returns the bytes written. The data is on flash when this returns."""
        path = self._path(name)
        if not self._made:
            self._makedirs(self.root)
            self._made = True
        with open(path, "ab") as f:
            written = f.write(data)
        return len(data) if written is None else written

    def read(self, name: str, offset: int, size: int) -> bytes:
        """Up to size bytes from offset; b"" past the end or for a missing file."""
        if size <= 0 or offset < 0:
            return b""
        try:
            f = open(self._path(name), "rb")
        except OSError as exc:
            if _missing(exc):
                return b""
            raise
        with f:
            f.seek(offset)
            data = f.read(size)
        return data if data else b""

    def size(self, name: str) -> int:
        """Bytes in the file; 0 for a missing file."""
        try:
            return os.stat(self._path(name))[6]
        except OSError as exc:
            if _missing(exc):
                return 0
            raise

    def remove(self, name: str) -> None:
        """Delete the file; a missing file is not an error."""
        try:
            os.remove(self._path(name))
        except OSError as exc:
            if not _missing(exc):
                raise

    def _path(self, name: str) -> str:
        if not name or "/" in name or name == "." or name == "..":
            raise ValueError("storage name must be a plain file name: %r" % (name,))
        return self.root + "/" + name

    @staticmethod
    def _makedirs(path: str) -> None:
        """Make path and its parents (MicroPython's os has no makedirs)."""
        parts = path.split("/")
        prefix = ""
        for i in range(len(parts)):
            if i > 0:
                prefix += "/"
            prefix += parts[i]
            if not parts[i]:
                continue  # the leading "/" of an absolute path
            try:
                os.mkdir(prefix)
            except OSError as exc:
                if not (len(exc.args) > 0 and exc.args[0] == EEXIST):
                    raise
