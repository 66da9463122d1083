/* runtime/vulkan/vk.h: internal Vulkan hooks that tests may use (no Vulkan headers needed). */
#ifndef PV_VK_H
#define PV_VK_H
#include "pivot.h"

/* Validation errors reported by VK_LAYER_KHRONOS_validation (env PIVOT_VK_VALIDATION=1) in ctx, or in the whole
 * process when ctx is NULL (contexts already freed included). 0 when validation is off. */
int pv__vk_validation_errors(pv_context *ctx);
/* 1 if validation was requested and the layer is active in ctx (ctx NULL: in any context so far). */
int pv__vk_validation_active(pv_context *ctx);
/* Test hook: writes data (numel elements of the var's dtype) into v's device copy only and marks the device copy
 * newer than the host copy, as an update op run on the device does. Needs an open device (a compiled Vulkan plan). */
pv_status pv__vk_var_device_write(pv_var *v, const void *data);
#endif
