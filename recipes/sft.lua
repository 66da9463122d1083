-- recipes/sft.lua: supervised fine-tuning of the mini MLLM on the chosen answers of the preference pairs (the
-- paper's SFT arm: same images, prompts and steps as DPO; all parameters train).
--
--   pivot run recipes/sft.lua [--init runs/stage1] [--out runs/sft] [--steps 40] [--lr 5e-4] [--batch-size 8]
--                             [--images 150] [--seed 1] [--eval 40] [--backend cpu] [--threads 2] [--resume]
--   real data: --data dpo.jsonl (or sft.jsonl) --image-root DIR [--model DIR] [--tokenizer FILE]
--
-- Without --init (or --model) a short stage 1 runs first into OUT/stage1 (--stage1-steps N). Writes
-- OUT/metrics.jsonl (loss, grad_norm, learning_rate, num_tokens per step), OUT/checkpoint-N (resumable),
-- OUT/final (the trained model) and OUT/summary.json; prints a summary line.
local opts = ... or {}
local study = require "pivot.study"

local out = opts.out or "runs/sft"
local run = study.setup(opts, out)
print(string.format("sft: %d examples from %s, %d parameters", #run.examples, run.init, run.model:num_parameters()))

local r = study.sft(run.ctx, run.model, run.examples, {out_dir = out, steps = tonumber(opts.steps), lr = tonumber(opts.lr),
  batch_size = tonumber(opts.batch_size), seed = run.seed, backend = opts.backend, threads = tonumber(opts.threads),
  resume = opts.resume, tok = run.env.tok})

study.finish(run, r, out, "sft")
