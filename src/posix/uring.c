/* The io_uring backend: completion mode natively, select mode by poll.
 *
 * An operation first gets one non-blocking try (a nowait call that can
 * finish at once must), unless the ring's last result says the direction
 * is exhausted (a read that emptied the socket): then the try could only
 * fail. What would block is submitted as a native recv/send, or as a
 * one-shot poll for accept, connect, datagrams and select operations.
 * Only the head of each direction is in the kernel, so messages keep
 * posting order and sends never interleave. Any thread may queue SQEs
 * (under sq_mu); the poller submits them and waits in one io_uring_enter,
 * and a thread that queues while a poller waits submits at once. Only the
 * poller reaps completions.
 *
 * A single-thread context (cport_ctx_options.single_thread) sets the ring
 * up for one submitter, as the fastest io_uring programs do: the kernel
 * then runs completion work only when that thread enters to wait for it.
 * Worker threads still end jobs, and their wake-ups cannot submit to such
 * a ring, so they write an eventfd that the poller keeps a read armed on. */
#ifdef CPORT_HAVE_IO_URING
#define _GNU_SOURCE /* accept4 flags */
#include "uring.h"
#include "posix.h"

#include <errno.h>
#include <liburing.h>
#include <poll.h>
#include <stdlib.h>
#include <string.h>
#include <sys/eventfd.h>
#include <unistd.h>

#define MAX_REAP 256u
#define MAX_BATCHES_PER_POLL 2u
#define WAKE_KEY 1u   /* user_data of a wake-up NOP */
#define IGNORE_KEY 2u /* user_data of cancel requests: their own results don't matter */

static ur_ctx *state_of(cport_ctx *ctx) { return cp_ctx_backend(ctx); }

/* sq_mu is for several submitting threads; a single-thread context's ring
 * has one (its workers' wake-ups write wakefd instead). */
static void sq_lock(ur_ctx *ur) {
  if (!ur->single) cp_mutex_lock(&ur->sq_mu);
}
static void sq_unlock(ur_ctx *ur) {
  if (!ur->single) cp_mutex_unlock(&ur->sq_mu);
}

static int ur_ctx_init(cport_ctx *ctx) {
  ur_ctx *ur = cp_calloc(1, sizeof *ur);
  if (!ur) return CPORT_ENOMEM;
  int rc = ur_ring_init(ur, cp_ctx_single_thread(ctx));
  ur->refuse_test = cp_getenv("CPORT_IO_URING_BACKLOG") != NULL;
  if (rc < 0) {
    cp_free(ur);
    return rc == -ENOSYS || rc == -EPERM ? CPORT_ENOTSUP : cp_errno_to_err(-rc);
  }
  ur->wakefd = ur->single ? eventfd(0, EFD_NONBLOCK | EFD_CLOEXEC) : -1;
  if (ur->single && ur->wakefd < 0) {
    rc = cp_errno_to_err(errno);
    io_uring_queue_exit(&ur->ring);
    cp_free(ur);
    return rc;
  }
  if (!(ur->ring.features & IORING_FEAT_EXT_ARG) || cp_mutex_init(&ur->sq_mu) != 0) {
    io_uring_queue_exit(&ur->ring); /* a timed wait would need the SQ */
    if (ur->wakefd >= 0) close(ur->wakefd);
    cp_free(ur);
    return CPORT_ENOTSUP;
  }
  /* A registered ring descriptor is the registering thread's own, so only
   * a single-thread context can use one: it spares each enter a file
   * lookup. Kernels before 5.18 lack it, which costs nothing. */
  if (ur->single) ur->ring_registered = io_uring_register_ring_fd(&ur->ring) == 1;
  ur->bufs = ur_bufs_create(&ur->ring, CP_DEFAULT_RCVBUF);
  cp_ctx_set_backend(ctx, ur);
  return CPORT_OK;
}

static void ur_ctx_free(cport_ctx *ctx) {
  ur_ctx *ur = state_of(ctx);
  sq_lock(ur);
  ur_submit_locked(ur); /* a close queued behind the ring (close_behind_ring) is not lost */
  sq_unlock(ur);
  io_uring_queue_exit(&ur->ring);
  ur_bufs_free(ur->bufs); /* the kernel let go of them with the ring */
  if (ur->wakefd >= 0) close(ur->wakefd);
  cp_free(ur->backlog.v);
  cp_mutex_destroy(&ur->sq_mu);
  cp_free(ur);
}

