/* The Vulkan backend: a device-local arena per plan at the planner's offsets (views share their root), var device
 * copies (runtime/vulkan/vk_device.c), a host-visible staging buffer for the plan's inputs, one descriptor set per
 * dispatch written at compile time, and command buffers recorded once and replayed by every pv_plan_run.
 *
 * Storage: tensors keep their dtype on the device: f32, f16/bf16 packed two per uint, i32, and i64 as (lo, hi) uint
 * pairs (shaders read ids from the low word). pv_plan_write converts on the host into the input staging buffer; the
 * recorded commands copy it into the arena at the start of each run. pv_plan_read copies out through a staging
 * buffer and converts on the host.
 *
 * Recording: before each dispatch a compute barrier is inserted only when it reads a range written, or writes a
 * range read or written, since the last barrier. Work is split over several command buffers (each submitted on its
 * own) of at most PIVOT_VK_SUBMIT_DISPATCHES dispatches (default 256) or PIVOT_VK_SUBMIT_FLOPS estimated flops
 * (default 2e9), so no single submit runs long enough to trip driver timeouts. PIVOT_VK_NO_REPLAY=1 re-records at
 * every run. With pv_plan_set_profiling, each node is fenced by barriers and timed with GPU timestamps. */
#include "vk_priv.h"
#include <time.h>

#define PV_VK_MAX_DISPATCH 16

typedef struct vk_res {
  VkBuffer buf;
  VkDeviceSize off, size;
  int write;
} vk_res;

typedef struct vk_disp {
  int k; /* index in p->order */
  VkPipeline pipe;
  VkDescriptorSet set;
  uint32_t push[32];
  uint32_t groups[3];
  double work;
  int nres;
  vk_res res[PV_MAX_SRC + 3];
} vk_disp;

typedef struct vk_plan {
  pv_vk_ctx *s;
  pv_vk_buf arena, scratch, instage, status;
  VkDeviceSize status_stride;
  int64_t *in_off; /* per node id: offset in instage, -1 if not an input */
  VkBufferCopy *in_copy;
  int nin;
  vk_disp *d;
  int nd;
  VkDescriptorPool dpool;
  VkCommandBuffer *cbs;
  int ncb, capcb, used_cb;
  int recorded, rec_prof;
  VkFence fence;
  VkQueryPool qpool;
  unsigned char *ts_written; /* per order index */
  pv_var **vars;             /* vars the plan reads (uploaded when the host copy is newer) */
  int nvars;
  pv_var **uvars; /* vars written by update ops */
  int nuvars;
  vk_res *pend; /* hazard tracking while recording */
  int npend, cappend;
} vk_plan;

static VkDeviceSize tensor_bytes(const pv_tensor *t) {
  VkDeviceSize b = (VkDeviceSize)t->numel * pv_dtype_size(t->dtype);
  b = (b + 3) & ~(VkDeviceSize)3;
  return b ? b : 4;
}

static int env_int(const char *name, int def) {
  const char *e = getenv(name);
  return e && *e ? atoi(e) : def;
}

static const char *tname(const pv_tensor *t) { return t->name ? t->name : ""; }

/* ------------------------------------------------------------ teardown */
static void vk_free(pv_plan *p) {
  vk_plan *vp = p->bed;
  if (!vp) return;
  pv_vk_ctx *s = vp->s;
  if (s && s->dev) {
    s->f.vkQueueWaitIdle(s->queue);
    if (vp->ncb) s->f.vkFreeCommandBuffers(s->dev, s->cmdpool, (uint32_t)vp->ncb, vp->cbs);
    if (vp->dpool) s->f.vkDestroyDescriptorPool(s->dev, vp->dpool, NULL);
    if (vp->fence) s->f.vkDestroyFence(s->dev, vp->fence, NULL);
    if (vp->qpool) s->f.vkDestroyQueryPool(s->dev, vp->qpool, NULL);
    pv__vk_buf_free(s, &vp->arena);
    pv__vk_buf_free(s, &vp->scratch);
    pv__vk_buf_free(s, &vp->instage);
    pv__vk_buf_free(s, &vp->status);
  }
  free(vp->cbs);
  free(vp->d);
  free(vp->in_off);
  free(vp->in_copy);
  free(vp->ts_written);
  free(vp->vars);
  free(vp->uvars);
  free(vp->pend);
  free(vp);
  p->bed = NULL;
}

