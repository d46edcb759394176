// asio_echo: echo server on Boost.Asio, the idiomatic way (as Asio's own
// async_tcp_echo_server example): one io_context on one thread, a session
// per connection held by shared_ptr, async_read_some into a 64 KiB buffer,
// then async_write of what came, then read again (never both at once).
//
//   asio_echo --port N [--host 127.0.0.1]
#include "peer_util.h"

#include <array>
#include <boost/asio.hpp>
#include <memory>
#include <utility>

namespace asio = boost::asio;
using asio::ip::tcp;

namespace {

class session : public std::enable_shared_from_this<session> {
 public:
  explicit session(tcp::socket socket) : socket_(std::move(socket)) {}
  void start() { do_read(); }

 private:
  void do_read() {
    auto self(shared_from_this());
    socket_.async_read_some(asio::buffer(data_),
                            [this, self](boost::system::error_code ec, std::size_t n) {
                              if (!ec) do_write(n);
                            });
  }

  void do_write(std::size_t n) {
    auto self(shared_from_this());
    asio::async_write(socket_, asio::buffer(data_, n),
                      [this, self](boost::system::error_code ec, std::size_t) {
                        if (!ec) do_read();
                      });
  }

  tcp::socket socket_;
  std::array<char, PEER_BUF_SIZE> data_;
};

class server {
 public:
  server(asio::io_context& io, const tcp::endpoint& ep) : acceptor_(io, ep) { do_accept(); }
  unsigned short port() const { return acceptor_.local_endpoint().port(); }

 private:
  void do_accept() {
    acceptor_.async_accept([this](boost::system::error_code ec, tcp::socket socket) {
      if (!ec) std::make_shared<session>(std::move(socket))->start();
      do_accept();
    });
  }

  tcp::acceptor acceptor_;
};

}  // namespace

int main(int argc, char** argv) {
  peer_opts o;
  if (peer_parse(argc, argv, &o, "asio_echo") != 0) return 2;
  try {
    asio::io_context io(1);  // concurrency hint: one thread
    asio::signal_set signals(io, SIGINT, SIGTERM);
    signals.async_wait([&io](boost::system::error_code, int) { io.stop(); });
    server s(io, tcp::endpoint(asio::ip::make_address(o.host), static_cast<unsigned short>(o.port)));
    peer_listening(s.port());
    io.run();
  } catch (const std::exception& e) {
    std::fprintf(stderr, "asio_echo: %s\n", e.what());
    return 1;
  }
  return 0;
}
