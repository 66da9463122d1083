/* test_world.c: the built-in procedural world (runtime/io/world.c). */
#include "pivot.h"
#include "testutil.h"
#include <stdlib.h>
#include <string.h>

static pv_world_config default_cfg(void) {
  pv_world_config c;
  memset(&c, 0, sizeof c);
  c.image_size = 32;
  c.grid = 3;
  c.min_objects = 2;
  c.max_objects = 4;
  c.allow_occlusion = 0;
  c.noise = 0.04f;
  c.textured = 1;
  return c;
}

static void test_config(pv_context *ctx) {
  struct {
    const char *field;
    pv_world_config c;
  } bad[10];
  int nb = 0;
  pv_world_config c;
  c = default_cfg(), c.image_size = 7, bad[nb].field = "image_size", bad[nb++].c = c;
  c = default_cfg(), c.image_size = 1025, bad[nb].field = "image_size", bad[nb++].c = c;
  c = default_cfg(), c.grid = 0, bad[nb].field = "grid", bad[nb++].c = c;
  c = default_cfg(), c.grid = 9, bad[nb].field = "grid", bad[nb++].c = c;
  c = default_cfg(), c.min_objects = -1, bad[nb].field = "min_objects", bad[nb++].c = c;
  c = default_cfg(), c.min_objects = 3, c.max_objects = 2, bad[nb].field = "max_objects", bad[nb++].c = c;
  c = default_cfg(), c.max_objects = 10, bad[nb].field = "max_objects", bad[nb++].c = c;
  c = default_cfg(), c.noise = 1.5f, bad[nb].field = "noise", bad[nb++].c = c;
  c = default_cfg(), c.noise = -0.1f, bad[nb].field = "noise", bad[nb++].c = c;
  c = default_cfg(), c.allow_occlusion = 2, bad[nb].field = "allow_occlusion", bad[nb++].c = c;
  for (int i = 0; i < nb; i++) {
    pv_world *w = (pv_world *)1;
    pv_status s = pv_world_new(ctx, &bad[i].c, &w);
    CHECK(s == PV_ERR_INVALID && w == NULL, "bad config %d (%s): status %d", i, bad[i].field, (int)s);
    CHECK(strstr(pv_last_error(ctx), bad[i].field) != NULL, "error '%s' should name '%s'", pv_last_error(ctx),
          bad[i].field);
  }
  pv_world *w = NULL;
  CHECK(pv_world_new(ctx, NULL, &w) == PV_ERR_NULL, "NULL cfg");
  c = default_cfg();
  CHECK(pv_world_new(NULL, &c, &w) == PV_ERR_NULL, "NULL ctx");
  /* extremes are valid */
  c = default_cfg(), c.image_size = 8, c.grid = 8, c.min_objects = 0, c.max_objects = 64, c.allow_occlusion = 1;
  CHECK(pv_world_new(ctx, &c, &w) == PV_OK, "tiny world: %s", pv_last_error(ctx));
  uint8_t rgb[8 * 8 * 3];
  int32_t inst[64];
  pv_world_object objs[64];
  int n = -1;
  CHECK(pv_world_scene(w, 1, 0, rgb, NULL, inst, objs, 64, &n) == PV_OK && n >= 0 && n <= 64, "tiny scene");
  pv_world_free(w);
  pv_world_free(NULL);
}

static void test_names(pv_context *ctx) {
  pv_world_config c = default_cfg();
  pv_world *w = NULL;
  CHECK(pv_world_new(ctx, &c, &w) == PV_OK, "new: %s", pv_last_error(ctx));
  CHECK(pv_world_count(w, "shape") >= 6, "shapes %d", pv_world_count(w, "shape"));
  CHECK(pv_world_count(w, "color") >= 8, "colors %d", pv_world_count(w, "color"));
  CHECK(pv_world_count(w, "size") == 3, "sizes %d", pv_world_count(w, "size"));
  CHECK(pv_world_count(w, "flavour") == 0 && pv_world_count(NULL, "shape") == 0, "unknown attribute");
  CHECK(!strcmp(pv_world_name(w, "color", 0), "red"), "color 0 is %s", pv_world_name(w, "color", 0));
  CHECK(!strcmp(pv_world_name(w, "size", 0), "small") && !strcmp(pv_world_name(w, "size", 2), "large"), "size names");
  const char *attrs[3] = {"shape", "color", "size"};
  for (int a = 0; a < 3; a++) {
    int n = pv_world_count(w, attrs[a]);
    for (int i = 0; i < n; i++) {
      const char *nm = pv_world_name(w, attrs[a], i);
      CHECK(nm && nm[0], "%s %d has a name", attrs[a], i);
      for (int j = 0; j < i; j++)
        CHECK(strcmp(nm, pv_world_name(w, attrs[a], j)) != 0, "%s names distinct", attrs[a]);
    }
    CHECK(pv_world_name(w, attrs[a], n) == NULL && pv_world_name(w, attrs[a], -1) == NULL, "%s out of range", attrs[a]);
  }
  pv_world_free(w);
}

