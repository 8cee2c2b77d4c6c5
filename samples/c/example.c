/* A small C program on DaxHeap's C API (daxheap.h, libdaxheap.so).
 *
 *   cc example.c $(pkg-config --cflags --libs daxheap) -o daxheap-example
 *   ./daxheap-example /dev/shm/example.heap    # a file emulating a device-dax, or /dev/daxX.Y
 *
 * It creates the heap (64 MiB) if the path does not exist, else opens it; keeps a run
 * counter in the arena "example" (so a second run shows the first one's data); writes and
 * reads a message with the copying calls; maps the arena as a window, grows the arena under
 * it and stores through plain pointers into the new bytes; and shows the error path: a
 * status code and this thread's one-line message. Then the object layer: a persistent
 * linked list in the object heap of the arena "list", one node pushed per run in a
 * transaction, the oldest dropped when there are four. Exit status 0 on success, 1 on an
 * error. */
#include <daxheap.h>

#include <inttypes.h>
#include <stddef.h>
#include <stdio.h>
#include <string.h>
#include <sys/stat.h>

#define MIB (UINT64_C(1) << 20)

/* Prints the failed call and this thread's message, and returns 1 for main. */
static int fail(const char *call, int status) {
    fprintf(stderr, "%s failed (%d): %s\n", call, status, daxheap_errmsg());
    return 1;
}

/* Creates or opens the heap at `path`. */
static int open_or_create(const char *path, daxheap **heap) {
    struct stat st;
    if (stat(path, &st) != 0) {
        int rc = daxheap_create(path, 64 * MIB, heap);
        if (rc != DAXHEAP_OK) return fail("daxheap_create", rc);
        printf("created a heap of %" PRIu64 " usable bytes on %s\n", daxheap_usable_size(*heap), path);
        return 0;
    }
    int rc = daxheap_open(path, 0, heap);
    if (rc != DAXHEAP_OK) return fail("daxheap_open", rc);
    printf("opened %s: %" PRIu64 " of %" PRIu64 " bytes free\n", path, daxheap_available_size(*heap),
           daxheap_usable_size(*heap));
    return 0;
}

/* The arena "example": its run counter at offset 0 and a message at offset 64, through the
 * copying calls (daxheap_write is durable on return). */
static int count_run(daxheap *heap) {
    uint64_t size = 0;
    int rc = daxheap_arena_size(heap, "example", &size);
    if (rc == DAXHEAP_ENOENT) {
        rc = daxheap_arena_create(heap, "example", 2 * MIB);  /* sizes: multiples of 2 MiB */
        if (rc != DAXHEAP_OK) return fail("daxheap_arena_create", rc);
    } else if (rc != DAXHEAP_OK) {
        return fail("daxheap_arena_size", rc);
    }
    uint64_t runs = 0;
    if ((rc = daxheap_read(heap, "example", 0, &runs, sizeof runs)) != DAXHEAP_OK) return fail("daxheap_read", rc);
    runs += 1;
    if ((rc = daxheap_write(heap, "example", 0, &runs, sizeof runs)) != DAXHEAP_OK) return fail("daxheap_write", rc);

    char message[64];
    snprintf(message, sizeof message, "hello from run %" PRIu64, runs);
    if ((rc = daxheap_write(heap, "example", 64, message, sizeof message)) != DAXHEAP_OK) return fail("daxheap_write", rc);
    char back[64];
    if ((rc = daxheap_read(heap, "example", 64, back, sizeof back)) != DAXHEAP_OK) return fail("daxheap_read", rc);
    printf("run %" PRIu64 ": read back \"%s\"\n", runs, back);
    return 0;
}

