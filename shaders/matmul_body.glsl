// matmul_body.glsl: tiled GEMM y[b] = op(a[b]) · op(b[b]) in f32 (ops/matmul.c, matmul_vk), included by the tile
// variants matmul_small.comp, matmul_64.comp and matmul_128.comp after they define
//   BM, BN  the workgroup tile (rows of y, columns of y), BK the K step,
//   TM, TN  the micro-tile of one invocation (multiples of 4): (TM/4)x(TN/4) blocks of 4x4 spread over the tile
//           at strides BM/(TM/4) and BN/(TN/4), so the shared-memory reads of a warp are contiguous vec4s.
// Workgroups: (BM/TM)*(BN/TN) invocations; grid x: column tiles, y: row tiles, z: batches (looped past the grid).
// Shared memory: A and B tiles stored k-major (As[k][m], Bs[k][n]) as vec4s, double buffered: the next K step is
// loaded from global memory into registers while the current one is multiplied, then stored into the other buffer;
// one barrier per K step. Global loads are vec4s along the operand's contiguous axis when that axis is a multiple of
// 4 (flags), else scalar; the transpose flags only change how a tile is read (no transpose pass). An operand
// contiguous along k (a [M, K], b [N, K]) is read with consecutive invocations on consecutive rows, so that its
// transposed stores into shared memory hit distinct banks. Each output is summed by one invocation in k order:
// deterministic.
// Split K (S > 1): grid z runs over batches x S ranges of K of length kc; range s of batch i writes its partial
// product to y[(i * S + s) * M * N ...] (binding 0 is then the scratch buffer, summed by matmul_splitk.comp).
// push: 0 M, 1 N, 2 K, 3 flags (1 ta, 2 tb, 4 vec4 a, 8 vec4 b, 16 vec4 y), 4 batches, 5 batch ndim (<= 6),
//       6..11 batch shape, 12..17 a batch strides (elements), 18..23 b batch strides (elements), 24 S, 25 kc
#extension GL_EXT_control_flow_attributes : enable
layout(local_size_x = (BM / TM) * (BN / TN)) in;
layout(std430, binding = 0) writeonly buffer Y { float y[]; };
layout(std430, binding = 0) writeonly buffer Y4 { vec4 y4[]; };
layout(std430, binding = 1) readonly buffer A { float a[]; };
layout(std430, binding = 1) readonly buffer A4 { vec4 a4[]; };
layout(std430, binding = 2) readonly buffer B { float b[]; };
layout(std430, binding = 2) readonly buffer B4 { vec4 b4[]; };

#define WG ((BM / TM) * (BN / TN))
#define TX (BN / TN)       // invocations along n
#define MB (TM / 4)        // 4-row blocks per invocation
#define NB (TN / 4)        // 4-column blocks per invocation
#define MS (BM / MB)       // row stride of the blocks
#define NS (BN / NB)       // column stride of the blocks
#define LA (BM * BK / 4 / WG) // vec4 slots of the A tile per invocation
#define LB (BN * BK / 4 / WG)

shared vec4 As[2][BK][BM / 4];
shared vec4 Bs[2][BK][BN / 4];

// 4 consecutive elements starting at element i, the first `valid` of them read (the rest 0); a vec4 load when vec
vec4 load_a(uint i, uint valid, bool vec) {
  if (valid >= 4u && vec) return a4[i >> 2];
  vec4 r = vec4(0.0);
  [[unroll]] for (uint j = 0u; j < 4u; j++)
    if (j < valid) r[j] = a[i + j];
  return r;
}
vec4 load_b(uint i, uint valid, bool vec) {
  if (valid >= 4u && vec) return b4[i >> 2];
  vec4 r = vec4(0.0);
  [[unroll]] for (uint j = 0u; j < 4u; j++)
    if (j < valid) r[j] = b[i + j];
  return r;
}