/* ------------------------------------------------------------ compile */
static pv_status tensor_res(pv_plan *p, vk_plan *vp, const pv_tensor *t, vk_res *r) {
  int root = p->slot[t->id].root;
  const pv_tensor *rt = p->g->nodes[root];
  r->size = tensor_bytes(t);
  if (rt->flags & PV_NF_VAR) {
    pv_vk_varbuf *vb;
    pv_status st = pv__vk_var_buf(vp->s, rt->var, &vb);
    if (st) return st;
    r->buf = vb->buf;
    r->off = vb->off + (VkDeviceSize)(p->slot[t->id].voff * (int64_t)pv_dtype_size(t->dtype));
  } else {
    r->buf = vp->arena.buf;
    r->off = (VkDeviceSize)p->slot[t->id].offset; /* the root's offset, plus a view's */
  }
  return PV_OK;
}

static int add_var(pv_var ***arr, int *n, pv_var *v) {
  for (int i = 0; i < *n; i++)
    if ((*arr)[i] == v) return 0;
  pv_var **na = realloc(*arr, sizeof *na * (size_t)(*n + 1));
  if (!na) return -1;
  na[(*n)++] = v;
  *arr = na;
  return 0;
}

static pv_status vk_init_impl(pv_plan *p) {
  pv_context *ctx = p->ctx;
  pv_graph *g = p->g;
  vk_plan *vp = calloc(1, sizeof *vp);
  if (!vp) return pv__err(ctx, PV_ERR_NOMEM, "vulkan plan: out of memory");
  p->bed = vp;
  pv_status st = pv__vk_open(ctx, p->device, &vp->s);
  if (st) return st;
  pv_vk_ctx *s = vp->s;
  int val0 = s->val_errors;
  const VkPhysicalDeviceLimits *lim = &s->props.limits;

  /* tensors over the device's binding limit */
  for (int k = 0; k < p->norder; k++) {
    pv_tensor *t = g->nodes[p->order[k]];
    if (tensor_bytes(t) > lim->maxStorageBufferRange) {
      char b[128];
      return pv__err(ctx, PV_ERR_UNSUPPORTED,
                     "vulkan: tensor '%s' (node %d, op '%s', %s %s) has %llu bytes, over the device's "
                     "maxStorageBufferRange of %u bytes",
                     tname(t), t->id, pv__opdef(t->op)->name, pv_dtype_name(t->dtype),
                     pv__shape_str(b, sizeof b, t->ndim, t->shape), (unsigned long long)tensor_bytes(t),
                     lim->maxStorageBufferRange);
    }
  }

  /* dispatches: pass 0 counts them (and finds unsupported ops), pass 1 resolves their buffers */
  pv_vk_dispatch tmp[PV_VK_MAX_DISPATCH];
  int cap = 0; /* dispatches counted in pass 0 */
  size_t scratch = 0;
  for (int pass = 0; pass < 2; pass++) {
    int nd = 0;
    for (int k = 0; k < p->norder; k++) {
      pv_tensor *t = g->nodes[p->order[k]];
      const pv_op_def *d = pv__opdef(t->op);
      if (!d->cpu) continue; /* inputs, vars, views */
      int n = d->vk ? d->vk(t, tmp, PV_VK_MAX_DISPATCH) : 0;
      if (n <= 0 || n > PV_VK_MAX_DISPATCH)
        return pv__err(ctx, PV_ERR_UNSUPPORTED, "vulkan: op '%s' is not supported yet (node %d '%s')", d->name, t->id,
                       tname(t));
      if (pass == 0) {
        if (d->vk_scratch) {
          size_t sb = d->vk_scratch(t);
          if (sb > scratch) scratch = sb;
        }
        nd += n;
        continue;
      }
      for (int i = 0; i < n; i++) {
        pv_vk_dispatch *dd = &tmp[i];
        if ((uint64_t)dd->groups[0] * dd->groups[1] * dd->groups[2] == 0) continue;
        if (dd->groups[0] > lim->maxComputeWorkGroupCount[0] || dd->groups[1] > lim->maxComputeWorkGroupCount[1] ||
            dd->groups[2] > lim->maxComputeWorkGroupCount[2])
          return pv__err(ctx, PV_ERR_UNSUPPORTED, "vulkan: op '%s' (node %d): grid %ux%ux%u over the device limits",
                         d->name, t->id, dd->groups[0], dd->groups[1], dd->groups[2]);
        vk_disp *x = &vp->d[vp->nd++];
        x->k = k;
        memcpy(x->push, dd->push, sizeof x->push);
        memcpy(x->groups, dd->groups, sizeof x->groups);
        x->work = dd->work > 0 ? dd->work : (double)dd->groups[0] * dd->groups[1] * dd->groups[2] * 256.0;
        st = pv__vk_pipeline(s, dd->shader ? dd->shader : "", &x->pipe);
        if (st) return st;
        x->nres = 0;
        for (int b = 0; b < dd->nbind && b < PV_MAX_SRC + 2; b++) {
          vk_res r = {0};
          int w = dd->bind[b];
          if (w == -1) {
            st = tensor_res(p, vp, t, &r);
            r.write = 1;
          } else if (w == -2) {
            r.buf = VK_NULL_HANDLE; /* filled below once the scratch buffer exists */
            r.off = 0;
            r.size = 0;
            r.write = 2;
          } else if (w >= 0 && w < t->nsrc) {
            st = tensor_res(p, vp, t->src[w], &r);
            r.write = (d->flags & PV_OPF_UPDATE) ? 1 : 0;
          } else {
            return pv__err(ctx, PV_ERR_INVALID, "vulkan: op '%s' binds an invalid source %d", d->name, w);
          }
          if (st) return st;
          x->res[x->nres++] = r;
        }
      }
    }
    if (pass == 0) {
      cap = nd;
      vp->d = calloc((size_t)(cap ? cap : 1), sizeof *vp->d);
      if (!vp->d) return pv__err(ctx, PV_ERR_NOMEM, "vulkan plan: out of memory");
      st = pv__vk_buf_new(s, (VkDeviceSize)p->arena_bytes, 0, &vp->arena, "the plan's activation arena");
      if (st) return st;
    }
  }

  /* vars read / written */
  for (int k = 0; k < p->norder; k++) {
    pv_tensor *t = g->nodes[p->order[k]];
    if ((t->flags & PV_NF_VAR) && add_var(&vp->vars, &vp->nvars, t->var))
      return pv__err(ctx, PV_ERR_NOMEM, "vulkan plan: out of memory");
    if (t->flags & PV_NF_VAR) {
      pv_vk_varbuf *vb;
      st = pv__vk_var_buf(s, t->var, &vb);
      if (st) return st;
    }
    if (!(pv__opdef(t->op)->flags & PV_OPF_UPDATE)) continue;
    for (int j = 0; j < t->nsrc; j++) {
      pv_tensor *rt = g->nodes[p->slot[t->src[j]->id].root];
      if ((rt->flags & PV_NF_VAR) && add_var(&vp->uvars, &vp->nuvars, rt->var))
        return pv__err(ctx, PV_ERR_NOMEM, "vulkan plan: out of memory");
    }
  }

  /* buffers */
  if (scratch) {
    st = pv__vk_buf_new(s, scratch, 0, &vp->scratch, "the plan's scratch buffer");
    if (st) return st;
  }
  vp->in_off = malloc(sizeof(int64_t) * (size_t)(g->n ? g->n : 1));
  vp->in_copy = calloc((size_t)(p->norder ? p->norder : 1), sizeof *vp->in_copy);
  vp->ts_written = calloc((size_t)(p->norder ? p->norder : 1), 1);
  if (!vp->in_off || !vp->in_copy || !vp->ts_written) return pv__err(ctx, PV_ERR_NOMEM, "vulkan plan: out of memory");
  VkDeviceSize inbytes = 0;
  for (int i = 0; i < g->n; i++)
    vp->in_off[i] = -1;
  for (int k = 0; k < p->norder; k++) {
    int id = p->order[k];
    pv_tensor *t = g->nodes[id];
    if (!(t->flags & PV_NF_INPUT)) continue;
    vp->in_off[id] = (int64_t)inbytes;
    vp->in_copy[vp->nin++] = (VkBufferCopy){inbytes, (VkDeviceSize)p->slot[id].offset, tensor_bytes(t)};
    inbytes += (tensor_bytes(t) + 15) & ~(VkDeviceSize)15;
  }
  if (inbytes) {
    st = pv__vk_buf_new(s, inbytes, 1, &vp->instage, "the plan's input staging buffer");
    if (st) return st;
    memset(vp->instage.map, 0, (size_t)vp->instage.size);
  }
  VkDeviceSize al = lim->minStorageBufferOffsetAlignment;
  vp->status_stride = al > 4 ? al : 4;
  st = pv__vk_buf_new(s, vp->status_stride * (VkDeviceSize)(vp->nd ? vp->nd : 1), 2, &vp->status,
                      "the plan's status buffer");
  if (st) return st;
  for (int i = 0; i < vp->nd; i++)
    for (int b = 0; b < vp->d[i].nres; b++)
      if (vp->d[i].res[b].write == 2) {
        if (!vp->scratch.buf) return pv__err(ctx, PV_ERR_INVALID, "vulkan: an op binds scratch but has no vk_scratch");
        vp->d[i].res[b] = (vk_res){vp->scratch.buf, 0, vp->scratch.size, 1};
      }

  /* descriptor sets (written once) */
  if (vp->nd) {
    VkDescriptorPoolSize ps = {VK_DESCRIPTOR_TYPE_STORAGE_BUFFER, (uint32_t)vp->nd * 11};
    VkDescriptorPoolCreateInfo pci = {VK_STRUCTURE_TYPE_DESCRIPTOR_POOL_CREATE_INFO, NULL, 0, (uint32_t)vp->nd, 1, &ps};
    VkResult r = s->f.vkCreateDescriptorPool(s->dev, &pci, NULL, &vp->dpool);
    if (r != VK_SUCCESS)
      return pv__err(ctx, PV_ERR_NOMEM, "vulkan: descriptor pool for %d dispatches: %s", vp->nd, pv__vk_result(r));
    for (int i = 0; i < vp->nd; i++) {
      VkDescriptorSetAllocateInfo ai = {VK_STRUCTURE_TYPE_DESCRIPTOR_SET_ALLOCATE_INFO, NULL, vp->dpool, 1, &s->dsl};
      r = s->f.vkAllocateDescriptorSets(s->dev, &ai, &vp->d[i].set);
      if (r != VK_SUCCESS) return pv__err(ctx, PV_ERR_NOMEM, "vulkan: descriptor sets: %s", pv__vk_result(r));
      VkDescriptorBufferInfo bi[11];
      VkWriteDescriptorSet w[11];
      for (int b = 0; b < 11; b++) {
        if (b < vp->d[i].nres)
          bi[b] = (VkDescriptorBufferInfo){vp->d[i].res[b].buf, vp->d[i].res[b].off, vp->d[i].res[b].size};
        else if (b == 10)
          bi[b] = (VkDescriptorBufferInfo){vp->status.buf, vp->status_stride * (VkDeviceSize)i, 4};
        else
          bi[b] = (VkDescriptorBufferInfo){s->dummy.buf, 0, VK_WHOLE_SIZE};
        w[b] = (VkWriteDescriptorSet){VK_STRUCTURE_TYPE_WRITE_DESCRIPTOR_SET, NULL, vp->d[i].set, (uint32_t)b, 0, 1,
                                      VK_DESCRIPTOR_TYPE_STORAGE_BUFFER,      NULL, &bi[b],       NULL};
      }
      s->f.vkUpdateDescriptorSets(s->dev, 11, w, 0, NULL);
    }
  }
  VkFenceCreateInfo fci = {.sType = VK_STRUCTURE_TYPE_FENCE_CREATE_INFO};
  VkResult r = s->f.vkCreateFence(s->dev, &fci, NULL, &vp->fence);
  if (r != VK_SUCCESS) return pv__err(ctx, PV_ERR_BACKEND, "vulkan: vkCreateFence: %s", pv__vk_result(r));
  if (s->ts_bits && p->norder) {
    VkQueryPoolCreateInfo qci = {
        VK_STRUCTURE_TYPE_QUERY_POOL_CREATE_INFO, NULL, 0, VK_QUERY_TYPE_TIMESTAMP, (uint32_t)p->norder * 2, 0};
    if (s->f.vkCreateQueryPool(s->dev, &qci, NULL, &vp->qpool) != VK_SUCCESS) vp->qpool = VK_NULL_HANDLE;
  }
  if (s->val_errors != val0)
    return pv__err(ctx, PV_ERR_BACKEND, "vulkan: %d validation error(s) while compiling the plan (printed above)",
                   s->val_errors - val0);
  return PV_OK;
}

