/* runtime/vulkan/vk_priv.h: state shared by the Vulkan backend's files. The loader is opened with dlopen (env
 * PIVOT_VK_LOADER overrides "libvulkan.so.1") and every entry point is fetched at run time, so pivot builds and runs
 * where Vulkan is absent. */
#ifndef PV_VK_PRIV_H
#define PV_VK_PRIV_H
#define VK_NO_PROTOTYPES
#include <vulkan/vulkan.h>
#include "../internal.h"
#include "vk.h"

/* embedded SPIR-V (build/gen/shaders_spv.c) */
extern const int pv__spv_count;
extern const char *const pv__spv_names[];
extern const uint32_t *const pv__spv_code[];
extern const size_t pv__spv_size[];

// clang-format off
#define PV_VK_GLOBAL_FNS(X) \
  X(vkCreateInstance) X(vkEnumerateInstanceLayerProperties) X(vkEnumerateInstanceExtensionProperties)

#define PV_VK_INSTANCE_FNS(X) \
  X(vkDestroyInstance) X(vkEnumeratePhysicalDevices) X(vkGetPhysicalDeviceProperties) \
  X(vkGetPhysicalDeviceProperties2) X(vkGetPhysicalDeviceFeatures2) X(vkGetPhysicalDeviceMemoryProperties) \
  X(vkGetPhysicalDeviceMemoryProperties2) X(vkGetPhysicalDeviceQueueFamilyProperties) \
  X(vkEnumerateDeviceExtensionProperties) X(vkCreateDevice) X(vkGetDeviceProcAddr)

#define PV_VK_DEVICE_FNS(X) \
  X(vkDestroyDevice) X(vkGetDeviceQueue) X(vkCreateBuffer) X(vkDestroyBuffer) X(vkGetBufferMemoryRequirements) \
  X(vkAllocateMemory) X(vkFreeMemory) X(vkBindBufferMemory) X(vkMapMemory) X(vkUnmapMemory) \
  X(vkCreateShaderModule) X(vkDestroyShaderModule) X(vkCreatePipelineCache) X(vkDestroyPipelineCache) \
  X(vkGetPipelineCacheData) X(vkCreateComputePipelines) X(vkDestroyPipeline) X(vkCreateDescriptorSetLayout) \
  X(vkDestroyDescriptorSetLayout) X(vkCreatePipelineLayout) X(vkDestroyPipelineLayout) X(vkCreateDescriptorPool) \
  X(vkDestroyDescriptorPool) X(vkAllocateDescriptorSets) X(vkUpdateDescriptorSets) X(vkCreateCommandPool) \
  X(vkDestroyCommandPool) X(vkAllocateCommandBuffers) X(vkFreeCommandBuffers) X(vkBeginCommandBuffer) \
  X(vkEndCommandBuffer) X(vkResetCommandBuffer) X(vkCmdBindPipeline) X(vkCmdBindDescriptorSets) \
  X(vkCmdPushConstants) X(vkCmdDispatch) X(vkCmdPipelineBarrier) X(vkCmdCopyBuffer) X(vkCmdFillBuffer) \
  X(vkCmdWriteTimestamp) X(vkCmdResetQueryPool) X(vkCreateQueryPool) X(vkDestroyQueryPool) \
  X(vkGetQueryPoolResults) X(vkQueueSubmit) X(vkQueueWaitIdle) X(vkDeviceWaitIdle) X(vkCreateFence) \
  X(vkDestroyFence) X(vkWaitForFences) X(vkResetFences)
// clang-format on

typedef struct pv_vk_fns {
  PFN_vkGetInstanceProcAddr vkGetInstanceProcAddr;
  PFN_vkEnumerateInstanceVersion vkEnumerateInstanceVersion; /* NULL on a Vulkan 1.0 loader */
  PFN_vkCreateDebugUtilsMessengerEXT vkCreateDebugUtilsMessengerEXT;
  PFN_vkDestroyDebugUtilsMessengerEXT vkDestroyDebugUtilsMessengerEXT;
#define PV_VK_DECL(n) PFN_##n n;
  PV_VK_GLOBAL_FNS(PV_VK_DECL) PV_VK_INSTANCE_FNS(PV_VK_DECL) PV_VK_DEVICE_FNS(PV_VK_DECL)
#undef PV_VK_DECL
} pv_vk_fns;