static int fd_of(cp_sock *s) { return (int)s->os; }

static unsigned poll_mask(const cp_op *op) { return op->dir == CP_RD ? POLLIN : POLLOUT; }

/* Ops that wait for readiness and then retry the syscall: select ops,
 * connect (SO_ERROR after POLLOUT), accept (the kernel's native accept
 * was seen to hand out a descriptor past a full RLIMIT_NOFILE table, where
 * accept4 reports EMFILE as the contract wants), datagrams (which need
 * recvmsg's address and truncation flag), msg ops (control data), and
 * recvs of otp.zero_read sockets (no buffer in the kernel while idle). */
static bool by_poll(const cp_sock *s, const cp_op *op) {
  return op->select || (op->kind != CPORT_OP_RECV && op->kind != CPORT_OP_SEND) ||
         s->type == CPORT_SOCK_DGRAM || (op->kind == CPORT_OP_RECV && s->zero_read);
}

/* Per op, in op->be, by kind. held: a multishot recv's chunks that came
 * while it was paused (the kernel's request is stopped with a cancel, but
 * what it received before that is the user's), kept in order, each in the
 * record of its slot (buf, done), until a release lets them go.
 * end_status: what ends a multishot accept once the kernel lets go of its
 * poll. */
typedef union ur_op {
  cp_op *held;
  int end_status;
} ur_op;
_Static_assert(sizeof(ur_op) <= CP_BACKEND_OP_SIZE, "ur_op fits in cp_op.be");

static ur_op *op_state(cp_op *op) { return (ur_op *)(void *)op->be; }

/* A multishot accept waits on one poll that stays armed (5.13+): each
 * readiness CQE accepts what waits, with accept4 as every accept here. */
static bool poll_multi(ur_ctx *ur, const cp_op *op) {
  return op->multi && op->kind == CPORT_OP_ACCEPT && !op->select &&
         !atomic_load(&ur->poll_multi_off);
}

/* Hands the rest of op to the kernel; its CQE comes back to reap(). */
static void submit_op(cp_sock *s, cp_op *op) {
  ur_ctx *ur = state_of(s->ctx);
  sq_lock(ur);
  struct io_uring_sqe *sqe = ur_get_sqe(ur);
  if (op->kbuf) {
    io_uring_prep_recv_multishot(sqe, fd_of(s), NULL, 0, 0);
    sqe->flags |= IOSQE_BUFFER_SELECT;
    sqe->buf_group = UR_BUF_GROUP;
    if (!op->os_multi) atomic_fetch_add(&ur->bufs_users, 1u);
    atomic_store(&ur->bufs_wanted, true); /* a trim may have stopped the fills */
    op->os_multi = 1;
  } else if (poll_multi(ur, op)) {
    io_uring_prep_poll_multishot(sqe, fd_of(s), POLLIN);
    op_state(op)->end_status = 0;
    op->os_multi = 1;
  } else if (by_poll(s, op))
    io_uring_prep_poll_add(sqe, fd_of(s), poll_mask(op));
  else if (op->kind == CPORT_OP_RECV)
    io_uring_prep_recv(sqe, fd_of(s), op->buf + op->done, op->len - op->done, 0);
  else
    io_uring_prep_send(sqe, fd_of(s), op->buf + op->done, op->len - op->done, MSG_NOSIGNAL);
  io_uring_sqe_set_data(sqe, op);
  ur_queued_locked(ur);
  sq_unlock(ur);
  op->started = 1;
}

static void submit_cancel(cp_sock *s, cp_op *op) {
  ur_ctx *ur = state_of(s->ctx);
  sq_lock(ur);
  struct io_uring_sqe *sqe = ur_get_sqe(ur);
  io_uring_prep_cancel(sqe, op, 0);
  io_uring_sqe_set_data64(sqe, IGNORE_KEY);
  ur_queued_locked(ur);
  sq_unlock(ur);
}

