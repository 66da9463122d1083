/* Vulkan device state: loader (dlopen), instance, validation messenger, device choice and summary, buffers, var
 * device copies, pipelines and the on-disk pipeline cache, staging transfers.
 *
 * Environment: PIVOT_VK_LOADER (loader library path, default libvulkan.so.1), PIVOT_VK_VALIDATION=1 (Khronos
 * validation layer with synchronization validation; errors are printed and counted), PIVOT_DEVICE (device index),
 * PIVOT_QUIET (no device summary on stderr), PIVOT_VK_NO_CACHE=1 (no on-disk pipeline cache), XDG_CACHE_HOME,
 * PIVOT_VK_NO_SUBGROUP=1 (use the shared-memory variants of shaders that have a NAME_sg subgroup variant).
 *
 * State is per context (ctx->vk), except the loader library and the VkInstance: one instance per (loader, validation
 * on/off) is created the first time a context needs it and kept for the life of the process, shared by later
 * contexts (each opens its own device and, under validation, its own messenger). NVIDIA's driver breaks after
 * repeated vkCreateInstance/vkDestroyInstance cycles in one process (measured on an H200, driver 580: the 31st
 * context's vkCreateInstance failed with VK_ERROR_INCOMPATIBLE_DRIVER), so instances live until the process exits
 * (an exit handler destroys those no live context uses, which also keeps leak checkers quiet).
 * While no device is open, a changed PIVOT_VK_LOADER makes the next availability check start over.
 * A context opens one device (its first Vulkan plan's); var device copies live in that device's memory and are
 * released with the context (pv_var_free leaves them until then). */
#include "vk_priv.h"
#include <dlfcn.h>
#include <errno.h>
#include <pthread.h>
#include <stdatomic.h>
#include <sys/stat.h>
#include <unistd.h>

static pthread_mutex_t g_mu = PTHREAD_MUTEX_INITIALIZER;
static atomic_int g_val_errors;
static atomic_int g_val_active;
static int g_summary_printed;

const char *pv__vk_result(VkResult r) {
  switch (r) {
  case VK_SUCCESS: return "VK_SUCCESS";
  case VK_NOT_READY: return "VK_NOT_READY";
  case VK_TIMEOUT: return "VK_TIMEOUT";
  case VK_INCOMPLETE: return "VK_INCOMPLETE";
  case VK_ERROR_OUT_OF_HOST_MEMORY: return "VK_ERROR_OUT_OF_HOST_MEMORY";
  case VK_ERROR_OUT_OF_DEVICE_MEMORY: return "VK_ERROR_OUT_OF_DEVICE_MEMORY";
  case VK_ERROR_INITIALIZATION_FAILED: return "VK_ERROR_INITIALIZATION_FAILED";
  case VK_ERROR_DEVICE_LOST: return "VK_ERROR_DEVICE_LOST";
  case VK_ERROR_MEMORY_MAP_FAILED: return "VK_ERROR_MEMORY_MAP_FAILED";
  case VK_ERROR_LAYER_NOT_PRESENT: return "VK_ERROR_LAYER_NOT_PRESENT";
  case VK_ERROR_EXTENSION_NOT_PRESENT: return "VK_ERROR_EXTENSION_NOT_PRESENT";
  case VK_ERROR_FEATURE_NOT_PRESENT: return "VK_ERROR_FEATURE_NOT_PRESENT";
  case VK_ERROR_INCOMPATIBLE_DRIVER: return "VK_ERROR_INCOMPATIBLE_DRIVER";
  case VK_ERROR_TOO_MANY_OBJECTS: return "VK_ERROR_TOO_MANY_OBJECTS";
  case VK_ERROR_FORMAT_NOT_SUPPORTED: return "VK_ERROR_FORMAT_NOT_SUPPORTED";
  case VK_ERROR_FRAGMENTED_POOL: return "VK_ERROR_FRAGMENTED_POOL";
  case VK_ERROR_OUT_OF_POOL_MEMORY: return "VK_ERROR_OUT_OF_POOL_MEMORY";
  default: return "VkResult error";
  }
}

static int is_oom(VkResult r) { return r == VK_ERROR_OUT_OF_DEVICE_MEMORY || r == VK_ERROR_OUT_OF_HOST_MEMORY; }

/* ------------------------------------------------------------ loader */
typedef struct loader_ent {
  char path[512];
  void *lib;
  PFN_vkGetInstanceProcAddr gipa;
  char err[512];
} loader_ent;
static loader_ent g_loaders[8];
static int g_nloaders;

static const char *loader_path(void) {
  const char *e = getenv("PIVOT_VK_LOADER");
  return e && *e ? e : "libvulkan.so.1";
}

/* dlopens path once per process (handles stay open); returns vkGetInstanceProcAddr or NULL with err set. */
static PFN_vkGetInstanceProcAddr open_loader(const char *path, char *err, size_t cap) {
  PFN_vkGetInstanceProcAddr g = NULL;
  pthread_mutex_lock(&g_mu);
  for (int i = 0; i < g_nloaders; i++)
    if (!strcmp(g_loaders[i].path, path)) {
      g = g_loaders[i].gipa;
      snprintf(err, cap, "%s", g_loaders[i].err);
      pthread_mutex_unlock(&g_mu);
      return g;
    }
  loader_ent e;
  memset(&e, 0, sizeof e);
  snprintf(e.path, sizeof e.path, "%s", path);
  e.lib = dlopen(path, RTLD_NOW | RTLD_LOCAL);
  if (!e.lib) {
    const char *de = dlerror();
    snprintf(e.err, sizeof e.err, "cannot load the Vulkan loader '%.200s' (%.250s)", path, de ? de : "dlopen failed");
  } else {
    e.gipa = (PFN_vkGetInstanceProcAddr)dlsym(e.lib, "vkGetInstanceProcAddr");
    if (!e.gipa) snprintf(e.err, sizeof e.err, "the Vulkan loader '%.400s' has no vkGetInstanceProcAddr", path);
  }
  if (g_nloaders < (int)(sizeof g_loaders / sizeof g_loaders[0])) g_loaders[g_nloaders++] = e;
  g = e.gipa;
  snprintf(err, cap, "%s", e.err);
  pthread_mutex_unlock(&g_mu);
  return g;
}

/* ------------------------------------------------------------ process-wide instances */
typedef struct inst_ent {
  char loader[512];
  int want_val;   /* PIVOT_VK_VALIDATION was on when it was made */
  int validation; /* the layer is on in this instance */
  uint32_t api;   /* instance API version */
  VkInstance inst;
  pv_vk_fns f; /* global and instance-level functions */
  int users;   /* live contexts using it */
} inst_ent;
static inst_ent g_insts[8];
static int g_ninsts;

/* at exit: destroys the instances no live context uses */
static void inst_atexit(void) {
  pthread_mutex_lock(&g_mu);
  for (int i = 0; i < g_ninsts; i++)
    if (g_insts[i].inst && g_insts[i].users == 0 && g_insts[i].f.vkDestroyInstance) {
      g_insts[i].f.vkDestroyInstance(g_insts[i].inst, NULL);
      g_insts[i].inst = VK_NULL_HANDLE;
    }
  pthread_mutex_unlock(&g_mu);
}

/* a context stops using the shared instance inst */
static void inst_release(VkInstance inst) {
  pthread_mutex_lock(&g_mu);
  for (int i = 0; i < g_ninsts; i++)
    if (g_insts[i].inst == inst && g_insts[i].users > 0) g_insts[i].users--;
  pthread_mutex_unlock(&g_mu);
}

/* fills s from a cached instance made with s->loader and want_val; 1 if found */
static int inst_lookup(pv_vk_ctx *s, int want_val) {
  int found = 0;
  pthread_mutex_lock(&g_mu);
  for (int i = 0; i < g_ninsts && !found; i++)
    if (g_insts[i].inst && g_insts[i].want_val == want_val && !strcmp(g_insts[i].loader, s->loader)) {
      g_insts[i].users++;
      s->f = g_insts[i].f;
      s->inst = g_insts[i].inst;
      s->validation = g_insts[i].validation;
      s->inst_api = g_insts[i].api;
      found = 1;
    }
  pthread_mutex_unlock(&g_mu);
  return found;
}

