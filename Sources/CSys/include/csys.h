// Linux system calls that glibc only declares under _GNU_SOURCE, and glibc's malloc.h, wrapped for Swift.
#pragma once
#include <stddef.h>

/// copy_file_range(2) from `in` at *off_in to `out` at its file position; -1 with errno on failure.
long sfnet_copy_file_range(int in, long long *off_in, int out, size_t len);
/// sync_file_range(2) with SYNC_FILE_RANGE_WRITE: start writeback of [off, off+n) without waiting.
int sfnet_start_writeback(int fd, long long off, long long n);
/// renameat2(2) with RENAME_EXCHANGE: swaps `a` and `b` atomically (both must exist); -1 with errno
/// (ENOSYS, EINVAL where the kernel or filesystem lacks it).
int sfnet_rename_exchange(const char *a, const char *b);

/// glibc's allocator keeps what a training step frees for the next one: blocks up to `mmap_max` bytes come
/// from the heap instead of fresh mappings (M_MMAP_THRESHOLD) and freed memory is not trimmed back to the
/// kernel (M_TRIM_THRESHOLD). Returns 1 when both were applied, 0 elsewhere (no glibc, or refused).
int sfnet_malloc_keep_freed_pages(size_t mmap_max);
