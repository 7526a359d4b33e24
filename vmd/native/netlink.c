// Link settings over rtnetlink: what `ip link set` does for a guest's tap, without starting an ip(8) process per start.
// One socket per call, opened inside the link's namespace; the kernel's own error text (extack) comes back as ip prints it.

#include "vmd_native.h"

#include <errno.h>
#include <fcntl.h>
#include <sched.h>
#include <stdbool.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>
#include <sys/socket.h>
#include <net/if.h>
#include <linux/netlink.h>
#include <linux/rtnetlink.h>

#ifndef NETLINK_EXT_ACK
#define NETLINK_EXT_ACK 11
#endif

// A request buffer: the header, the ifinfomsg and the attributes of one RTM_SETLINK/RTM_GETLINK.
struct nl_req {
  struct nlmsghdr h;
  struct ifinfomsg i;
  unsigned char attrs[512];
};

// Why a call failed: the errno and, when the kernel said more (extack), its words; `what` names the failing step.
struct nl_error {
  int err;
  char text[256];
};

static void nl_fail(struct nl_error *e, int err, const char *text) {
  e->err = err;
  if (text != NULL) snprintf(e->text, sizeof e->text, "%s", text);
  else snprintf(e->text, sizeof e->text, "%s", strerror(err));
}

static bool nl_put(struct nl_req *r, unsigned short type, const void *data, size_t len) {
  size_t at = NLMSG_ALIGN(r->h.nlmsg_len);
  size_t need = RTA_SPACE(len);
  if (at + need > sizeof *r) return false;
  struct rtattr *a = (struct rtattr *)((unsigned char *)r + at);
  a->rta_type = type;
  a->rta_len = (unsigned short)RTA_LENGTH(len);
  if (len > 0) memcpy(RTA_DATA(a), data, len);
  r->h.nlmsg_len = (uint32_t)(at + need);
  return true;
}

static void nl_init(struct nl_req *r, unsigned short type, int index) {
  memset(r, 0, sizeof *r);
  r->h.nlmsg_len = NLMSG_LENGTH(sizeof r->i);
  r->h.nlmsg_type = type;
  r->h.nlmsg_flags = NLM_F_REQUEST | NLM_F_ACK;
  r->i.ifi_family = AF_UNSPEC;
  r->i.ifi_index = index;
}

// A NETLINK_ROUTE socket in the namespace of `ns_path` (/run/netns/NAME), or in this thread's own for NULL. The
// thread enters the namespace only to create the socket and goes back at once: a socket keeps the namespace it was made in.
static int nl_open(const char *ns_path, struct nl_error *e) {
  int back = -1, target = -1, fd = -1;
  if (ns_path != NULL) {
    target = open(ns_path, O_RDONLY | O_CLOEXEC);
    if (target < 0) {
      char text[256];
      int err = errno;
      const char *name = strrchr(ns_path, '/');
      snprintf(text, sizeof text, "Cannot open network namespace \"%s\": %s", name == NULL ? ns_path : name + 1, strerror(err));
      nl_fail(e, err, text);
      return -1;
    }
    back = open("/proc/thread-self/ns/net", O_RDONLY | O_CLOEXEC);
    // PRIV: setns(CLONE_NEWNET) needs CAP_SYS_ADMIN; the parent is root.
    if (back < 0 || setns(target, CLONE_NEWNET) != 0) {
      nl_fail(e, errno, NULL);
      close(target);
      if (back >= 0) close(back);
      return -1;
    }
  }
  fd = socket(AF_NETLINK, SOCK_RAW | SOCK_CLOEXEC, NETLINK_ROUTE);
  int err = errno;
  if (ns_path != NULL) {
    // Staying in the guest's namespace would move every later socket of this thread there: fatal if it fails.
    if (setns(back, CLONE_NEWNET) != 0) {
      perror("vmd_native: setns back to the parent's namespace");
      abort();
    }
    close(back);
    close(target);
  }
  if (fd < 0) {
    nl_fail(e, err, NULL);
    return -1;
  }
  int one = 1;
  setsockopt(fd, SOL_NETLINK, NETLINK_EXT_ACK, &one, sizeof one);
  struct sockaddr_nl sa = {.nl_family = AF_NETLINK};
  if (bind(fd, (struct sockaddr *)&sa, sizeof sa) != 0) {
    nl_fail(e, errno, NULL);
    close(fd);
    return -1;
  }
  return fd;
}

