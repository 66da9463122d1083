#include "testutil.h"
#include <stdlib.h>
#include <string.h>
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