/* A window: the arena as one range of addresses that stays put while the arena grows. */
static int use_window(daxheap *heap) {
    daxheap_window *window = NULL;
    int rc = daxheap_window_open(heap, "example", &window);
    if (rc != DAXHEAP_OK) return fail("daxheap_window_open", rc);
    char *base = daxheap_window_base(window);
    uint64_t before = daxheap_window_size(window);

    /* Grow by 2 MiB: the new bytes appear at base + old size; nothing below moves. */
    uint64_t grown = 0;
    if ((rc = daxheap_arena_size(heap, "example", &grown)) != DAXHEAP_OK) goto failed;
    if ((rc = daxheap_arena_resize(heap, "example", grown + 2 * MIB)) != DAXHEAP_OK) goto failed;
    uint64_t after = daxheap_window_size(window);

    /* Plain stores into the new bytes, then make them durable. */
    const char text[] = "stored through the window";
    memcpy(base + before, text, sizeof text);
    if ((rc = daxheap_window_persist(window, before, sizeof text)) != DAXHEAP_OK) goto failed;
    printf("window: %" PRIu64 " -> %" PRIu64 " bytes, base unchanged; at %" PRIu64 ": \"%s\"\n",
           before, after, before, base + before);

    /* The error path: destroying a mapped arena is refused, and nothing changes. */
    rc = daxheap_arena_destroy(heap, "example");
    printf("destroy while mapped: status %d (DAXHEAP_EBUSY is %d): %s\n", rc, DAXHEAP_EBUSY, daxheap_errmsg());
    if (rc != DAXHEAP_EBUSY) { daxheap_window_close(window); return 1; }
    if ((rc = daxheap_window_close(window)) != DAXHEAP_OK) return fail("daxheap_window_close", rc);

    /* With no window open a shrink is allowed: back to 2 MiB, so that every run starts alike. */
    if ((rc = daxheap_arena_resize(heap, "example", 2 * MIB)) != DAXHEAP_OK) return fail("daxheap_arena_resize", rc);
    printf("closed the window, shrank the arena back to 2 MiB\n");
    return 0;

failed:
    fail("the window step", rc);
    daxheap_window_close(window);
    return 1;
}

/* More of the error path: bad arguments are errors with a message, never a crash. */
static int show_errors(daxheap *heap) {
    int rc = daxheap_arena_create(heap, "odd", 3 * MIB);
    printf("a 3 MiB arena: status %d: %s\n", rc, daxheap_errmsg());
    if (rc != DAXHEAP_EINVAL) return 1;
    rc = daxheap_arena_create(heap, NULL, 2 * MIB);
    printf("a NULL name: status %d: %s\n", rc, daxheap_errmsg());
    if (rc != DAXHEAP_EINVAL) return 1;
    char byte;
    rc = daxheap_read(heap, "example", UINT64_MAX, &byte, 1);
    printf("reading past the end: status %d: %s\n", rc, daxheap_errmsg());
    return rc == DAXHEAP_ERANGE ? 0 : 1;
}

/* ---- Objects: a persistent linked list, newest first, of at most three nodes ---------- */

/* A node. `next` is a reference (daxheap_ref), so nodes are DAXHEAP_KIND_REFERENCES: the
 * library follows such words when it rebuilds the heap after a crash. */
struct node {
    daxheap_ref next;
    uint64_t number;
    char text[48];
};

/* The transaction that pushes a filled, reserved node: the node becomes part of it (its
 * bytes durable first), and the head slot is set to it at commit. Returns 0 to commit. */
struct push {
    daxheap_slot head;
    daxheap_ref node;
};

static int push_body(daxheap_tx *tx, void *arg) {
    const struct push *push = arg;
    int rc = daxheap_tx_publish(tx, push->node);
    if (rc != DAXHEAP_OK) return rc;  /* nonzero: abort, and pass the status on */
    return daxheap_tx_store64(tx, push->head, push->node);
}

/* The node `ref` at its address, or NULL with the failure printed. */
static struct node *node_at(daxheap_objects *objects, daxheap_ref ref) {
    void *address = NULL;
    int rc = daxheap_objects_address(objects, ref, &address);
    if (rc != DAXHEAP_OK) fail("daxheap_objects_address", rc);
    return address;
}