/* Per socket, in s->be (zeroed when a slot is reused). */
typedef struct ur_sock {
  cp_posix_sock px; /* first: the POSIX layer's; its exhausted hint is epoll's */
  /* Per cp_dir: the ring's last read there came back short, so the socket
   * was empty then. Only the ring's own results set it: a short read in
   * user space may have met the peer's FIN, which the next try must see
   * at once, and no event would tell the ring so. */
  uint8_t ring_empty[2];
} ur_sock;
_Static_assert(sizeof(ur_sock) <= CP_BACKEND_SOCK_SIZE, "ur_sock fits in cp_sock.be");

static ur_sock *sock_state(cp_sock *s) { return (ur_sock *)(void *)s->be; }

static cp_op **held_of(cp_op *op) { return &op_state(op)->held; }

static void hold(cp_op *op, cp_op *rec, void *buf, size_t len) {
  rec->buf = buf;
  rec->done = len;
  rec->next = NULL;
  cp_op **tail = held_of(op);
  while (*tail) tail = &(*tail)->next;
  *tail = rec;
}

/* op's next chunk from the held list, back in op->buf/done; its record is
 * returned for the message. NULL if none is held. */
static cp_op *unhold(cp_op *op, uint32_t buf_len) {
  cp_op *rec = *held_of(op);
  if (!rec) return NULL;
  *held_of(op) = rec->next;
  op->buf = rec->buf;
  op->done = rec->done;
  op->len = buf_len;
  op->owns_buf = 1;
  return rec;
}

/* Held chunks become messages until op pauses again (true) or none is
 * left (false). past_limit: op is about to end, so all of them go first,
 * and its final message is the last. */
static bool deliver_held(cp_sock *s, cp_op *op, bool past_limit) {
  cp_op *rec;
  while ((rec = unhold(op, cp_rcvbuf(s))) != NULL)
    if (cp_multi_chunk(s, op, rec) && !past_limit) return true;
  return false;
}

static void flush_held(cp_sock *s, cp_op *op) {
  if (op->kbuf) deliver_held(s, op, true);
}

/* A try in user space, unless the ring just found the socket empty: a recv
 * then would only hear EAGAIN, and the kernel would fail once more before
 * it arms its poll. The ring completes a recv of data already there at
 * once, so nothing waits longer for the skip. */
static int ur_try_now(cp_sock *s, cp_op *op) {
  if (sock_state(s)->ring_empty[op->dir]) return CP_PENDING;
  return cp_posix_try(s, op);
}

/* A select op goes to the kernel as a poll (trying would consume the
 * data); the rest get one non-blocking try first, where it may succeed. */
static int ur_attempt(cp_sock *s, cp_op *op, bool ready) {
  (void)ready;
  int rc = op->select || op->kbuf ? CP_PENDING : ur_try_now(s, op);
  if (rc == CP_PENDING) submit_op(s, op);
  return rc;
}

static int ur_sock_open(cp_sock *s) { return cp_posix_socket(s); }
static int ur_sock_adopt(cp_sock *s) {
  (void)s;
  return CPORT_OK;
}

/* A socket whose every call answers with a message (otp.defer) gains
 * nothing from a try in user space: its sends and recvs go straight to the
 * ring, where one enter submits a whole poll's worth. */
static int ur_start(cp_sock *s, cp_op *op) {
  if (cp_dir_active(s, op->dir) != op) return CP_PENDING; /* behind others: FIFO */
  /* Resumed: the chunks held while it was paused go first. */
  if (op->kbuf && !op->cancelled && !op->closed && deliver_held(s, op, false)) return CP_PENDING;
  if (op->os_multi) return CP_PENDING; /* still in the kernel: its end arms it again */
  bool no_try = op->tried || op->kbuf || (s->defer && !op->select);
  int rc = no_try ? CP_PENDING : ur_try_now(s, op);
  if (rc == CP_PENDING) submit_op(s, op);
  return rc;
}

static void ur_cancel(cp_sock *s, cp_op *op) {
  if (op->started) {
    submit_cancel(s, op); /* its CQE ends it, with its data if it won */
  } else {
    flush_held(s, op);
    cp_op_cancel_now(s, op);
  }
}

