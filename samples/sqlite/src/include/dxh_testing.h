/* The daxheap VFS as the package's power-loss tests use it: compiled into the package (the
 * DaxSQLiteVFS target, with SQLITE_CORE and DXH_TESTING), not the installed extension. */
#ifndef DXH_TESTING_H
#define DXH_TESTING_H

#include <daxheap.h>
#include <sqlite3.h>

/* The extension's entry point: registers the "daxheap" VFS (db and api may be NULL here). */
int sqlite3_daxheapsqlite_init(sqlite3 *db, char **error, const struct sqlite3_api_routines *api);

/* Makes `heap`, opened by the caller (with a power-loss simulator, wrapped for C), the
 * process's heap for `path`, with one reference held until dxh_testing_release(path);
 * the last reference closes it with daxheap_close. SQLITE_OK, or SQLITE_BUSY if the
 * process already has a heap for `path`. */
int dxh_testing_adopt_heap(const char *path, daxheap *heap);
void dxh_testing_release(const char *path);

#endif
