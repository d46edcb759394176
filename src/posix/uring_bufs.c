/* A buffer ring (IORING_REGISTER_PBUF_RING): buffers lent to the kernel,
 * from which a multishot recv takes one per chunk as data comes, so an
 * idle connection holds no buffer, and one request serves every chunk.
 *
 * Each buffer is a user buffer (ubuf.c), so the chunk the kernel filled
 * goes to the user as it is, no copy, and a new one takes its slot at the
 * next fill. Each slot also holds the message record its chunk will need:
 * once the kernel has consumed bytes, only memory already in hand can
 * carry them to the user. The slots are refilled by the poller before it
 * enters the kernel, so between two polls the kernel can fill at most as
 * many chunks as slots hold buffers; beyond that a recv ends with ENOBUFS
 * and is armed again after the fill.
 *
 * So the ring is large (its slots cost 16 bytes each) but only some of
 * them hold buffers: INITIAL_BUFFERS at first, doubled at every ENOBUFS up
 * to the ring's size. The buffers in the ring then follow the number of
 * connections that receive between two polls (pingpong at 1,000
 * connections: about 1,000, the same memory as a one-shot recv per
 * connection), and an idle context holds few. */
#ifdef CPORT_HAVE_IO_URING
#include "uring_bufs.h"

#include <stdlib.h>
#include <sys/mman.h>

#define DEFAULT_ENTRIES 4096u
#define MAX_ENTRIES 32768u
#define INITIAL_BUFFERS 64u

typedef struct slot {
  void *buf; /* NULL: empty */
  cp_op *rec;
} slot;

struct ur_bufs {
  struct io_uring_buf_ring *br; /* shared with the kernel */
  size_t br_size;
  unsigned entries; /* a power of two */
  unsigned wanted;  /* slots to keep filled: initial .. entries */
  unsigned initial; /* wanted at first, and again after a trim */
  bool grown;       /* wanted grew since the last fill */
  bool lost;        /* a trim could not register the ring again: no buffer is lent any more */
  uint32_t buf_len;
  bool short_of_memory;
  unsigned n_empty;
  uint16_t *empty; /* ids of the empty slots */
  slot *slots;
};

static unsigned ring_entries(void) {
  const char *v = cp_getenv("CPORT_IO_URING_BUFS");
  unsigned long n = v ? strtoul(v, NULL, 10) : 0;
  if (n == 0 || n > MAX_ENTRIES || (n & (n - 1)) != 0) return DEFAULT_ENTRIES;
  return (unsigned)n;
}

static void release(ur_bufs *p) {
  if (p->br) munmap(p->br, p->br_size);
  cp_free(p->empty);
  cp_free(p->slots);
  cp_free(p);
}

ur_bufs *ur_bufs_create(struct io_uring *ring, uint32_t buf_len) {
  ur_bufs *p = cp_calloc(1, sizeof *p);
  if (!p) return NULL;
  p->entries = ring_entries();
  /* The test hook asks for a ring that runs dry: all of it from the start. */
  p->initial = cp_getenv("CPORT_IO_URING_BUFS") || p->entries < INITIAL_BUFFERS ? p->entries
                                                                                : INITIAL_BUFFERS;
  p->wanted = p->initial;
  p->buf_len = buf_len;
  p->br_size = p->entries * sizeof(struct io_uring_buf);
  p->empty = cp_malloc(p->entries * sizeof *p->empty);
  p->slots = cp_calloc(p->entries, sizeof *p->slots);
  void *br = mmap(NULL, p->br_size, PROT_READ | PROT_WRITE, MAP_ANONYMOUS | MAP_PRIVATE, -1, 0);
  p->br = br == MAP_FAILED ? NULL : br;
  if (!p->empty || !p->slots || !p->br) {
    release(p);
    return NULL;
  }
  io_uring_buf_ring_init(p->br);
  struct io_uring_buf_reg reg = {
      .ring_addr = (uint64_t)(uintptr_t)p->br, .ring_entries = p->entries, .bgid = UR_BUF_GROUP};
  if (io_uring_register_buf_ring(ring, &reg, 0) != 0) {
    release(p);
    return NULL;
  }
  for (unsigned i = 0; i < p->entries; i++) p->empty[p->n_empty++] = (uint16_t)(p->entries - 1 - i);
  return p;
}

void ur_bufs_free(ur_bufs *p) {
  if (!p) return;
  for (unsigned i = 0; i < p->entries; i++) {
    cport_free(p->slots[i].buf);
    cp_op_free_cached(NULL, p->slots[i].rec);
  }
  release(p);
}

uint32_t ur_bufs_len(const ur_bufs *p) { return p->buf_len; }

bool ur_bufs_short(const ur_bufs *p) { return p->short_of_memory; }

bool ur_bufs_fill(ur_bufs *p) {
  int mask = io_uring_buf_ring_mask(p->entries);
  int added = 0;
  p->short_of_memory = p->lost;
  if (p->lost) return false;
  p->grown = false;
  while (p->n_empty > p->entries - p->wanted) {
    uint16_t id = p->empty[p->n_empty - 1];
    void *buf = cp_ubuf_alloc(p->buf_len, NULL);
    cp_op *rec = buf ? cp_op_blank() : NULL;
    if (!rec) {
      cport_free(buf);
      p->short_of_memory = true;
      break;
    }
    p->slots[id] = (slot){buf, rec};
    p->n_empty--;
    io_uring_buf_ring_add(p->br, buf, p->buf_len, id, mask, added++);
  }
  if (added > 0) io_uring_buf_ring_advance(p->br, added); /* publishes them to the kernel */
  return !p->short_of_memory;
}

/* The kernel holds no request that could pick a buffer, so every buffer
 * in the ring is ours alone: unregister the ring, free them with their
 * records, and register it again, empty. */
int ur_bufs_trim(ur_bufs *p, struct io_uring *ring) {
  if (p->lost || (p->n_empty == p->entries && p->wanted == p->initial)) return 0;
  if (io_uring_unregister_buf_ring(ring, UR_BUF_GROUP) != 0) return 0; /* keep them */
  p->n_empty = 0;
  for (unsigned i = 0; i < p->entries; i++) {
    unsigned id = p->entries - 1 - i;
    cport_free(p->slots[id].buf);
    cp_op_free_cached(NULL, p->slots[id].rec);
    p->slots[id] = (slot){NULL, NULL};
    p->empty[p->n_empty++] = (uint16_t)id;
  }
  p->wanted = p->initial;
  p->grown = false;
  io_uring_buf_ring_init(p->br);
  struct io_uring_buf_reg reg = {
      .ring_addr = (uint64_t)(uintptr_t)p->br, .ring_entries = p->entries, .bgid = UR_BUF_GROUP};
  if (io_uring_register_buf_ring(ring, &reg, 0) != 0) {
    p->lost = true;
    p->short_of_memory = true;
    return -1;
  }
  return 1;
}

void ur_bufs_grow(ur_bufs *p) {
  /* Once per fill: every recv that found the ring dry reports it. */
  if (p->grown || p->wanted == p->entries) return;
  p->wanted *= 2;
  p->grown = true;
}

void *ur_bufs_take(ur_bufs *p, unsigned id, cp_op **rec) {
  if (id >= p->entries || !p->slots[id].buf) return NULL;
  void *buf = p->slots[id].buf;
  *rec = p->slots[id].rec;
  p->slots[id] = (slot){NULL, NULL};
  p->empty[p->n_empty++] = (uint16_t)id;
  return buf;
}
#endif