static pv_status vk_init(pv_plan *p) {
  pv_status st = vk_init_impl(p);
  if (st) vk_free(p);
  return st;
}

/* ------------------------------------------------------------ recording */
static int overlaps(const vk_res *a, const vk_res *b) {
  return a->buf == b->buf && a->off < b->off + b->size && b->off < a->off + a->size;
}

static void compute_barrier(pv_vk_ctx *s, VkCommandBuffer cb) {
  VkMemoryBarrier mb = {VK_STRUCTURE_TYPE_MEMORY_BARRIER, NULL, VK_ACCESS_SHADER_WRITE_BIT,
                        VK_ACCESS_SHADER_READ_BIT | VK_ACCESS_SHADER_WRITE_BIT};
  s->f.vkCmdPipelineBarrier(cb, VK_PIPELINE_STAGE_COMPUTE_SHADER_BIT, VK_PIPELINE_STAGE_COMPUTE_SHADER_BIT, 0, 1, &mb,
                            0, NULL, 0, NULL);
}

static pv_status begin_cb(pv_plan *p, int i, VkCommandBuffer *out) {
  vk_plan *vp = p->bed;
  pv_vk_ctx *s = vp->s;
  if (i >= vp->ncb) {
    if (vp->ncb == vp->capcb) {
      int nc = vp->capcb ? vp->capcb * 2 : 4;
      VkCommandBuffer *n = realloc(vp->cbs, sizeof *n * (size_t)nc);
      if (!n) return pv__err(p->ctx, PV_ERR_NOMEM, "vulkan plan: out of memory");
      vp->cbs = n;
      vp->capcb = nc;
    }
    VkCommandBufferAllocateInfo ai = {VK_STRUCTURE_TYPE_COMMAND_BUFFER_ALLOCATE_INFO, NULL, s->cmdpool,
                                      VK_COMMAND_BUFFER_LEVEL_PRIMARY, 1};
    VkResult r = s->f.vkAllocateCommandBuffers(s->dev, &ai, &vp->cbs[vp->ncb]);
    if (r != VK_SUCCESS) return pv__err(p->ctx, PV_ERR_NOMEM, "vulkan: command buffers: %s", pv__vk_result(r));
    vp->ncb++;
  }
  VkCommandBufferBeginInfo bi = {VK_STRUCTURE_TYPE_COMMAND_BUFFER_BEGIN_INFO, NULL, 0, NULL};
  VkResult r = s->f.vkBeginCommandBuffer(vp->cbs[i], &bi);
  if (r != VK_SUCCESS) return pv__err(p->ctx, PV_ERR_BACKEND, "vulkan: vkBeginCommandBuffer: %s", pv__vk_result(r));
  *out = vp->cbs[i];
  return PV_OK;
}

