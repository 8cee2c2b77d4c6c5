/* WAL's shared-memory index (the "-shm" file of the unix VFS) in process memory.
 *
 * Only one process opens a heap, so the connections that share a WAL index are this
 * process's: its regions are heap-allocated and zeroed, shared through the database's node,
 * and freed when the last connection unmaps them. A fresh index is all zeros, which SQLite
 * reads as "rebuild me from the WAL" (recovery), exactly as after a reboot with the unix VFS.
 * The eight lock slots are counted per slot under the node's mutex. */
#include <stdlib.h>

#include "dxh.h"

SQLITE_EXTENSION_INIT3

void dxh_shm_free(struct dxh_shm *shm) {
    for (int i = 0; i < shm->nregion; i++) {
        free(shm->regions[i]);
    }
    free(shm->regions);
    free(shm);
}

int dxh_shm_map(sqlite3_file *file, int region, int size, int extend, void volatile **out) {
    struct dxh_file *p = (struct dxh_file *)file;
    struct dxh_node *node = p->node;
    int rc = SQLITE_OK;
    *out = NULL;
    pthread_mutex_lock(&node->mutex);
    if (node->shm == NULL) {
        node->shm = calloc(1, sizeof *node->shm);
    }
    struct dxh_shm *shm = node->shm;
    if (shm == NULL) {
        rc = SQLITE_NOMEM;
    } else {
        if (!p->shm_mapped) {
            p->shm_mapped = 1;
            shm->refs++;
        }
        if (region >= shm->nregion && extend) {
            char **regions = realloc(shm->regions, (size_t)(region + 1) * sizeof *regions);
            if (regions == NULL) {
                rc = SQLITE_NOMEM;
            } else {
                shm->regions = regions;
                while (shm->nregion <= region && rc == SQLITE_OK) {
                    shm->regions[shm->nregion] = calloc(1, (size_t)size);
                    rc = shm->regions[shm->nregion] == NULL ? SQLITE_NOMEM : SQLITE_OK;
                    shm->nregion += rc == SQLITE_OK;
                }
            }
        }
        if (rc == SQLITE_OK && region < shm->nregion) {
            *out = shm->regions[region];
        }
    }
    pthread_mutex_unlock(&node->mutex);
    return rc;
}

/* Drops every slot this connection holds in [offset, offset + n) (node->mutex held). */
static void dxh_shm_release(struct dxh_file *p, struct dxh_shm *shm, int offset, int n) {
    for (int i = offset; i < offset + n; i++) {
        uint16_t bit = (uint16_t)(1u << i);
        if (p->shm_shared & bit) {
            shm->shared[i]--;
        }
        if (p->shm_exclusive & bit) {
            shm->exclusive[i] = 0;
        }
        p->shm_shared &= (uint16_t)~bit;
        p->shm_exclusive &= (uint16_t)~bit;
    }
}

int dxh_shm_lock(sqlite3_file *file, int offset, int n, int flags) {
    struct dxh_file *p = (struct dxh_file *)file;
    struct dxh_node *node = p->node;
    int rc = SQLITE_OK;
    pthread_mutex_lock(&node->mutex);
    struct dxh_shm *shm = node->shm;
    if (shm == NULL || offset < 0 || n < 1 || offset + n > SQLITE_SHM_NLOCK) {
        rc = SQLITE_IOERR_SHMLOCK;
    } else if (flags & SQLITE_SHM_UNLOCK) {
        dxh_shm_release(p, shm, offset, n);
    } else if (flags & SQLITE_SHM_SHARED) {
        for (int i = offset; i < offset + n && rc == SQLITE_OK; i++) {
            rc = (shm->exclusive[i] && !(p->shm_exclusive & (1u << i))) ? SQLITE_BUSY : SQLITE_OK;
        }
        for (int i = offset; i < offset + n && rc == SQLITE_OK; i++) {
            if (!(p->shm_shared & (1u << i))) {
                shm->shared[i]++;
                p->shm_shared |= (uint16_t)(1u << i);
            }
        }
    } else {
        for (int i = offset; i < offset + n && rc == SQLITE_OK; i++) {
            int mine = (p->shm_shared >> i) & 1;
            int held = (p->shm_exclusive >> i) & 1;
            rc = (!held && (shm->exclusive[i] || shm->shared[i] - mine > 0)) ? SQLITE_BUSY : SQLITE_OK;
        }
        for (int i = offset; i < offset + n && rc == SQLITE_OK; i++) {
            shm->exclusive[i] = 1;
            p->shm_exclusive |= (uint16_t)(1u << i);
        }
    }
    pthread_mutex_unlock(&node->mutex);
    return rc;
}

void dxh_shm_barrier(sqlite3_file *file) {
    struct dxh_node *node = ((struct dxh_file *)file)->node;
    __atomic_thread_fence(__ATOMIC_SEQ_CST);
    pthread_mutex_lock(&node->mutex);
    pthread_mutex_unlock(&node->mutex);
}

int dxh_shm_unmap(sqlite3_file *file, int delete_flag) {
    (void)delete_flag; /* the index lives only as long as a connection maps it either way */
    struct dxh_file *p = (struct dxh_file *)file;
    struct dxh_node *node = p->node;
    pthread_mutex_lock(&node->mutex);
    struct dxh_shm *shm = node->shm;
    if (shm != NULL && p->shm_mapped) {
        dxh_shm_release(p, shm, 0, SQLITE_SHM_NLOCK);
        p->shm_mapped = 0;
        if (--shm->refs == 0) {
            dxh_shm_free(shm);
            node->shm = NULL;
        }
    }
    pthread_mutex_unlock(&node->mutex);
    return SQLITE_OK;
}
