/* What the Schannel engine's two files share (Windows only): the
 * configuration's credentials and roots (schannel_cred.c) and the
 * sessions that use them (schannel.c). */
#ifndef CPORT_TLS_SCHANNEL_H
#define CPORT_TLS_SCHANNEL_H

#include "tls.h"

#define SECURITY_WIN32
#define SCHANNEL_USE_BLACKLISTS /* SCH_CREDENTIALS, TLS_PARAMETERS */
#include <subauth.h>            /* their UNICODE_STRING */

#include <ncrypt.h>
#include <schannel.h>
#include <security.h>
#include <sspi.h>
#include <wincrypt.h>

typedef struct sch_ctx {
  CredHandle cred;
  bool have_cred;
  HCERTSTORE roots;     /* the configuration's roots, NULL: the system's */
  HCERTCHAINENGINE hce; /* over roots, NULL: the default engine */
  HCERTSTORE ident_store;
  PCCERT_CONTEXT ident;  /* our certificate, its key in the CNG store */
  NCRYPT_KEY_HANDLE key; /* that key, persisted under a name: deleted with ctx */
} sch_ctx;

/* The configuration's credentials, made by the first session that needs
 * them; NULL with a reason in err. */
sch_ctx *sch_ctx_of(tls_config *cfg, char *err, size_t len);

/* "what: NAME (0x...)" into out. */
void sch_status_reason(char *out, size_t len, const char *what, SECURITY_STATUS st);

/* The session's facts (schannel_info.c). */
void sch_session_info(CtxtHandle *ctx, PCCERT_CONTEXT peer, cport_tls_session *info);

#endif