/* keeps s's new instance for later contexts; 0 when the table is full (the context then owns it) */
static int inst_keep(const pv_vk_ctx *s, int want_val) {
  int kept = 0;
  pthread_mutex_lock(&g_mu);
  if (g_ninsts < (int)(sizeof g_insts / sizeof g_insts[0])) {
    if (g_ninsts == 0) atexit(inst_atexit);
    inst_ent *e = &g_insts[g_ninsts++];
    memset(e, 0, sizeof *e);
    snprintf(e->loader, sizeof e->loader, "%s", s->loader);
    e->want_val = want_val;
    e->validation = s->validation;
    e->api = s->inst_api;
    e->inst = s->inst;
    e->f = s->f;
    e->users = 1;
    kept = 1;
  }
  pthread_mutex_unlock(&g_mu);
  return kept;
}

/* ------------------------------------------------------------ validation messenger */
static VKAPI_ATTR VkBool32 VKAPI_CALL debug_cb(VkDebugUtilsMessageSeverityFlagBitsEXT sev,
                                               VkDebugUtilsMessageTypeFlagsEXT types,
                                               const VkDebugUtilsMessengerCallbackDataEXT *data, void *user) {
  (void)types;
  pv_vk_ctx *s = user;
  int err = (sev & VK_DEBUG_UTILS_MESSAGE_SEVERITY_ERROR_BIT_EXT) != 0;
  if (err) {
    if (s) s->val_errors++;
    atomic_fetch_add(&g_val_errors, 1);
  }
  fprintf(stderr, "pivot vulkan validation %s: %s\n", err ? "ERROR" : "warning",
          data && data->pMessage ? data->pMessage : "(no message)");
  return VK_FALSE;
}

int pv__vk_validation_errors(pv_context *ctx) {
  if (!ctx) return atomic_load(&g_val_errors);
  return ctx->vk ? ctx->vk->val_errors : 0;
}
int pv__vk_validation_active(pv_context *ctx) {
  if (!ctx) return atomic_load(&g_val_active);
  return ctx->vk ? ctx->vk->validation : 0;
}

static int env_on(const char *name) {
  const char *e = getenv(name);
  return e && *e && strcmp(e, "0") != 0;
}

/* ------------------------------------------------------------ instance */
static int has_ext(const VkExtensionProperties *e, uint32_t n, const char *name) {
  for (uint32_t i = 0; i < n; i++)
    if (!strcmp(e[i].extensionName, name)) return 1;
  return 0;
}

