/* The io_uring backend's submission side (uring.c holds the rest): the
 * ring's set-up, and the queue of requests on their way to the kernel,
 * with a backlog for those that find the ring full, in order. */
#ifdef CPORT_HAVE_IO_URING
#include "uring.h"

#include <errno.h>
#include <stdlib.h>
#include <string.h>

#define RING_ENTRIES 1024u

/* The ring, set up for one submitter when asked and the kernel has it
 * (6.1+), else with COOP_TASKRUN (5.19+: no interrupt per completion),
 * else plainly. */
static int ring_init(ur_ctx *ur, bool single, unsigned entries) {
  int rc = -EINVAL;
  if (single) {
    rc = io_uring_queue_init(entries, &ur->ring,
                             IORING_SETUP_SINGLE_ISSUER | IORING_SETUP_DEFER_TASKRUN);
    ur->single = rc == 0;
  }
  if (rc == -EINVAL) rc = io_uring_queue_init(entries, &ur->ring, IORING_SETUP_COOP_TASKRUN);
  if (rc == -EINVAL) rc = io_uring_queue_init(entries, &ur->ring, 0);
  return rc;
}

/* The ring's size: RING_ENTRIES, or CPORT_IO_URING_ENTRIES, a test hook
 * (a tiny ring fills at once, so its full-ring paths run all the time;
 * with CPORT_IO_URING_BACKLOG=1 too, every entry that finds it full goes
 * through the backlog, the path of a kernel that refuses). */
static unsigned ring_entries(void) {
  const char *v = cp_getenv("CPORT_IO_URING_ENTRIES");
  long n = v ? strtol(v, NULL, 10) : 0;
  return n >= 1 && n <= 4096 ? (unsigned)n : RING_ENTRIES;
}

/* Hands the ring's queued SQEs to the kernel. It may refuse them for now
 * (EBUSY, EAGAIN: it wants completions reaped first, which only the poller
 * does, and perhaps not this thread): they stay queued, and the poller's
 * next enter submits them. Never a loop waiting for the kernel. */
static bool submit_some(ur_ctx *ur) {
  int rc = io_uring_submit(&ur->ring);
  if (rc == -EINTR) rc = io_uring_submit(&ur->ring);
  return rc > 0;
}

/* A slot at the end of the backlog (zeroed), or NULL without memory. */
static struct io_uring_sqe *backlog_slot(ur_ctx *ur) {
  struct sqe_backlog *b = &ur->backlog;
  if (b->n == b->cap) {
    unsigned cap = b->cap ? 2 * b->cap : 64;
    struct io_uring_sqe *v = cp_realloc(b->v, cap * sizeof *v);
    if (!v) return NULL;
    b->v = v;
    b->cap = cap;
  }
  struct io_uring_sqe *sqe = &b->v[b->n++];
  memset(sqe, 0, sizeof *sqe);
  return sqe;
}

/* Moves what the backlog holds into the ring, as far as it has room. */
void ur_backlog_drain(ur_ctx *ur) {
  struct sqe_backlog *b = &ur->backlog;
  struct io_uring_sqe *sqe;
  while (b->head < b->n && (sqe = io_uring_get_sqe(&ur->ring)) != NULL) *sqe = b->v[b->head++];
  if (b->head == b->n) b->head = b->n = 0;
}

/* A free SQE; sq_mu held. A full ring is submitted to make room; if the
 * kernel takes nothing now, the entry waits in the backlog, behind any
 * already there, so requests reach the kernel in the order they were
 * made (a cancel never overtakes its op). Without memory for that, the
 * one remaining choice is to wait for the ring. */
struct io_uring_sqe *ur_get_sqe(ur_ctx *ur) {
  struct io_uring_sqe *sqe = NULL;
  if (ur->backlog.head == ur->backlog.n) {
    sqe = io_uring_get_sqe(&ur->ring);
    if (!sqe && !ur->refuse_test && submit_some(ur)) sqe = io_uring_get_sqe(&ur->ring);
  }
  if (!sqe) sqe = backlog_slot(ur);
  while (!sqe) {
    submit_some(ur);
    sqe = io_uring_get_sqe(&ur->ring);
  }
  return sqe;
}

void ur_submit_locked(ur_ctx *ur) {
  ur_backlog_drain(ur);
  submit_some(ur);
  ur->unsubmitted = false;
}

/* An SQE was queued (sq_mu held): a waiting poller needs it now; otherwise
 * the next poll submits everything queued in one system call. */
void ur_queued_locked(ur_ctx *ur) {
  if (ur->poller_waiting)
    ur_submit_locked(ur);
  else
    ur->unsubmitted = true;
}

/* Makes the SQEs queued so far visible to the kernel, and returns how many
 * it has not consumed: what liburing's io_uring_submit does before it
 * enters, without entering (liburing 2.3 has no public call for it; its
 * SQ array maps each slot to itself since set-up). sq_mu held. */
unsigned ur_flush_sq(struct io_uring *ring) {
  struct io_uring_sq *sq = &ring->sq;
  unsigned tail = sq->sqe_tail;
  if (sq->sqe_head != tail) {
    sq->sqe_head = tail;
    io_uring_smp_store_release(sq->ktail, tail);
  }
  return tail - io_uring_smp_load_acquire(sq->khead);
}

int ur_ring_init(ur_ctx *ur, bool single) { return ring_init(ur, single, ring_entries()); }

#endif