static int scene_equal(pv_world *w, int S, uint64_t seed, int64_t i1, pv_world *w2, int64_t i2) {
  size_t np = (size_t)S * S;
  uint8_t *a = malloc(np * 3), *b = malloc(np * 3);
  float *fa = malloc(np * 3 * 4), *fb = malloc(np * 3 * 4);
  int32_t *ia = malloc(np * 4), *ib = malloc(np * 4);
  pv_world_object oa[64], ob[64];
  memset(oa, 0, sizeof oa);
  memset(ob, 0, sizeof ob);
  int na = 0, nb = 0;
  pv_world_scene(w, seed, i1, a, fa, ia, oa, 64, &na);
  pv_world_scene(w2, seed, i2, b, fb, ib, ob, 64, &nb);
  int eq = na == nb && !memcmp(a, b, np * 3) && !memcmp(fa, fb, np * 12) && !memcmp(ia, ib, np * 4) &&
           !memcmp(oa, ob, sizeof oa);
  free(a), free(b), free(fa), free(fb), free(ia), free(ib);
  return eq;
}

static void test_determinism(pv_context *ctx) {
  pv_world_config c = default_cfg();
  pv_world *w = NULL, *w2 = NULL;
  CHECK(pv_world_new(ctx, &c, &w) == PV_OK && pv_world_new(ctx, &c, &w2) == PV_OK, "new");
  CHECK(scene_equal(w, 32, 7, 5, w, 5), "same seed/index twice -> identical");
  CHECK(scene_equal(w, 32, 7, 5, w2, 5), "two worlds of one config -> identical");
  /* order independence: generate other scenes in between */
  uint8_t tmp[32 * 32 * 3];
  for (int i = 0; i < 10; i++)
    pv_world_scene(w2, 7, 100 + i, tmp, NULL, NULL, NULL, 0, NULL);
  CHECK(scene_equal(w, 32, 7, 5, w2, 5), "scene independent of generation order");
  CHECK(!scene_equal(w, 32, 7, 5, w, 6), "different index -> different scene");
  /* different seed */
  uint8_t a[32 * 32 * 3], b[32 * 32 * 3];
  pv_world_scene(w, 1, 0, a, NULL, NULL, NULL, 0, NULL);
  pv_world_scene(w, 2, 0, b, NULL, NULL, NULL, 0, NULL);
  CHECK(memcmp(a, b, sizeof a) != 0, "different seed -> different scene");
  /* outputs are optional and independent */
  int n1 = 0, n2 = 0;
  pv_world_object o1[4], o2[4];
  CHECK(pv_world_scene(w, 3, 9, NULL, NULL, NULL, NULL, 0, NULL) == PV_OK, "all outputs NULL");
  pv_world_scene(w, 3, 9, NULL, NULL, NULL, o1, 4, &n1);
  pv_world_scene(w, 3, 9, a, NULL, NULL, o2, 4, &n2);
  CHECK(n1 == n2 && !memcmp(o1, o2, sizeof(pv_world_object) * (size_t)n1), "objects do not depend on other outputs");
  /* truncation: *nobj has the full count */
  pv_world_object one[1];
  int nt = 0;
  pv_world_scene(w, 3, 9, NULL, NULL, NULL, one, 1, &nt);
  CHECK(nt == n1 && !memcmp(&one[0], &o1[0], sizeof one[0]), "max_objs 1: count %d (full %d)", nt, n1);
  CHECK(pv_world_scene(w, 3, -1, a, NULL, NULL, NULL, 0, NULL) == PV_ERR_INVALID, "negative index");
  CHECK(pv_world_scene(w, 3, 0, a, NULL, NULL, NULL, -1, NULL) == PV_ERR_INVALID, "negative max_objs");
  CHECK(pv_world_scene(NULL, 3, 0, a, NULL, NULL, NULL, 0, NULL) == PV_ERR_NULL, "NULL world");
  /* noise and texture do not move the objects */
  pv_world_config c2 = c;
  c2.noise = 0.0f;
  c2.textured = 0;
  pv_world *w3 = NULL;
  pv_world_new(ctx, &c2, &w3);
  int n3 = 0;
  pv_world_object o3[4];
  pv_world_scene(w3, 3, 9, NULL, NULL, NULL, o3, 4, &n3);
  CHECK(n3 == n1 && !memcmp(o3, o1, sizeof(pv_world_object) * (size_t)n1), "texture/noise keep the layout");
  pv_world_free(w3);
  pv_world_free(w);
  pv_world_free(w2);
}

