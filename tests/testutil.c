#include "testutil.h"
#include "pivot.h"
#include <stdlib.h>
#include <string.h>

/* internal hooks (runtime/vulkan/vk.h); weak so the tests link in a build without Vulkan */
int pv__vk_validation_errors(pv_context *ctx) __attribute__((weak));
int pv__vk_validation_active(pv_context *ctx) __attribute__((weak));

int pv_t_vulkan_required(pv_context *ctx) {
  setenv("PIVOT_VK_VALIDATION", "1", 1);
  const char *why = NULL;
  if (pv_backend_available(ctx, "vulkan", &why)) return 1;
  const char *allow = getenv("PIVOT_ALLOW_NO_VULKAN");
  int allowed = allow && !strcmp(allow, "1");
  printf("vulkan is not available: %s%s\n", why ? why : "unknown reason",
         allowed ? " (allowed by PIVOT_ALLOW_NO_VULKAN=1)" : "");
  CHECK(allowed, "vulkan is required (set PIVOT_ALLOW_NO_VULKAN=1 to skip): %s", why ? why : "");
  return 0;
}

void pv_t_check_validation(void) {
  if (pv__vk_validation_active && pv__vk_validation_active(NULL)) {
    int n = pv__vk_validation_errors(NULL);
    CHECK(n == 0, "%d Vulkan validation errors (printed above)", n);
    printf("validation layer: %d errors\n", n);
  } else {
    printf("note: VK_LAYER_KHRONOS_validation is not installed: validation not checked\n");
  }
}
int pv_t_pass = 0, pv_t_fail = 0;
int pv_t_finish(void) {
  printf("%d passed, %d failed\n", pv_t_pass, pv_t_fail);
  return pv_t_fail ? 1 : 0;
}
const char *pv_t_fixtures(void) {
  const char *e = getenv("PIVOT_FIXTURES");
  if (e && *e) return e;
#ifdef PIVOT_SOURCE_DIR
  return PIVOT_SOURCE_DIR "/../shared/fixtures";
#else
  return "../shared/fixtures";
#endif
}
const char *pv_t_tmpdir(void) {
  static char buf[256];
  if (!buf[0]) {
    const char *t = getenv("TMPDIR");
    snprintf(buf, sizeof buf, "%s/pivot_test_XXXXXX", t && *t ? t : "/tmp");
    if (!mkdtemp(buf)) return "/tmp";
  }
  return buf;
}
