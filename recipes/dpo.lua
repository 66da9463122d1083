-- recipes/dpo.lua: direct preference optimisation of the mini MLLM (the paper's DPO arm, TRL's DPOTrainer):
-- sigmoid loss with beta 0.1 against a frozen copy of the starting point, all parameters trainable.
--
--   pivot run recipes/dpo.lua [--init runs/stage1] [--out runs/dpo] [--steps 40] [--lr 1e-4] [--batch-size 8]
--                             [--loss sigmoid|ipo|hinge|bco_pair|mpo] [--beta 0.1] [--ref-cache] [--images 150]
--                             [--seed 1] [--eval 40] [--backend cpu] [--threads 2] [--resume]
--   real data: --data dpo.jsonl --image-root DIR [--model DIR] [--tokenizer FILE]
--
-- --ref-cache: one forward pass computes the reference log-probs into OUT/ref_logps.safetensors before training,
-- so no second model is held in memory (the losses are the same). Without --init (or --model) a short stage 1
-- runs first into OUT/stage1. Writes OUT/metrics.jsonl (loss and TRL's rewards/* and logps/* per step),
-- OUT/checkpoint-N, OUT/final and OUT/summary.json; prints a summary line.
local opts = ... or {}
local study = require "pivot.study"

local out = opts.out or "runs/dpo"
local run = study.setup(opts, out)
local loss = opts.loss or "sigmoid"
print(string.format("dpo (%s, beta %g, reference %s): %d pairs from %s", loss, tonumber(opts.beta) or 0.1,
  opts.ref_cache and "cache" or "in memory", #run.examples, run.init))

local r = study.dpo(run.ctx, run.model, run.examples, {out_dir = out, steps = tonumber(opts.steps), lr = tonumber(opts.lr),
  batch_size = tonumber(opts.batch_size), seed = run.seed, backend = opts.backend, threads = tonumber(opts.threads),
  resume = opts.resume, tok = run.env.tok, loss_type = loss, beta = tonumber(opts.beta), ref_cache = opts.ref_cache,
  init = run.init}) -- the reference: a frozen second model loaded from the same checkpoint (or the cache)

local m = r.last or {}
study.finish(run, r, out, "dpo", string.format("rewards/accuracies %.3f, rewards/margins %.4f (last step)",
  m["rewards/accuracies"] or 0 / 0, m["rewards/margins"] or 0 / 0))
