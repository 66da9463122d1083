#version 450
#extension GL_GOOGLE_include_directive : require
#include "common.glsl"
// GEMM, 128x128 tile, K step 16, 8x8 outputs per invocation (matmul_body.glsl).
#define BM 128
#define BN 128
#define BK 16
#define TM 8
#define TN 8
#include "matmul_body.glsl"