/* Checks annotations of many scenes against the pixels. */
static void test_annotations(pv_context *ctx, int S, int occlusion, float noise, int textured) {
  pv_world_config c = default_cfg();
  c.image_size = S;
  c.allow_occlusion = occlusion;
  c.noise = noise;
  c.textured = textured;
  if (S == 64) c.max_objects = 6;
  pv_world *w = NULL;
  CHECK(pv_world_new(ctx, &c, &w) == PV_OK, "new: %s", pv_last_error(ctx));
  if (!w) return;
  int nshape = pv_world_count(w, "shape"), ncolor = pv_world_count(w, "color");
  size_t np = (size_t)S * S;
  uint8_t *rgb = malloc(np * 3);
  float *img = malloc(np * 3 * sizeof(float));
  int32_t *inst = malloc(np * sizeof(int32_t));
  int seen_shape[16] = {0}, seen_color[16] = {0}, counts[10] = {0};
  int bad_n = 0, bad_attr = 0, bad_box = 0, bad_cell = 0, bad_vis = 0, bad_inst = 0, bad_img = 0, bad_overlap = 0;
  int bad_size = 0, occluded = 0;
  int side[3][2] = {{1 << 20, 0}, {1 << 20, 0}, {1 << 20, 0}}; /* min/max box side of a square per size */
  const int scenes = 300;
  for (int i = 0; i < scenes; i++) {
    pv_world_object o[16];
    int n = -1;
    if (pv_world_scene(w, 11, i, rgb, img, inst, o, 16, &n) != PV_OK) {
      bad_n++;
      continue;
    }
    if (n < c.min_objects || n > c.max_objects)
      bad_n++;
    else
      counts[n]++;
    int pix[17] = {0};
    for (size_t p = 0; p < np; p++) {
      int v = inst[p];
      if (v < 0 || v > n) {
        bad_inst++;
        continue;
      }
      pix[v]++;
      if (v) { /* the pixel lies in its object's box */
        int x = (int)(p % S), y = (int)(p / S);
        const pv_world_object *ob = &o[v - 1];
        if (x < ob->x0 || x >= ob->x1 || y < ob->y0 || y >= ob->y1) bad_inst++;
      }
    }
    for (size_t p = 0; p < np * 3; p++) {
      float want = ((float)rgb[p] / 255.0f - 0.5f) / 0.5f;
      if (img[(p % 3) * np + p / 3] != want) bad_img++;
    }
    for (int k = 0; k < n; k++) {
      const pv_world_object *ob = &o[k];
      if (ob->shape < 0 || ob->shape >= nshape || ob->color < 0 || ob->color >= ncolor || ob->size < 0 || ob->size > 2)
        bad_attr++;
      else
        seen_shape[ob->shape]++, seen_color[ob->color]++;
      if (!(0 <= ob->x0 && ob->x0 < ob->x1 && ob->x1 <= S && 0 <= ob->y0 && ob->y0 < ob->y1 && ob->y1 <= S)) bad_box++;
      if (!(ob->x0 <= ob->cx && ob->cx <= ob->x1 && ob->y0 <= ob->cy && ob->cy <= ob->y1)) bad_box++;
      if (ob->cell_x < 0 || ob->cell_x >= c.grid || ob->cell_y < 0 || ob->cell_y >= c.grid ||
          ob->cx < ob->cell_x * S / c.grid || ob->cx >= (ob->cell_x + 1) * S / c.grid ||
          ob->cy < ob->cell_y * S / c.grid || ob->cy >= (ob->cell_y + 1) * S / c.grid)
        bad_cell++;
      for (int j = 0; j < k; j++)
        if (o[j].cell_x == ob->cell_x && o[j].cell_y == ob->cell_y) bad_cell++;
      if (pix[k + 1] != ob->visible_pixels) bad_vis++;
      if (ob->visible_pixels <= 0) bad_vis++; /* the generator keeps every object visible */
      if (!occlusion) {
        for (int j = 0; j < k; j++)
          if (ob->x0 < o[j].x1 && o[j].x0 < ob->x1 && ob->y0 < o[j].y1 && o[j].y0 < ob->y1) bad_overlap++;
      } else {
        int area_px = 0; /* a square's visible pixels below its box area means it is occluded */
        if (ob->shape == 1) area_px = (ob->x1 - ob->x0) * (ob->y1 - ob->y0);
        if (area_px && ob->visible_pixels < area_px) occluded++;
        if (area_px && 2 * ob->visible_pixels < area_px) bad_vis++;
      }
      if (ob->shape == 1) {
        int sd = ob->x1 - ob->x0;
        if (sd != ob->y1 - ob->y0) bad_size++;
        if (sd < side[ob->size][0]) side[ob->size][0] = sd;
        if (sd > side[ob->size][1]) side[ob->size][1] = sd;
      }
    }
    if (!textured && noise == 0.0f) { /* flat background: every background pixel has one colour */
      int first = -1;
      for (size_t p = 0; p < np; p++) {
        int x = (int)(p % S), y = (int)(p / S), near = 0; /* anti-aliased edges may reach 1 px beyond a box */
        for (int k = 0; k < n; k++)
          near |= x >= o[k].x0 - 1 && x <= o[k].x1 && y >= o[k].y0 - 1 && y <= o[k].y1;
        if (!near) {
          if (first < 0)
            first = (int)p;
          else if (memcmp(rgb + 3 * p, rgb + 3 * (size_t)first, 3) != 0) {
            bad_img++;
            break;
          }
        }
      }
    }
  }
  const char *tag = occlusion ? "occlusion" : "no occlusion";
  CHECK(bad_n == 0, "S=%d %s: object counts out of range (%d)", S, tag, bad_n);
  for (int n = c.min_objects; n <= c.max_objects; n++)
    CHECK(counts[n] > 0, "S=%d: count %d never drawn", S, n);
  CHECK(bad_attr == 0, "S=%d %s: attributes out of range (%d)", S, tag, bad_attr);
  CHECK(bad_box == 0, "S=%d %s: boxes outside the image or centre outside the box (%d)", S, tag, bad_box);
  CHECK(bad_cell == 0, "S=%d %s: centre outside its cell or shared cells (%d)", S, tag, bad_cell);
  CHECK(bad_vis == 0, "S=%d %s: visible_pixels disagree with the instance map (%d)", S, tag, bad_vis);
  CHECK(bad_inst == 0, "S=%d %s: instance ids out of range or outside their box (%d)", S, tag, bad_inst);
  CHECK(bad_img == 0, "S=%d %s: image/rgb/background mismatch (%d)", S, tag, bad_img);
  CHECK(bad_overlap == 0, "S=%d: objects overlap without occlusion (%d)", S, bad_overlap);
  CHECK(bad_size == 0, "S=%d %s: square boxes not square (%d)", S, tag, bad_size);
  if (occlusion) CHECK(occluded > 0, "S=%d: occlusion never happened", S);
  for (int s = 0; s < nshape; s++)
    CHECK(seen_shape[s] > 0, "S=%d: shape %d never drawn", S, s);
  for (int s = 0; s < ncolor; s++)
    CHECK(seen_color[s] > 0, "S=%d: colour %d never drawn", S, s);
  CHECK(side[0][1] > 0 && side[0][1] < side[1][0] && side[1][1] < side[2][0], "S=%d: sizes not ordered", S);
  CHECK(side[0][0] >= 5, "S=%d: small objects are %d px (< 5)", S, side[0][0]);
  printf("S=%d %s noise=%.2f textured=%d: square sides small %d, medium %d, large %d px; %d occluded squares\n", S, tag,
         (double)noise, textured, side[0][0], side[1][0], side[2][0], occluded);
  free(rgb), free(img), free(inst);
  pv_world_free(w);
}