/* An SQE names its socket by descriptor number, which the kernel resolves
 * when the entry is submitted. Entries of a socket being closed may still
 * wait in the ring (queued since the last poll) or in the backlog: closed
 * now, the number could go to a new socket (the next accept or open) and
 * those entries would run on it. So they go to the kernel first; if it
 * takes them all, the caller closes the descriptor (returns true). If it
 * refuses some for now, the close itself is queued behind them
 * (IORING_OP_CLOSE), and the number stays taken until the kernel gets
 * there (returns false). */

static bool close_behind_ring(ur_ctx *ur, int fd) {
  sq_lock(ur);
  ur_submit_locked(ur);
  bool all_taken = ur->backlog.head == ur->backlog.n && ur_flush_sq(&ur->ring) == 0;
  if (!all_taken) {
    struct io_uring_sqe *sqe = ur_get_sqe(ur);
    io_uring_prep_close(sqe, fd);
    io_uring_sqe_set_data64(sqe, IGNORE_KEY);
    ur_queued_locked(ur);
  }
  sq_unlock(ur);
  return all_taken;
}

/* The kernel holds its own file reference, so closing the fd alone would
 * not end the requests in flight: cancel them, and end the rest now. */
static void ur_sock_close(cp_sock *s) {
  bool in_ring = false;
  for (int dir = CP_RD; dir <= CP_WR; dir++)
    for (cp_op *op = s->dirs[dir].head; op; op = op->next)
      if (op->state == CP_OP_PENDING && op->started) {
        submit_cancel(s, op);
        in_ring = true;
      } else if (op->state == CP_OP_PENDING) {
        flush_held(s, op);
      }
  cp_sock_drain(s); /* ops queued behind a kernel-held one wait their turn to be delivered */
  if (in_ring && !close_behind_ring(state_of(s->ctx), fd_of(s))) return;
  close(fd_of(s));
}

/* What a ring result says of the socket's direction: a recv that got some
 * but less than it asked for emptied the receive queue; any other result
 * (a full read, EOF, an error, a send, a poll's readiness) means the next
 * try may succeed at once. */
static void note_result(cp_sock *s, const cp_op *op, int res) {
  bool short_read =
      op->kind == CPORT_OP_RECV && !by_poll(s, op) && res > 0 && (size_t)res < op->len - op->done;
  sock_state(s)->ring_empty[op->dir] = short_read;
}

/* What a CQE result means for op: CPORT_OK, CP_PENDING (resubmit), or an
 * error. */
static int interpret(cp_sock *s, cp_op *op, int res) {
  if (res == -ECANCELED) return CPORT_ECANCELED;
  note_result(s, op, res);
  if (op->select) return res < 0 && res != -EINTR ? cp_errno_to_err(-res) : CPORT_OK;
  /* A closed socket's descriptor number may already name another socket:
   * readiness reported for it is never followed by a system call. */
  if (by_poll(s, op)) return op->closed ? CPORT_ECANCELED : cp_posix_try(s, op);
  if (res == -EINTR || res == -EAGAIN) return CP_PENDING;
  if (res < 0) return cp_errno_to_err(-res);
  op->done += (size_t)res;
  if (op->kind == CPORT_OP_SEND) return op->done < op->len ? CP_PENDING : CPORT_OK;
  bool more = (op->flags & CPORT_WAITALL) && res > 0 && op->done < op->len;
  return more ? CP_PENDING : CPORT_OK;
}

static void end_op(cp_sock *s, cp_op *op, int status) {
  int dir = op->dir; /* op is freed once delivered */
  flush_held(s, op);
  cp_op_done(op, status);
  cp_dir_advance(s, dir, false);
}

/* A chunk the kernel filled: a message now, or held while op is paused
 * (the first chunk that reaches the limit pauses op and stops the
 * kernel's request). */
static void take_chunk(cp_sock *s, cp_op *op, int res, unsigned cflags, bool live) {
  ur_ctx *ur = state_of(s->ctx);
  cp_op *rec = NULL;
  void *buf = ur_bufs_take(ur->bufs, cflags >> IORING_CQE_BUFFER_SHIFT, &rec);
  if (!buf) return; /* an id it never lent: nothing of the user's */
  ur->bufs_proven = true;
  cp_ubuf_adopt(buf, op->bufs);
  if (op->paused || *held_of(op)) {
    hold(op, rec, buf, (size_t)res);
    return;
  }
  op->buf = buf;
  op->owns_buf = 1;
  op->len = ur_bufs_len(ur->bufs);
  op->done = (size_t)res;
  if (cp_multi_chunk(s, op, rec) && live) submit_cancel(s, op);
}

