// nftRun(nsPath, script, flags) -> Promise<{ rc, out, err }>: an nft(8) run through libnftables in this process.
// An nft process costs a fork of the parent (libuv forks: 2 ms at 50 MB) and, like every new libnftables context,
// ~6 ms of start before it reads a line; a context kept for the process's own namespace runs a start's rule change
// in well under a millisecond. libnftables is opened at run time (dlopen), so the addon builds without its headers
// and vmd falls back to the nft process where the library is missing.

#include "vmd_native.h"

#include <dlfcn.h>
#include <errno.h>
#include <fcntl.h>
#include <pthread.h>
#include <sched.h>
#include <malloc.h>
#include <sys/mman.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>

// libnftables' API (nftables/libnftables.h), stable since 0.9.
struct nft_ctx;
#define NFT_CTX_DEFAULT 0
#define NFT_CTX_OUTPUT_JSON (1u << 4)

// nftRun's flags.
#define RUN_JSON 1u
#define RUN_CHECK 2u
#define RUN_KEEP 4u

static struct {
  bool tried;
  bool ok;
  void *handle;
  struct nft_ctx *(*ctx_new)(uint32_t flags);
  void (*ctx_free)(struct nft_ctx *ctx);
  int (*buffer_output)(struct nft_ctx *ctx);
  int (*buffer_error)(struct nft_ctx *ctx);
  const char *(*get_output)(struct nft_ctx *ctx);
  const char *(*get_error)(struct nft_ctx *ctx);
  int (*run_file)(struct nft_ctx *ctx, const char *filename);
  void (*set_dry_run)(struct nft_ctx *ctx, bool dry);
  void (*set_output_flags)(struct nft_ctx *ctx, unsigned int flags);
} lib;

// One run at a time: libnftables keeps process-wide state, and a context is not to be shared between threads.
static pthread_mutex_t lock = PTHREAD_MUTEX_INITIALIZER;
// The context of the process's own namespace, kept while its runs succeed (its cache then matches the kernel's).
static struct nft_ctx *kept;

static bool lib_load(void) {
  if (lib.tried) return lib.ok;
  lib.tried = true;
  void *h = dlopen("libnftables.so.1", RTLD_NOW | RTLD_LOCAL);
  if (h == NULL) return false;
  lib.handle = h;
#define SYM(field, name) if ((*(void **)&lib.field = dlsym(h, name)) == NULL) return false
  SYM(ctx_new, "nft_ctx_new");
  SYM(ctx_free, "nft_ctx_free");
  SYM(buffer_output, "nft_ctx_buffer_output");
  SYM(buffer_error, "nft_ctx_buffer_error");
  SYM(get_output, "nft_ctx_get_output_buffer");
  SYM(get_error, "nft_ctx_get_error_buffer");
  SYM(run_file, "nft_run_cmd_from_filename");
  SYM(set_dry_run, "nft_ctx_set_dry_run");
  SYM(set_output_flags, "nft_ctx_output_set_flags");
#undef SYM
  lib.ok = true;
  return true;
}

// Under the lock, with no context kept: the library and its own (libnftnl, libmnl, libjansson, libgmp, libxtables)
// are closed and freed memory goes back to the system, so an idle vmd does not carry them. The next run opens them.
static void lib_unload(void) {
  if (kept == NULL && lib.handle != NULL) {
    dlclose(lib.handle);
    memset(&lib, 0, sizeof lib);
  }
  malloc_trim(0);
}

typedef struct {
  napi_async_work work;
  napi_deferred deferred;
  char *ns_path;  // NULL: the process's own namespace
  char *script;
  unsigned flags;
  int rc;
  int err_no;              // a failure before nft ran (opening or entering the namespace, no context)
  const char *err_syscall;
  char *out;
  char *err;
} job_t;

static struct nft_ctx *ctx_make(void) {
  struct nft_ctx *ctx = lib.ctx_new(NFT_CTX_DEFAULT);
  if (ctx == NULL) return NULL;
  if (lib.buffer_output(ctx) != 0 || lib.buffer_error(ctx) != 0) {
    lib.ctx_free(ctx);
    return NULL;
  }
  return ctx;
}

