// unixRequest(path, frame, maxBytes) -> reply frame: one blocking request/reply on a unix stream socket, for vmctl's one-shot commands.
// Node reaches unix sockets only through net and streams, whose loading was measured at a third of `vmctl status`.

#include "vmd_native.h"

#include <errno.h>
#include <stdint.h>
#include <stdlib.h>
#include <string.h>
#include <sys/socket.h>
#include <sys/un.h>
#include <unistd.h>

// Reads exactly `size` bytes; 0 on success, an errno otherwise (EPIPE for a peer that closed early).
static int read_full(int fd, unsigned char *buf, size_t size) {
  size_t have = 0;
  while (have < size) {
    ssize_t n = read(fd, buf + have, size - have);
    if (n < 0 && errno == EINTR) continue;
    if (n < 0) return errno;
    if (n == 0) return EPIPE;
    have += (size_t)n;
  }
  return 0;
}

static int write_full(int fd, const unsigned char *buf, size_t size) {
  size_t done = 0;
  while (done < size) {
    ssize_t n = send(fd, buf + done, size - done, MSG_NOSIGNAL);
    if (n < 0 && errno == EINTR) continue;
    if (n < 0) return errno;
    done += (size_t)n;
  }
  return 0;
}

// The frame is sent whole and the first reply frame (4-byte big-endian length, then the body) comes back whole, header
// included, for the same strict decoder as every other frame; one longer than maxBytes is refused before any of it. Errors carry the failing syscall (connect, write, read) so the caller can word them as vmctl does.
napi_value unix_request(napi_env env, napi_callback_info info) {
  size_t argc = 3;
  napi_value argv[3];
  NAPI_CALL(env, napi_get_cb_info(env, info, &argc, argv, NULL, NULL));
  if (argc < 3) {
    napi_throw_type_error(env, "ERR_INVALID_ARG_TYPE", "unixRequest(path, frame, maxBytes): all are required");
    return NULL;
  }
  struct sockaddr_un addr;
  socklen_t addrlen = 0;
  if (!get_unix_addr(env, argv[0], "unixRequest", false, &addr, &addrlen)) return NULL;
  bool is_buffer = false;
  NAPI_CALL(env, napi_is_buffer(env, argv[1], &is_buffer));
  if (!is_buffer) {
    napi_throw_type_error(env, "ERR_INVALID_ARG_TYPE", "unixRequest: frame must be a Buffer");
    return NULL;
  }
  void *frame = NULL;
  size_t frame_size = 0;
  NAPI_CALL(env, napi_get_buffer_info(env, argv[1], &frame, &frame_size));
  double max_bytes = 0;
  if (!get_integer(env, argv[2], "maxBytes", 1, (double)UINT32_MAX, &max_bytes)) return NULL;

  int fd = socket(AF_UNIX, SOCK_STREAM | SOCK_CLOEXEC, 0);
  if (fd < 0) {
    throw_errno(env, errno, "socket", NULL);
    return NULL;
  }
  int rc;
  do rc = connect(fd, (struct sockaddr *)&addr, addrlen); while (rc != 0 && errno == EINTR);
  if (rc != 0) {
    int err = errno;
    close(fd);
    throw_errno(env, err, "connect", addr.sun_path);
    return NULL;
  }
  int err = write_full(fd, frame, frame_size);
  if (err != 0) {
    close(fd);
    throw_errno(env, err, "write", addr.sun_path);
    return NULL;
  }
  unsigned char head[4] = {0};
  err = read_full(fd, head, sizeof head);
  uint32_t length = ((uint32_t)head[0] << 24) | ((uint32_t)head[1] << 16) | ((uint32_t)head[2] << 8) | head[3];
  if (err == 0 && (double)length > max_bytes) err = EMSGSIZE;
  napi_value result = NULL;
  unsigned char *whole = NULL;
  if (err == 0 && napi_create_buffer(env, sizeof head + (size_t)length, (void **)&whole, &result) != napi_ok) {
    close(fd);
    return NULL;
  }
  if (err == 0) {
    memcpy(whole, head, sizeof head);
    err = read_full(fd, whole + sizeof head, length);
  }
  close(fd);
  if (err != 0) {
    throw_errno(env, err, "read", addr.sun_path);
    return NULL;
  }
  return result;
}
