// vmd's own native addon: the things Node cannot do, kept as small as possible.
// Kernel-verified peer credentials (SO_PEERCRED) for the control socket, taps made on an fd (TUNSETIFF); openAs is in open_as.c.

#include "vmd_native.h"

#include <errno.h>
#include <fcntl.h>
#include <math.h>
#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>
#include <stdio.h>
#include <string.h>
#include <unistd.h>
#include <sys/ioctl.h>
#include <sys/prctl.h>
#include <sys/socket.h>
#include <sys/types.h>
#include <net/if.h>
#include <linux/if_tun.h>

// Errors look like Node's own system errors (code "EPERM", errno negative as libuv reports it, syscall),
// so callers handle them with the same `err.code` checks they use for fs and net.
void throw_errno(napi_env env, int err, const char *syscall, const char *detail) {
  const char *name = strerrorname_np(err);
  char fallback[24];
  if (name == NULL) {
    snprintf(fallback, sizeof fallback, "E%d", err);
    name = fallback;
  }
  char text[256];
  if (detail != NULL) {
    snprintf(text, sizeof text, "%s: %s, %s '%s'", name, strerror(err), syscall, detail);
  } else {
    snprintf(text, sizeof text, "%s: %s, %s", name, strerror(err), syscall);
  }
  napi_value code, message, error, errno_value, syscall_value;
  if (napi_create_string_utf8(env, name, NAPI_AUTO_LENGTH, &code) != napi_ok ||
      napi_create_string_utf8(env, text, NAPI_AUTO_LENGTH, &message) != napi_ok ||
      napi_create_error(env, code, message, &error) != napi_ok ||
      napi_create_int32(env, -err, &errno_value) != napi_ok ||
      napi_create_string_utf8(env, syscall, NAPI_AUTO_LENGTH, &syscall_value) != napi_ok ||
      napi_set_named_property(env, error, "errno", errno_value) != napi_ok ||
      napi_set_named_property(env, error, "syscall", syscall_value) != napi_ok) {
    napi_throw_error(env, name, text);
    return;
  }
  napi_throw(env, error);
}

bool get_unix_addr(napi_env env, napi_value value, const char *fn, bool abstract, struct sockaddr_un *addr, socklen_t *addrlen) {
  char message[96];
  memset(addr, 0, sizeof *addr);
  addr->sun_family = AF_UNIX;
  size_t len = 0;
  if (napi_get_value_string_utf8(env, value, addr->sun_path, sizeof addr->sun_path, &len) != napi_ok) {
    snprintf(message, sizeof message, "%s: path must be a string", fn);
    napi_throw_type_error(env, "ERR_INVALID_ARG_TYPE", message);
    return false;
  }
  if (len == 0 || len >= sizeof addr->sun_path - 1) {
    snprintf(message, sizeof message, "%s: path is empty or too long for a unix socket", fn);
    napi_throw_range_error(env, "ERR_OUT_OF_RANGE", message);
    return false;
  }
  *addrlen = sizeof *addr;
  // `@name` is a socket in the abstract namespace, as systemd's NOTIFY_SOCKET may be: a leading NUL, no terminator.
  if (abstract && addr->sun_path[0] == '@') {
    addr->sun_path[0] = '\0';
    *addrlen = (socklen_t)(offsetof(struct sockaddr_un, sun_path) + len);
  }
  return true;
}

// Reads an integer argument in [min, max]; anything else (NaN, 1.5, "3") is a TypeError/RangeError, not a guess.
bool get_integer(napi_env env, napi_value value, const char *what, double min, double max, double *out) {
  napi_valuetype type;
  if (napi_typeof(env, value, &type) != napi_ok) return false;
  if (type != napi_number) {
    char text[96];
    snprintf(text, sizeof text, "%s must be a number", what);
    napi_throw_type_error(env, "ERR_INVALID_ARG_TYPE", text);
    return false;
  }
  double number;
  if (napi_get_value_double(env, value, &number) != napi_ok) return false;
  if (!isfinite(number) || floor(number) != number || number < min || number > max) {
    char text[128];
    snprintf(text, sizeof text, "%s must be an integer from %.0f to %.0f", what, min, max);
    napi_throw_range_error(env, "ERR_OUT_OF_RANGE", text);
    return false;
  }
  *out = number;
  return true;
}

