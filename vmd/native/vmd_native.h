// What the addon's C files share: the napi error macro, errno errors shaped like Node's, and integer arguments.
// vmd_native.c registers the methods; open_as.c holds openAs, kept apart because it changes credentials.

#ifndef VMD_NATIVE_H
#define VMD_NATIVE_H

#include <node_api.h>
#include <stdbool.h>
#include <sys/socket.h>
#include <sys/un.h>

// A failed napi_* call leaves either a pending exception or nothing; make sure JS sees an error either way.
#define NAPI_CALL(env, call)                                                      \
  do {                                                                            \
    if ((call) != napi_ok) {                                                      \
      bool pending_ = false;                                                      \
      napi_is_exception_pending((env), &pending_);                                \
      if (!pending_) napi_throw_error((env), "ERR_NATIVE", "vmd_native: " #call " failed"); \
      return NULL;                                                                \
    }                                                                             \
  } while (0)

// Throws a Node-style system error: code "EACCES", errno negative as libuv reports it, syscall, detail quoted.
void throw_errno(napi_env env, int err, const char *syscall, const char *detail);

// Reads an integer argument in [min, max]; false with a TypeError/RangeError pending otherwise.
bool get_integer(napi_env env, napi_value value, const char *what, double min, double max, double *out);

// Reads an optional property: true with *present=false when it is absent or undefined; false with an exception pending.
bool get_optional(napi_env env, napi_value object, const char *key, napi_value *out, bool *present);

// Reads a boolean; false with a TypeError naming `what` pending otherwise.
bool get_boolean(napi_env env, napi_value value, const char *what, bool *out);

// Reads a unix socket path argument into *addr (`@name`: the abstract namespace, when `abstract` allows it) and
// sets *addrlen; false with a TypeError/RangeError pending, naming `fn`, otherwise.
bool get_unix_addr(napi_env env, napi_value value, const char *fn, bool abstract, struct sockaddr_un *addr, socklen_t *addrlen);

// openAs(path, flags, uid, gid, groups) -> fd, opened with those filesystem credentials (open_as.c).
napi_value open_as(napi_env env, napi_callback_info info);

// dgramSend(path, buffer): one datagram to a unix datagram socket, never blocking (dgram.c).
napi_value dgram_send(napi_env env, napi_callback_info info);

// unixRequest(path, frame, maxBytes) -> the first reply frame, header included, blocking (unix_request.c).
napi_value unix_request(napi_env env, napi_callback_info info);

// linkSet(nsPath, { name, alias?, mtu?, master?, up?, moveTo? }): a link's settings over rtnetlink (netlink.c).
napi_value link_set(napi_env env, napi_callback_info info);

// nftAvailable() -> whether libnftables opens; nftRun(nsPath, script, flags) -> Promise<{ rc, out, err }> (nft.c).
napi_value nft_available(napi_env env, napi_callback_info info);
napi_value nft_run(napi_env env, napi_callback_info info);
// nftRelease(): frees the context nftRun keeps for the process's own namespace (nft.c).
napi_value nft_release(napi_env env, napi_callback_info info);

#endif