/* The colour of an object's pixels is nearest to its named colour (no noise, flat background). */
static void test_colors(pv_context *ctx) {
  static const int proto[8][3] = {{220, 40, 40},  {40, 180, 60},  {50, 90, 235},  {235, 215, 45},
                                  {155, 65, 205}, {245, 135, 25}, {40, 205, 215}, {240, 240, 240}};
  pv_world_config c = default_cfg();
  c.noise = 0.0f;
  pv_world *w = NULL;
  pv_world_new(ctx, &c, &w);
  uint8_t rgb[32 * 32 * 3];
  int32_t inst[32 * 32];
  int bad = 0, total = 0;
  for (int i = 0; i < 200; i++) {
    pv_world_object o[4];
    int n = 0;
    pv_world_scene(w, 5, i, rgb, NULL, inst, o, 4, &n);
    for (int k = 0; k < n; k++) {
      /* the pixel of the object farthest inside its mask: take any instance pixel whose 4 neighbours are also k */
      int found = 0;
      for (int y = 1; y < 31 && !found; y++)
        for (int x = 1; x < 31 && !found; x++) {
          int p = y * 32 + x;
          if (inst[p] == k + 1 && inst[p - 1] == k + 1 && inst[p + 1] == k + 1 && inst[p - 32] == k + 1 &&
              inst[p + 32] == k + 1) {
            found = 1;
            int best = -1;
            long bd = 1L << 40;
            for (int q = 0; q < 8; q++) {
              long d = 0;
              for (int ch = 0; ch < 3; ch++) {
                long e = rgb[p * 3 + ch] - proto[q][ch];
                d += e * e;
              }
              if (d < bd) bd = d, best = q;
            }
            total++;
            if (best != o[k].color) bad++;
          }
        }
    }
  }
  CHECK(total > 300 && bad == 0, "object colours: %d of %d nearest to another colour", bad, total);
  pv_world_free(w);
}

