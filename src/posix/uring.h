/* What the io_uring backend's files share: its per-context state
 * (uring.c) and its submission side (uring_sq.c). */
#ifndef CPORT_POSIX_URING_H
#define CPORT_POSIX_URING_H

#include "posix.h"
#include "uring_bufs.h"

#include <liburing.h>

typedef struct ur_ctx {
  struct io_uring ring;
  cp_mutex sq_mu;      /* submission queue: any thread */
  bool poller_waiting; /* sq_mu: a poller is inside the kernel wait */
  bool unsubmitted;    /* sq_mu: SQEs queued since the last submit */
  atomic_int wake_pending;
  bool single;          /* SINGLE_ISSUER | DEFER_TASKRUN: wake-ups by wakefd */
  bool ring_registered; /* single: enters name the ring by its registered index */
  bool wake_armed;      /* single: a read of wakefd is in the ring */
  int wakefd;           /* single: -1 otherwise */
  uint64_t wake_value;  /* single: where that read lands */
  struct sqe_backlog {  /* sq_mu: SQEs that found the ring full, in order */
    struct io_uring_sqe *v;
    unsigned head, n, cap;
  } backlog;
  bool refuse_test;           /* CPORT_IO_URING_BACKLOG: get_sqe acts as if the kernel refused */
  ur_bufs *bufs;              /* buffers for multishot recvs; NULL: the kernel has no buffer ring */
  atomic_bool bufs_wanted;    /* a multishot recv uses them: the poller fills them */
  atomic_bool bufs_off;       /* the kernel refused a multishot recv: never again */
  bool bufs_proven;           /* poller: the kernel filled one */
  atomic_bool poll_multi_off; /* the kernel refused a multishot poll: never again */
  /* sq_mu to raise, the poller to lower: multishot recvs queued for the
   * kernel or in it (their last CQE not yet reaped). At 0, an idle poll
   * gives the buffer ring's buffers back (trim_bufs). */
  atomic_uint bufs_users;
} ur_ctx;

/* The ring, for one submitter when single (and the kernel can). */
int ur_ring_init(ur_ctx *ur, bool single);
/* With sq_mu held: a free SQE (the ring's, or the backlog's); requests
 * reach the kernel in the order they were made. */
struct io_uring_sqe *ur_get_sqe(ur_ctx *ur);
/* With sq_mu held: everything queued to the kernel now. */
void ur_submit_locked(ur_ctx *ur);
/* With sq_mu held: an SQE was queued; a waiting poller gets it now. */
void ur_queued_locked(ur_ctx *ur);
/* With sq_mu held: the backlog into the ring, as far as it has room. */
void ur_backlog_drain(ur_ctx *ur);
/* With sq_mu held: the queued SQEs made visible to the kernel without
 * entering; how many it has not consumed. */
unsigned ur_flush_sq(struct io_uring *ring);

#endif