void main() {
  const uint M = pc.u[0], N = pc.u[1], K = pc.u[2], fl = pc.u[3];
  const bool ta = (fl & 1u) != 0u, tb = (fl & 2u) != 0u, va = (fl & 4u) != 0u, vb = (fl & 8u) != 0u,
             vy = (fl & 16u) != 0u;
  // groups of 32 invocations (a warp) cover 8 (ty) x 4 (tx) micro-tiles: fewer distinct shared-memory vec4s per
  // read than whole rows of tx (correct for any subgroup size)
  const uint tid = gl_LocalInvocationID.x, wid = tid / 32u, lane = tid % 32u;
  const uint tx = (wid % (TX / 4)) * 4u + lane % 4u, ty = (wid / (TX / 4)) * 8u + lane / 4u;
  const uint m0 = gl_WorkGroupID.y * BM, n0 = gl_WorkGroupID.x * BN;
  const uint S = pc.u[24];
  for (uint bz = gl_WorkGroupID.z; bz < pc.u[4] * S; bz += gl_NumWorkGroups.z) {
    const uint kb = (bz % S) * pc.u[25], ke = min(K, kb + pc.u[25]); // this K range
    const uint nk = ke > kb ? (ke - kb + BK - 1u) / BK : 0u;
    uint oa = 0u, ob = 0u, r = bz / S;
    for (int d = int(pc.u[5]) - 1; d >= 0; d--) {
      uint sh = pc.u[6 + d], c = r % sh;
      r /= sh;
      oa += c * pc.u[12 + d];
      ob += c * pc.u[18 + d];
    }
    vec4 acc[TM][NB];
    [[unroll]] for (uint i = 0u; i < TM; i++)
      [[unroll]] for (uint j = 0u; j < NB; j++) acc[i][j] = vec4(0.0);
    vec4 ra[LA], rb[LB];
    // global -> registers for K step kt
#define LOAD_TILE(kt)                                                                                                  \
  {                                                                                                                    \
    uint k0 = kb + (kt) * BK;                                                                                          \
    [[unroll]] for (uint l = 0u; l < LA; l++) {                                                                        \
      uint s = tid + l * WG;                                                                                           \
      if (!ta) { /* a [M, K]: vec4 along k */                                                                          \
        uint k = k0 + (s / BM) * 4u, m = m0 + s % BM;                                                                  \
        ra[l] = load_a(oa + m * K + k, m < M && k < ke ? min(ke - k, 4u) : 0u, va);                                    \
      } else { /* a [K, M]: vec4 along m */                                                                            \
        uint k = k0 + s / (BM / 4), m = m0 + (s % (BM / 4)) * 4u;                                                      \
        ra[l] = load_a(oa + k * M + m, k < ke && m < M ? min(M - m, 4u) : 0u, va);                                     \
      }                                                                                                                \
    }                                                                                                                  \
    [[unroll]] for (uint l = 0u; l < LB; l++) {                                                                        \
      uint s = tid + l * WG;                                                                                           \
      if (!tb) { /* b [K, N]: vec4 along n */                                                                          \
        uint k = k0 + s / (BN / 4), n = n0 + (s % (BN / 4)) * 4u;                                                      \
        rb[l] = load_b(ob + k * N + n, k < ke && n < N ? min(N - n, 4u) : 0u, vb);                                     \
      } else { /* b [N, K]: vec4 along k */                                                                            \
        uint k = k0 + (s / BN) * 4u, n = n0 + s % BN;                                                                  \
        rb[l] = load_b(ob + n * K + k, n < N && k < ke ? min(ke - k, 4u) : 0u, vb);                                    \
      }                                                                                                                \
    }                                                                                                                  \
  }
    // registers -> shared buffer q
#define STORE_TILE(q)                                                                                                  \
  {                                                                                                                    \
    [[unroll]] for (uint l = 0u; l < LA; l++) {                                                                        \
      uint s = tid + l * WG;                                                                                           \
      if (!ta) {                                                                                                       \
        uint row = s % BM, kk = (s / BM) * 4u;                                                                         \
        [[unroll]] for (uint j = 0u; j < 4u; j++) As[q][kk + j][row >> 2][row & 3u] = ra[l][j];                        \
      } else                                                                                                           \
        As[q][s / (BM / 4)][s % (BM / 4)] = ra[l];                                                                     \
    }                                                                                                                  \
    [[unroll]] for (uint l = 0u; l < LB; l++) {                                                                        \
      uint s = tid + l * WG;                                                                                           \
      if (!tb)                                                                                                         \
        Bs[q][s / (BN / 4)][s % (BN / 4)] = rb[l];                                                                     \
      else {                                                                                                           \
        uint row = s % BN, kk = (s / BN) * 4u;                                                                         \
        [[unroll]] for (uint j = 0u; j < 4u; j++) Bs[q][kk + j][row >> 2][row & 3u] = rb[l][j];                        \
      }                                                                                                                \
    }                                                                                                                  \
  }
    if (nk > 0u) {
      LOAD_TILE(0u);
      STORE_TILE(0u);
    }
    barrier();
    for (uint kt = 0u; kt < nk; kt++) {
      uint q = kt & 1u;
      bool more = kt + 1u < nk;
      if (more) LOAD_TILE(kt + 1u);
      [[unroll]] for (uint k = 0u; k < BK; k++) {
        vec4 af[MB], bf[NB];
        [[unroll]] for (uint i = 0u; i < MB; i++) af[i] = As[q][k][i * (MS / 4) + ty];
        [[unroll]] for (uint j = 0u; j < NB; j++) bf[j] = Bs[q][k][j * (NS / 4) + tx];
        [[unroll]] for (uint i = 0u; i < MB; i++)
          [[unroll]] for (uint rr = 0u; rr < 4u; rr++)
            [[unroll]] for (uint j = 0u; j < NB; j++) acc[i * 4u + rr][j] += af[i][rr] * bf[j];
      }
      if (more) STORE_TILE(q ^ 1u);
      barrier();
    }
    // epilogue
    uint oy = bz * M * N;
    [[unroll]] for (uint i = 0u; i < MB; i++)
      [[unroll]] for (uint rr = 0u; rr < 4u; rr++) {
        uint m = m0 + i * MS + ty * 4u + rr;
        if (m >= M) continue;
        [[unroll]] for (uint j = 0u; j < NB; j++) {
          uint n = n0 + j * NS + tx * 4u;
          if (n >= N) continue;
          vec4 v = acc[i * 4u + rr][j];
          uint o = oy + m * N + n;
          if (vy) y4[o >> 2] = v;
          else
            for (uint c = 0u; c < 4u && n + c < N; c++) y[o + c] = v[c];
        }
      }
  }
}