// Runs the job's script on ctx and keeps copies of what nft printed.
static void run_on(job_t *job, struct nft_ctx *ctx) {
  lib.set_output_flags(ctx, (job->flags & RUN_JSON) ? NFT_CTX_OUTPUT_JSON : 0);
  lib.set_dry_run(ctx, (job->flags & RUN_CHECK) != 0);
  // Reading a buffer rewinds it: whatever an earlier run left is dropped.
  lib.get_output(ctx);
  lib.get_error(ctx);
  // From a file, as `nft -f -` reads /dev/stdin: errors then name their line (`FILE:3:9-12: Error: ...`), where a
  // buffer's errors name none. The file is an anonymous one in memory.
  int fd = memfd_create("vmd-nft", MFD_CLOEXEC);
  if (fd < 0) {
    job->err_no = errno;
    job->err_syscall = "memfd_create";
    return;
  }
  size_t len = strlen(job->script), done = 0;
  while (done < len) {
    ssize_t n = write(fd, job->script + done, len - done);
    if (n < 0 && errno == EINTR) continue;
    if (n < 0) {
      job->err_no = errno;
      job->err_syscall = "write";
      close(fd);
      return;
    }
    done += (size_t)n;
  }
  char path[64];
  snprintf(path, sizeof path, "/proc/self/fd/%d", fd);
  job->rc = lib.run_file(ctx, path);
  close(fd);
  const char *out = lib.get_output(ctx);
  const char *err = lib.get_error(ctx);
  job->out = strdup(out == NULL ? "" : out);
  job->err = strdup(err == NULL ? "" : err);
}

// A run in another namespace: a thread of its own enters it, so no thread of Node's ever changes namespace; its
// context (and netlink socket) is freed with the run, so no namespace is kept alive after vmd removes it.
static void *ns_thread(void *arg) {
  job_t *job = arg;
  int fd = open(job->ns_path, O_RDONLY | O_CLOEXEC);
  if (fd < 0) {
    job->err_no = errno;
    job->err_syscall = "open";
    return NULL;
  }
  if (setns(fd, CLONE_NEWNET) != 0) {
    job->err_no = errno;
    job->err_syscall = "setns";
    close(fd);
    return NULL;
  }
  close(fd);
  struct nft_ctx *ctx = ctx_make();
  if (ctx == NULL) {
    job->err_no = ENOMEM;
    job->err_syscall = "nft_ctx_new";
    return NULL;
  }
  run_on(job, ctx);
  lib.ctx_free(ctx);
  return NULL;
}

static void execute(napi_env env, void *data) {
  job_t *job = data;
  pthread_mutex_lock(&lock);
  if (!lib_load()) {
    job->err_no = ENOENT;
    job->err_syscall = "dlopen libnftables.so.1";
  } else if (job->ns_path != NULL) {
    pthread_t t;
    int e = pthread_create(&t, NULL, ns_thread, job);
    if (e != 0) {
      job->err_no = e;
      job->err_syscall = "pthread_create";
    } else {
      pthread_join(t, NULL);
    }
    lib_unload();
  } else if ((job->flags & RUN_CHECK) != 0 || ((job->flags & RUN_KEEP) == 0 && kept == NULL)) {
    // A check, or a run not asked to keep a context while none is kept (a whole replace at start, a listing): a
    // context of its own, so the kept one's cache only ever follows real changes, and nothing stays after it.
    struct nft_ctx *ctx = ctx_make();
    if (ctx == NULL) {
      job->err_no = ENOMEM;
      job->err_syscall = "nft_ctx_new";
    } else {
      run_on(job, ctx);
      lib.ctx_free(ctx);
    }
    lib_unload();
  } else {
    if (kept == NULL) kept = ctx_make();
    if (kept == NULL) {
      job->err_no = ENOMEM;
      job->err_syscall = "nft_ctx_new";
    } else {
      run_on(job, kept);
      // After a failure the context's cache may not match the kernel any more: the next run starts afresh.
      if (job->rc != 0) {
        lib.ctx_free(kept);
        kept = NULL;
      }
    }
  }
  pthread_mutex_unlock(&lock);
}

static void job_free(job_t *job) {
  free(job->ns_path);
  free(job->script);
  free(job->out);
  free(job->err);
  free(job);
}

static void complete(napi_env env, napi_status status, void *data) {
  job_t *job = data;
  napi_value result = NULL;
  bool ok = false;
  if (status == napi_ok && job->err_no == 0 && job->out != NULL && job->err != NULL) {
    napi_value rc, out, err;
    if (napi_create_object(env, &result) == napi_ok && napi_create_int32(env, job->rc, &rc) == napi_ok &&
        napi_create_string_utf8(env, job->out, NAPI_AUTO_LENGTH, &out) == napi_ok &&
        napi_create_string_utf8(env, job->err, NAPI_AUTO_LENGTH, &err) == napi_ok &&
        napi_set_named_property(env, result, "rc", rc) == napi_ok && napi_set_named_property(env, result, "out", out) == napi_ok &&
        napi_set_named_property(env, result, "err", err) == napi_ok) {
      ok = true;
    }
  }
  if (ok) {
    napi_resolve_deferred(env, job->deferred, result);
  } else {
    int e = job->err_no != 0 ? job->err_no : ENOMEM;
    napi_value msg, error, code;
    char text[512];
    snprintf(text, sizeof text, "%s: %s%s%s", job->err_syscall != NULL ? job->err_syscall : "nftRun", strerror(e),
             job->ns_path != NULL ? " " : "", job->ns_path != NULL ? job->ns_path : "");
    napi_create_string_utf8(env, text, NAPI_AUTO_LENGTH, &msg);
    napi_create_string_utf8(env, e == ENOENT ? "ENOENT" : e == EPERM ? "EPERM" : "ERR_NFT", NAPI_AUTO_LENGTH, &code);
    napi_create_error(env, code, msg, &error);
    napi_reject_deferred(env, job->deferred, error);
  }
  napi_delete_async_work(env, job->work);
  job_free(job);
}

