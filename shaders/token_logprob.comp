#version 450
#extension GL_GOOGLE_include_directive : require
#include "common.glsl"
#define PV_SUBGROUP 0
#include "token_logprob_body.glsl"
