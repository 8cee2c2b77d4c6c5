"""Shared helpers of the daxheap VFS tests: the extension, heaps made through libdaxheap.

Environment (test.sh sets both):
  DAXHEAP_SQLITE  the extension, e.g. DIR/lib/libdaxheap_sqlite.so
  DAXHEAP_LIB     libdaxheap.so, to create heaps and look at their arenas (ctypes)
  DAXTEST_DIR     where heap files go (default /dev/shm)
"""
import ctypes
import os
import sqlite3
import tempfile

EXTENSION = os.environ["DAXHEAP_SQLITE"]
LIBDAXHEAP = os.environ["DAXHEAP_LIB"]
DIR = os.environ.get("DAXTEST_DIR", "/dev/shm")

_lib = ctypes.CDLL(LIBDAXHEAP)
_lib.daxheap_create.argtypes = [ctypes.c_char_p, ctypes.c_uint64, ctypes.POINTER(ctypes.c_void_p)]
_lib.daxheap_open.argtypes = [ctypes.c_char_p, ctypes.c_int, ctypes.POINTER(ctypes.c_void_p)]
_lib.daxheap_close.argtypes = [ctypes.c_void_p]
_lib.daxheap_close.restype = None
_lib.daxheap_errmsg.restype = ctypes.c_char_p
_lib.daxheap_arena_size.argtypes = [ctypes.c_void_p, ctypes.c_char_p, ctypes.POINTER(ctypes.c_uint64)]
_lib.daxheap_arena_create.argtypes = [ctypes.c_void_p, ctypes.c_char_p, ctypes.c_uint64]
_lib.daxheap_write.argtypes = [ctypes.c_void_p, ctypes.c_char_p, ctypes.c_uint64, ctypes.c_char_p, ctypes.c_uint64]
_lib.daxheap_read.argtypes = [ctypes.c_void_p, ctypes.c_char_p, ctypes.c_uint64, ctypes.c_char_p, ctypes.c_uint64]
_lib.daxheap_available_size.argtypes = [ctypes.c_void_p]
_lib.daxheap_available_size.restype = ctypes.c_uint64

_loaded = False


def load_extension():
    """Registers the VFS in this process (through a throwaway in-memory connection)."""
    global _loaded
    if not _loaded:
        boot = sqlite3.connect(":memory:")
        boot.enable_load_extension(True)
        boot.load_extension(EXTENSION)
        boot.close()
        _loaded = True


def connect(heap, name="db", **kwargs):
    load_extension()
    return sqlite3.connect(f"file:{heap}/{name}?vfs=daxheap", uri=True, **kwargs)


def new_heap(size=64 << 20, tag="heap"):
    fd, path = tempfile.mkstemp(prefix=f"daxsqlite-{tag}.", dir=DIR)
    os.close(fd)
    os.unlink(path)
    handle = ctypes.c_void_p()
    rc = _lib.daxheap_create(path.encode(), size, ctypes.byref(handle))
    if rc != 0:
        raise RuntimeError(f"daxheap_create {path}: {rc} {_lib.daxheap_errmsg().decode()}")
    _lib.daxheap_close(handle)
    return path


class Heap:
    """The heap opened directly (no connection of this process may hold it meanwhile)."""

    def __init__(self, path, flags=0):
        self.handle = ctypes.c_void_p()
        rc = _lib.daxheap_open(path.encode(), flags, ctypes.byref(self.handle))
        if rc != 0:
            raise RuntimeError(f"daxheap_open {path}: {rc} {_lib.daxheap_errmsg().decode()}")

    def __enter__(self):
        return self

    def __exit__(self, *exc):
        _lib.daxheap_close(self.handle)

    def arena_size(self, name):
        size = ctypes.c_uint64()
        rc = _lib.daxheap_arena_size(self.handle, name.encode(), ctypes.byref(size))
        return None if rc != 0 else size.value

    def create_arena(self, name, size):
        assert _lib.daxheap_arena_create(self.handle, name.encode(), size) == 0, _lib.daxheap_errmsg()

    def write(self, name, offset, data):
        assert _lib.daxheap_write(self.handle, name.encode(), offset, data, len(data)) == 0, _lib.daxheap_errmsg()

    def read(self, name, offset, length):
        buf = ctypes.create_string_buffer(length)
        assert _lib.daxheap_read(self.handle, name.encode(), offset, buf, length) == 0, _lib.daxheap_errmsg()
        return buf.raw

    def available(self):
        return _lib.daxheap_available_size(self.handle)


def remove_heap(path):
    try:
        os.unlink(path)
    except FileNotFoundError:
        pass
