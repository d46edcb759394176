/*
 * Helpers shared by the cport examples: option parsing, a monotonic clock,
 * a stop flag set by SIGINT/SIGTERM (Ctrl-C on Windows) and a small map from
 * socket to connection state. Header-only: every example .c file is its own
 * program, so each gets its own copy.
 *
 * Stopping: a signal handler may only do async-signal-safe things, and
 * cport_post is not one of them. So the handler just sets a flag, and the
 * handler loop waits with a finite timeout (STOP_POLL_MS) and checks it. No
 * helper thread, no self-pipe, nothing that can outlive the queue.
 */
#ifndef EXAMPLE_UTIL_H
#define EXAMPLE_UTIL_H

#include "cport.h"

#include <signal.h>
#include <stdint.h>
#include <stdlib.h>
#include <string.h>

#ifdef _WIN32
#include <windows.h>
#else
#include <time.h>
#endif

/* How often a handler loop looks at the stop flag, at most. */
#define STOP_POLL_MS 100

/* ------------------------------------------------------------------------ */
/* Stop flag                                                                */
/* ------------------------------------------------------------------------ */

static volatile sig_atomic_t stop_flag;

static inline int stop_requested(void) { return stop_flag != 0; }

#ifdef _WIN32
static BOOL WINAPI on_console_event(DWORD event) {
  (void)event;
  stop_flag = 1;
  return TRUE; /* handled: let the loop exit cleanly */
}

static inline int install_stop_handlers(void) {
  return SetConsoleCtrlHandler(on_console_event, TRUE) ? 0 : -1;
}
#else
static void on_stop_signal(int signo) {
  (void)signo;
  stop_flag = 1;
}

static inline int install_stop_handlers(void) {
  struct sigaction sa;
  memset(&sa, 0, sizeof sa);
  sa.sa_handler = on_stop_signal;
  sigemptyset(&sa.sa_mask);
  if (sigaction(SIGINT, &sa, NULL) != 0) return -1;
  if (sigaction(SIGTERM, &sa, NULL) != 0) return -1;
  return 0;
}
#endif

/* ------------------------------------------------------------------------ */
/* "Print the socket table" requests: SIGUSR1 on POSIX, a key press on      */
/* Windows (there is no SIGUSR1), checked by the loop like the stop flag.   */
/* ------------------------------------------------------------------------ */

#ifdef _WIN32
#include <conio.h>

static inline int install_table_request(void) { return 0; }

static inline int table_requested(void) {
  if (!_kbhit()) return 0;
  (void)_getch();
  return 1;
}
#else
static volatile sig_atomic_t table_flag;

static void on_table_signal(int signo) {
  (void)signo;
  table_flag = 1;
}

static inline int install_table_request(void) {
  struct sigaction sa;
  memset(&sa, 0, sizeof sa);
  sa.sa_handler = on_table_signal;
  sigemptyset(&sa.sa_mask);
  return sigaction(SIGUSR1, &sa, NULL);
}

static inline int table_requested(void) {
  if (!table_flag) return 0;
  table_flag = 0;
  return 1;
}
#endif

/* ------------------------------------------------------------------------ */
/* Clock                                                                    */
/* ------------------------------------------------------------------------ */

static inline uint64_t now_ms(void) {
#ifdef _WIN32
  return (uint64_t)GetTickCount64();
#else
  struct timespec ts;
  clock_gettime(CLOCK_MONOTONIC, &ts);
  return (uint64_t)ts.tv_sec * 1000u + (uint64_t)ts.tv_nsec / 1000000u;
#endif
}

/* ------------------------------------------------------------------------ */
/* Option parsing                                                           */
/* ------------------------------------------------------------------------ */

/* Parse a decimal number in [min, max]. Returns 0, or -1 for bad text. */
static inline int parse_number(const char *text, unsigned long long min, unsigned long long max,
                               unsigned long long *out) {
  char *end = NULL;
  if (text == NULL || *text < '0' || *text > '9') return -1;
  unsigned long long v = strtoull(text, &end, 10);
  if (*end != '\0' || v < min || v > max) return -1;
  *out = v;
  return 0;
}

/* "completion" or "select" -> the cport_open flags. Returns 0 or -1. */
static inline int parse_mode(const char *text, unsigned *open_flags) {
  if (text == NULL) return -1;
  if (strcmp(text, "completion") == 0)
    *open_flags = 0;
  else if (strcmp(text, "select") == 0)
    *open_flags = CPORT_OPEN_SELECT;
  else
    return -1;
  return 0;
}