// The extack message of an error reply, if the kernel gave one.
static const char *nl_extack(struct nlmsghdr *h) {
  struct nlmsgerr *err = NLMSG_DATA(h);
  if (!(h->nlmsg_flags & NLM_F_ACK_TLVS)) return NULL;
  size_t off = sizeof *err;
  if (!(h->nlmsg_flags & NLM_F_CAPPED)) off += err->msg.nlmsg_len - NLMSG_HDRLEN;
  if (NLMSG_LENGTH(off) > h->nlmsg_len) return NULL;
  struct rtattr *a = (struct rtattr *)((unsigned char *)err + off);
  int left = (int)h->nlmsg_len - (int)NLMSG_LENGTH(off);
  for (; RTA_OK(a, left); a = RTA_NEXT(a, left)) {
    if (a->rta_type == NLMSGERR_ATTR_MSG && RTA_PAYLOAD(a) > 1) return (const char *)RTA_DATA(a);
  }
  return NULL;
}

// Sends one request and waits for its answer: the ifindex of an RTM_NEWLINK reply (*index), or the ack.
static bool nl_talk(int fd, struct nl_req *r, int *index, struct nl_error *e) {
  static uint32_t seq = 1;
  r->h.nlmsg_seq = ++seq;
  if (send(fd, r, r->h.nlmsg_len, 0) < 0) {
    nl_fail(e, errno, NULL);
    return false;
  }
  unsigned char buf[8192];
  for (;;) {
    ssize_t n = recv(fd, buf, sizeof buf, 0);
    if (n < 0 && errno == EINTR) continue;
    if (n < 0) {
      nl_fail(e, errno, NULL);
      return false;
    }
    int left = (int)n;
    for (struct nlmsghdr *h = (struct nlmsghdr *)buf; NLMSG_OK(h, left); h = NLMSG_NEXT(h, left)) {
      if (h->nlmsg_seq != r->h.nlmsg_seq) continue;
      if (h->nlmsg_type == NLMSG_ERROR) {
        int err = -((struct nlmsgerr *)NLMSG_DATA(h))->error;
        if (err == 0) return true;
        nl_fail(e, err, nl_extack(h));
        return false;
      }
      if (h->nlmsg_type == RTM_NEWLINK && index != NULL) *index = ((struct ifinfomsg *)NLMSG_DATA(h))->ifi_index;
    }
  }
}

// The index of link `name` in the socket's namespace; ENODEV worded as ip's "Cannot find device".
static int nl_index(int fd, const char *name, struct nl_error *e) {
  struct nl_req r;
  nl_init(&r, RTM_GETLINK, 0);
  nl_put(&r, IFLA_IFNAME, name, strlen(name) + 1);
  uint32_t mask = RTEXT_FILTER_SKIP_STATS;
  nl_put(&r, IFLA_EXT_MASK, &mask, sizeof mask);
  int index = 0;
  if (!nl_talk(fd, &r, &index, e)) {
    if (e->err == ENODEV) snprintf(e->text, sizeof e->text, "Cannot find device \"%s\"", name);
    return -1;
  }
  return index;
}

// What linkSet changes; absent fields (has_* false) stay as they are.
struct link_attrs {
  char name[IFNAMSIZ];
  char alias[256];
  bool has_alias, has_mtu, has_master, has_up, has_ns;
  uint32_t mtu;
  char master[IFNAMSIZ];  // empty: no master (`nomaster`)
  bool up;
  char ns_path[128];      // move the link into this namespace
};

