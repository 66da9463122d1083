/* bench_world.c: scenes per second of the built-in world on one core (all outputs: rgb, normalised image, instance
 * map, objects), at 32 and 64 px, grid 3, 2..4 objects, textured, noise 0.05, with and without occlusion.
 * Target: >= 1000 scenes/s at 64 px. Usage: bench_world [seconds per case, default 1]. */
#include "pivot.h"
#include <stdio.h>
#include <stdlib.h>
#include <time.h>

static double now(void) {
  struct timespec t;
  clock_gettime(CLOCK_MONOTONIC, &t);
  return (double)t.tv_sec + 1e-9 * (double)t.tv_nsec;
}

int main(int argc, char **argv) {
  double secs = argc > 1 ? atof(argv[1]) : 1.0;
  if (!(secs > 0)) secs = 1.0;
  pv_context *ctx = pv_context_new();
  int sizes[2] = {32, 64};
  printf("%-8s %-10s %14s %12s\n", "size", "occlusion", "scenes/s", "us/scene");
  int worst_ok = 1;
  for (int si = 0; si < 2; si++)
    for (int occ = 0; occ < 2; occ++) {
      pv_world_config c = {sizes[si], 3, 2, 4, occ, 0.05f, 1};
      pv_world *w = NULL;
      if (pv_world_new(ctx, &c, &w) != PV_OK) {
        fprintf(stderr, "pv_world_new: %s\n", pv_last_error(ctx));
        return 1;
      }
      size_t np = (size_t)c.image_size * c.image_size;
      uint8_t *rgb = malloc(np * 3);
      float *img = malloc(np * 3 * sizeof(float));
      int32_t *inst = malloc(np * sizeof(int32_t));
      pv_world_object objs[16];
      int n = 0;
      int64_t i = 0;
      double t0 = now(), t;
      do {
        for (int k = 0; k < 64; k++, i++)
          pv_world_scene(w, 42, i, rgb, img, inst, objs, 16, &n);
        t = now() - t0;
      } while (t < secs);
      double rate = (double)i / t;
      if (c.image_size == 64 && rate < 1000) worst_ok = 0;
      printf("%-8d %-10s %14.0f %12.1f\n", c.image_size, occ ? "yes" : "no", rate, 1e6 / rate);
      free(rgb), free(img), free(inst);
      pv_world_free(w);
    }
  printf("target >= 1000 scenes/s at 64 px: %s\n", worst_ok ? "met" : "NOT met");
  pv_context_free(ctx);
  return 0;
}
