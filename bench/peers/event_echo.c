/*
 * event_echo: echo server on libevent 2 bufferevents, the idiomatic way:
 * an evconnlistener, and a read callback that moves the input evbuffer to
 * the output one. Reading is disabled while the echo is unsent and enabled
 * again by the write callback, which fires when the output has drained
 * (write low-watermark 0), so memory stays bounded per connection.
 *
 *   event_echo --port N [--host 127.0.0.1]
 */
#include "peer_util.h"

#include <arpa/inet.h>
#include <event2/buffer.h>
#include <event2/bufferevent.h>
#include <event2/event.h>
#include <event2/listener.h>
#include <netinet/in.h>
#include <signal.h>
#include <sys/socket.h>

static void on_read(struct bufferevent *bev, void *arg) {
  (void)arg;
  bufferevent_disable(bev, EV_READ); /* no reading while the echo is unsent */
  evbuffer_add_buffer(bufferevent_get_output(bev), bufferevent_get_input(bev));
}

static void on_write(struct bufferevent *bev, void *arg) {
  (void)arg;
  bufferevent_enable(bev, EV_READ); /* the echo is out */
}

static void on_event(struct bufferevent *bev, short what, void *arg) {
  (void)arg;
  if (what & (BEV_EVENT_EOF | BEV_EVENT_ERROR)) bufferevent_free(bev);
}

static void on_accept(struct evconnlistener *l, evutil_socket_t fd, struct sockaddr *sa, int salen,
                      void *arg) {
  (void)sa;
  (void)salen;
  (void)arg;
  struct event_base *base = evconnlistener_get_base(l);
  struct bufferevent *bev = bufferevent_socket_new(base, fd, BEV_OPT_CLOSE_ON_FREE);
  if (!bev) {
    evutil_closesocket(fd);
    return;
  }
  bufferevent_setcb(bev, on_read, on_write, on_event, NULL);
  /* Reads and writes of up to 64 KiB like the other servers (libevent's
   * default is 16 KiB each). */
  bufferevent_set_max_single_read(bev, PEER_BUF_SIZE);
  bufferevent_set_max_single_write(bev, PEER_BUF_SIZE);
  bufferevent_enable(bev, EV_READ | EV_WRITE);
}

static void on_signal(evutil_socket_t sig, short what, void *arg) {
  (void)sig;
  (void)what;
  event_base_loopbreak(arg);
}

int main(int argc, char **argv) {
  peer_opts o;
  if (peer_parse(argc, argv, &o, "event_echo") != 0) return 2;
  signal(SIGPIPE, SIG_IGN);
  struct event_base *base = event_base_new();
  if (!base) return 1;

  struct sockaddr_in sa;
  memset(&sa, 0, sizeof sa);
  sa.sin_family = AF_INET;
  sa.sin_port = htons((uint16_t)o.port);
  if (inet_pton(AF_INET, o.host, &sa.sin_addr) != 1) {
    fprintf(stderr, "event_echo: bad --host\n");
    return 2;
  }
  struct evconnlistener *l = evconnlistener_new_bind(
      base, on_accept, NULL, LEV_OPT_CLOSE_ON_FREE | LEV_OPT_REUSEABLE | LEV_OPT_CLOSE_ON_EXEC,
      SOMAXCONN, (struct sockaddr *)&sa, sizeof sa);
  if (!l) {
    perror("event_echo: listen");
    return 1;
  }
  socklen_t len = sizeof sa;
  getsockname(evconnlistener_get_fd(l), (struct sockaddr *)&sa, &len);

  struct event *sigterm = evsignal_new(base, SIGTERM, on_signal, base);
  struct event *sigint = evsignal_new(base, SIGINT, on_signal, base);
  event_add(sigterm, NULL);
  event_add(sigint, NULL);
  peer_listening(ntohs(sa.sin_port));
  event_base_dispatch(base);
  return 0;
}