// Applies `a` to the link in the order ip's batch did (alias, mtu, master, then up), so the link is never up unattached.
static bool link_apply(int fd, const struct link_attrs *a, struct nl_error *e) {
  int index = nl_index(fd, a->name, e);
  if (index < 0) return false;
  if (a->has_ns) {
    int ns = open(a->ns_path, O_RDONLY | O_CLOEXEC);
    if (ns < 0) {
      char text[256];
      int err = errno;
      const char *base = strrchr(a->ns_path, '/');
      // ip's words for `ip link set dev X netns NS` with no such namespace.
      snprintf(text, sizeof text, "argument \"%s\" is wrong: Invalid \"netns\" value", base == NULL ? a->ns_path : base + 1);
      nl_fail(e, err, text);
      return false;
    }
    struct nl_req r;
    nl_init(&r, RTM_SETLINK, index);
    uint32_t v = (uint32_t)ns;
    nl_put(&r, IFLA_NET_NS_FD, &v, sizeof v);
    bool ok = nl_talk(fd, &r, NULL, e);
    close(ns);
    return ok;
  }
  struct nl_req r;
  nl_init(&r, RTM_SETLINK, index);
  if (a->has_alias) nl_put(&r, IFLA_IFALIAS, a->alias, strlen(a->alias));
  if (a->has_mtu) nl_put(&r, IFLA_MTU, &a->mtu, sizeof a->mtu);
  if (a->has_master) {
    uint32_t m = 0;
    if (a->master[0] != '\0') {
      int mi = nl_index(fd, a->master, e);
      // ip's words for a master it cannot find.
      if (mi < 0 && e->err == ENODEV) snprintf(e->text, sizeof e->text, "argument \"%s\" is wrong: Device does not exist", a->master);
      if (mi < 0) return false;
      m = (uint32_t)mi;
    }
    nl_put(&r, IFLA_MASTER, &m, sizeof m);
  }
  if (r.h.nlmsg_len > NLMSG_LENGTH(sizeof r.i) && !nl_talk(fd, &r, NULL, e)) return false;
  if (!a->has_up) return true;
  nl_init(&r, RTM_SETLINK, index);
  r.i.ifi_change = IFF_UP;
  r.i.ifi_flags = a->up ? IFF_UP : 0;
  return nl_talk(fd, &r, NULL, e);
}

// Reads a string property of at most max-1 bytes into out; *present false when absent.
static bool get_string_prop(napi_env env, napi_value obj, const char *key, char *out, size_t max, bool *present) {
  napi_value v;
  napi_valuetype t;
  if (!get_optional(env, obj, key, &v, present)) return false;
  if (!*present) return true;
  *present = false;
  if (napi_typeof(env, v, &t) != napi_ok) return false;
  size_t len = 0;
  char text[96];
  if (t != napi_string || napi_get_value_string_utf8(env, v, NULL, 0, &len) != napi_ok) {
    snprintf(text, sizeof text, "linkSet: %s must be a string", key);
    napi_throw_type_error(env, "ERR_INVALID_ARG_TYPE", text);
    return false;
  }
  if (len >= max) {
    snprintf(text, sizeof text, "linkSet: %s must be at most %zu bytes", key, max - 1);
    napi_throw_range_error(env, "ERR_OUT_OF_RANGE", text);
    return false;
  }
  if (napi_get_value_string_utf8(env, v, out, max, &len) != napi_ok) return false;
  if (strlen(out) != len) {
    snprintf(text, sizeof text, "linkSet: %s must not contain NUL", key);
    napi_throw_range_error(env, "ERR_OUT_OF_RANGE", text);
    return false;
  }
  *present = true;
  return true;
}