static int pend_add(vk_plan *vp, const vk_res *r) {
  if (vp->npend == vp->cappend) {
    int nc = vp->cappend ? vp->cappend * 2 : 64;
    vk_res *n = realloc(vp->pend, sizeof *n * (size_t)nc);
    if (!n) return -1;
    vp->pend = n;
    vp->cappend = nc;
  }
  vp->pend[vp->npend++] = *r;
  return 0;
}

/* a barrier is needed when x reads a pending write, or writes a pending read or write */
static int hazard(const vk_plan *vp, const vk_disp *x) {
  for (int i = 0; i < x->nres; i++)
    for (int j = 0; j < vp->npend; j++)
      if ((x->res[i].write || vp->pend[j].write) && overlaps(&x->res[i], &vp->pend[j])) return 1;
  return 0;
}

static pv_status record(pv_plan *p) {
  vk_plan *vp = p->bed;
  pv_vk_ctx *s = vp->s;
  int prof = p->profiling && vp->qpool;
  int maxd = env_int("PIVOT_VK_SUBMIT_DISPATCHES", 256);
  double budget = 2e9;
  const char *e = getenv("PIVOT_VK_SUBMIT_FLOPS");
  if (e && *e && atof(e) > 0) budget = atof(e);
  if (maxd < 1) maxd = 1;
  VkCommandBuffer cb;
  int ci = 0;
  pv_status st = begin_cb(p, ci, &cb);
  if (st) return st;
  pv__vk_barrier_all(s, cb); /* the previous run and host-side transfers */
  if (prof) s->f.vkCmdResetQueryPool(cb, vp->qpool, 0, (uint32_t)p->norder * 2);
  memset(vp->ts_written, 0, (size_t)(p->norder ? p->norder : 1));
  s->f.vkCmdFillBuffer(cb, vp->status.buf, 0, VK_WHOLE_SIZE, 0);
  if (vp->nin) s->f.vkCmdCopyBuffer(cb, vp->instage.buf, vp->arena.buf, (uint32_t)vp->nin, vp->in_copy);
  pv__vk_barrier_all(s, cb);
  vp->npend = 0;
  VkPipeline bound = VK_NULL_HANDLE;
  int in_cb = 0;
  double work = 0;
  for (int i = 0; i < vp->nd; i++) {
    vk_disp *x = &vp->d[i];
    int first = i == 0 || vp->d[i - 1].k != x->k, last = i + 1 == vp->nd || vp->d[i + 1].k != x->k;
    if (first && in_cb > 0 && (in_cb >= maxd || work >= budget)) { /* split between nodes */
      VkResult r = s->f.vkEndCommandBuffer(cb);
      if (r != VK_SUCCESS) return pv__err(p->ctx, PV_ERR_BACKEND, "vulkan: vkEndCommandBuffer: %s", pv__vk_result(r));
      st = begin_cb(p, ++ci, &cb);
      if (st) return st;
      bound = VK_NULL_HANDLE;
      in_cb = 0;
      work = 0;
    }
    if (first && prof) {
      compute_barrier(s, cb);
      vp->npend = 0;
      s->f.vkCmdWriteTimestamp(cb, VK_PIPELINE_STAGE_BOTTOM_OF_PIPE_BIT, vp->qpool, (uint32_t)x->k * 2);
    }
    if (hazard(vp, x)) {
      compute_barrier(s, cb);
      vp->npend = 0;
    }
    for (int b = 0; b < x->nres; b++)
      if (pend_add(vp, &x->res[b])) return pv__err(p->ctx, PV_ERR_NOMEM, "vulkan plan: out of memory");
    if (x->pipe != bound) {
      s->f.vkCmdBindPipeline(cb, VK_PIPELINE_BIND_POINT_COMPUTE, x->pipe);
      bound = x->pipe;
    }
    s->f.vkCmdBindDescriptorSets(cb, VK_PIPELINE_BIND_POINT_COMPUTE, s->playout, 0, 1, &x->set, 0, NULL);
    s->f.vkCmdPushConstants(cb, s->playout, VK_SHADER_STAGE_COMPUTE_BIT, 0, sizeof x->push, x->push);
    s->f.vkCmdDispatch(cb, x->groups[0], x->groups[1], x->groups[2]);
    in_cb++;
    work += x->work;
    if (last && prof) {
      compute_barrier(s, cb);
      vp->npend = 0;
      s->f.vkCmdWriteTimestamp(cb, VK_PIPELINE_STAGE_BOTTOM_OF_PIPE_BIT, vp->qpool, (uint32_t)x->k * 2 + 1);
      vp->ts_written[x->k] = 1;
    }
  }
  VkMemoryBarrier mb = {VK_STRUCTURE_TYPE_MEMORY_BARRIER, NULL,
                        VK_ACCESS_SHADER_WRITE_BIT | VK_ACCESS_TRANSFER_WRITE_BIT, VK_ACCESS_HOST_READ_BIT};
  s->f.vkCmdPipelineBarrier(cb, VK_PIPELINE_STAGE_COMPUTE_SHADER_BIT | VK_PIPELINE_STAGE_TRANSFER_BIT,
                            VK_PIPELINE_STAGE_HOST_BIT, 0, 1, &mb, 0, NULL, 0, NULL);
  VkResult r = s->f.vkEndCommandBuffer(cb);
  if (r != VK_SUCCESS) return pv__err(p->ctx, PV_ERR_BACKEND, "vulkan: vkEndCommandBuffer: %s", pv__vk_result(r));
  vp->used_cb = ci + 1;
  vp->recorded = 1;
  vp->rec_prof = prof;
  return PV_OK;
}

