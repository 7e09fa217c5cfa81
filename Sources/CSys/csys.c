#define _GNU_SOURCE
#include <fcntl.h>
#include <unistd.h>
#include <errno.h>
#include <stdio.h>
#include <limits.h>
#if defined(__GLIBC__)
#include <malloc.h>
#endif
#include "csys.h"

long sfnet_copy_file_range(int in, long long *off_in, int out, size_t len) {
#ifdef __linux__
    off64_t o = (off64_t)*off_in;
    ssize_t n = copy_file_range(in, &o, out, NULL, len, 0);
    *off_in = (long long)o;
    return (long)n;
#else
    errno = ENOSYS;
    return -1;
#endif
}

int sfnet_start_writeback(int fd, long long off, long long n) {
#ifdef __linux__
    return sync_file_range(fd, (off64_t)off, (off64_t)n, SYNC_FILE_RANGE_WRITE);
#else
    return 0;
#endif
}

int sfnet_rename_exchange(const char *a, const char *b) {
#if defined(__linux__) && defined(RENAME_EXCHANGE)
    return renameat2(AT_FDCWD, a, AT_FDCWD, b, RENAME_EXCHANGE);
#else
    errno = ENOSYS;
    return -1;
#endif
}

int sfnet_malloc_keep_freed_pages(size_t mmap_max) {
#if defined(__GLIBC__)
    return mallopt(M_MMAP_THRESHOLD, (int)mmap_max) == 1 && mallopt(M_TRIM_THRESHOLD, INT_MAX) == 1;
#else
    (void)mmap_max;
    return 0;
#endif
}