// Reads linkSet's options object into *a; false with an exception pending.
static bool link_attrs_read(napi_env env, napi_value o, struct link_attrs *a) {
  bool present = false;
  if (!get_string_prop(env, o, "name", a->name, sizeof a->name, &present)) return false;
  if (!present || a->name[0] == '\0') {
    napi_throw_type_error(env, "ERR_INVALID_ARG_TYPE", "linkSet: name is required");
    return false;
  }
  if (!get_string_prop(env, o, "alias", a->alias, sizeof a->alias, &a->has_alias)) return false;
  if (!get_string_prop(env, o, "master", a->master, sizeof a->master, &a->has_master)) return false;
  if (!get_string_prop(env, o, "moveTo", a->ns_path, sizeof a->ns_path, &a->has_ns)) return false;
  napi_value v;
  bool has = false;
  if (!get_optional(env, o, "mtu", &v, &has)) return false;
  if (has) {
    double mtu;
    if (!get_integer(env, v, "linkSet: mtu", 68, 65535, &mtu)) return false;
    a->has_mtu = true;
    a->mtu = (uint32_t)mtu;
  }
  if (!get_optional(env, o, "up", &v, &a->has_up)) return false;
  if (a->has_up && !get_boolean(env, v, "linkSet: up", &a->up)) return false;
  return true;
}

// linkSet(nsPath | null, { name, alias?, mtu?, master?, up?, moveTo? }): one link's settings over rtnetlink in the
// namespace at nsPath (null: the process's own). `master: ''` detaches; `moveTo` (a namespace path) moves the link
// and nothing else. Errors carry `code` (ENODEV…) and ip's wording of the kernel's answer as the message.
napi_value link_set(napi_env env, napi_callback_info info) {
  size_t argc = 2;
  napi_value argv[2];
  NAPI_CALL(env, napi_get_cb_info(env, info, &argc, argv, NULL, NULL));
  napi_valuetype t0, t1;
  if (argc < 2 || napi_typeof(env, argv[0], &t0) != napi_ok || napi_typeof(env, argv[1], &t1) != napi_ok ||
      (t0 != napi_null && t0 != napi_string) || t1 != napi_object) {
    napi_throw_type_error(env, "ERR_INVALID_ARG_TYPE", "linkSet(nsPath, options): nsPath is a string or null, options an object");
    return NULL;
  }
  char ns_path[128] = "";
  if (t0 == napi_string) {
    size_t len = 0;
    NAPI_CALL(env, napi_get_value_string_utf8(env, argv[0], ns_path, sizeof ns_path, &len));
    if (len == 0 || len >= sizeof ns_path - 1 || strlen(ns_path) != len) {
      napi_throw_range_error(env, "ERR_OUT_OF_RANGE", "linkSet: nsPath is empty, too long or holds NUL");
      return NULL;
    }
  }
  struct link_attrs a;
  memset(&a, 0, sizeof a);
  if (!link_attrs_read(env, argv[1], &a)) return NULL;
  struct nl_error e = {0};
  int fd = nl_open(t0 == napi_string ? ns_path : NULL, &e);
  bool ok = fd >= 0 && link_apply(fd, &a, &e);
  if (fd >= 0) close(fd);
  if (ok) return NULL;
  const char *name = strerrorname_np(e.err);
  napi_value code, message, error, errno_value;
  NAPI_CALL(env, napi_create_string_utf8(env, name == NULL ? "EIO" : name, NAPI_AUTO_LENGTH, &code));
  NAPI_CALL(env, napi_create_string_utf8(env, e.text, NAPI_AUTO_LENGTH, &message));
  NAPI_CALL(env, napi_create_error(env, code, message, &error));
  NAPI_CALL(env, napi_create_int32(env, -e.err, &errno_value));
  NAPI_CALL(env, napi_set_named_property(env, error, "errno", errno_value));
  napi_throw(env, error);
  return NULL;
}
