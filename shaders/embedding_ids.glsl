// embedding_ids.glsl: reading ids (i32, or i64 as (lo, hi) uint pairs) from a uint buffer `ids`.
// pv_id(n, is64, V): the id at index n, or 0xffffffff when it is outside [0, V) (negative ids included).
uint pv_id(uint n, bool is64, uint V) {
  uint lo = is64 ? ids[2u * n] : ids[n];
  if (is64 && ids[2u * n + 1u] != 0u) return 0xffffffffu;
  return lo < V ? lo : 0xffffffffu;
}
