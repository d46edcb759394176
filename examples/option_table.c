/*
 * option_table: prints, for this platform, every cport option with its level
 * and whether cport_is_supported says this system has it, one tab-separated
 * line each ("socket.reuseaddr<TAB>1"). scripts/option-table.sh runs it
 * natively and under Wine and joins the two into the README's table.
 */
#include "cport.h"

#include <stdio.h>

int main(void) {
  for (int level = CPORT_LEVEL_OTP; level <= CPORT_LEVEL_UDP; level++) {
    for (int opt = 100; opt < 700; opt++) {
      const char *name = cport_option_name((cport_level)level, (cport_option)opt);
      if (name) printf("%s\t%d\n", name, cport_is_supported((cport_level)level, (cport_option)opt));
    }
  }
  printf("family.unix\t%d\n", cport_family_supported(CPORT_AF_UNIX));
  printf("family.inet6\t%d\n", cport_family_supported(CPORT_AF_INET6));
  fflush(stdout);
  return 0;
}