/* "auto", "epoll", "io_uring" or "iocp". Returns 0 or -1. */
static inline int parse_backend(const char *text, cport_backend_id *id) {
  if (text == NULL) return -1;
  if (strcmp(text, "auto") == 0)
    *id = CPORT_BACKEND_AUTO;
  else if (strcmp(text, "epoll") == 0)
    *id = CPORT_BACKEND_EPOLL;
  else if (strcmp(text, "io_uring") == 0)
    *id = CPORT_BACKEND_IO_URING;
  else if (strcmp(text, "iocp") == 0)
    *id = CPORT_BACKEND_IOCP;
  else
    return -1;
  return 0;
}

/* ------------------------------------------------------------------------ */
/* Socket -> state map                                                      */
/* ------------------------------------------------------------------------ */

/* Open addressing with linear probing; key 0 marks an empty slot (0 is never
 * a valid cport_socket). Deletion shifts later entries back, so there are no
 * tombstones and lookups stay short however many sockets come and go. */
typedef struct socket_map {
  cport_socket *keys;
  void **values;
  size_t capacity; /* a power of two, or 0 */
  size_t count;
} socket_map;

static inline size_t socket_map_slot(const socket_map *m, cport_socket key) {
  uint64_t h = key * 0x9E3779B97F4A7C15u; /* spread sequential handles */
  return (size_t)(h >> 32) & (m->capacity - 1);
}

static inline void *socket_map_get(const socket_map *m, cport_socket key) {
  if (m->capacity == 0 || key == 0) return NULL;
  for (size_t i = socket_map_slot(m, key);; i = (i + 1) & (m->capacity - 1)) {
    if (m->keys[i] == key) return m->values[i];
    if (m->keys[i] == 0) return NULL;
  }
}

static inline void socket_map_insert_new(socket_map *m, cport_socket key, void *value) {
  size_t i = socket_map_slot(m, key);
  while (m->keys[i] != 0) i = (i + 1) & (m->capacity - 1);
  m->keys[i] = key;
  m->values[i] = value;
  m->count++;
}

/* Double the table. Returns 0, or -1 when out of memory. */
static inline int socket_map_grow(socket_map *m) {
  socket_map bigger = {0};
  bigger.capacity = m->capacity ? m->capacity * 2 : 64;
  bigger.keys = calloc(bigger.capacity, sizeof *bigger.keys);
  bigger.values = calloc(bigger.capacity, sizeof *bigger.values);
  if (bigger.keys == NULL || bigger.values == NULL) {
    free(bigger.keys);
    free(bigger.values);
    return -1;
  }
  for (size_t i = 0; i < m->capacity; i++)
    if (m->keys[i] != 0) socket_map_insert_new(&bigger, m->keys[i], m->values[i]);
  free(m->keys);
  free(m->values);
  *m = bigger;
  return 0;
}

/* Add a key that is not in the map yet. Returns 0, or -1 when out of memory. */
static inline int socket_map_put(socket_map *m, cport_socket key, void *value) {
  if ((m->count + 1) * 2 > m->capacity && socket_map_grow(m) != 0) return -1;
  socket_map_insert_new(m, key, value);
  return 0;
}

static inline void socket_map_remove(socket_map *m, cport_socket key) {
  if (m->capacity == 0 || key == 0) return;
  size_t mask = m->capacity - 1, i = socket_map_slot(m, key);
  while (m->keys[i] != key) {
    if (m->keys[i] == 0) return;
    i = (i + 1) & mask;
  }
  /* Pull back every later entry of the probe run that may sit in the hole. */
  for (size_t j = (i + 1) & mask; m->keys[j] != 0; j = (j + 1) & mask) {
    size_t home = socket_map_slot(m, m->keys[j]);
    int home_outside_hole_to_j = (j > i) ? (home <= i || home > j) : (home <= i && home > j);
    if (home_outside_hole_to_j) {
      m->keys[i] = m->keys[j];
      m->values[i] = m->values[j];
      i = j;
    }
  }
  m->keys[i] = 0;
  m->values[i] = NULL;
  m->count--;
}

static inline void socket_map_free(socket_map *m) {
  free(m->keys);
  free(m->values);
  memset(m, 0, sizeof *m);
}

#endif /* EXAMPLE_UTIL_H */
