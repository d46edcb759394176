/* The buffers io_uring's multishot receives land in (uring_bufs.c). */
#ifndef CPORT_URING_BUFS_H
#define CPORT_URING_BUFS_H
#ifdef CPORT_HAVE_IO_URING

#include "posix.h"

#include <liburing.h>

/* The buffer group the ring's multishot recvs name. */
#define UR_BUF_GROUP 0

typedef struct ur_bufs ur_bufs;

/* Registers a buffer ring of buf_len-byte buffers with ring. NULL when the
 * kernel has none (before 5.19) or without memory: multishot recvs then
 * bring their own buffers. Its size is CPORT_IO_URING_BUFS if set (a test
 * hook: a tiny ring, all of it filled, runs dry at once), else a default.
 * No buffer is made until ur_bufs_fill. */
ur_bufs *ur_bufs_create(struct io_uring *ring, uint32_t buf_len);
/* Frees every buffer the ring still holds; the ring must be gone. */
void ur_bufs_free(ur_bufs *p);
uint32_t ur_bufs_len(const ur_bufs *p);
/* Gives each slot without a buffer a new one and the message record that
 * will carry it, and hands them to the kernel. false: memory ran short and
 * some slots stay empty (a later fill tries again). The poller only. */
bool ur_bufs_fill(ur_bufs *p);
/* Whether the last fill left slots empty for want of memory. */
bool ur_bufs_short(const ur_bufs *p);
/* Gives back every buffer the ring holds, and its records, and makes it
 * keep its first number of buffers again from the next fill on: for an
 * idle context, with no request in the kernel or queued for it that may
 * pick a buffer (the caller makes sure). 1: trimmed; 0: nothing to trim,
 * or the kernel kept the ring as it was; -1: the ring could not be
 * registered again, and lends no buffer from now on (every fill is
 * short). The poller only. */
int ur_bufs_trim(ur_bufs *p, struct io_uring *ring);
/* The ring ran dry (ENOBUFS): keep twice as many buffers in it, up to its
 * size, from the next fill on (once per fill). The poller only. */
void ur_bufs_grow(ur_bufs *p);
/* The buffer the kernel filled, by the id in its CQE, and its record; the
 * slot is empty until the next fill. NULL for an id it never lent. The
 * poller only. */
void *ur_bufs_take(ur_bufs *p, unsigned id, cp_op **rec);

#endif
#endif
