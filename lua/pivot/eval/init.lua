-- pivot.eval: measuring a (detached) vision encoder and an MLLM.
--
--   local eval = require "pivot.eval"
--   eval.probe.linear(ctx, tower, train_items, test_items, opts)   -- linear probe top-1 (pivot.eval.probe)
--   eval.seg.linear(ctx, tower, train_items, test_items, opts)     -- segmentation probe recall / mIoU (pivot.eval.seg)
--   eval.gradmap.compute(ctx, model, tok, item, {loss = "sft"|"dpo"}) and eval.gradmap.panel(...)  (pivot.eval.gradmap)
--   eval.vqa.evaluate(ctx, model, tok, items, opts)                -- VQA accuracy by question type (pivot.eval.vqa)
--   eval.features(ctx, tower, items, opts)                         -- frozen features (probe.features)
local M = {}

M.probe = require "pivot.eval.probe"
M.seg = require "pivot.eval.seg"
M.gradmap = require "pivot.eval.gradmap"
M.vqa = require "pivot.eval.vqa"
M.features = M.probe.features

return M
