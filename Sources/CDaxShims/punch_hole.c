#define _GNU_SOURCE
#include "CDaxShims.h"
#include <fcntl.h>
#include <linux/falloc.h>

int CDaxShims_punch_hole(int fd, uint64_t offset, uint64_t length) {
    return fallocate(fd, FALLOC_FL_PUNCH_HOLE | FALLOC_FL_KEEP_SIZE, (off_t)offset, (off_t)length);
}