// Reads an optional property: false with *present=false when it is absent or undefined.
bool get_optional(napi_env env, napi_value object, const char *key, napi_value *out, bool *present) {
  bool has = false;
  *present = false;
  if (napi_has_named_property(env, object, key, &has) != napi_ok) return false;
  if (!has) return true;
  if (napi_get_named_property(env, object, key, out) != napi_ok) return false;
  napi_valuetype type;
  if (napi_typeof(env, *out, &type) != napi_ok) return false;
  *present = type != napi_undefined;
  return true;
}

bool get_boolean(napi_env env, napi_value value, const char *what, bool *out) {
  napi_valuetype type;
  if (napi_typeof(env, value, &type) != napi_ok) return false;
  if (type != napi_boolean) {
    char text[96];
    snprintf(text, sizeof text, "%s must be a boolean", what);
    napi_throw_type_error(env, "ERR_INVALID_ARG_TYPE", text);
    return false;
  }
  return napi_get_value_bool(env, value, out) == napi_ok;
}

// The one fd argument of peerCred and closeFd, checked to lie in [min, INT32_MAX]; false with an exception pending.
static bool get_fd_arg(napi_env env, napi_callback_info info, const char *missing, int64_t min, int *fd) {
  size_t argc = 1;
  napi_value argv[1];
  if (napi_get_cb_info(env, info, &argc, argv, NULL, NULL) != napi_ok) {
    napi_throw_error(env, "ERR_NATIVE", "vmd_native: napi_get_cb_info failed");
    return false;
  }
  if (argc < 1) {
    napi_throw_type_error(env, "ERR_INVALID_ARG_TYPE", missing);
    return false;
  }
  double number;
  if (!get_integer(env, argv[0], "fd", min, INT32_MAX, &number)) return false;
  *fd = (int)number;
  return true;
}

// peerCred(fd) -> { pid, uid, gid } of the process at the other end of a connected unix socket, from the kernel.
static napi_value peer_cred(napi_env env, napi_callback_info info) {
  int fd;
  if (!get_fd_arg(env, info, "peerCred(fd): fd is required", 0, &fd)) return NULL;

  // SO_PEERCRED on a TCP or UDP socket "succeeds" with uid/gid -1, so insist on a unix socket first.
  int domain = 0;
  socklen_t domain_len = sizeof domain;
  if (getsockopt(fd, SOL_SOCKET, SO_DOMAIN, &domain, &domain_len) != 0) {
    throw_errno(env, errno, "getsockopt", "SO_DOMAIN");
    return NULL;
  }
  if (domain != AF_UNIX) {
    throw_errno(env, EAFNOSUPPORT, "getsockopt", "SO_PEERCRED");
    return NULL;
  }
  struct ucred cred;
  socklen_t cred_len = sizeof cred;
  memset(&cred, 0, sizeof cred);
  if (getsockopt(fd, SOL_SOCKET, SO_PEERCRED, &cred, &cred_len) != 0) {
    throw_errno(env, errno, "getsockopt", "SO_PEERCRED");
    return NULL;
  }
  if (cred_len != sizeof cred) {
    throw_errno(env, EPROTO, "getsockopt", "SO_PEERCRED");
    return NULL;
  }
  // An unconnected socket has no peer credentials; the kernel reports them as -1, which must never read as a uid.
  if (cred.uid == (uid_t)-1 || cred.gid == (gid_t)-1) {
    throw_errno(env, ENOTCONN, "getsockopt", "SO_PEERCRED");
    return NULL;
  }

  napi_value result, pid, uid, gid;
  NAPI_CALL(env, napi_create_object(env, &result));
  NAPI_CALL(env, napi_create_int32(env, cred.pid, &pid));
  NAPI_CALL(env, napi_create_uint32(env, cred.uid, &uid));
  NAPI_CALL(env, napi_create_uint32(env, cred.gid, &gid));
  NAPI_CALL(env, napi_set_named_property(env, result, "pid", pid));
  NAPI_CALL(env, napi_set_named_property(env, result, "uid", uid));
  NAPI_CALL(env, napi_set_named_property(env, result, "gid", gid));
  return result;
}

// Closes fd, keeping errno for the caller: the failure paths of tun_open must report the ioctl's error.
static void close_keep_errno(int fd) {
  int saved = errno;
  close(fd);
  errno = saved;
}

