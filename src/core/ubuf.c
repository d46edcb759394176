/* Buffers the library hands to users: cport_recv_alloc's, the chunks of a
 * multishot recv, lookup answers. cport_free releases any of them, so each
 * carries a small header in front that says whose it is: a multishot
 * recv's chunk counts against otp.rcv_outstanding until it is released,
 * and its release may let the paused recv read again (multi.c). */
#include "core.h"

#include <stdlib.h>

typedef struct ubuf_header {
  cp_bufs *owner;  /* NULL: a plain buffer */
  uint32_t handed; /* the user has it: its release counts */
  uint32_t unused;
} ubuf_header;
_Static_assert(sizeof(ubuf_header) == 16, "the data after the header stays 16-byte aligned");

static ubuf_header *header_of(void *buf) { return (ubuf_header *)buf - 1; }

void *cp_ubuf_alloc(size_t len, cp_bufs *owner) {
  ubuf_header *h = cp_malloc(sizeof *h + len);
  if (!h) return NULL;
  h->owner = owner;
  h->handed = 0;
  h->unused = 0;
  if (owner) cp_bufs_ref(owner);
  return h + 1;
}

void cp_ubuf_hand_over(void *buf) {
  ubuf_header *h = header_of(buf);
  if (!h->owner || h->handed) return;
  h->handed = 1;
  cp_bufs_handed(h->owner);
}

void cp_ubuf_adopt(void *buf, cp_bufs *owner) {
  ubuf_header *h = header_of(buf);
  h->owner = owner;
  cp_bufs_ref(owner);
}

void cport_free(void *buf) {
  if (!buf) return;
  ubuf_header *h = header_of(buf);
  if (h->owner) cp_bufs_release(h->owner, h->handed != 0);
  cp_free(h);
}
