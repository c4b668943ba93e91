#ifndef DROVER_SYSTEM_H
#define DROVER_SYSTEM_H

#include <sys/types.h>

/// Frees the disk blocks of bytes [offset, offset + length) of the file open as `fd`, keeping
/// its size: reads there give zeros. Returns 0, or -1 with errno set (EOPNOTSUPP where the file
/// system cannot punch holes).
int drover_punch_hole(int fd, off_t offset, off_t length);

#endif
