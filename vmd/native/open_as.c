// openAs: open(2) with a requester's own filesystem credentials, so the kernel, not a stat-then-open, decides
// which files root hands to a guest. Only the calling thread changes, and it is restored before returning.

#include "vmd_native.h"

#include <errno.h>
#include <fcntl.h>
#include <limits.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>
#include <sys/syscall.h>
#include <sys/types.h>
#include <linux/capability.h>

// 32-bit x86 and arm keep 16-bit ids in the plain calls; their *32 variants take full ids (x86_64 has only those).
#ifdef SYS_setfsuid32
#define SYS_SETFSUID SYS_setfsuid32
#define SYS_SETFSGID SYS_setfsgid32
#define SYS_SETGROUPS SYS_setgroups32
#define SYS_GETGROUPS SYS_getgroups32
#else
#define SYS_SETFSUID SYS_setfsuid
#define SYS_SETFSGID SYS_setfsgid
#define SYS_SETGROUPS SYS_setgroups
#define SYS_GETGROUPS SYS_getgroups
#endif

// The kernel's NGROUPS_MAX; a longer list is a caller's bug, not a user's groups.
#define MAX_GROUPS 65536

// Flags a caller may ask for; O_CLOEXEC and O_NOCTTY are always added. No O_CREAT or O_TRUNC: openAs never makes files.
#define ALLOWED_FLAGS (O_ACCMODE | O_NONBLOCK | O_NOFOLLOW | O_DIRECTORY)

// What the kernel must have dropped from the effective set once fsuid is not 0 (cap_drop_fs_set), or the
// open would still override the user's permissions. SECBIT_NO_SETUID_FIXUP would keep them: refused then.
static const int FS_CAPS[] = {CAP_DAC_OVERRIDE, CAP_DAC_READ_SEARCH, CAP_FOWNER};

struct fs_creds {
  uid_t fsuid;
  gid_t fsgid;
  int ngroups;
  gid_t groups[MAX_GROUPS];
  struct __user_cap_data_struct caps[_LINUX_CAPABILITY_U32S_3];
};

static int caps_get(struct __user_cap_data_struct *caps) {
  struct __user_cap_header_struct header = {_LINUX_CAPABILITY_VERSION_3, 0};
  return (int)syscall(SYS_capget, &header, caps);
}

static int caps_set(const struct __user_cap_data_struct *caps) {
  struct __user_cap_header_struct header = {_LINUX_CAPABILITY_VERSION_3, 0};
  return (int)syscall(SYS_capset, &header, caps);
}

// setfsuid/setfsgid never fail, they return the previous id; an invalid id (-1) changes nothing, so it reads the current one.
static uid_t fsuid_now(void) { return (uid_t)syscall(SYS_SETFSUID, (uid_t)-1); }
static gid_t fsgid_now(void) { return (gid_t)syscall(SYS_SETFSGID, (gid_t)-1); }

// Raw syscalls throughout: glibc's setgroups (and setuid family) is broadcast to every thread by nptl,
// and the libuv threads doing other fs work must keep root's credentials.
static int creds_save(struct fs_creds *c) {
  c->fsuid = fsuid_now();
  c->fsgid = fsgid_now();
  c->ngroups = (int)syscall(SYS_GETGROUPS, MAX_GROUPS, c->groups);
  if (c->ngroups < 0) return errno;
  if (caps_get(c->caps) != 0) return errno;
  return 0;
}

// Switches this thread to uid/gid/groups for filesystem access; 0, or the errno that stopped it halfway.
static int creds_enter(uid_t uid, gid_t gid, size_t ngroups, const gid_t *groups) {
  if (syscall(SYS_SETGROUPS, ngroups, groups) != 0) return errno;
  syscall(SYS_SETFSGID, gid);
  if (fsgid_now() != gid) return EPERM;
  syscall(SYS_SETFSUID, uid);
  if (fsuid_now() != uid) return EPERM;
  if (uid == 0) return 0;
  struct __user_cap_data_struct now[_LINUX_CAPABILITY_U32S_3];
  if (caps_get(now) != 0) return errno;
  for (size_t i = 0; i < sizeof FS_CAPS / sizeof FS_CAPS[0]; i++) {
    if (now[FS_CAPS[i] >> 5].effective & (1u << (FS_CAPS[i] & 31))) return EPERM;
  }
  return 0;
}

// Puts back what creds_save saw and checks it; false means the thread is not as it was.
static bool creds_restore(const struct fs_creds *c) {
  // fsuid first: going back to 0 puts the filesystem capabilities back into the effective set (cap_raise_fs_set).
  syscall(SYS_SETFSUID, c->fsuid);
  syscall(SYS_SETFSGID, c->fsgid);
  if (fsuid_now() != c->fsuid || fsgid_now() != c->fsgid) return false;
  // setgroups needs CAP_SETGID even to change nothing: skipped when creds_enter never got that far.
  static gid_t now_groups[MAX_GROUPS];
  int n = (int)syscall(SYS_GETGROUPS, MAX_GROUPS, now_groups);
  if (n != c->ngroups || memcmp(now_groups, c->groups, (size_t)n * sizeof(gid_t)) != 0) {
    if (syscall(SYS_SETGROUPS, (size_t)c->ngroups, c->groups) != 0) return false;
    n = (int)syscall(SYS_GETGROUPS, MAX_GROUPS, now_groups);
    if (n != c->ngroups || memcmp(now_groups, c->groups, (size_t)n * sizeof(gid_t)) != 0) return false;
  }
  struct __user_cap_data_struct now[_LINUX_CAPABILITY_U32S_3];
  if (caps_get(now) != 0) return false;
  if (memcmp(now, c->caps, sizeof now) == 0) return true;
  // The raise restores every fs capability in the permitted set; one the thread had dropped itself is dropped again.
  if (caps_set(c->caps) != 0 || caps_get(now) != 0) return false;
  return memcmp(now, c->caps, sizeof now) == 0;
}

