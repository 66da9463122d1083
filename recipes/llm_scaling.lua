-- recipes/llm_scaling.lua: claim 3 of the paper in miniature: a larger LLM head sends more useful signals to the
-- vision encoder. The pipeline of recipes/pivot.lua (stage 0, stage 1, SFT and DPO from the same stage-1 weights;
-- no PIVOT transfer or gradient maps, shorter stage 1 and post-training) once per LLM-head width, the encoders
-- detached and probed (linear probe per attribute, segmentation probe) after stage 1, SFT and DPO.
--
--   pivot run recipes/llm_scaling.lua [--widths 64,128,256] [--seeds 2] [--jobs 3] [--out runs/llm_scaling] [--quick]
--
-- Writes OUT/report.md (the table per width, mean ± std over seeds, and the verdict), OUT/summary.json,
-- OUT/metrics_raw.jsonl and OUT/llm<W>/seed_K/. Other options as recipes/pivot.lua (pivot.pipeline.OVERRIDES).
local opts = ... or {}
local pipeline = require "pivot.pipeline"
opts.out = opts.out or "runs/llm_scaling"
return pipeline.scaling_main(opts, {script = arg and arg[0], exe = arg and arg[-1]})