/* A CQE of a multishot recv (op->kbuf). While the request goes on
 * (IORING_CQE_F_MORE) each chunk is taken; the request's last CQE decides
 * whether op ends, waits for a release or is armed again. */
static void chunk_done(cp_sock *s, cp_op *op, int res, unsigned cflags) {
  ur_ctx *ur = state_of(s->ctx);
  bool live = (cflags & IORING_CQE_F_MORE) != 0;
  if (!live && op->os_multi) atomic_fetch_sub(&ur->bufs_users, 1u);
  if (!live) op->os_multi = op->started = 0;
  if (res > 0 && (cflags & IORING_CQE_F_BUFFER)) {
    take_chunk(s, op, res, cflags, live);
    res = -ECANCELED; /* if the request is over too: as after a stop */
  }
  if (live) return;
  if (res == -EINVAL && !ur->bufs_proven) { /* a kernel with buffer rings, not multishot recv */
    atomic_store(&ur->bufs_off, true);
    op->kbuf = 0;
    cp_multi_arm(s, op);
  } else if (res >= 0) {
    end_op(s, op, CPORT_OK); /* 0: EOF */
  } else if (res != -ECANCELED && res != -ENOBUFS) {
    end_op(s, op, cp_errno_to_err(-res));
  } else if (op->cancelled || op->closed) {
    end_op(s, op, CPORT_ECANCELED);
  } else if (res == -ENOBUFS && ur_bufs_short(ur->bufs)) {
    end_op(s, op, CPORT_ENOMEM);
  } else {
    if (res == -ENOBUFS) ur_bufs_grow(ur->bufs);
    if (!op->paused) cp_multi_arm(s, op); /* the release that resumes a paused op arms it */
  }
}

/* A multishot accept's poll fired: accept every connection that waits,
 * each delivered in a record reserved before its accept, so none is lost
 * for want of memory. A result that ends the handle (EMFILE, no memory)
 * cannot end it while the kernel holds the poll, whose CQEs name op: it
 * is kept, and the poll cancelled; its last CQE ends op. */
static void accept_ready(cp_sock *s, cp_op *op) {
  while (!op->cancelled && !op->closed && s->state == CP_SOCK_OPEN) {
    cp_op *rec = cp_op_blank();
    int rc = rec ? cp_posix_try(s, op) : CPORT_ENOMEM;
    if (rc == CPORT_OK) {
      cp_multi_result(s, op, rec);
      continue;
    }
    if (rec) cp_free(rec);
    if (rc != CP_PENDING) {
      op_state(op)->end_status = rc;
      submit_cancel(s, op);
    }
    return;
  }
}

/* A CQE of a multishot accept's poll. Its last one (no IORING_CQE_F_MORE:
 * cancelled, or dropped by the kernel) ends op, or arms it again. */
static void accept_event(cp_sock *s, cp_op *op, int res, unsigned cflags) {
  ur_op *st = op_state(op);
  if (cflags & IORING_CQE_F_MORE) {
    if (!st->end_status) accept_ready(s, op);
    return;
  }
  op->os_multi = op->started = 0;
  if (st->end_status)
    end_op(s, op, st->end_status);
  else if (op->cancelled || op->closed)
    end_op(s, op, CPORT_ECANCELED);
  else if (res < 0 && res != -EINVAL && res != -ECANCELED)
    end_op(s, op, cp_errno_to_err(-res));
  else {
    if (res == -EINVAL) atomic_store(&state_of(s->ctx)->poll_multi_off, true); /* before 5.13 */
    cp_multi_arm(s, op); /* accepts what waits, then a new poll */
  }
}

