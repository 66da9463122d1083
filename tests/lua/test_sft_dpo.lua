-- Tests of lua/pivot/study.lua and recipes/{stage1,sft,dpo}.lua on the built-in world with a tiny model: SFT and
-- DPO reduce their loss, DPO's rewards/accuracies rise above 0.5, the first DPO loss with policy == reference is
-- log 2 (ipo and hinge: their values at h = 0), SFT and DPO see the same pairs at every step, the loader resumes
-- exactly, the recipes run end to end (with and without --init, in-memory reference and --ref-cache) and write
-- metrics.jsonl, and the JSONL + PNG data path (w:write_dataset, then --data) trains. Run by ctest as
-- `pivot run tests/lua/test_sft_dpo.lua`.
local pv = require "pivot"
local study = require "pivot.study"
local json = require "pivot.json"
local data = require "pivot.data"
local log = require "pivot.train.log"

local testing = require "pivot.testing"
local T = testing.suite("test_sft_dpo")
local function case(name, fn) return T:case(name, fn) end
local near = testing.near -- near(a, b, tol, what): |a - b| <= tol * max(1, |b|)

local TMP = testing.tmpdir("sft_dpo")
local T0 = log.now()

local function read_jsonl(path)
  local r = {}
  for line in io.lines(path) do r[#r + 1] = json.decode(line) end
  return r
end
local function run_recipe(name, opts)
  local f = assert(loadfile(pv.source_dir .. "/recipes/" .. name .. ".lua"))
  return f(opts)
end

-- a tiny model and the world's pairs, shared by the cases; every training case starts from INIT
local ctx0 = pv.context{threads = 2, seed = 3}
local env0 = study.world(ctx0, {out_dir = TMP})
local CFG = study.mini_config{preset = "tiny", vocab_size = env0.vocab_size}
local INIT = TMP .. "/init"
study.save_checkpoint(ctx0, study.model(ctx0, CFG), INIT, {tokenizer_path = env0.tokenizer_path,
  extra = {world = env0.world_cfg}})
local PAIRS = study.world_pairs(env0, {count = 24})

local function fresh()
  local ctx = pv.context{threads = 2, seed = 3}
  local model = study.load_model(ctx, INIT)
  return ctx, model
end

case("mini_config sizes and encode_sample (placeholder and prefix modes)", function()
  local cfg = study.mini_config{vocab_size = 499}
  assert(cfg.vision.image_size == 32 and cfg.vision.patch_size == 4 and cfg.vision_feature_layer == -2)
  assert(cfg.llm.vocab_size == 499 and cfg.llm.tie_word_embeddings and cfg.llm.num_key_value_heads < cfg.llm.num_attention_heads)
  assert(cfg.projector[1] == cfg.vision.hidden_size and cfg.projector[3] == cfg.llm.hidden_size)
  local big = study.mini_config{vocab_size = 499, llm = "large"}
  assert(big.llm.hidden_size > cfg.llm.hidden_size and big.vision.hidden_size == cfg.vision.hidden_size)
  local m = study.model(ctx0, cfg, {prefix = "sizecheck"})
  assert(m.num_image_tokens == 64, "64 image tokens")
  local s = study.encode_sample(env0.tok, "<image>\nWhat color is the circle?", "red")
  assert(s.image_pos and s.ids[s.image_pos + 1] == env0.tok:token_to_id("<image>"))
  local n = 0
  for _, id in ipairs(s.ids) do if id == env0.tok:token_to_id("<image>") then n = n + 1 end end
  assert(n == 1, "one placeholder")
  assert(s.labels[#s.labels] ~= -100 and s.labels[s.prompt_len] == -100)
  local p = study.encode_sample(env0.tok, "<image>\nWhat color is the circle?", "red", {image_mode = "prefix"})
  assert(p.image_pos == nil and #p.ids == #s.ids - 2, "prefix mode drops the <image> id and its newline")
end)

case("buckets: at most max_buckets lengths, every example fits, each bucket fills a batch", function()
  local b = study.choose_buckets(PAIRS, 3, 8)
  assert(#b >= 1 and #b <= 3)
  local count = {}
  for _, ex in ipairs(PAIRS) do
    local k
    for _, L in ipairs(b) do if L >= ex.len then k = L break end end
    assert(k, "an example longer than every bucket")
    count[k] = (count[k] or 0) + 1
  end
  for _, L in ipairs(b) do assert(count[L] >= 8, "bucket " .. L .. " has fewer than a batch") end
end)

case("loader: SFT and DPO batch the same pairs; state/restore resumes exactly", function()
  local a = study.loader(ctx0, PAIRS, {batch_size = 4, mode = "pair_sft", seed = 5})
  local d = study.loader(ctx0, PAIRS, {batch_size = 4, mode = "dpo", seed = 5})
  local seq = {}
  for i = 1, 12 do
    local x, y = a:next(), d:next()
    assert(table.concat(x.indices, ",") == table.concat(y.indices, ","), "SFT and DPO see different pairs")
    assert(x.bucket.len == y.bucket.len and #y.feeds.input_ids == 2 * #x.feeds.input_ids)
    seq[i] = table.concat(y.indices, ",")
    if i == 5 then d._saved = d:state() end
  end
  local r = study.loader(ctx0, PAIRS, {batch_size = 4, mode = "dpo", seed = 5}):restore(json.decode(json.encode(d._saved)))
  for i = 6, 12 do assert(table.concat(r:next().indices, ",") == seq[i], "resumed order differs at " .. i) end
end)

case("SFT on the chosen answers: the loss goes down", function()
  local ctx, model = fresh()
  local r = study.sft(ctx, model, PAIRS, {steps = 30, lr = 2e-3, batch_size = 8, seed = 1, print_every = 0,
    out_dir = TMP .. "/sft_unit"})
  print(string.format("     sft loss %.3f -> %.3f, %.2f steps/s", r.loss_first5, r.loss_last5, r.steps_per_second))
  assert(r.loss_last5 < r.loss_first5 - 0.5, "the SFT loss did not go down")
  local lines = read_jsonl(TMP .. "/sft_unit/metrics.jsonl")
  local steps = 0
  for _, l in ipairs(lines) do if l.step and l.loss then steps = steps + 1 assert(l.grad_norm and l.learning_rate) end end
  assert(steps == 30, "30 metric lines, got " .. steps)
end)

case("DPO: first loss log 2 (policy == reference), loss goes down, rewards/accuracies > 0.5", function()
  local ctx, model = fresh()
  local acc = {}
  local few = {} -- a few pairs seen several times (the paper trains 3 epochs), so the training loss can fall
  for i = 1, 48 do few[i] = PAIRS[i] end
  local r = study.dpo(ctx, model, few, {steps = 24, lr = 5e-3, batch_size = 8, seed = 1, print_every = 0,
    out_dir = TMP .. "/dpo_unit"})
  near(r.losses[1], math.log(2), 1e-6, "first DPO loss")
  local lines = read_jsonl(TMP .. "/dpo_unit/metrics.jsonl")
  for _, l in ipairs(lines) do
    if l.step and l.loss then
      for _, k in ipairs {"rewards/chosen", "rewards/rejected", "rewards/accuracies", "rewards/margins", "logps/chosen",
        "logps/rejected", "loss", "grad_norm", "learning_rate"} do
        assert(type(l[k]) == "number", "metrics.jsonl misses " .. k)
      end
      acc[#acc + 1] = l["rewards/accuracies"]
    end
  end
  local late = 0
  for i = #acc - 7, #acc do late = late + acc[i] / 8 end
  print(string.format("     dpo loss %.4f -> %.4f, rewards/accuracies (last 8 steps) %.2f, %.2f steps/s", r.loss_first5,
    r.loss_last5, late, r.steps_per_second))
  assert(r.loss_last5 < r.loss_first5 - 0.05, "the DPO loss did not go down")
  assert(late > 0.5, "rewards/accuracies did not rise above 0.5")
end)

case("DPO loss types at h = 0: ipo 1/(2 beta)^2, hinge 1, mpo finite; all train", function()
  for _, t in ipairs {{"ipo", 25}, {"hinge", 1}, {"mpo"}} do
    local ctx, model = fresh()
    local r = study.dpo(ctx, model, PAIRS, {steps = 2, lr = 1e-3, batch_size = 4, seed = 1, print_every = 0,
      loss_type = t[1]})
    if t[2] then near(r.losses[1], t[2], 1e-5, t[1] .. " first loss") end
    for _, l in ipairs(r.losses) do assert(l == l and l < math.huge, t[1] .. ": loss not finite") end
    if t[1] == "mpo" then assert(r.last["losses/sft"] and r.last["losses/bco_pair"], "mpo logs its terms") end
  end
end)

case("recipes: stage1 (with a 2-step stage 0) -> sft / dpo (--init, --ref-cache), and dpo without --init; metrics.jsonl written", function()
  local common = {preset = "tiny", images = 6, threads = 2, seed = 2}
  local function with(t)
    local o = {}
    for k, v in pairs(common) do o[k] = v end
    for k, v in pairs(t) do o[k] = v end
    return o
  end
  run_recipe("stage1", with{out = TMP .. "/r/stage1", steps_1a = 2, steps_1b = 3, images = 20, stage0_steps = 2})
  assert(data.file_exists(TMP .. "/r/stage1/model.safetensors") and data.file_exists(TMP .. "/r/stage1/config.json"))
  assert(#read_jsonl(TMP .. "/r/stage1/metrics.jsonl") >= 5)
  run_recipe("sft", with{init = TMP .. "/r/stage1", out = TMP .. "/r/sft", steps = 3})
  run_recipe("dpo", with{init = TMP .. "/r/stage1", out = TMP .. "/r/dpo", steps = 3, ref_cache = true, eval = 3})
  run_recipe("dpo", with{out = TMP .. "/r/dpo2", steps = 2, stage1_steps = 2, loss = "ipo"})
  for _, d in ipairs {"sft", "dpo", "dpo2"} do
    local n = 0
    for _, l in ipairs(read_jsonl(TMP .. "/r/" .. d .. "/metrics.jsonl")) do if l.step and l.loss then n = n + 1 end end
    assert(n == (d == "dpo2" and 2 or 3), d .. ": metrics.jsonl has " .. n .. " step lines")
    assert(data.file_exists(TMP .. "/r/" .. d .. "/final/model.safetensors"), d .. ": no final checkpoint")
  end
  assert(data.file_exists(TMP .. "/r/dpo/ref_logps.safetensors"), "--ref-cache wrote no cache")
  assert(data.file_exists(TMP .. "/r/dpo2/stage1/model.safetensors"), "no short stage 1 without --init")
  -- resume: the finished run resumes at its last step and trains nothing more
  run_recipe("sft", with{init = TMP .. "/r/stage1", out = TMP .. "/r/sft", steps = 3, resume = true})
  -- the final checkpoint loads
  local ctx = pv.context{threads = 1}
  assert(study.load_model(ctx, TMP .. "/r/dpo/final").num_image_tokens == 64)
end)

case("real-data path: w:write_dataset (JSONL + PNG) then --data trains sft and dpo", function()
  local ds = env0.world:write_dataset(TMP .. "/ds", 7, 0, 6)
  local o = {init = TMP .. "/init", data = ds.dpo, image_root = TMP .. "/ds", steps = 2, preset = "tiny", threads = 2}
  o.out = TMP .. "/ds_dpo"
  run_recipe("dpo", o)
  o.out, o.data = TMP .. "/ds_sft", ds.sft
  run_recipe("sft", o)
  for _, d in ipairs {"ds_dpo", "ds_sft"} do
    assert(#read_jsonl(TMP .. "/" .. d .. "/metrics.jsonl") >= 2, d .. ": no metrics")
  end
  -- the reference is a second model loaded from the same checkpoint: the first loss is log 2
  near(read_jsonl(TMP .. "/ds_dpo/metrics.jsonl")[1].loss, math.log(2), 1e-6, "first DPO loss (reference from --init)")
  -- the JSONL images equal the world's (PNG round trip of the 8-bit image), so the data paths agree
  local ex = study.jsonl_examples(ds.dpo)
  assert(#ex == ds.n_pairs and type(ex[1].image) == "string" and ex[1].chosen)
end)

case("--model with Hugging Face folders (vision/ SigLIP + llm/ Qwen2, the fixtures) loads, projector fresh", function()
  local fx = pv.source_dir .. "/../shared/fixtures/hf"
  assert(data.file_exists(fx .. "/siglip/model.safetensors"), "fixtures not found at " .. fx)
  local dir = TMP .. "/hfmodel"
  data.mkdir(dir)
  os.execute(string.format("ln -s '%s/siglip' '%s/vision' && ln -s '%s/qwen2_tied' '%s/llm'", fx, dir, fx, dir))
  local ctx = pv.context{threads = 1}
  local m, cfg = study.load_model(ctx, dir)
  assert(m.num_image_tokens == 16 and cfg.projector[1] == 64 and cfg.llm.vocab_size == 320)
  local st = ctx:open_safetensors(fx .. "/qwen2_tied/model.safetensors")
  local want = st:read_table("model.norm.weight")
  local got = m.llm.model:child("norm")._pmap.weight.var:read()
  for i = 1, #want do assert(got[i] == want[i], "llm weights not loaded") end
  -- built with deferred init: the loaded weights are the checkpoint's, the fresh projector still got its random init
  local pw = m.projector:parameters()[1].var:read()
  local nz = 0
  for i = 1, #pw do if pw[i] ~= 0 then nz = nz + 1 end end
  assert(nz > #pw / 2, "the fresh projector was left zero-filled")
  -- and it saves as a pivot checkpoint that loads back
  study.save_checkpoint(ctx, m, TMP .. "/hfmodel_pivot")
  local m2 = study.load_model(pv.context{threads = 1}, TMP .. "/hfmodel_pivot")
  assert(m2:num_parameters() == m:num_parameters())
end)

os.execute("rm -rf '" .. TMP .. "'")
print(string.format("total %.1f s", log.now() - T0))
T:finish()
