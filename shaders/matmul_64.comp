#version 450
#extension GL_GOOGLE_include_directive : require
#include "common.glsl"
// GEMM, 64x64 tile, K step 16, 4x4 outputs per invocation (matmul_body.glsl).
#define BM 64
#define BN 64
#define BK 16
#define TM 4
#define TN 4
#include "matmul_body.glsl"