static void complete(cp_op *op, int res, unsigned cflags) {
  cp_sock *s = op->sock;
  cp_sock_relock(s);
  if (op->kbuf || op->os_multi) {
    if (op->kbuf)
      chunk_done(s, op, res, cflags);
    else
      accept_event(s, op, res, cflags);
    cp_sock_unlock(s);
    return;
  }
  op->started = 0;
  int rc = interpret(s, op, res);
  if (rc == CP_PENDING && (op->closed || op->cancelled)) rc = CPORT_ECANCELED;
  if (rc == CP_PENDING)
    submit_op(s, op);
  else {
    int dir = op->dir; /* op is freed once delivered */
    cp_op_done(op, rc);
    cp_dir_advance(s, dir, false);
  }
  cp_sock_unlock(s);
}

static void reap(ur_ctx *ur, struct io_uring_cqe **batch, unsigned n) {
  for (unsigned i = 0; i < n; i++) {
    uint64_t key = io_uring_cqe_get_data64(batch[i]);
    int res = batch[i]->res;
    unsigned cflags = batch[i]->flags;
    io_uring_cqe_seen(&ur->ring, batch[i]);
    if (key == WAKE_KEY) {
      ur->wake_armed = false; /* single: the read took the count */
      atomic_store(&ur->wake_pending, 0);
    } else if (key != IGNORE_KEY)
      complete((cp_op *)(uintptr_t)key, res, cflags);
  }
}

/* single: a read of wakefd, which ur_wake writes from any thread; sq_mu
 * held, on the one thread that may submit. */
static void arm_wakefd(ur_ctx *ur) {
  struct io_uring_sqe *sqe = ur_get_sqe(ur);
  io_uring_prep_read(sqe, ur->wakefd, &ur->wake_value, sizeof ur->wake_value, 0);
  io_uring_sqe_set_data64(sqe, WAKE_KEY);
  ur->wake_armed = true;
}

/* Submits what is queued and waits for a completion in one system call
 * (IORING_ENTER_EXT_ARG carries the timeout), or none at all when
 * completions are already there and nothing waits to go. Other threads
 * may submit meanwhile (poller_waiting): the kernel consumes each entry
 * once, whoever's count reaches it. */
static int submit_and_wait(ur_ctx *ur, int timeout_ms) {
  struct __kernel_timespec ts = {.tv_sec = timeout_ms / 1000,
                                 .tv_nsec = (long long)(timeout_ms % 1000) * 1000000};
  sq_lock(ur);
  if (ur->single && !ur->wake_armed) arm_wakefd(ur);
  if (atomic_load(&ur->bufs_wanted)) ur_bufs_fill(ur->bufs); /* before the kernel wants them */
  ur_backlog_drain(ur);
  bool behind = ur->backlog.n > 0; /* more to submit once this enter made room */
  unsigned to_submit = ur_flush_sq(&ur->ring);
  ur->unsubmitted = false;
  ur->poller_waiting = true;
  sq_unlock(ur);
  bool ready = io_uring_cq_ready(&ur->ring) > 0;
  if (ready && to_submit == 0) return 0;
  unsigned wait = ready || behind || timeout_ms == 0 ? 0u : 1u;
  struct io_uring_getevents_arg arg = {.ts = timeout_ms < 0 ? 0 : (uint64_t)(uintptr_t)&ts};
  /* DEFER_TASKRUN: completions are only made when asked for. */
  unsigned flags = IORING_ENTER_EXT_ARG | (wait || ur->single ? IORING_ENTER_GETEVENTS : 0u);
  int fd = ur->ring.ring_fd;
  if (ur->ring_registered) {
    fd = ur->ring.enter_ring_fd;
    flags |= IORING_ENTER_REGISTERED_RING;
  }
  int rc =
      io_uring_enter2((unsigned)fd, to_submit, wait, flags, (sigset_t *)(void *)&arg, sizeof arg);
  return rc < 0 ? rc : 0;
}

/* The buffer ring is a cache: it grows to what the busiest moment wanted
 * (up to 4,096 buffers of 16 KiB). A poll that could wait and brought no
 * completion, with no multishot recv left in the kernel or queued for it
 * (bufs_users, checked under sq_mu, which every submit takes), gives its
 * buffers back; the next multishot recv has the poller fill it again. The
 * poller only, so no fill or take runs meanwhile. */
