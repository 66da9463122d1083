#version 450
#extension GL_GOOGLE_include_directive : require
#include "common.glsl"
#define PV_SUBGROUP 0
#define PV_RMS 1
#include "layer_norm_body.glsl"
