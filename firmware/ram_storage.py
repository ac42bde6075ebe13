"""Storage in RAM: the storage interface for a board without a flash store.

Records kept here last until power-off. The simulator's storage builds on it, and a
device built without storage uses it so programs, settings and the session log still work.
"""


class RamStorage:
    def __init__(self):
        self.files = {}

    def append(self, name, data):
        self.files.setdefault(name, bytearray()).extend(data)
        return len(data)

    def read(self, name, offset, size):
        data = self.files.get(name)
        if data is None:
            return b""
        return bytes(data[offset:offset + size])

    def size(self, name):
        data = self.files.get(name)
        return 0 if data is None else len(data)

    def remove(self, name):
        if name in self.files:
            del self.files[name]
