/* SQLite's C API for the VFS's Swift power-loss tests (Debian's libsqlite3-dev). */
#include <sqlite3.h>