/* 16 scenes at 32x32, each upscaled x4 (nearest), on a 4x4 sheet with 4 px gaps. */
static void write_samples(pv_context *ctx) {
  pv_world_config c = default_cfg();
  c.allow_occlusion = 1;
  pv_world *w = NULL;
  if (pv_world_new(ctx, &c, &w) != PV_OK) return;
  const int S = 32, Z = 4, T = S * Z, G = 4, W = G * T + (G + 1) * 4;
  uint8_t *sheet = calloc((size_t)W * W * 3, 1);
  uint8_t rgb[32 * 32 * 3];
  for (int i = 0; i < G * G; i++) {
    pv_world_object o[8];
    int n = 0;
    pv_world_scene(w, 2024, i, rgb, NULL, NULL, o, 8, &n);
    int ox = 4 + (i % G) * (T + 4), oy = 4 + (i / G) * (T + 4);
    for (int y = 0; y < T; y++)
      for (int x = 0; x < T; x++)
        memcpy(sheet + ((size_t)(oy + y) * W + ox + x) * 3, rgb + ((size_t)(y / Z) * S + x / Z) * 3, 3);
    printf("sample %2d:", i);
    for (int k = 0; k < n; k++)
      printf(" [%s %s %s @%d,%d]", pv_world_name(w, "size", o[k].size), pv_world_name(w, "color", o[k].color),
             pv_world_name(w, "shape", o[k].shape), o[k].cell_x, o[k].cell_y);
    printf("\n");
  }
  char path[512];
  snprintf(path, sizeof path, "%s/world_samples.png", pv_t_tmpdir());
  CHECK(pv_png_write(ctx, path, W, W, 3, sheet) == PV_OK, "write samples: %s", pv_last_error(ctx));
  printf("sample sheet (16 scenes, 32x32 each shown x4, row-major): %s\n", path);
  free(sheet);
  pv_world_free(w);
}

int main(void) {
  pv_context *ctx = pv_context_new();
  test_config(ctx);
  test_names(ctx);
  test_determinism(ctx);
  test_annotations(ctx, 32, 0, 0.04f, 1);
  test_annotations(ctx, 32, 1, 0.04f, 1);
  test_annotations(ctx, 32, 0, 0.0f, 0);
  test_annotations(ctx, 64, 1, 0.1f, 1);
  test_annotations(ctx, 64, 0, 0.0f, 0);
  test_colors(ctx);
  write_samples(ctx);
  pv_context_free(ctx);
  return pv_t_finish();
}