/* ------------------------------------------------------------ run */
static double now_ms(void) {
  struct timespec ts;
  clock_gettime(CLOCK_MONOTONIC, &ts);
  return ts.tv_sec * 1e3 + ts.tv_nsec * 1e-6;
}

static pv_status vk_run(pv_plan *p) {
  vk_plan *vp = p->bed;
  pv_vk_ctx *s = vp->s;
  pv_context *ctx = p->ctx;
  int val0 = s->val_errors;
  pv_status st;
  for (int i = 0; i < vp->nvars; i++) {
    st = pv__vk_var_upload(s, vp->vars[i]);
    if (st) return st;
  }
  int prof = p->profiling && vp->qpool;
  const char *nr = getenv("PIVOT_VK_NO_REPLAY");
  if (!vp->recorded || prof != vp->rec_prof || (nr && *nr && strcmp(nr, "0"))) {
    st = record(p);
    if (st) return st;
  }
  double t0 = now_ms();
  VkResult r = VK_SUCCESS;
  for (int i = 0; i < vp->used_cb && r == VK_SUCCESS; i++) {
    VkSubmitInfo si = {.sType = VK_STRUCTURE_TYPE_SUBMIT_INFO};
    si.commandBufferCount = 1;
    si.pCommandBuffers = &vp->cbs[i];
    r = s->f.vkQueueSubmit(s->queue, 1, &si, i + 1 == vp->used_cb ? vp->fence : VK_NULL_HANDLE);
  }
  if (r == VK_SUCCESS) r = s->f.vkWaitForFences(s->dev, 1, &vp->fence, VK_TRUE, UINT64_MAX);
  s->f.vkResetFences(s->dev, 1, &vp->fence);
  if (r != VK_SUCCESS) {
    s->f.vkQueueWaitIdle(s->queue);
    return pv__err(
        ctx, r == VK_ERROR_OUT_OF_DEVICE_MEMORY || r == VK_ERROR_OUT_OF_HOST_MEMORY ? PV_ERR_NOMEM : PV_ERR_BACKEND,
        "vulkan: running the plan failed: %s", pv__vk_result(r));
  }
  double wall = now_ms() - t0;
  for (int i = 0; i < vp->nuvars; i++) { /* the device copy is now newer than the host's */
    pv_var *v = vp->uvars[i];
    pv_vk_varbuf *vb = v->dev;
    v->dev_version = (v->dev_version > v->host_version ? v->dev_version : v->host_version) + 1;
    if (vb) vb->version = v->dev_version;
  }
  if (p->profiling) {
    if (prof) {
      for (int k = 0; k < p->norder; k++) {
        if (!vp->ts_written[k]) continue;
        uint64_t ts[2];
        if (s->f.vkGetQueryPoolResults(s->dev, vp->qpool, (uint32_t)k * 2, 2, sizeof ts, ts, sizeof(uint64_t),
                                       VK_QUERY_RESULT_64_BIT | VK_QUERY_RESULT_WAIT_BIT) != VK_SUCCESS)
          continue;
        uint64_t mask = s->ts_bits >= 64 ? ~0ull : ((1ull << s->ts_bits) - 1);
        double ms = (double)((ts[1] - ts[0]) & mask) * s->props.limits.timestampPeriod * 1e-6;
        pv_tensor *t = p->g->nodes[p->order[k]];
        p->prof_ms[t->op] += ms;
        p->prof_calls[t->op]++;
      }
    } else { /* no timestamps: split the wall time by estimated work */
      double total = 0;
      for (int i = 0; i < vp->nd; i++)
        total += vp->d[i].work;
      for (int i = 0; i < vp->nd; i++) {
        pv_tensor *t = p->g->nodes[p->order[vp->d[i].k]];
        p->prof_ms[t->op] += total > 0 ? wall * vp->d[i].work / total : 0;
        if (i == 0 || vp->d[i - 1].k != vp->d[i].k) p->prof_calls[t->op]++;
      }
    }
  }
  if (s->val_errors != val0)
    return pv__err(ctx, PV_ERR_BACKEND, "vulkan: %d validation error(s) during the run (printed above)",
                   s->val_errors - val0);
  for (int i = 0; i < vp->nd; i++) {
    uint32_t w;
    memcpy(&w, (char *)vp->status.map + vp->status_stride * (VkDeviceSize)i, 4);
    if (w) {
      pv_tensor *t = p->g->nodes[p->order[vp->d[i].k]];
      return pv__err(ctx, PV_ERR_INVALID, "run: op '%s' (node %d '%s'): invalid data (e.g. an id out of range)",
                     pv__opdef(t->op)->name, t->id, tname(t));
    }
  }
  return PV_OK;
}

