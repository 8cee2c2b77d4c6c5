#include <libpmem2.h>
