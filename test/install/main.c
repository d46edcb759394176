/* A consumer of the installed cport: built by test/install/CMakeLists.txt
 * (find_package) and by a plain compiler line using pkg-config. */
#include <cport.h>
#include <stdio.h>

int main(void) {
  cport_ctx *ctx = NULL;
  int rc = cport_ctx_create(&ctx, NULL);
  printf("cport_ctx_create: %s\n", cport_strerror(rc));
  if (rc != CPORT_OK) return 1;
  cport_ctx_destroy(ctx);
  return 0;
}