// tunOpen(name, { vnetHdr, persist?, owner?, group? }) -> { fd, name }: a tap attached to a fresh /dev/net/tun fd.
static napi_value tun_open(napi_env env, napi_callback_info info) {
  size_t argc = 2;
  napi_value argv[2];
  NAPI_CALL(env, napi_get_cb_info(env, info, &argc, argv, NULL, NULL));
  if (argc < 2) {
    napi_throw_type_error(env, "ERR_INVALID_ARG_TYPE", "tunOpen(name, options): both arguments are required");
    return NULL;
  }

  napi_valuetype type;
  NAPI_CALL(env, napi_typeof(env, argv[0], &type));
  if (type != napi_string) {
    napi_throw_type_error(env, "ERR_INVALID_ARG_TYPE", "name must be a string");
    return NULL;
  }
  // An empty name lets the kernel pick tapN; a longer one than IFNAMSIZ-1 would be silently cut by the kernel.
  char name[IFNAMSIZ];
  size_t name_len = 0;
  NAPI_CALL(env, napi_get_value_string_utf8(env, argv[0], NULL, 0, &name_len));
  if (name_len >= IFNAMSIZ) {
    napi_throw_range_error(env, "ERR_INVALID_ARG_VALUE", "name must be at most 15 bytes");
    return NULL;
  }
  memset(name, 0, sizeof name);
  NAPI_CALL(env, napi_get_value_string_utf8(env, argv[0], name, sizeof name, &name_len));
  if (strlen(name) != name_len) {
    napi_throw_range_error(env, "ERR_INVALID_ARG_VALUE", "name must not contain NUL");
    return NULL;
  }

  NAPI_CALL(env, napi_typeof(env, argv[1], &type));
  if (type != napi_object) {
    napi_throw_type_error(env, "ERR_INVALID_ARG_TYPE", "options must be an object");
    return NULL;
  }
  napi_value value;
  bool present;
  bool vnet_hdr = false;
  NAPI_CALL(env, napi_get_named_property(env, argv[1], "vnetHdr", &value));
  if (!get_boolean(env, value, "options.vnetHdr", &vnet_hdr)) return NULL;

  bool has_persist = false, persist = false;
  if (!get_optional(env, argv[1], "persist", &value, &has_persist)) return NULL;
  if (has_persist && !get_boolean(env, value, "options.persist", &persist)) return NULL;

  // (uid_t)-1 means "nobody set" to the kernel, so the largest accepted id is one below it.
  double number;
  bool has_owner = false, has_group = false;
  uid_t owner = 0;
  gid_t group = 0;
  if (!get_optional(env, argv[1], "owner", &value, &present)) return NULL;
  if (present) {
    if (!get_integer(env, value, "options.owner", 0, (double)UINT32_MAX - 1, &number)) return NULL;
    has_owner = true;
    owner = (uid_t)number;
  }
  if (!get_optional(env, argv[1], "group", &value, &present)) return NULL;
  if (present) {
    if (!get_integer(env, value, "options.group", 0, (double)UINT32_MAX - 1, &number)) return NULL;
    has_group = true;
    group = (gid_t)number;
  }

  // PRIV: /dev/net/tun is mode 0600 root on these hosts; only the parent can open it.
  // O_CLOEXEC keeps the fd out of unrelated children; spawn's stdio array dup2()s it onto the
  // target number in QEMU, and dup2 clears close-on-exec on the copy, so QEMU still inherits it.
  int fd = open("/dev/net/tun", O_RDWR | O_CLOEXEC);
  if (fd < 0) {
    throw_errno(env, errno, "open", "/dev/net/tun");
    return NULL;
  }

  struct ifreq ifr;
  memset(&ifr, 0, sizeof ifr);
  ifr.ifr_flags = IFF_TAP | IFF_NO_PI | (vnet_hdr ? IFF_VNET_HDR : 0);
  memcpy(ifr.ifr_name, name, name_len);
  // PRIV: creating a tap needs CAP_NET_ADMIN (attaching to an existing one needs to be its owner or group).
  if (ioctl(fd, TUNSETIFF, &ifr) != 0) {
    int err = errno;
    close_keep_errno(fd);
    throw_errno(env, err, "ioctl", "TUNSETIFF");
    return NULL;
  }
  // Owner and group go before persist, so a persistent tap never exists, even briefly, usable by anyone.
  // PRIV: TUNSETOWNER/TUNSETGROUP need CAP_NET_ADMIN.
  if (has_owner && ioctl(fd, TUNSETOWNER, (unsigned long)owner) != 0) {
    int err = errno;
    close_keep_errno(fd);
    throw_errno(env, err, "ioctl", "TUNSETOWNER");
    return NULL;
  }
  if (has_group && ioctl(fd, TUNSETGROUP, (unsigned long)group) != 0) {
    int err = errno;
    close_keep_errno(fd);
    throw_errno(env, err, "ioctl", "TUNSETGROUP");
    return NULL;
  }
  // PRIV: TUNSETPERSIST needs CAP_NET_ADMIN; persist:false clears it on an existing persistent tap.
  if (has_persist && ioctl(fd, TUNSETPERSIST, (unsigned long)(persist ? 1 : 0)) != 0) {
    int err = errno;
    close_keep_errno(fd);
    throw_errno(env, err, "ioctl", "TUNSETPERSIST");
    return NULL;
  }

  // From here on JS does not have the fd yet: any failure must close it, or it leaks for the daemon's life.
  napi_value result, fd_value, name_value;
  char actual[IFNAMSIZ];
  memcpy(actual, ifr.ifr_name, IFNAMSIZ);
  actual[IFNAMSIZ - 1] = '\0';
  if (napi_create_object(env, &result) != napi_ok ||
      napi_create_int32(env, fd, &fd_value) != napi_ok ||
      napi_create_string_utf8(env, actual, NAPI_AUTO_LENGTH, &name_value) != napi_ok ||
      napi_set_named_property(env, result, "fd", fd_value) != napi_ok ||
      napi_set_named_property(env, result, "name", name_value) != napi_ok) {
    close(fd);
    bool pending = false;
    napi_is_exception_pending(env, &pending);
    if (!pending) napi_throw_error(env, "ERR_NATIVE", "vmd_native: could not build the tunOpen result");
    return NULL;
  }
  return result;
}