/* Pushes node N+1 (N the number of the newest), prints the list, and drops a fourth node. */
static int push_and_print(daxheap_objects *objects, daxheap_objctx *ctx) {
    daxheap_slot head;
    daxheap_ref top;
    int rc = daxheap_objects_root(objects, "newest first", &head);  /* made on the first run */
    if (rc != DAXHEAP_OK) return fail("daxheap_objects_root", rc);
    if ((rc = daxheap_objects_load(objects, head, &top)) != DAXHEAP_OK) return fail("daxheap_objects_load", rc);
    uint64_t number = 1;
    if (top != DAXHEAP_NULL_REF) {
        struct node *newest = node_at(objects, top);
        if (!newest) return 1;
        number = newest->number + 1;
    }

    /* Reserve, fill through plain stores, then publish in a transaction: after a crash
     * the list either has the whole new node or not at all. */
    struct push push = { head, DAXHEAP_NULL_REF };
    void *address = NULL;
    rc = daxheap_reserve(ctx, sizeof(struct node), DAXHEAP_KIND_REFERENCES, 0, &push.node, &address);
    if (rc != DAXHEAP_OK) return fail("daxheap_reserve", rc);
    struct node *node = address;
    node->next = top;
    node->number = number;
    snprintf(node->text, sizeof node->text, "node %" PRIu64, number);
    if ((rc = daxheap_tx_run(ctx, push_body, &push)) != DAXHEAP_OK) return fail("daxheap_tx_run", rc);

    /* Walk from the root; the slot of the third node's `next` holds the fourth, if any. */
    printf("list:");
    daxheap_slot slot = head;
    daxheap_ref ref;
    int count = 0;
    while ((rc = daxheap_objects_load(objects, slot, &ref)) == DAXHEAP_OK && ref != DAXHEAP_NULL_REF) {
        struct node *at = node_at(objects, ref);
        if (!at) return 1;
        if (++count == 4) {
            /* Empties the slot and frees the node, durably (two fences: a freed
             * DAXHEAP_KIND_REFERENCES object is zeroed, so read it before). */
            printf("\ndropping %s\n", at->text);
            if ((rc = daxheap_free(ctx, slot)) != DAXHEAP_OK) return fail("daxheap_free", rc);
            break;
        }
        printf(" %" PRIu64, at->number);
        slot = daxheap_field(ref, offsetof(struct node, next));
    }
    if (rc != DAXHEAP_OK) return fail("daxheap_objects_load", rc);
    if (count < 4) printf("\n");

    /* The error path: allocating into a slot that holds a reference would lose it. */
    rc = daxheap_alloc(ctx, 16, DAXHEAP_KIND_DATA, 0, head, NULL);
    printf("allocating into a full slot: status %d: %s\n", rc, daxheap_errmsg());
    if (rc != DAXHEAP_EEXIST) return 1;

    struct daxheap_objects_stats stats;
    if ((rc = daxheap_objects_stats(objects, &stats)) != DAXHEAP_OK) return fail("daxheap_objects_stats", rc);
    printf("object heap: %" PRIu64 " objects, %" PRIu64 " bytes allocated\n", stats.objects, stats.allocated_bytes);
    struct daxheap_class_stats classes[DAXHEAP_CLASS_COUNT];
    size_t class_count = 0;
    rc = daxheap_objects_class_stats(objects, classes, DAXHEAP_CLASS_COUNT, &class_count);
    if (rc != DAXHEAP_OK) return fail("daxheap_objects_class_stats", rc);
    for (size_t i = 0; i < class_count; i++) {
        printf("size class %" PRIu64 " bytes: %" PRIu64 " objects in %" PRIu64 " chunks\n",
               classes[i].block_size, classes[i].objects, classes[i].chunks);
    }
    return 0;
}

/* A visitor of daxheap_arena_list: prints one arena. */
static int print_arena(void *arg, const char *name, uint64_t size) {
    (void)arg;
    printf("arena \"%s\": %" PRIu64 " bytes\n", name, size);
    return 0;
}

/* The object heap in the arena "list": opened (or created on the first run), one context. */
static int use_objects(daxheap *heap) {
    daxheap_objects *objects = NULL;
    int rc = daxheap_objects_open(heap, "list", &objects);
    if (rc == DAXHEAP_ENOENT) {
        if ((rc = daxheap_objects_create(heap, "list", 8 * MIB, &objects)) != DAXHEAP_OK) return fail("daxheap_objects_create", rc);
        printf("created an object heap in the arena \"list\"\n");
    } else if (rc != DAXHEAP_OK) {
        return fail("daxheap_objects_open", rc);
    }
    daxheap_objctx *ctx = NULL;  /* one per thread */
    int failed = 1;
    if ((rc = daxheap_objctx_open(objects, &ctx)) != DAXHEAP_OK) {
        fail("daxheap_objctx_open", rc);
    } else {
        failed = push_and_print(objects, ctx);
        if ((rc = daxheap_objctx_close(ctx)) != DAXHEAP_OK) failed = fail("daxheap_objctx_close", rc);
    }
    if ((rc = daxheap_objects_close(objects)) != DAXHEAP_OK) failed = fail("daxheap_objects_close", rc);
    return failed;
}

int main(int argc, char **argv) {
    if (argc != 2) {
        fprintf(stderr, "usage: %s HEAPPATH   (a device-dax, or a file: created with 64 MiB if absent)\n", argv[0]);
        return 2;
    }
    daxheap *heap = NULL;
    if (open_or_create(argv[1], &heap) != 0) return 1;
    int failed = count_run(heap) || use_window(heap) || show_errors(heap) || use_objects(heap);
    int rc;
    if (!failed && (rc = daxheap_arena_list(heap, print_arena, NULL)) != DAXHEAP_OK) failed = fail("daxheap_arena_list", rc);
    daxheap_close(heap);  /* unmaps and unlocks now: no window is open */
    return failed ? 1 : 0;
}
