/* The TLS layer's growing byte buffers (tls_buf), for the filter's
 * records and the engines' own. */
#include "tls.h"

#include <string.h>

bool tls_buf_reserve(tls_buf *b, size_t more) {
  if (b->cap - b->len >= more) return true;
  if (more > SIZE_MAX / 2 - b->len) return false;
  size_t cap = b->cap ? b->cap : 4096;
  while (cap - b->len < more) cap *= 2;
  char *d = cp_realloc(b->data, cap);
  if (!d) return false;
  b->data = d;
  b->cap = cap;
  return true;
}

bool tls_buf_add(tls_buf *b, const void *p, size_t n) {
  if (n == 0) return true;
  if (!tls_buf_reserve(b, n)) return false;
  memcpy(b->data + b->len, p, n);
  b->len += n;
  return true;
}
