-- recipes/stage1.lua: stage 1 of the miniature PIVOT study (paper §3, LLaVA-OneVision recipe).
--   1a: the projector alone learns to map vision features into the LLM (captions, lr 1e-3);
--   1b: everything trains on captions + questions, the vision tower at 0.2x the lr (the paper's 2e-6 / 1e-5).
-- The result is the checkpoint that recipes/sft.lua and recipes/dpo.lua start from (--init DIR).
--
--   pivot run recipes/stage1.lua [--out runs/stage1] [--steps-1a 30] [--steps-1b 120] [--images 1000] [--seed 1]
--                                [--llm small|medium|large] [--preset tiny] [--backend cpu] [--threads 2] [--resume]
--                                [--stage0-steps N]   (first: contrastive pretraining of the vision tower, pivot.pretrain)
--   real data: --data stage1.jsonl --image-root DIR (--tokenizer tokenizer.json | --model DIR)
--   PIVOT transfer: --vision-from CKPT [--freeze-vision true|false]: the vision tower's weights from CKPT (a pivot
--     checkpoint such as runs/dpo/final, a folder with a HF vision/ subfolder, or a HF SiglipVisionModel folder),
--     the LLM and projector from --model (or fresh); the tower stays frozen in 1a and 1b (--freeze-vision, the
--     default with --vision-from), so stage 1 trains the projector, then projector + LLM (pivot.study.load_vision).
--
-- Writes OUT/model.safetensors, OUT/config.json, OUT/tokenizer.json, OUT/metrics.jsonl (1a and 1b lines, with a
-- "stage" field) and each sub-stage's trainer folder (OUT/stage1a, OUT/stage1b: metrics and resumable checkpoints).
local opts = ... or {}
local study = require "pivot.study"

local out = opts.out or "runs/stage1"
local r = study.run_stage1(opts, out)

local a, b = r.stage1a, r.stage1b
print(string.format("stage1: 1a %d steps loss %.4f -> %.4f, 1b %d steps loss %.4f -> %.4f (first/last 5 steps); " ..
  "%d + %d examples; %.1f s; checkpoint %s", a.steps, a.loss_first5 or 0 / 0, a.loss_last5 or 0 / 0, b.steps,
  b.loss_first5 or 0 / 0, b.loss_last5 or 0 / 0, r.examples_1a, r.examples_1b, r.seconds, r.dir))
