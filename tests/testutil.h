/* Minimal test helpers shared by the C tests. The last line a test prints is "N passed, N failed". */
#ifndef PV_TESTUTIL_H
#define PV_TESTUTIL_H
#include <stdio.h>
extern int pv_t_pass, pv_t_fail;
#define CHECK(cond, ...)                                                                                               \
  do {                                                                                                                 \
    if (cond)                                                                                                          \
      pv_t_pass++;                                                                                                     \
    else {                                                                                                             \
      pv_t_fail++;                                                                                                     \
      fprintf(stderr, "FAIL %s:%d: ", __FILE__, __LINE__);                                                             \
      fprintf(stderr, __VA_ARGS__);                                                                                    \
      fprintf(stderr, "\n");                                                                                           \
    }                                                                                                                  \
  } while (0)
/* prints the summary line and returns the process exit code */
int pv_t_finish(void);
/* path of ../shared/fixtures (env PIVOT_FIXTURES overrides); never NULL */
const char *pv_t_fixtures(void);
/* Vulkan tests: turns the validation layer on and returns 1 when ctx has a Vulkan device; otherwise prints why and
 * records a failure unless PIVOT_ALLOW_NO_VULKAN=1, and returns 0 (the test then ends with pv_t_finish) */
struct pv_context;
int pv_t_vulkan_required(struct pv_context *ctx);
/* checks that the validation layer reported no error in the whole process (prints a note when it is absent) */
void pv_t_check_validation(void);
/* a fresh temporary directory (created), valid until exit */
const char *pv_t_tmpdir(void);
#endif