/* creates s->inst (and loads s->f) with s->loader; on failure s->inst stays NULL and s->why says why */
static void create_instance(pv_vk_ctx *s) {
  char err[512];
  s->f.vkGetInstanceProcAddr = open_loader(s->loader, err, sizeof err);
  if (!s->f.vkGetInstanceProcAddr) {
    snprintf(s->why, sizeof s->why, "%s", err);
    return;
  }
  PFN_vkGetInstanceProcAddr gipa = s->f.vkGetInstanceProcAddr;
#define PV_VK_LOAD_G(n) s->f.n = (PFN_##n)gipa(VK_NULL_HANDLE, #n);
  PV_VK_GLOBAL_FNS(PV_VK_LOAD_G)
#undef PV_VK_LOAD_G
  s->f.vkEnumerateInstanceVersion = (PFN_vkEnumerateInstanceVersion)gipa(VK_NULL_HANDLE, "vkEnumerateInstanceVersion");
  if (!s->f.vkCreateInstance || !s->f.vkEnumerateInstanceExtensionProperties) {
    snprintf(s->why, sizeof s->why, "the Vulkan loader '%s' lacks vkCreateInstance", s->loader);
    return;
  }
  uint32_t ver = VK_API_VERSION_1_0;
  if (s->f.vkEnumerateInstanceVersion) s->f.vkEnumerateInstanceVersion(&ver);
  if (VK_API_VERSION_MAJOR(ver) == 1 && VK_API_VERSION_MINOR(ver) < 1) {
    snprintf(s->why, sizeof s->why, "the Vulkan loader '%s' supports Vulkan %u.%u; pivot needs 1.1", s->loader,
             VK_API_VERSION_MAJOR(ver), VK_API_VERSION_MINOR(ver));
    return;
  }
  s->inst_api = ver > VK_API_VERSION_1_3 ? VK_API_VERSION_1_3 : ver;

  const char *exts[4];
  const char *layers[1];
  uint32_t next = 0, nlayers = 0;
  int want_val = env_on("PIVOT_VK_VALIDATION"), sync_val = 0;
  if (want_val) {
    uint32_t nl = 0;
    VkLayerProperties *lp = NULL;
    if (s->f.vkEnumerateInstanceLayerProperties && s->f.vkEnumerateInstanceLayerProperties(&nl, NULL) == VK_SUCCESS &&
        nl > 0 && (lp = calloc(nl, sizeof *lp)) && s->f.vkEnumerateInstanceLayerProperties(&nl, lp) == VK_SUCCESS) {
      for (uint32_t i = 0; i < nl; i++)
        if (!strcmp(lp[i].layerName, "VK_LAYER_KHRONOS_validation")) s->validation = 1;
    }
    free(lp);
    if (!s->validation) {
      pthread_mutex_lock(&g_mu);
      static int warned;
      if (!warned)
        fprintf(stderr, "pivot: PIVOT_VK_VALIDATION is set but VK_LAYER_KHRONOS_validation is not installed\n");
      warned = 1;
      pthread_mutex_unlock(&g_mu);
    } else {
      layers[nlayers++] = "VK_LAYER_KHRONOS_validation";
      uint32_t ne = 0;
      VkExtensionProperties *ep = NULL;
      int dbg = 0;
      if (s->f.vkEnumerateInstanceExtensionProperties("VK_LAYER_KHRONOS_validation", &ne, NULL) == VK_SUCCESS &&
          ne > 0 && (ep = calloc(ne, sizeof *ep)) &&
          s->f.vkEnumerateInstanceExtensionProperties("VK_LAYER_KHRONOS_validation", &ne, ep) == VK_SUCCESS) {
        dbg = has_ext(ep, ne, VK_EXT_DEBUG_UTILS_EXTENSION_NAME);
        sync_val = has_ext(ep, ne, VK_EXT_VALIDATION_FEATURES_EXTENSION_NAME);
      }
      free(ep);
      if (!dbg) { /* the loader may expose debug_utils itself */
        ne = 0;
        if (s->f.vkEnumerateInstanceExtensionProperties(NULL, &ne, NULL) == VK_SUCCESS && ne > 0 &&
            (ep = calloc(ne, sizeof *ep)) && s->f.vkEnumerateInstanceExtensionProperties(NULL, &ne, ep) == VK_SUCCESS)
          dbg = has_ext(ep, ne, VK_EXT_DEBUG_UTILS_EXTENSION_NAME);
        free(ep);
      }
      if (dbg)
        exts[next++] = VK_EXT_DEBUG_UTILS_EXTENSION_NAME;
      else
        s->validation = 0, nlayers = 0, sync_val = 0;
      if (sync_val) exts[next++] = VK_EXT_VALIDATION_FEATURES_EXTENSION_NAME;
    }
  }
  VkApplicationInfo app = {VK_STRUCTURE_TYPE_APPLICATION_INFO, NULL, "pivot", 1, "pivot", 1, s->inst_api};
  VkDebugUtilsMessengerCreateInfoEXT mci = {.sType = VK_STRUCTURE_TYPE_DEBUG_UTILS_MESSENGER_CREATE_INFO_EXT};
  mci.messageSeverity = VK_DEBUG_UTILS_MESSAGE_SEVERITY_ERROR_BIT_EXT | VK_DEBUG_UTILS_MESSAGE_SEVERITY_WARNING_BIT_EXT;
  mci.messageType = VK_DEBUG_UTILS_MESSAGE_TYPE_GENERAL_BIT_EXT | VK_DEBUG_UTILS_MESSAGE_TYPE_VALIDATION_BIT_EXT;
  mci.pfnUserCallback = debug_cb;
  mci.pUserData = NULL; /* the instance outlives this context: messages of its creation count process-wide */
  VkValidationFeatureEnableEXT vfe[1] = {VK_VALIDATION_FEATURE_ENABLE_SYNCHRONIZATION_VALIDATION_EXT};
  VkValidationFeaturesEXT vf = {VK_STRUCTURE_TYPE_VALIDATION_FEATURES_EXT, NULL, 1, vfe, 0, NULL};
  if (s->validation && sync_val) mci.pNext = &vf;
  VkInstanceCreateInfo ici = {.sType = VK_STRUCTURE_TYPE_INSTANCE_CREATE_INFO};
  ici.pApplicationInfo = &app;
  ici.enabledLayerCount = nlayers;
  ici.ppEnabledLayerNames = layers;
  ici.enabledExtensionCount = next;
  ici.ppEnabledExtensionNames = exts;
  if (s->validation) ici.pNext = &mci;
  VkResult r = s->f.vkCreateInstance(&ici, NULL, &s->inst);
  if (r != VK_SUCCESS) {
    s->inst = VK_NULL_HANDLE;
    if (r == VK_ERROR_INCOMPATIBLE_DRIVER)
      snprintf(s->why, sizeof s->why, "no Vulkan driver found (vkCreateInstance: VK_ERROR_INCOMPATIBLE_DRIVER)");
    else
      snprintf(s->why, sizeof s->why, "vkCreateInstance failed: %s", pv__vk_result(r));
    return;
  }
#define PV_VK_LOAD_I(n) s->f.n = (PFN_##n)gipa(s->inst, #n);
  PV_VK_INSTANCE_FNS(PV_VK_LOAD_I)
#undef PV_VK_LOAD_I
#define PV_VK_CHECK_I(n)                                                                                               \
  if (!s->f.n) {                                                                                                       \
    snprintf(s->why, sizeof s->why, "the Vulkan loader lacks %s", #n);                                                 \
    if (s->f.vkDestroyInstance) s->f.vkDestroyInstance(s->inst, NULL);                                                 \
    s->inst = VK_NULL_HANDLE;                                                                                          \
    return;                                                                                                            \
  }
  PV_VK_INSTANCE_FNS(PV_VK_CHECK_I)
#undef PV_VK_CHECK_I
  if (s->validation) {
    s->f.vkCreateDebugUtilsMessengerEXT =
        (PFN_vkCreateDebugUtilsMessengerEXT)gipa(s->inst, "vkCreateDebugUtilsMessengerEXT");
    s->f.vkDestroyDebugUtilsMessengerEXT =
        (PFN_vkDestroyDebugUtilsMessengerEXT)gipa(s->inst, "vkDestroyDebugUtilsMessengerEXT");
  }
}

static void init_instance(pv_vk_ctx *s) {
  s->ok = 0;
  int want_val = env_on("PIVOT_VK_VALIDATION");
  if (!inst_lookup(s, want_val)) {
    create_instance(s);
    if (!s->inst) return;
    s->own_inst = !inst_keep(s, want_val);
  }
  VkResult r;
  if (s->validation) {
    /* this context's messenger: it sees every message of the shared instance, so under validation a context's
     * error count may include another live context's errors */
    VkDebugUtilsMessengerCreateInfoEXT mci = {.sType = VK_STRUCTURE_TYPE_DEBUG_UTILS_MESSENGER_CREATE_INFO_EXT};
    mci.messageSeverity =
        VK_DEBUG_UTILS_MESSAGE_SEVERITY_ERROR_BIT_EXT | VK_DEBUG_UTILS_MESSAGE_SEVERITY_WARNING_BIT_EXT;
    mci.messageType = VK_DEBUG_UTILS_MESSAGE_TYPE_GENERAL_BIT_EXT | VK_DEBUG_UTILS_MESSAGE_TYPE_VALIDATION_BIT_EXT;
    mci.pfnUserCallback = debug_cb;
    mci.pUserData = s;
    if (s->f.vkCreateDebugUtilsMessengerEXT) s->f.vkCreateDebugUtilsMessengerEXT(s->inst, &mci, NULL, &s->messenger);
    atomic_store(&g_val_active, 1);
  }
  uint32_t n = 0;
  r = s->f.vkEnumeratePhysicalDevices(s->inst, &n, NULL);
  if (r != VK_SUCCESS || n == 0) {
    snprintf(s->why, sizeof s->why, "no Vulkan devices found (loader '%s')", s->loader);
    return;
  }
  s->pdevs = calloc(n, sizeof *s->pdevs);
  if (!s->pdevs) {
    snprintf(s->why, sizeof s->why, "out of memory");
    return;
  }
  r = s->f.vkEnumeratePhysicalDevices(s->inst, &n, s->pdevs);
  if (r != VK_SUCCESS && r != VK_INCOMPLETE) {
    snprintf(s->why, sizeof s->why, "vkEnumeratePhysicalDevices failed: %s", pv__vk_result(r));
    return;
  }
  s->npdev = n;
  s->ok = 1;
  s->why[0] = 0;
}

/* ------------------------------------------------------------ teardown */
static void save_pcache(pv_vk_ctx *s) {
  if (!s->pcache || !s->pcache_path[0]) return;
  size_t n = 0;
  if (s->f.vkGetPipelineCacheData(s->dev, s->pcache, &n, NULL) != VK_SUCCESS || n == 0 || n == s->pcache_loaded) return;
  void *data = malloc(n);
  if (!data) return;
  if (s->f.vkGetPipelineCacheData(s->dev, s->pcache, &n, data) == VK_SUCCESS) {
    char tmp[1100];
    snprintf(tmp, sizeof tmp, "%s.%ld.tmp", s->pcache_path, (long)getpid());
    FILE *fp = fopen(tmp, "wb");
    if (fp) {
      int ok = fwrite(data, 1, n, fp) == n;
      ok &= fflush(fp) == 0;
      ok &= fclose(fp) == 0;
      if (!ok || rename(tmp, s->pcache_path) != 0) unlink(tmp); /* not an error: the cache is optional */
    }
  }
  free(data);
}

void pv__vk_buf_free(pv_vk_ctx *s, pv_vk_buf *b) {
  if (!s || !s->dev || !b) return;
  if (b->map) s->f.vkUnmapMemory(s->dev, b->mem);
  if (b->buf) s->f.vkDestroyBuffer(s->dev, b->buf, NULL);
  if (b->mem) s->f.vkFreeMemory(s->dev, b->mem, NULL);
  memset(b, 0, sizeof *b);
}

static void vk_ctx_free(pv_context *ctx) {
  pv_vk_ctx *s = ctx->vk;
  if (!s) return;
  if (s->dev) {
    s->f.vkDeviceWaitIdle(s->dev);
    save_pcache(s);
    for (int i = 0; s->pipes && i < pv__spv_count; i++)
      if (s->pipes[i]) s->f.vkDestroyPipeline(s->dev, s->pipes[i], NULL);
    if (s->pcache) s->f.vkDestroyPipelineCache(s->dev, s->pcache, NULL);
    if (s->playout) s->f.vkDestroyPipelineLayout(s->dev, s->playout, NULL);
    if (s->dsl) s->f.vkDestroyDescriptorSetLayout(s->dev, s->dsl, NULL);
    for (int i = 0; i < s->nblocks; i++)
      pv__vk_buf_free(s, &s->blocks[i]);
    pv__vk_buf_free(s, &s->stage);
    pv__vk_buf_free(s, &s->dummy);
    if (s->xfer_fence) s->f.vkDestroyFence(s->dev, s->xfer_fence, NULL);
    if (s->cmdpool) s->f.vkDestroyCommandPool(s->dev, s->cmdpool, NULL);
    s->f.vkDestroyDevice(s->dev, NULL);
  }
  /* var device copies: vars still alive forget theirs */
  for (int i = 0; i < ctx->nvars; i++)
    if (ctx->vars[i]->dev && ((pv_vk_varbuf *)ctx->vars[i]->dev)->owner == s) ctx->vars[i]->dev = NULL;
  for (int i = 0; i < s->nvarbufs; i++)
    free(s->varbufs[i]);
  free(s->varbufs);
  free(s->blocks);
  free(s->pipes);
  if (s->messenger && s->f.vkDestroyDebugUtilsMessengerEXT)
    s->f.vkDestroyDebugUtilsMessengerEXT(s->inst, s->messenger, NULL);
  if (s->inst && s->own_inst)
    s->f.vkDestroyInstance(s->inst, NULL);
  else if (s->inst)
    inst_release(s->inst); /* shared ones live on (top of file) */
  free(s->pdevs);
  free(s);
  ctx->vk = NULL;
}

static pv_status vk_sync_var(pv_context *ctx, pv_var *v);

/* ctx's state for the current loader path (created on demand; NULL only when out of memory) */
static pv_vk_ctx *vk_state(pv_context *ctx) {
  const char *path = loader_path();
  pv_vk_ctx *s = ctx->vk;
  if (s && !s->dev && strcmp(s->loader, path) != 0) {
    vk_ctx_free(ctx);
    s = NULL;
  }
  if (s) return s;
  s = calloc(1, sizeof *s);
  if (!s) return NULL;
  s->ctx = ctx;
  s->dev_index = -1;
  snprintf(s->loader, sizeof s->loader, "%s", path);
  ctx->vk = s;
  ctx->vk_free = vk_ctx_free;
  ctx->vk_sync_var = vk_sync_var;
  init_instance(s);
  return s;
}

int pv__vk_available(pv_context *ctx, const char **why) {
  if (why) *why = NULL;
  if (!ctx) { /* no context: probe with a temporary one */
    static char reason[600];
    pv_context *tmp = pv_context_new();
    if (!tmp) {
      if (why) *why = "out of memory";
      return 0;
    }
    const char *w = NULL;
    int ok = pv__vk_available(tmp, &w);
    pthread_mutex_lock(&g_mu);
    if (!ok) snprintf(reason, sizeof reason, "%s", w ? w : "unknown reason");
    pthread_mutex_unlock(&g_mu);
    pv_context_free(tmp);
    if (!ok && why) *why = reason;
    return ok;
  }
  pv_vk_ctx *s = vk_state(ctx);
  if (!s) {
    if (why) *why = "out of memory";
    return 0;
  }
  if (!s->ok && why) *why = s->why;
  return s->ok;
}

/* ------------------------------------------------------------ device info and choice */
static void dev_info(pv_vk_ctx *s, VkPhysicalDevice pd, pv_vk_devinfo *di) {
  memset(di, 0, sizeof *di);
  VkPhysicalDeviceProperties pr;
  s->f.vkGetPhysicalDeviceProperties(pd, &pr);
  snprintf(di->name, sizeof di->name, "%s", pr.deviceName);
  di->type = pr.deviceType;
  di->api = pr.apiVersion;
  int v12 = VK_API_VERSION_MINOR(pr.apiVersion) >= 2 && VK_API_VERSION_MINOR(s->inst_api) >= 2;
  uint32_t ne = 0;
  VkExtensionProperties *ep = NULL;
  if (s->f.vkEnumerateDeviceExtensionProperties(pd, NULL, &ne, NULL) == VK_SUCCESS && ne > 0 &&
      (ep = calloc(ne, sizeof *ep)) && s->f.vkEnumerateDeviceExtensionProperties(pd, NULL, &ne, ep) == VK_SUCCESS) {
    di->bf16 = has_ext(ep, ne, "VK_KHR_shader_bfloat16");
    di->coopmat = has_ext(ep, ne, "VK_KHR_cooperative_matrix") || has_ext(ep, ne, "VK_NV_cooperative_matrix");
    di->has_budget_ext = has_ext(ep, ne, VK_EXT_MEMORY_BUDGET_EXTENSION_NAME);
  } else
    ne = 0;
  /* properties */
  VkPhysicalDeviceSubgroupProperties sg = {.sType = VK_STRUCTURE_TYPE_PHYSICAL_DEVICE_SUBGROUP_PROPERTIES};
  VkPhysicalDeviceDriverProperties drv = {.sType = VK_STRUCTURE_TYPE_PHYSICAL_DEVICE_DRIVER_PROPERTIES};
  VkPhysicalDeviceProperties2 p2 = {.sType = VK_STRUCTURE_TYPE_PHYSICAL_DEVICE_PROPERTIES_2, .pNext = &sg};
  if (v12 || (ep && has_ext(ep, ne, VK_KHR_DRIVER_PROPERTIES_EXTENSION_NAME))) sg.pNext = &drv;
  s->f.vkGetPhysicalDeviceProperties2(pd, &p2);
  free(ep);
  if (sg.pNext)
    snprintf(di->driver, sizeof di->driver, "%s %s", drv.driverName, drv.driverInfo);
  else
    snprintf(di->driver, sizeof di->driver, "driver version 0x%x", pr.driverVersion);
  di->subgroup_size = sg.subgroupSize;
  di->subgroup_arith = (sg.supportedStages & VK_SHADER_STAGE_COMPUTE_BIT) &&
                       (sg.supportedOperations & VK_SUBGROUP_FEATURE_BASIC_BIT) &&
                       (sg.supportedOperations & VK_SUBGROUP_FEATURE_ARITHMETIC_BIT);
  di->shared_mem = pr.limits.maxComputeSharedMemorySize;
  /* features */
  VkPhysicalDevice16BitStorageFeatures f16s = {.sType = VK_STRUCTURE_TYPE_PHYSICAL_DEVICE_16BIT_STORAGE_FEATURES};
  VkPhysicalDeviceShaderFloat16Int8Features f16 = {.sType =
                                                       VK_STRUCTURE_TYPE_PHYSICAL_DEVICE_SHADER_FLOAT16_INT8_FEATURES};
  VkPhysicalDeviceFeatures2 f2 = {.sType = VK_STRUCTURE_TYPE_PHYSICAL_DEVICE_FEATURES_2, .pNext = &f16s};
  if (v12) f16s.pNext = &f16;
  s->f.vkGetPhysicalDeviceFeatures2(pd, &f2);
  di->fp16 = v12 && f16.shaderFloat16;
  di->int64 = f2.features.shaderInt64;
  di->sb16 = f16s.storageBuffer16BitAccess;
  /* memory */
  VkPhysicalDeviceMemoryBudgetPropertiesEXT mb = {.sType =
                                                      VK_STRUCTURE_TYPE_PHYSICAL_DEVICE_MEMORY_BUDGET_PROPERTIES_EXT};
  VkPhysicalDeviceMemoryProperties2 m2 = {.sType = VK_STRUCTURE_TYPE_PHYSICAL_DEVICE_MEMORY_PROPERTIES_2,
                                          .pNext = di->has_budget_ext ? &mb : NULL};
  s->f.vkGetPhysicalDeviceMemoryProperties2(pd, &m2);
  for (uint32_t h = 0; h < m2.memoryProperties.memoryHeapCount; h++)
    if (m2.memoryProperties.memoryHeaps[h].flags & VK_MEMORY_HEAP_DEVICE_LOCAL_BIT) {
      di->mem_total += m2.memoryProperties.memoryHeaps[h].size;
      if (di->has_budget_ext) di->mem_budget += mb.heapBudget[h];
    }
}

static const char *type_name(VkPhysicalDeviceType t) {
  switch (t) {
  case VK_PHYSICAL_DEVICE_TYPE_DISCRETE_GPU: return "discrete GPU";
  case VK_PHYSICAL_DEVICE_TYPE_INTEGRATED_GPU: return "integrated GPU";
  case VK_PHYSICAL_DEVICE_TYPE_VIRTUAL_GPU: return "virtual GPU";
  case VK_PHYSICAL_DEVICE_TYPE_CPU: return "CPU";
  default: return "other";
  }
}

static void summary(const pv_vk_devinfo *di, int index, char *buf, size_t cap) {
  double gib = 1024.0 * 1024.0 * 1024.0;
  char mem[96];
  if (di->mem_budget)
    snprintf(mem, sizeof mem, "%.1f GiB budget of %.1f GiB", di->mem_budget / gib, di->mem_total / gib);
  else
    snprintf(mem, sizeof mem, "%.1f GiB", di->mem_total / gib);
  snprintf(buf, cap,
           "vulkan device %d: %.255s (%s), driver %.300s, Vulkan %u.%u, fp16 %s, bf16 %s, subgroup %u%s, shared memory "
           "%u KiB, "
           "cooperative matrix %s, memory %s",
           index, di->name, type_name(di->type), di->driver, VK_API_VERSION_MAJOR(di->api),
           VK_API_VERSION_MINOR(di->api), di->fp16 ? "yes" : "no", di->bf16 ? "yes" : "no", di->subgroup_size,
           di->subgroup_arith ? "" : " (no arithmetic)", di->shared_mem / 1024, di->coopmat ? "yes" : "no", mem);
}

static int type_rank(VkPhysicalDeviceType t) {
  switch (t) {
  case VK_PHYSICAL_DEVICE_TYPE_DISCRETE_GPU: return 0;
  case VK_PHYSICAL_DEVICE_TYPE_INTEGRATED_GPU: return 1;
  case VK_PHYSICAL_DEVICE_TYPE_VIRTUAL_GPU: return 2;
  case VK_PHYSICAL_DEVICE_TYPE_CPU: return 3;
  default: return 4;
  }
}

static int best_device(pv_vk_ctx *s) {
  int best = 0, br = 99;
  for (uint32_t i = 0; i < s->npdev; i++) {
    VkPhysicalDeviceProperties pr;
    s->f.vkGetPhysicalDeviceProperties(s->pdevs[i], &pr);
    if (VK_API_VERSION_MINOR(pr.apiVersion) < 1 && VK_API_VERSION_MAJOR(pr.apiVersion) == 1) continue;
    int r = type_rank(pr.deviceType);
    if (r < br) br = r, best = (int)i;
  }
  return best;
}

/* -1 if unset; -2 if malformed */
static int env_device(void) {
  const char *e = getenv("PIVOT_DEVICE");
  if (!e || !*e) return -1;
  char *end;
  long v = strtol(e, &end, 10);
  if (*end || v < 0 || v > 1000) return -2;
  return (int)v;
}

pv_status pv__vk_describe(pv_context *ctx, char *buf, size_t cap) {
  if (!buf || cap == 0) return PV_ERR_NULL;
  buf[0] = 0;
  const char *why = NULL;
  if (!pv__vk_available(ctx, &why)) {
    snprintf(buf, cap, "vulkan: not available: %s", why ? why : "unknown reason");
    return pv__err(ctx, PV_ERR_UNSUPPORTED, "vulkan is not available: %s", why ? why : "unknown reason");
  }
  pv_vk_ctx *s = ctx->vk;
  int chosen = s->dev ? s->dev_index : env_device() >= 0 ? env_device() : best_device(s);
  size_t k = 0;
  for (uint32_t i = 0; i < s->npdev && k < cap; i++) {
    pv_vk_devinfo di;
    char line[1024];
    dev_info(s, s->pdevs[i], &di);
    summary(&di, (int)i, line, sizeof line);
    k += (size_t)snprintf(buf + k, cap - k, "%s%s%s", line, (int)i == chosen ? " [selected]" : "",
                          i + 1 < s->npdev ? "\n" : "");
  }
  return PV_OK;
}

/* ------------------------------------------------------------ memory */
static int find_mem(pv_vk_ctx *s, uint32_t bits, VkMemoryPropertyFlags want, VkMemoryPropertyFlags prefer) {
  int fallback = -1;
  for (uint32_t i = 0; i < s->memprops.memoryTypeCount; i++) {
    if (!(bits & (1u << i))) continue;
    VkMemoryPropertyFlags f = s->memprops.memoryTypes[i].propertyFlags;
    if ((f & want) != want) continue;
    if ((f & prefer) == prefer) return (int)i;
    if (fallback < 0) fallback = (int)i;
  }
  return fallback;
}

pv_status pv__vk_buf_new(pv_vk_ctx *s, VkDeviceSize size, int kind, pv_vk_buf *b, const char *what) {
  memset(b, 0, sizeof *b);
  if (size < 256) size = 256;
  size = (size + 255) & ~(VkDeviceSize)255;
  pv_context *ctx = s->ctx;
  if (s->max_alloc && size > s->max_alloc)
    return pv__err(ctx, PV_ERR_NOMEM, "vulkan: %s needs %llu bytes, over the device's maxMemoryAllocationSize (%llu)",
                   what, (unsigned long long)size, (unsigned long long)s->max_alloc);
  VkBufferCreateInfo bi = {.sType = VK_STRUCTURE_TYPE_BUFFER_CREATE_INFO};
  bi.size = size;
  bi.usage = VK_BUFFER_USAGE_STORAGE_BUFFER_BIT | VK_BUFFER_USAGE_TRANSFER_SRC_BIT | VK_BUFFER_USAGE_TRANSFER_DST_BIT;
  bi.sharingMode = VK_SHARING_MODE_EXCLUSIVE;
  VkResult r = s->f.vkCreateBuffer(s->dev, &bi, NULL, &b->buf);
  if (r != VK_SUCCESS) {
    b->buf = VK_NULL_HANDLE;
    return pv__err(ctx, is_oom(r) ? PV_ERR_NOMEM : PV_ERR_BACKEND, "vulkan: creating a buffer of %llu bytes for %s: %s",
                   (unsigned long long)size, what, pv__vk_result(r));
  }
  VkMemoryRequirements mr;
  s->f.vkGetBufferMemoryRequirements(s->dev, b->buf, &mr);
  int mt;
  if (kind == 0)
    mt = find_mem(s, mr.memoryTypeBits, VK_MEMORY_PROPERTY_DEVICE_LOCAL_BIT, 0);
  else if (kind == 1)
    mt = find_mem(s, mr.memoryTypeBits, VK_MEMORY_PROPERTY_HOST_VISIBLE_BIT | VK_MEMORY_PROPERTY_HOST_COHERENT_BIT, 0);
  else
    mt = find_mem(s, mr.memoryTypeBits, VK_MEMORY_PROPERTY_HOST_VISIBLE_BIT | VK_MEMORY_PROPERTY_HOST_COHERENT_BIT,
                  VK_MEMORY_PROPERTY_HOST_CACHED_BIT);
  if (mt < 0 && kind == 0) mt = find_mem(s, mr.memoryTypeBits, 0, 0);
  if (mt < 0) {
    pv__vk_buf_free(s, b);
    return pv__err(ctx, PV_ERR_BACKEND, "vulkan: no suitable memory type for %s", what);
  }
  VkMemoryAllocateInfo ai = {VK_STRUCTURE_TYPE_MEMORY_ALLOCATE_INFO, NULL, mr.size, (uint32_t)mt};
  r = s->f.vkAllocateMemory(s->dev, &ai, NULL, &b->mem);
  if (r != VK_SUCCESS) {
    b->mem = VK_NULL_HANDLE;
    pv__vk_buf_free(s, b);
    if (is_oom(r))
      return pv__err(ctx, PV_ERR_NOMEM, "vulkan: out of %s memory allocating %llu bytes for %s",
                     r == VK_ERROR_OUT_OF_HOST_MEMORY ? "host" : "device", (unsigned long long)mr.size, what);
    return pv__err(ctx, PV_ERR_BACKEND, "vulkan: allocating %llu bytes for %s: %s", (unsigned long long)mr.size, what,
                   pv__vk_result(r));
  }
  r = s->f.vkBindBufferMemory(s->dev, b->buf, b->mem, 0);
  if (r == VK_SUCCESS && kind != 0) r = s->f.vkMapMemory(s->dev, b->mem, 0, VK_WHOLE_SIZE, 0, &b->map);
  if (r != VK_SUCCESS) {
    b->map = NULL;
    pv__vk_buf_free(s, b);
    return pv__err(ctx, is_oom(r) ? PV_ERR_NOMEM : PV_ERR_BACKEND, "vulkan: binding/mapping memory for %s: %s", what,
                   pv__vk_result(r));
  }
  b->size = size;
  return PV_OK;
}

void pv__vk_barrier_all(pv_vk_ctx *s, VkCommandBuffer cb) {
  VkMemoryBarrier mb = {.sType = VK_STRUCTURE_TYPE_MEMORY_BARRIER};
  mb.srcAccessMask = VK_ACCESS_SHADER_WRITE_BIT | VK_ACCESS_TRANSFER_WRITE_BIT;
  mb.dstAccessMask = VK_ACCESS_SHADER_READ_BIT | VK_ACCESS_SHADER_WRITE_BIT | VK_ACCESS_TRANSFER_READ_BIT |
                     VK_ACCESS_TRANSFER_WRITE_BIT;
  VkPipelineStageFlags st = VK_PIPELINE_STAGE_COMPUTE_SHADER_BIT | VK_PIPELINE_STAGE_TRANSFER_BIT;
  s->f.vkCmdPipelineBarrier(cb, st, st, 0, 1, &mb, 0, NULL, 0, NULL);
}

#define PV_VK_STAGE_MAX ((VkDeviceSize)64 << 20)

pv_status pv__vk_transfer(pv_vk_ctx *s, VkBuffer buf, VkDeviceSize off, void *host, size_t bytes, int upload) {
  pv_context *ctx = s->ctx;
  if (bytes == 0) return PV_OK;
  VkDeviceSize want = bytes < PV_VK_STAGE_MAX ? ((bytes + 255) & ~(size_t)255) : PV_VK_STAGE_MAX;
  if (s->stage.size < want) {
    pv__vk_buf_free(s, &s->stage);
    pv_status st = pv__vk_buf_new(s, want, 2, &s->stage, "a staging buffer");
    if (st) return st;
  }
  for (size_t done = 0; done < bytes;) {
    size_t n = bytes - done;
    if (n > s->stage.size) n = (size_t)s->stage.size;
    if (upload) memcpy(s->stage.map, (char *)host + done, n);
    VkCommandBufferBeginInfo bi = {VK_STRUCTURE_TYPE_COMMAND_BUFFER_BEGIN_INFO, NULL,
                                   VK_COMMAND_BUFFER_USAGE_ONE_TIME_SUBMIT_BIT, NULL};
    VkResult r = s->f.vkBeginCommandBuffer(s->xfer_cb, &bi);
    if (r != VK_SUCCESS) return pv__err(ctx, PV_ERR_BACKEND, "vulkan: vkBeginCommandBuffer: %s", pv__vk_result(r));
    pv__vk_barrier_all(s, s->xfer_cb);
    VkBufferCopy c = {upload ? 0 : off + done, upload ? off + done : 0, n};
    if (upload)
      s->f.vkCmdCopyBuffer(s->xfer_cb, s->stage.buf, buf, 1, &c);
    else
      s->f.vkCmdCopyBuffer(s->xfer_cb, buf, s->stage.buf, 1, &c);
    VkMemoryBarrier mb = {VK_STRUCTURE_TYPE_MEMORY_BARRIER, NULL, VK_ACCESS_TRANSFER_WRITE_BIT,
                          VK_ACCESS_HOST_READ_BIT | VK_ACCESS_SHADER_READ_BIT | VK_ACCESS_SHADER_WRITE_BIT |
                              VK_ACCESS_TRANSFER_READ_BIT | VK_ACCESS_TRANSFER_WRITE_BIT};
    s->f.vkCmdPipelineBarrier(s->xfer_cb, VK_PIPELINE_STAGE_TRANSFER_BIT,
                              VK_PIPELINE_STAGE_HOST_BIT | VK_PIPELINE_STAGE_COMPUTE_SHADER_BIT |
                                  VK_PIPELINE_STAGE_TRANSFER_BIT,
                              0, 1, &mb, 0, NULL, 0, NULL);
    r = s->f.vkEndCommandBuffer(s->xfer_cb);
    VkSubmitInfo si = {.sType = VK_STRUCTURE_TYPE_SUBMIT_INFO};
    si.commandBufferCount = 1;
    si.pCommandBuffers = &s->xfer_cb;
    if (r == VK_SUCCESS) r = s->f.vkQueueSubmit(s->queue, 1, &si, s->xfer_fence);
    if (r == VK_SUCCESS) r = s->f.vkWaitForFences(s->dev, 1, &s->xfer_fence, VK_TRUE, UINT64_MAX);
    s->f.vkResetFences(s->dev, 1, &s->xfer_fence);
    if (r != VK_SUCCESS)
      return pv__err(ctx, is_oom(r) ? PV_ERR_NOMEM : PV_ERR_BACKEND, "vulkan: transfer of %zu bytes failed: %s", n,
                     pv__vk_result(r));
    if (!upload) memcpy((char *)host + done, s->stage.map, n);
    done += n;
  }
  return PV_OK;
}

/* ------------------------------------------------------------ var device copies */
static VkDeviceSize var_bytes(const pv_var *v) {
  VkDeviceSize b = (VkDeviceSize)v->numel * pv_dtype_size(v->dtype);
  b = (b + 3) & ~(VkDeviceSize)3;
  return b ? b : 4;
}

pv_status pv__vk_var_buf(pv_vk_ctx *s, pv_var *v, pv_vk_varbuf **out) {
  pv_vk_varbuf *vb = v->dev;
  if (vb && vb->owner == s) {
    *out = vb;
    return PV_OK;
  }
  VkDeviceSize bytes = var_bytes(v), need = (bytes + 255) & ~(VkDeviceSize)255;
  if (s->nblocks == 0 || s->block_used + need > s->blocks[s->nblocks - 1].size) {
    VkDeviceSize bs = (VkDeviceSize)64 << 20;
    if (s->max_alloc && bs > s->max_alloc) bs = s->max_alloc;
    if (need > bs) bs = need;
    if (s->nblocks == s->capblocks) {
      int nc = s->capblocks ? s->capblocks * 2 : 16;
      pv_vk_buf *nb = realloc(s->blocks, sizeof *nb * (size_t)nc);
      if (!nb) return pv__err(s->ctx, PV_ERR_NOMEM, "vulkan: out of memory");
      s->blocks = nb;
      s->capblocks = nc;
    }
    char what[300];
    snprintf(what, sizeof what, "variable '%s'", v->name);
    pv_status st = pv__vk_buf_new(s, bs, 0, &s->blocks[s->nblocks], what);
    if (st) return st;
    s->nblocks++;
    s->block_used = 0;
  }
  if (s->nvarbufs == s->capvarbufs) {
    int nc = s->capvarbufs ? s->capvarbufs * 2 : 64;
    pv_vk_varbuf **nv = realloc(s->varbufs, sizeof *nv * (size_t)nc);
    if (!nv) return pv__err(s->ctx, PV_ERR_NOMEM, "vulkan: out of memory");
    s->varbufs = nv;
    s->capvarbufs = nc;
  }
  vb = calloc(1, sizeof *vb);
  if (!vb) return pv__err(s->ctx, PV_ERR_NOMEM, "vulkan: out of memory");
  vb->owner = s;
  vb->buf = s->blocks[s->nblocks - 1].buf;
  vb->off = s->block_used;
  vb->bytes = bytes;
  vb->version = 0;
  s->block_used += need;
  s->varbufs[s->nvarbufs++] = vb;
  v->dev = vb;
  *out = vb;
  return PV_OK;
}

pv_status pv__vk_var_upload(pv_vk_ctx *s, pv_var *v) {
  pv_vk_varbuf *vb;
  pv_status st = pv__vk_var_buf(s, v, &vb);
  if (st) return st;
  if (v->host_version <= vb->version) return PV_OK;
  st = pv__vk_transfer(s, vb->buf, vb->off, v->data, (size_t)v->numel * pv_dtype_size(v->dtype), 1);
  if (st) return st;
  vb->version = v->host_version;
  return PV_OK;
}

static pv_status vk_sync_var(pv_context *ctx, pv_var *v) {
  pv_vk_ctx *s = ctx->vk;
  pv_vk_varbuf *vb = v->dev;
  if (v->dev_version <= v->host_version) return PV_OK;
  if (!s || !s->dev || !vb || vb->owner != s)
    return pv__err(ctx, PV_ERR_STATE, "vulkan: variable '%s' has no device copy to read back", v->name);
  pv_status st = pv__vk_transfer(s, vb->buf, vb->off, v->data, (size_t)v->numel * pv_dtype_size(v->dtype), 0);
  if (st) return st;
  v->host_version = v->dev_version;
  vb->version = v->dev_version;
  return PV_OK;
}

pv_status pv__vk_var_device_write(pv_var *v, const void *data) {
  if (!v || !data) return PV_ERR_NULL;
  pv_vk_ctx *s = v->ctx->vk;
  if (!s || !s->dev) return pv__err(v->ctx, PV_ERR_STATE, "vulkan: no device is open in this context");
  pv_vk_varbuf *vb;
  pv_status st = pv__vk_var_buf(s, v, &vb);
  if (st) return st;
  st = pv__vk_transfer(s, vb->buf, vb->off, (void *)(uintptr_t)data, (size_t)v->numel * pv_dtype_size(v->dtype), 1);
  if (st) return st;
  v->dev_version = (v->dev_version > v->host_version ? v->dev_version : v->host_version) + 1;
  vb->version = v->dev_version;
  return PV_OK;
}

/* ------------------------------------------------------------ pipelines */
static void pcache_path(pv_vk_ctx *s) {
  s->pcache_path[0] = 0;
  if (env_on("PIVOT_VK_NO_CACHE")) return;
  const char *x = getenv("XDG_CACHE_HOME"), *h = getenv("HOME");
  char dir[900];
  if (x && *x)
    snprintf(dir, sizeof dir, "%s/pivot", x);
  else if (h && *h)
    snprintf(dir, sizeof dir, "%s/.cache/pivot", h);
  else
    return;
  /* mkdir -p */
  for (char *q = dir + 1; *q; q++)
    if (*q == '/') {
      *q = 0;
      mkdir(dir, 0755);
      *q = '/';
    }
  if (mkdir(dir, 0755) != 0 && errno != EEXIST) return;
  snprintf(s->pcache_path, sizeof s->pcache_path, "%s/pipeline_cache_%04x_%04x.bin", dir, s->props.vendorID,
           s->props.deviceID);
}

static void create_pcache(pv_vk_ctx *s) {
  pcache_path(s);
  void *data = NULL;
  size_t n = 0;
  if (s->pcache_path[0]) {
    FILE *fp = fopen(s->pcache_path, "rb");
    if (fp) {
      if (fseek(fp, 0, SEEK_END) == 0) {
        long sz = ftell(fp);
        if (sz > 32 && sz < (64l << 20) && fseek(fp, 0, SEEK_SET) == 0 && (data = malloc((size_t)sz))) {
          n = fread(data, 1, (size_t)sz, fp);
          if (n != (size_t)sz) n = 0;
        }
      }
      fclose(fp);
    }
  }
  /* header check (VkPipelineCacheHeaderVersionOne): vendor, device, UUID must match */
  if (n >= 32) {
    const unsigned char *d = data;
    uint32_t hlen, ver, vendor, device;
    memcpy(&hlen, d, 4);
    memcpy(&ver, d + 4, 4);
    memcpy(&vendor, d + 8, 4);
    memcpy(&device, d + 12, 4);
    if (hlen < 32 || ver != VK_PIPELINE_CACHE_HEADER_VERSION_ONE || vendor != s->props.vendorID ||
        device != s->props.deviceID || memcmp(d + 16, s->props.pipelineCacheUUID, VK_UUID_SIZE) != 0)
      n = 0;
  } else
    n = 0;
  VkPipelineCacheCreateInfo ci = {VK_STRUCTURE_TYPE_PIPELINE_CACHE_CREATE_INFO, NULL, 0, n, n ? data : NULL};
  if (s->f.vkCreatePipelineCache(s->dev, &ci, NULL, &s->pcache) != VK_SUCCESS) {
    ci.initialDataSize = 0;
    ci.pInitialData = NULL;
    n = 0;
    if (s->f.vkCreatePipelineCache(s->dev, &ci, NULL, &s->pcache) != VK_SUCCESS) s->pcache = VK_NULL_HANDLE;
  }
  s->pcache_loaded = n;
  free(data);
}

static int shader_index(const char *name) {
  for (int i = 0; i < pv__spv_count; i++)
    if (!strcmp(pv__spv_names[i], name)) return i;
  return -1;
}

pv_status pv__vk_pipeline(pv_vk_ctx *s, const char *name, VkPipeline *out) {
  int idx = -1;
  if (s->info.subgroup_arith && !env_on("PIVOT_VK_NO_SUBGROUP")) {
    char sg[128];
    snprintf(sg, sizeof sg, "%s_sg", name);
    idx = shader_index(sg);
  }
  if (idx < 0) idx = shader_index(name);
  if (idx < 0) return pv__err(s->ctx, PV_ERR_UNSUPPORTED, "vulkan: shader '%s' is not built into this pivot", name);
  if (s->pipes[idx]) {
    *out = s->pipes[idx];
    return PV_OK;
  }
  VkShaderModuleCreateInfo mi = {VK_STRUCTURE_TYPE_SHADER_MODULE_CREATE_INFO, NULL, 0, pv__spv_size[idx],
                                 pv__spv_code[idx]};
  VkShaderModule mod;
  VkResult r = s->f.vkCreateShaderModule(s->dev, &mi, NULL, &mod);
  if (r != VK_SUCCESS)
    return pv__err(s->ctx, is_oom(r) ? PV_ERR_NOMEM : PV_ERR_BACKEND, "vulkan: shader module '%s': %s",
                   pv__spv_names[idx], pv__vk_result(r));
  VkComputePipelineCreateInfo ci = {.sType = VK_STRUCTURE_TYPE_COMPUTE_PIPELINE_CREATE_INFO};
  ci.stage.sType = VK_STRUCTURE_TYPE_PIPELINE_SHADER_STAGE_CREATE_INFO;
  ci.stage.stage = VK_SHADER_STAGE_COMPUTE_BIT;
  ci.stage.module = mod;
  ci.stage.pName = "main";
  ci.layout = s->playout;
  r = s->f.vkCreateComputePipelines(s->dev, s->pcache, 1, &ci, NULL, &s->pipes[idx]);
  s->f.vkDestroyShaderModule(s->dev, mod, NULL);
  if (r != VK_SUCCESS) {
    s->pipes[idx] = VK_NULL_HANDLE;
    return pv__err(s->ctx, is_oom(r) ? PV_ERR_NOMEM : PV_ERR_BACKEND, "vulkan: pipeline '%s': %s", pv__spv_names[idx],
                   pv__vk_result(r));
  }
  *out = s->pipes[idx];
  return PV_OK;
}

/* ------------------------------------------------------------ device */
static pv_status create_device(pv_vk_ctx *s, int index) {
  pv_context *ctx = s->ctx;
  VkResult r;
  s->pdev = s->pdevs[index];
  s->f.vkGetPhysicalDeviceProperties(s->pdev, &s->props);
  if (VK_API_VERSION_MAJOR(s->props.apiVersion) == 1 && VK_API_VERSION_MINOR(s->props.apiVersion) < 1)
    return pv__err(ctx, PV_ERR_UNSUPPORTED, "vulkan: device %d (%s) supports only Vulkan 1.0; pivot needs 1.1", index,
                   s->props.deviceName);
  s->f.vkGetPhysicalDeviceMemoryProperties(s->pdev, &s->memprops);
  dev_info(s, s->pdev, &s->info);
  VkPhysicalDeviceMaintenance3Properties m3 = {.sType = VK_STRUCTURE_TYPE_PHYSICAL_DEVICE_MAINTENANCE_3_PROPERTIES};
  VkPhysicalDeviceProperties2 p2 = {.sType = VK_STRUCTURE_TYPE_PHYSICAL_DEVICE_PROPERTIES_2, .pNext = &m3};
  s->f.vkGetPhysicalDeviceProperties2(s->pdev, &p2);
  s->max_alloc = m3.maxMemoryAllocationSize;
  /* queue: the first family with compute (prefer one with timestamps) */
  uint32_t nq = 0;
  s->f.vkGetPhysicalDeviceQueueFamilyProperties(s->pdev, &nq, NULL);
  VkQueueFamilyProperties *qp = calloc(nq ? nq : 1, sizeof *qp);
  if (!qp) return pv__err(ctx, PV_ERR_NOMEM, "vulkan: out of memory");
  s->f.vkGetPhysicalDeviceQueueFamilyProperties(s->pdev, &nq, qp);
  int qf = -1;
  for (uint32_t i = 0; i < nq; i++)
    if ((qp[i].queueFlags & VK_QUEUE_COMPUTE_BIT) &&
        (qf < 0 || (qp[qf].timestampValidBits == 0 && qp[i].timestampValidBits)))
      qf = (int)i;
  if (qf >= 0) s->ts_bits = s->props.limits.timestampComputeAndGraphics ? qp[qf].timestampValidBits : 0;
  free(qp);
  if (qf < 0)
    return pv__err(ctx, PV_ERR_UNSUPPORTED, "vulkan: device %d (%s) has no compute queue", index, s->props.deviceName);
  s->qfam = (uint32_t)qf;
  /* features: enable the useful ones the device has */
  int v12 = VK_API_VERSION_MINOR(s->props.apiVersion) >= 2 && VK_API_VERSION_MINOR(s->inst_api) >= 2;
  VkPhysicalDevice16BitStorageFeatures f16s = {.sType = VK_STRUCTURE_TYPE_PHYSICAL_DEVICE_16BIT_STORAGE_FEATURES};
  VkPhysicalDeviceShaderFloat16Int8Features f16 = {.sType =
                                                       VK_STRUCTURE_TYPE_PHYSICAL_DEVICE_SHADER_FLOAT16_INT8_FEATURES};
  VkPhysicalDeviceFeatures2 have = {.sType = VK_STRUCTURE_TYPE_PHYSICAL_DEVICE_FEATURES_2, .pNext = &f16s};
  if (v12) f16s.pNext = &f16;
  s->f.vkGetPhysicalDeviceFeatures2(s->pdev, &have);
  VkPhysicalDevice16BitStorageFeatures e16s = {.sType = VK_STRUCTURE_TYPE_PHYSICAL_DEVICE_16BIT_STORAGE_FEATURES};
  VkPhysicalDeviceShaderFloat16Int8Features e16 = {.sType =
                                                       VK_STRUCTURE_TYPE_PHYSICAL_DEVICE_SHADER_FLOAT16_INT8_FEATURES};
  VkPhysicalDeviceFeatures2 en = {.sType = VK_STRUCTURE_TYPE_PHYSICAL_DEVICE_FEATURES_2, .pNext = &e16s};
  if (v12) e16s.pNext = &e16;
  en.features.shaderInt64 = have.features.shaderInt64;
  en.features.shaderInt16 = have.features.shaderInt16;
  e16s.storageBuffer16BitAccess = f16s.storageBuffer16BitAccess;
  e16.shaderFloat16 = v12 ? f16.shaderFloat16 : VK_FALSE;
  e16.shaderInt8 = v12 ? f16.shaderInt8 : VK_FALSE;
  float prio = 1.0f;
  VkDeviceQueueCreateInfo qci = {VK_STRUCTURE_TYPE_DEVICE_QUEUE_CREATE_INFO, NULL, 0, s->qfam, 1, &prio};
  VkDeviceCreateInfo dci = {.sType = VK_STRUCTURE_TYPE_DEVICE_CREATE_INFO};
  dci.pNext = &en;
  dci.queueCreateInfoCount = 1;
  dci.pQueueCreateInfos = &qci;
  r = s->f.vkCreateDevice(s->pdev, &dci, NULL, &s->dev);
  if (r != VK_SUCCESS) {
    s->dev = VK_NULL_HANDLE;
    return pv__err(ctx, is_oom(r) ? PV_ERR_NOMEM : PV_ERR_BACKEND, "vulkan: vkCreateDevice (%s): %s",
                   s->props.deviceName, pv__vk_result(r));
  }
#define PV_VK_LOAD_D(n) s->f.n = (PFN_##n)s->f.vkGetDeviceProcAddr(s->dev, #n);
  PV_VK_DEVICE_FNS(PV_VK_LOAD_D)
#undef PV_VK_LOAD_D
#define PV_VK_CHECK_D(n)                                                                                               \
  if (!s->f.n) return pv__err(ctx, PV_ERR_BACKEND, "vulkan: the driver lacks %s", #n);
  PV_VK_DEVICE_FNS(PV_VK_CHECK_D)
#undef PV_VK_CHECK_D
  s->dev_index = index;
  s->f.vkGetDeviceQueue(s->dev, s->qfam, 0, &s->queue);
  VkCommandPoolCreateInfo pci = {VK_STRUCTURE_TYPE_COMMAND_POOL_CREATE_INFO, NULL,
                                 VK_COMMAND_POOL_CREATE_RESET_COMMAND_BUFFER_BIT, s->qfam};
  r = s->f.vkCreateCommandPool(s->dev, &pci, NULL, &s->cmdpool);
  if (r != VK_SUCCESS) return pv__err(ctx, PV_ERR_BACKEND, "vulkan: vkCreateCommandPool: %s", pv__vk_result(r));
  VkCommandBufferAllocateInfo cai = {VK_STRUCTURE_TYPE_COMMAND_BUFFER_ALLOCATE_INFO, NULL, s->cmdpool,
                                     VK_COMMAND_BUFFER_LEVEL_PRIMARY, 1};
  r = s->f.vkAllocateCommandBuffers(s->dev, &cai, &s->xfer_cb);
  VkFenceCreateInfo fci = {.sType = VK_STRUCTURE_TYPE_FENCE_CREATE_INFO};
  if (r == VK_SUCCESS) r = s->f.vkCreateFence(s->dev, &fci, NULL, &s->xfer_fence);
  if (r != VK_SUCCESS) return pv__err(ctx, PV_ERR_BACKEND, "vulkan: command buffer setup: %s", pv__vk_result(r));
  /* one descriptor set layout for every pipeline: bindings 0..9 tensors, 10 the status word */
  VkDescriptorSetLayoutBinding lb[11];
  for (uint32_t i = 0; i < 11; i++)
    lb[i] = (VkDescriptorSetLayoutBinding){i, VK_DESCRIPTOR_TYPE_STORAGE_BUFFER, 1, VK_SHADER_STAGE_COMPUTE_BIT, NULL};
  VkDescriptorSetLayoutCreateInfo lci = {VK_STRUCTURE_TYPE_DESCRIPTOR_SET_LAYOUT_CREATE_INFO, NULL, 0, 11, lb};
  r = s->f.vkCreateDescriptorSetLayout(s->dev, &lci, NULL, &s->dsl);
  VkPushConstantRange pr = {VK_SHADER_STAGE_COMPUTE_BIT, 0, 128};
  VkPipelineLayoutCreateInfo plci = {VK_STRUCTURE_TYPE_PIPELINE_LAYOUT_CREATE_INFO, NULL, 0, 1, &s->dsl, 1, &pr};
  if (r == VK_SUCCESS) r = s->f.vkCreatePipelineLayout(s->dev, &plci, NULL, &s->playout);
  if (r != VK_SUCCESS) return pv__err(ctx, PV_ERR_BACKEND, "vulkan: pipeline layout: %s", pv__vk_result(r));
  s->pipes = calloc((size_t)(pv__spv_count > 0 ? pv__spv_count : 1), sizeof *s->pipes);
  if (!s->pipes) return pv__err(ctx, PV_ERR_NOMEM, "vulkan: out of memory");
  create_pcache(s);
  pv_status st = pv__vk_buf_new(s, 256, 0, &s->dummy, "a placeholder buffer");
  if (st) return st;
  /* the placeholder is read by nothing, but give it defined contents */
  uint32_t zero[64] = {0};
  st = pv__vk_transfer(s, s->dummy.buf, 0, zero, sizeof zero, 1);
  if (st) return st;
  pthread_mutex_lock(&g_mu);
  int first = !g_summary_printed;
  g_summary_printed = 1;
  pthread_mutex_unlock(&g_mu);
  if (first && !env_on("PIVOT_QUIET")) {
    char line[1024];
    summary(&s->info, index, line, sizeof line);
    fprintf(stderr, "pivot: %s\n", line);
  }
  return PV_OK;
}

pv_status pv__vk_open(pv_context *ctx, int want, pv_vk_ctx **out) {
  const char *why = NULL;
  if (!pv__vk_available(ctx, &why))
    return pv__err(ctx, PV_ERR_UNSUPPORTED, "backend 'vulkan' is not available: %s", why ? why : "unknown reason");
  pv_vk_ctx *s = ctx->vk;
  int idx = want;
  if (idx < 0) {
    idx = env_device();
    if (idx == -2)
      return pv__err(ctx, PV_ERR_INVALID, "vulkan: PIVOT_DEVICE='%s' is not a device index", getenv("PIVOT_DEVICE"));
  }
  if (s->dev) {
    if (idx >= 0 && idx != s->dev_index)
      return pv__err(ctx, PV_ERR_UNSUPPORTED,
                     "vulkan: this context already uses device %d; a context uses one device (asked for %d)",
                     s->dev_index, idx);
    *out = s;
    return PV_OK;
  }
  if (idx < 0) idx = best_device(s);
  if (idx >= (int)s->npdev)
    return pv__err(ctx, PV_ERR_INVALID, "vulkan: device index %d out of range (%u device%s)", idx, s->npdev,
                   s->npdev == 1 ? "" : "s");
  pv_status st = create_device(s, idx);
  if (st) {
    /* leave the state usable for another try: drop the half-made device */
    char msg[PV_ERRMSG];
    snprintf(msg, sizeof msg, "%s", ctx->err);
    pv__vk_buf_free(s, &s->dummy);
    pv__vk_buf_free(s, &s->stage);
    if (s->dev && s->f.vkDestroyDevice) {
      if (s->pcache) s->f.vkDestroyPipelineCache(s->dev, s->pcache, NULL);
      if (s->playout) s->f.vkDestroyPipelineLayout(s->dev, s->playout, NULL);
      if (s->dsl) s->f.vkDestroyDescriptorSetLayout(s->dev, s->dsl, NULL);
      if (s->xfer_fence) s->f.vkDestroyFence(s->dev, s->xfer_fence, NULL);
      if (s->cmdpool) s->f.vkDestroyCommandPool(s->dev, s->cmdpool, NULL);
      s->f.vkDestroyDevice(s->dev, NULL);
    }
    free(s->pipes);
    s->pipes = NULL;
    s->pcache = VK_NULL_HANDLE;
    s->playout = VK_NULL_HANDLE;
    s->dsl = VK_NULL_HANDLE;
    s->xfer_fence = VK_NULL_HANDLE;
    s->cmdpool = VK_NULL_HANDLE;
    s->dev = VK_NULL_HANDLE;
    s->dev_index = -1;
    snprintf(ctx->err, sizeof ctx->err, "%s", msg);
    return st;
  }
  *out = s;
  return PV_OK;
}