// Reads the path argument: a string without NUL, shorter than PATH_MAX; false with an exception pending.
static bool get_path(napi_env env, napi_value value, char *path) {
  napi_valuetype type;
  if (napi_typeof(env, value, &type) != napi_ok) return false;
  if (type != napi_string) {
    napi_throw_type_error(env, "ERR_INVALID_ARG_TYPE", "path must be a string");
    return false;
  }
  size_t len = 0;
  if (napi_get_value_string_utf8(env, value, NULL, 0, &len) != napi_ok) return false;
  if (len == 0 || len >= PATH_MAX) {
    napi_throw_range_error(env, "ERR_INVALID_ARG_VALUE", "path must be 1 to 4095 bytes");
    return false;
  }
  if (napi_get_value_string_utf8(env, value, path, PATH_MAX, &len) != napi_ok) return false;
  if (strlen(path) != len) {
    napi_throw_range_error(env, "ERR_INVALID_ARG_VALUE", "path must not contain NUL");
    return false;
  }
  return true;
}

// Reads the groups argument into groups[]; false with an exception pending.
static bool get_groups(napi_env env, napi_value value, gid_t *groups, uint32_t *count) {
  bool is_array = false;
  if (napi_is_array(env, value, &is_array) != napi_ok) return false;
  if (!is_array) {
    napi_throw_type_error(env, "ERR_INVALID_ARG_TYPE", "groups must be an array");
    return false;
  }
  if (napi_get_array_length(env, value, count) != napi_ok) return false;
  if (*count > MAX_GROUPS) {
    napi_throw_range_error(env, "ERR_OUT_OF_RANGE", "groups must have at most 65536 entries");
    return false;
  }
  for (uint32_t i = 0; i < *count; i++) {
    napi_value item;
    double number;
    if (napi_get_element(env, value, i, &item) != napi_ok) return false;
    if (!get_integer(env, item, "groups[i]", 0, (double)UINT32_MAX - 1, &number)) return false;
    groups[i] = (gid_t)number;
  }
  return true;
}

// The arguments of one openAs call; static buffers are fine, as Node calls the addon from its one JS thread.
static struct {
  char path[PATH_MAX];
  gid_t groups[MAX_GROUPS];
  struct fs_creds saved;
} call;

napi_value open_as(napi_env env, napi_callback_info info) {
  size_t argc = 5;
  napi_value argv[5];
  NAPI_CALL(env, napi_get_cb_info(env, info, &argc, argv, NULL, NULL));
  if (argc < 5) {
    napi_throw_type_error(env, "ERR_INVALID_ARG_TYPE", "openAs(path, flags, uid, gid, groups): all arguments are required");
    return NULL;
  }
  double flags, uid, gid;
  uint32_t ngroups = 0;
  if (!get_path(env, argv[0], call.path)) return NULL;
  if (!get_integer(env, argv[1], "flags", 0, INT32_MAX, &flags)) return NULL;
  if (((int)flags & ~ALLOWED_FLAGS) != 0) {
    napi_throw_range_error(env, "ERR_INVALID_ARG_VALUE", "flags may only hold an access mode, O_NONBLOCK, O_NOFOLLOW, O_DIRECTORY");
    return NULL;
  }
  // (uid_t)-1 is "no change" to setfsuid, so the largest accepted id is one below it.
  if (!get_integer(env, argv[2], "uid", 0, (double)UINT32_MAX - 1, &uid)) return NULL;
  if (!get_integer(env, argv[3], "gid", 0, (double)UINT32_MAX - 1, &gid)) return NULL;
  if (!get_groups(env, argv[4], call.groups, &ngroups)) return NULL;

  int err = creds_save(&call.saved);
  if (err != 0) {
    throw_errno(env, err, "getgroups", NULL);
    return NULL;
  }
  // PRIV: setgroups and setfsgid/setfsuid to another user need CAP_SETGID/CAP_SETUID; the root parent only.
  err = creds_enter((uid_t)uid, (gid_t)gid, ngroups, call.groups);
  const char *failed = "setfsuid";
  int fd = -1;
  if (err == 0) {
    fd = open(call.path, (int)flags | O_CLOEXEC | O_NOCTTY);
    if (fd < 0) err = errno;
    failed = "open";
  }
  if (!creds_restore(&call.saved)) {
    // A root daemon whose main thread may now hold a user's credentials, or more than it had: stop, loudly.
    fprintf(stderr, "vmd_native: openAs: could not restore the thread's credentials, aborting\n");
    abort();
  }
  if (fd < 0) {
    throw_errno(env, err, failed, call.path);
    return NULL;
  }
  napi_value result;
  if (napi_create_int32(env, fd, &result) != napi_ok) {
    close(fd);
    napi_throw_error(env, "ERR_NATIVE", "vmd_native: could not return the openAs fd");
    return NULL;
  }
  return result;
}