static void trim_bufs(ur_ctx *ur) {
  sq_lock(ur);
  if (atomic_load(&ur->bufs_users) == 0) {
    atomic_store(&ur->bufs_wanted, false);
    if (ur_bufs_trim(ur->bufs, &ur->ring) < 0) atomic_store(&ur->bufs_off, true);
  }
  sq_unlock(ur);
}

static int ur_poll(cport_ctx *ctx, int timeout_ms) {
  ur_ctx *ur = state_of(ctx);
  int rc = submit_and_wait(ur, timeout_ms);
  struct io_uring_cqe *batch[MAX_REAP];
  unsigned n = io_uring_peek_batch_cqe(&ur->ring, batch, MAX_REAP);
  bool idle = n == 0 && timeout_ms != 0;
  /* Other threads filled in these ops, then submitted them holding sq_mu.
   * The kernel orders submission before completion, but only a lock taken
   * after the CQEs were seen orders it for the C11 memory model (and
   * TSan). The first such lock also ends this poller's wait. */
  sq_lock(ur);
  ur->poller_waiting = false;
  sq_unlock(ur);
  /* At most a few batches per poll: what is left stays in the CQ ring
   * (the kernel keeps overflow) rather than in the user's queues. */
  for (unsigned batches = 0; n > 0; batches++) {
    reap(ur, batch, n);
    n = batches + 1 < MAX_BATCHES_PER_POLL ? io_uring_peek_batch_cqe(&ur->ring, batch, MAX_REAP)
                                           : 0;
    if (n > 0) {
      sq_lock(ur);
      sq_unlock(ur);
    }
  }
  if (idle && atomic_load_explicit(&ur->bufs_wanted, memory_order_relaxed) &&
      atomic_load_explicit(&ur->bufs_users, memory_order_relaxed) == 0)
    trim_bufs(ur);
  /* EBUSY, EAGAIN: the kernel holds back until completions are reaped,
   * which this poll just did; what it did not take is still queued. */
  if (rc < 0 && rc != -ETIME && rc != -EINTR && rc != -EBUSY && rc != -EAGAIN)
    return cp_errno_to_err(-rc);
  return CPORT_OK;
}

/* Stream recvs of the buffers' size, when the kernel has a buffer ring and
 * did not refuse a multishot recv. */
static bool ur_kernel_buffers(cp_sock *s, cp_op *op) {
  ur_ctx *ur = state_of(s->ctx);
  (void)op;
  if (!ur->bufs || atomic_load(&ur->bufs_off) || s->type != CPORT_SOCK_STREAM ||
      cp_rcvbuf(s) != ur_bufs_len(ur->bufs))
    return false;
  atomic_store(&ur->bufs_wanted, true);
  *held_of(op) = NULL;
  return true;
}

static void ur_wake(cport_ctx *ctx) {
  ur_ctx *ur = state_of(ctx);
  if (atomic_exchange(&ur->wake_pending, 1)) return;
  if (ur->single) { /* only the ring's thread may submit */
    uint64_t one = 1;
    while (write(ur->wakefd, &one, sizeof one) < 0 && errno == EINTR) {
    }
    return;
  }
  sq_lock(ur);
  struct io_uring_sqe *sqe = ur_get_sqe(ur);
  io_uring_prep_nop(sqe);
  io_uring_sqe_set_data64(sqe, WAKE_KEY);
  ur_queued_locked(ur); /* a poller not yet waiting submits it itself */
  sq_unlock(ur);
}

const cp_backend cp_backend_io_uring = {
    .id = CPORT_BACKEND_IO_URING,
    .name = "io_uring",
    .ctx_init = ur_ctx_init,
    .ctx_free = ur_ctx_free,
    .sock_open = ur_sock_open,
    .sock_adopt = ur_sock_adopt,
    .sock_close = ur_sock_close,
    .try_now = ur_try_now,
    .start = ur_start,
    .attempt = ur_attempt,
    .cancel = ur_cancel,
    .poll = ur_poll,
    .wake = ur_wake,
    .bind = cp_posix_bind,
    .listen = cp_posix_listen,
    .shutdown = cp_posix_shutdown,
    .sockname = cp_posix_sockname,
    .peername = cp_posix_peername,
    .kernel_buffers = ur_kernel_buffers,
};
#endif
