// status.glsl: the per-dispatch status word (binding 10). A shader that finds invalid data (e.g. an id out of range)
// calls pv_report_invalid(); pv_plan_run then fails with PV_ERR_INVALID naming the op and node, like a CPU kernel
// setting its error flag. The word is cleared at the start of every run.
layout(std430, binding = 10) buffer PvStatus { uint pv_status_word; };
void pv_report_invalid() { pv_status_word = 1u; }