/* ------------------------------------------------------------ write / read */
static pv_status vk_write(pv_plan *p, pv_tensor *t, pv_dtype sd, const void *data, int64_t count) {
  vk_plan *vp = p->bed;
  if (vp->in_off[t->id] < 0) return pv__err(p->ctx, PV_ERR_INVALID, "plan_write: '%s' has no input buffer", tname(t));
  pv__convert(t->dtype, (char *)vp->instage.map + vp->in_off[t->id], sd, data, count);
  return PV_OK;
}

static pv_status vk_read(pv_plan *p, pv_tensor *t, pv_dtype dd, void *out, int64_t count) {
  vk_plan *vp = p->bed;
  pv_vk_ctx *s = vp->s;
  if ((t->flags & PV_NF_INPUT) && vp->in_off[t->id] >= 0) {
    pv__convert(dd, out, t->dtype, (char *)vp->instage.map + vp->in_off[t->id], count);
    return PV_OK;
  }
  const pv_tensor *rt = p->g->nodes[p->slot[t->id].root];
  if (rt->flags & PV_NF_VAR) { /* the var's current value (the device copy if it is newer) */
    pv_var *v = rt->var;
    if (v->dev_version > v->host_version && p->ctx->vk_sync_var) {
      pv_status st = p->ctx->vk_sync_var(p->ctx, v);
      if (st) return st;
    }
    pv__convert(dd, out, t->dtype, (const char *)v->data + p->slot[t->id].voff * (int64_t)pv_dtype_size(t->dtype),
                count);
    return PV_OK;
  }
  size_t bytes = (size_t)count * pv_dtype_size(t->dtype);
  if (dd == t->dtype) return pv__vk_transfer(s, vp->arena.buf, (VkDeviceSize)p->slot[t->id].offset, out, bytes, 0);
  void *tmp = malloc(bytes ? bytes : 1);
  if (!tmp) return pv__err(p->ctx, PV_ERR_NOMEM, "plan_read: out of memory");
  pv_status st = pv__vk_transfer(s, vp->arena.buf, (VkDeviceSize)p->slot[t->id].offset, tmp, bytes, 0);
  if (!st) pv__convert(dd, out, t->dtype, tmp, count);
  free(tmp);
  return st;
}

static const pv_backend vk_backend = {"vulkan", vk_init, vk_free, vk_write, vk_read, vk_run};
const pv_backend *pv__vk_backend(void) { return &vk_backend; }