// closeFd(fd): releases an fd Node does not track (from tunOpen); 0..2 are refused as almost surely a bug.
static napi_value close_fd(napi_env env, napi_callback_info info) {
  int fd;
  if (!get_fd_arg(env, info, "closeFd(fd): fd is required", 3, &fd)) return NULL;
  // On Linux the fd is gone even when close reports EINTR, so retrying could close someone else's fd.
  if (close(fd) != 0 && errno != EINTR) {
    throw_errno(env, errno, "close", NULL);
    return NULL;
  }
  return NULL;
}

// undumpable(): the process can no longer be ptraced or have its /proc memory read or written by processes of its
// own user. vmm and control share that user with QEMU, so a guest that escaped into QEMU must not reach them.
static napi_value undumpable(napi_env env, napi_callback_info info) {
  (void)info;
  if (prctl(PR_SET_DUMPABLE, 0, 0, 0, 0) != 0) {
    throw_errno(env, errno, "prctl(PR_SET_DUMPABLE)", NULL);
    return NULL;
  }
  return NULL;
}

NAPI_MODULE_INIT() {
  napi_property_descriptor methods[] = {
    {"peerCred", NULL, peer_cred, NULL, NULL, NULL, napi_enumerable, NULL},
    {"tunOpen", NULL, tun_open, NULL, NULL, NULL, napi_enumerable, NULL},
    {"closeFd", NULL, close_fd, NULL, NULL, NULL, napi_enumerable, NULL},
    {"dgramSend", NULL, dgram_send, NULL, NULL, NULL, napi_enumerable, NULL},
    {"openAs", NULL, open_as, NULL, NULL, NULL, napi_enumerable, NULL},
    {"undumpable", NULL, undumpable, NULL, NULL, NULL, napi_enumerable, NULL},
    {"unixRequest", NULL, unix_request, NULL, NULL, NULL, napi_enumerable, NULL},
    {"linkSet", NULL, link_set, NULL, NULL, NULL, napi_enumerable, NULL},
    {"nftAvailable", NULL, nft_available, NULL, NULL, NULL, napi_enumerable, NULL},
    {"nftRun", NULL, nft_run, NULL, NULL, NULL, napi_enumerable, NULL},
    {"nftRelease", NULL, nft_release, NULL, NULL, NULL, napi_enumerable, NULL},
  };
  NAPI_CALL(env, napi_define_properties(env, exports, sizeof methods / sizeof methods[0], methods));
  return exports;
}