/* A buffer with its own memory (host-visible ones stay mapped). */
typedef struct pv_vk_buf {
  VkBuffer buf;
  VkDeviceMemory mem;
  VkDeviceSize size;
  void *map;
} pv_vk_buf;

/* A var's device copy (v->dev): a range of a shared block buffer. */
typedef struct pv_vk_varbuf {
  struct pv_vk_ctx *owner;
  VkBuffer buf;
  VkDeviceSize off, bytes;
  uint64_t version; /* the var version the device copy holds */
} pv_vk_varbuf;

/* What the one-line summary shows about a physical device. */
typedef struct pv_vk_devinfo {
  char name[VK_MAX_PHYSICAL_DEVICE_NAME_SIZE];
  char driver[2 * VK_MAX_DRIVER_NAME_SIZE + 2 * VK_MAX_DRIVER_INFO_SIZE];
  VkPhysicalDeviceType type;
  uint32_t api;
  int fp16, bf16, coopmat, int64, sb16;
  uint32_t subgroup_size;
  int subgroup_arith; /* subgroup arithmetic ops in compute shaders */
  uint32_t shared_mem;
  uint64_t mem_total, mem_budget; /* device-local heaps; budget 0 if unknown */
  int has_budget_ext;
} pv_vk_devinfo;

struct pv_vk_ctx {
  pv_context *ctx;
  char loader[512]; /* loader path this state was made with */
  int ok;           /* instance created and at least one device */
  char why[600];    /* reason when !ok */
  pv_vk_fns f;
  VkInstance inst;
  int own_inst; /* 1: destroyed with the context (not in the process-wide table) */
  uint32_t inst_api;
  int validation; /* validation layer active */
  VkDebugUtilsMessengerEXT messenger;
  int val_errors;
  uint32_t npdev;
  VkPhysicalDevice *pdevs;
  /* the open device (one per context) */
  int dev_index;
  VkPhysicalDevice pdev;
  VkDevice dev;
  VkQueue queue;
  uint32_t qfam;
  VkPhysicalDeviceProperties props;
  VkPhysicalDeviceMemoryProperties memprops;
  VkDeviceSize max_alloc; /* maxMemoryAllocationSize */
  uint32_t ts_bits;       /* timestampValidBits of the queue family (0: no timestamps) */
  pv_vk_devinfo info;
  VkCommandPool cmdpool;
  VkCommandBuffer xfer_cb;
  VkFence xfer_fence;
  pv_vk_buf stage; /* staging for var transfers and plan reads (grown on demand) */
  pv_vk_buf dummy; /* bound to unused bindings */
  VkDescriptorSetLayout dsl;
  VkPipelineLayout playout;
  VkPipelineCache pcache;
  size_t pcache_loaded;
  char pcache_path[1024];
  VkPipeline *pipes; /* per embedded shader */
  pv_vk_buf *blocks; /* var storage blocks */
  int nblocks, capblocks;
  VkDeviceSize block_used; /* bytes used in the last block */
  pv_vk_varbuf **varbufs;
  int nvarbufs, capvarbufs;
};

/* Opens (once per context) the device for a plan: want >= 0 an index, -1: env PIVOT_DEVICE or the best device. */
pv_status pv__vk_open(pv_context *ctx, int want, pv_vk_ctx **out);
const char *pv__vk_result(VkResult r);
/* kind: 0 device-local, 1 host upload (coherent), 2 host readback (cached if possible). what names it in errors. */
pv_status pv__vk_buf_new(pv_vk_ctx *s, VkDeviceSize size, int kind, pv_vk_buf *b, const char *what);
void pv__vk_buf_free(pv_vk_ctx *s, pv_vk_buf *b);
/* Pipeline of shader `name` (the subgroup variant NAME_sg when the device supports subgroup arithmetic). */
pv_status pv__vk_pipeline(pv_vk_ctx *s, const char *name, VkPipeline *out);
/* Copies bytes between host memory and buf at off (through the staging buffer; waits). */
pv_status pv__vk_transfer(pv_vk_ctx *s, VkBuffer buf, VkDeviceSize off, void *host, size_t bytes, int upload);
/* v's device copy (created on first use); uploads it when the host copy is newer. */
pv_status pv__vk_var_buf(pv_vk_ctx *s, pv_var *v, pv_vk_varbuf **out);
pv_status pv__vk_var_upload(pv_vk_ctx *s, pv_var *v);
/* A full memory barrier between transfers and compute (both directions). */
void pv__vk_barrier_all(pv_vk_ctx *s, VkCommandBuffer cb);
#endif
