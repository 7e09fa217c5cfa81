// Linux system calls that glibc only declares under _GNU_SOURCE, wrapped for Swift.
#pragma once
#include <stddef.h>

/// copy_file_range(2) from `in` at *off_in to `out` at its file position; -1 with errno on failure.
long sfnet_copy_file_range(int in, long long *off_in, int out, size_t len);
/// sync_file_range(2) with SYNC_FILE_RANGE_WRITE: start writeback of [off, off+n) without waiting.
int sfnet_start_writeback(int fd, long long off, long long n);
/// renameat2(2) with RENAME_EXCHANGE: swaps `a` and `b` atomically (both must exist); -1 with errno
/// (ENOSYS, EINVAL where the kernel or filesystem lacks it).
int sfnet_rename_exchange(const char *a, const char *b);
