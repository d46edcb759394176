/* The allocator behind every allocation of the library
 * (cport_set_allocator; cp_malloc and friends in internal.h). */
#include "core.h"

#include <stdlib.h>

cp_allocator cp_mem = {malloc, realloc, calloc, free};

int cport_set_allocator(cport_malloc_fn malloc_fn, cport_realloc_fn realloc_fn,
                        cport_calloc_fn calloc_fn, cport_free_fn free_fn) {
  if (!malloc_fn || !realloc_fn || !calloc_fn || !free_fn) return CPORT_EINVAL;
  /* Memory a context holds would be freed by another allocator than the
   * one that gave it. */
  if (cp_ctx_live() > 0) return CPORT_EBUSY;
  cp_mem = (cp_allocator){malloc_fn, realloc_fn, calloc_fn, free_fn};
  return CPORT_OK;
}
