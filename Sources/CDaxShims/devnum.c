#include "CDaxShims.h"
#include <sys/sysmacros.h>

unsigned int CDaxShims_major(uint64_t dev) { return major(dev); }
unsigned int CDaxShims_minor(uint64_t dev) { return minor(dev); }
