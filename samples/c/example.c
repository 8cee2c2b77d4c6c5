/* A small C program on DaxHeap's C API (daxheap.h, libdaxheap.so).
 *
 *   cc example.c $(pkg-config --cflags --libs daxheap) -o daxheap-example
 *   ./daxheap-example /dev/shm/example.heap    # a file emulating a device-dax, or /dev/daxX.Y
 *
 * It creates the heap (64 MiB) if the path does not exist, else opens it; keeps a run
 * counter in the arena "example" (so a second run shows the first one's data); writes and
 * reads a message with the copying calls; maps the arena as a window, grows the arena under
 * it and stores through plain pointers into the new bytes; and shows the error path: a
 * status code and this thread's one-line message. Exit status 0 on success, 1 on an error. */
#include <daxheap.h>

#include <inttypes.h>
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

int main(int argc, char **argv) {
    if (argc != 2) {
        fprintf(stderr, "usage: %s HEAPPATH   (a device-dax, or a file: created with 64 MiB if absent)\n", argv[0]);
        return 2;
    }
    daxheap *heap = NULL;
    if (open_or_create(argv[1], &heap) != 0) return 1;
    int failed = count_run(heap) || use_window(heap) || show_errors(heap);
    daxheap_close(heap);  /* unmaps and unlocks now: no window is open */
    return failed ? 1 : 0;
}
