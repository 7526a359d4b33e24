// dgramSend(path, buffer): one datagram to a unix datagram socket such as /dev/log or systemd's NOTIFY_SOCKET,
// which Node cannot send to.
// syslog(3) is not used: it would log under the process's own name and facility setup, and block when syslog stalls.

#include "vmd_native.h"

#include <errno.h>
#include <stddef.h>
#include <string.h>
#include <sys/socket.h>
#include <sys/un.h>
#include <unistd.h>

// Non-blocking on purpose: a stalled syslog daemon must never stall vmd; a full queue drops the line (EAGAIN thrown).
napi_value dgram_send(napi_env env, napi_callback_info info) {
  size_t argc = 2;
  napi_value argv[2];
  NAPI_CALL(env, napi_get_cb_info(env, info, &argc, argv, NULL, NULL));
  if (argc < 2) {
    napi_throw_type_error(env, "ERR_INVALID_ARG_TYPE", "dgramSend(path, buffer): both are required");
    return NULL;
  }
  struct sockaddr_un addr;
  socklen_t addrlen = 0;
  if (!get_unix_addr(env, argv[0], "dgramSend", true, &addr, &addrlen)) return NULL;
  void *data = NULL;
  size_t size = 0;
  bool is_buffer = false;
  NAPI_CALL(env, napi_is_buffer(env, argv[1], &is_buffer));
  if (!is_buffer) {
    napi_throw_type_error(env, "ERR_INVALID_ARG_TYPE", "dgramSend: data must be a Buffer");
    return NULL;
  }
  NAPI_CALL(env, napi_get_buffer_info(env, argv[1], &data, &size));
  int fd = socket(AF_UNIX, SOCK_DGRAM | SOCK_CLOEXEC, 0);
  if (fd < 0) {
    throw_errno(env, errno, "socket", NULL);
    return NULL;
  }
  ssize_t sent = sendto(fd, data, size, MSG_DONTWAIT | MSG_NOSIGNAL, (struct sockaddr *)&addr, addrlen);
  int err = errno;
  close(fd);
  if (sent < 0) {
    throw_errno(env, err, "sendto", addr.sun_path);
    return NULL;
  }
  return NULL;
}