// Reads a string argument into a fresh heap copy; false with a TypeError pending otherwise.
static bool get_string(napi_env env, napi_value value, const char *what, char **out) {
  size_t len = 0;
  if (napi_get_value_string_utf8(env, value, NULL, 0, &len) != napi_ok) {
    char msg[128];
    snprintf(msg, sizeof msg, "nftRun: %s must be a string", what);
    napi_throw_type_error(env, "ERR_INVALID_ARG_TYPE", msg);
    return false;
  }
  *out = malloc(len + 1);
  if (*out == NULL) {
    napi_throw_error(env, "ERR_NATIVE", "nftRun: out of memory");
    return false;
  }
  napi_get_value_string_utf8(env, value, *out, len + 1, &len);
  if (strlen(*out) != len) {
    free(*out);
    *out = NULL;
    napi_throw_type_error(env, "ERR_INVALID_ARG_VALUE", "nftRun: a NUL byte in an argument");
    return false;
  }
  return true;
}

napi_value nft_available(napi_env env, napi_callback_info info) {
  pthread_mutex_lock(&lock);
  bool ok = lib_load();
  pthread_mutex_unlock(&lock);
  napi_value result;
  NAPI_CALL(env, napi_get_boolean(env, ok, &result));
  return result;
}

napi_value nft_run(napi_env env, napi_callback_info info) {
  size_t argc = 3;
  napi_value argv[3];
  NAPI_CALL(env, napi_get_cb_info(env, info, &argc, argv, NULL, NULL));
  if (argc < 3) {
    napi_throw_type_error(env, "ERR_INVALID_ARG_TYPE", "nftRun(nsPath, script, flags): all are required");
    return NULL;
  }
  pthread_mutex_lock(&lock);
  bool ok = lib_load();
  pthread_mutex_unlock(&lock);
  if (!ok) {
    napi_throw_error(env, "ENOENT", "nftRun: libnftables.so.1 cannot be opened");
    return NULL;
  }
  double flags = 0;
  if (!get_integer(env, argv[2], "flags", 0, RUN_JSON | RUN_CHECK | RUN_KEEP, &flags)) return NULL;
  job_t *job = calloc(1, sizeof *job);
  if (job == NULL) {
    napi_throw_error(env, "ERR_NATIVE", "nftRun: out of memory");
    return NULL;
  }
  job->flags = (unsigned)flags;
  napi_valuetype type;
  NAPI_CALL(env, napi_typeof(env, argv[0], &type));
  if (type != napi_null && !get_string(env, argv[0], "nsPath", &job->ns_path)) {
    job_free(job);
    return NULL;
  }
  if (!get_string(env, argv[1], "script", &job->script)) {
    job_free(job);
    return NULL;
  }
  napi_value promise, name;
  if (napi_create_promise(env, &job->deferred, &promise) != napi_ok ||
      napi_create_string_utf8(env, "vmd.nftRun", NAPI_AUTO_LENGTH, &name) != napi_ok ||
      napi_create_async_work(env, NULL, name, execute, complete, job, &job->work) != napi_ok) {
    job_free(job);
    napi_throw_error(env, "ERR_NATIVE", "nftRun: cannot queue the run");
    return NULL;
  }
  if (napi_queue_async_work(env, job->work) != napi_ok) {
    napi_delete_async_work(env, job->work);
    job_free(job);
    napi_throw_error(env, "ERR_NATIVE", "nftRun: cannot queue the run");
    return NULL;
  }
  return promise;
}

// nftRelease(): frees the kept context (and returns the memory its cache held), for when the rules have been left
// alone a while; the next run makes a new one.
napi_value nft_release(napi_env env, napi_callback_info info) {
  pthread_mutex_lock(&lock);
  if (kept != NULL) {
    lib.ctx_free(kept);
    kept = NULL;
  }
  lib_unload();
  pthread_mutex_unlock(&lock);
  return NULL;
}
