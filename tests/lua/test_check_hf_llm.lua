-- Tests of the LLM side against the Hugging Face fixtures (../shared/fixtures/hf): Qwen2 (logits, loss, hidden
-- states, every gradient, inputs_embeds, position_ids), the MLLM (vision features, image embeddings, logits, SFT
-- loss and gradients, DPO log-probs/rewards/loss/gradients, one AdamW step), the tokenizer (golden ids, tokens and
-- decodes; a broken merge list is an error naming "merges"), plus the chat template, the placeholder splicing of
-- pivot.models.mllm and module errors. Prints the max error per group. Raises on failure (the fixtures are
-- required: a missing fixture directory fails).
local pv = require "pivot"
local chk = require "pivot.check_hf_llm"
local chat = require "pivot.chat"
local json = require "pivot.json"

local T = require("pivot.testing").suite("check_hf_llm")
local function case(name, fn) T:case(name, fn) end

local function fixture_root()
  local candidates = {"../shared/fixtures/hf", (pv.source_dir or ".") .. "/../shared/fixtures/hf"}
  for _, c in ipairs(candidates) do
    local f = io.open(c .. "/qwen2_tied/config.json", "rb")
    if f then
      f:close()
      return c
    end
  end
  error("the reference fixtures are missing (looked for ../shared/fixtures/hf relative to the project root)", 0)
end
local ROOT = fixture_root()

local function all_ok(rows, what)
  assert(#rows > 0, what .. ": no rows")
  local bad = {}
  for _, r in ipairs(rows) do
    if not r.ok then
      bad[#bad + 1] = string.format("%s err=%s tol=%s %s", r.group, tostring(r.err), tostring(r.tol), r.note or "")
    end
  end
  print(what .. ": max error per group")
  print(chk.format_max_errors(rows))
  if #bad > 0 then error(what .. ": " .. #bad .. " rows over tolerance:\n  " .. table.concat(bad, "\n  "), 2) end
end

local function has_kind(rows, kind, n)
  local c = 0
  for _, r in ipairs(rows) do if r.kind == kind then c = c + 1 end end
  assert(c >= (n or 1), string.format("expected at least %d rows of kind %s, got %d", n or 1, kind, c))
end

case("qwen2_tied: logits, loss, hidden states, gradients, inputs_embeds, position_ids", function()
  local rows = chk.check_qwen2(ROOT .. "/qwen2_tied", {threads = 2})
  all_ok(rows, "qwen2_tied")
  for _, k in ipairs {"logits", "loss", "hidden_states", "grad", "inputs_embeds.logits", "position_ids.logits"} do
    has_kind(rows, k)
  end
  has_kind(rows, "hidden_states", 3)
end)

case("mllm: vision features, logits, SFT, DPO, AdamW", function()
  local rows = chk.check_mllm(ROOT .. "/mllm", {threads = 2})
  all_ok(rows, "mllm")
  for _, k in ipairs {"vision_features", "image_embeds", "logits", "sft.loss", "sft.grad", "sft.grad_norm",
    "dpo.logps", "dpo.rewards", "dpo.loss", "dpo.grad", "adamw1", "adamw1.update", "adamw1.zero_grad_ulp"} do
    has_kind(rows, k)
  end
  local m = rows.dpo_metrics
  for _, name in ipairs {"rewards/chosen", "rewards/rejected", "rewards/accuracies", "rewards/margins",
    "logps/chosen", "logps/rejected"} do
    assert(type(m[name]) == "number", "metric " .. name)
  end
end)

case("tokenizer: golden ids, tokens, decodes; broken merges", function()
  local rows = chk.check_tokenizer(ROOT .. "/tokenizer", {threads = 1})
  all_ok(rows, "tokenizer")
  has_kind(rows, "tokenizer.ids", 5)
  has_kind(rows, "tokenizer.decode_partial", 1)
  has_kind(rows, "tokenizer.broken_merges", 2)
end)

case("a tokenizer.json with a broken merge list fails with an error naming merges", function()
  local f = assert(io.open(ROOT .. "/tokenizer/tokenizer.json", "rb"))
  local text = f:read("*a")
  f:close()
  local _, b = text:find('"merges"%s*:%s*%[')
  assert(b, "no merges list")
  local path = os.tmpname()
  local out = assert(io.open(path, "wb"))
  out:write(text:sub(1, b) .. '["a b c"],' .. text:sub(b + 1))
  out:close()
  local ctx = pv.context{threads = 1}
  local ok, err = pcall(ctx.tokenizer, ctx, path)
  os.remove(path)
  assert(not ok, "a broken merge list loaded without error")
  assert(tostring(err):find("merges", 1, true), "error does not name merges: " .. tostring(err))
end)

case("chat template: prompt ids match the tokenizer's golden encoding; labels", function()
  local ctx = pv.context{threads = 1}
  local tok = ctx:tokenizer(ROOT .. "/tokenizer/tokenizer.json")
  local golden = json.read_file(ROOT .. "/tokenizer/golden.json")
  local want
  for _, c in ipairs(golden) do
    if c.text == "<|im_start|>user\n<|image_pad|>What color is the circle?<|im_end|>\n<|im_start|>assistant\n" then
      want = c.ids
    end
  end
  assert(want, "golden case with the chat prompt not found")
  local s = chat.build(tok, "What color is the circle?", "Red.", {system = false, image_token = "<|image_pad|>",
    image_newline = ""})
  assert(s.prompt_len == #want, "prompt length " .. s.prompt_len .. " vs " .. #want)
  for i = 1, #want do assert(s.ids[i] == want[i], "prompt id " .. i) end
  assert(s.image_pos == 4 and s.ids[s.image_pos + 1] == tok:token_to_id("<|image_pad|>"), "image_pos")
  local comp = tok:encode("Red.<|im_end|>\n")
  assert(#s.ids == #want + #comp and #s.labels == #s.ids, "lengths")
  for i = 1, s.prompt_len do assert(s.labels[i] == -100, "prompt label " .. i) end
  for i = 1, #comp do assert(s.labels[s.prompt_len + i] == comp[i] and s.ids[s.prompt_len + i] == comp[i]) end
  -- the paper's default: system message, "<image>\n" placeholder (one id, here <|image_pad|>'s)
  local d = chat.build(tok, "How many?", "Two.")
  assert(d.text == "<|im_start|>system\nYou are a helpful assistant.<|im_end|>\n<|im_start|>user\n<image>\n" ..
    "How many?<|im_end|>\n<|im_start|>assistant\nTwo.<|im_end|>\n", d.text)
  local pre = tok:encode("<|im_start|>system\nYou are a helpful assistant.<|im_end|>\n<|im_start|>user\n")
  assert(d.image_pos == #pre, "image_pos " .. tostring(d.image_pos))
  assert(d.ids[d.image_pos + 1] == tok:token_to_id("<|image_pad|>"), "placeholder id")
  assert(d.ids[1] == tok:token_to_id("<|im_start|>"), "starts with <|im_start|>")
  -- prefix mode (no image text) and batching with right padding
  local p = chat.build(tok, "Q?", "A.", {image_token = false})
  assert(p.image_pos == nil and not p.text:find("<image>", 1, true))
  local bt = chat.batch({d, p}, nil, {pad_id = 0})
  assert(bt.Lt == math.max(#d.ids, #p.ids) and #bt.ids == 2 * bt.Lt and #bt.labels == 2 * bt.Lt)
  assert(bt.labels[bt.Lt + #p.ids + 1] == -100 or #p.ids == bt.Lt, "padding is ignored")
  local ok, err = pcall(chat.batch, {d}, 3)
  assert(not ok and tostring(err):find("bucket", 1, true), tostring(err))
end)

case("mllm placeholder splicing: layout, prefix equivalence, labels", function()
  local mllm = require "pivot.models.mllm"
  local ctx = pv.context{threads = 2}
  local dir = ROOT .. "/mllm"
  local setup = json.read_file(dir .. "/setup.json")
  local m = mllm.new(ctx, setup)
  m:load(dir .. "/policy.safetensors")
  local golden = ctx:open_safetensors(dir .. "/golden.safetensors")
  local ids = golden:read_table("chosen.input_ids")
  local info = golden:info("chosen.input_ids")
  local B, Lt = info.shape[1], info.shape[2]
  local N = m.num_image_tokens
  -- rows: the golden text with a placeholder (id 1) at position 0 (== prefix mode) and at position 3
  local PH = 1
  local g = ctx:graph()
  local px = g:input("px", golden:info("pixel_values").shape)
  local x0 = g:input("ids0", {B, Lt + 1}, "i64")
  local o0 = m:forward(g, {pixel_values = px, input_ids = x0, image_pos = 0})
  local x1 = g:input("ids1", {B, Lt + 1}, "i64")
  local pos1 = {3, 5}
  local o1 = m:forward(g, {image_embeds = o0.image_embeds, input_ids = x1, image_pos = pos1})
  for _, t in ipairs {o0.logits, o1.inputs_embeds, o0.image_embeds} do t:mark_output() end
  local plan = g:compile{backend = "cpu"}
  local a0, a1 = {}, {}
  for b = 0, B - 1 do
    a0[#a0 + 1] = PH
    for t = 1, Lt do a0[#a0 + 1] = ids[b * Lt + t] end
    for t = 1, Lt do
      if t - 1 == pos1[b + 1] then a1[#a1 + 1] = PH end
      a1[#a1 + 1] = ids[b * Lt + t]
    end
    if pos1[b + 1] == Lt then a1[#a1 + 1] = PH end
  end
  plan:write(px, (golden:read("pixel_values", "f64")), "f64")
  plan:run{[x0] = a0, [x1] = a1}
  -- placeholder at 0 is the prefix layout: the golden chosen logits
  local ref, n = golden:read("chosen.logits", "f64")
  local err = chk.rel_err(plan:read_raw(o0.logits, "f64"), ref, n)
  assert(err < 1e-5, "placeholder-at-0 logits vs golden: " .. err)
  -- layout of the spliced embeddings: row b = text[:p], image b, text[p:]
  local H = m.hidden
  local L = Lt + N
  local emb = plan:read(o1.inputs_embeds)
  local img = plan:read(o0.image_embeds)
  local E = m.llm.model:child("embed_tokens")._pmap.weight.var:read()
  assert(#emb == B * L * H, "inputs_embeds size")
  for b = 0, B - 1 do
    local p = pos1[b + 1]
    for t = 0, L - 1 do
      local want
      for k = 0, H - 1, 17 do
        if t < p then want = E[ids[b * Lt + t + 1] * H + k + 1]
        elseif t < p + N then want = img[(b * N + (t - p)) * H + k + 1]
        else want = E[ids[b * Lt + (t - N) + 1] * H + k + 1] end
        local got = emb[(b * L + t) * H + k + 1]
        assert(math.abs(got - want) <= 1e-6 * math.max(1, math.abs(want)),
          string.format("row %d pos %d ch %d: %g vs %g", b, t, k, got, want))
      end
    end
  end
  -- labels: -100 on the image positions
  local lab, Ls = mllm.splice_labels({{5, 6, 7}, {8, 9, 10}}, 2, 3, 2, {1, 0})
  assert(Ls == 4 and table.concat(lab, ",") == "5,-100,-100,7,-100,-100,9,10", table.concat(lab, ","))
  local lp, Lp = mllm.splice_labels({1, 2, 3, 4}, 2, 2, 3)
  assert(Lp == 5 and table.concat(lp, ",") == "-100,-100,-100,1,2,-100,-100,-100,3,4", table.concat(lp, ","))
end)

case("module structure, init, freezing and errors with module paths", function()
  local qwen2 = require "pivot.models.qwen2"
  local projector = require "pivot.models.projector"
  local ctx = pv.context{threads = 1, seed = 3}
  local cfg = {vocab_size = 32, hidden_size = 16, intermediate_size = 24, num_hidden_layers = 2,
    num_attention_heads = 4, num_key_value_heads = 2, rms_norm_eps = 1e-6, rope_theta = 10000,
    tie_word_embeddings = false, initializer_range = 0.02}
  local m = qwen2.new(ctx, "llm", cfg)
  assert(ctx:find_var("llm.lm_head.weight"), "untied lm_head")
  assert(ctx:find_var("llm.model.layers.1.self_attn.q_proj.bias"), "q bias")
  assert(not ctx:find_var("llm.model.layers.1.self_attn.o_proj.bias"), "no o_proj bias")
  assert(not ctx:find_var("llm.model.layers.0.mlp.up_proj.bias"), "no mlp bias")
  local nw = ctx:find_var("llm.model.norm.weight"):read()
  assert(nw[1] == 1 and nw[16] == 1, "norm init ones")
  local qb = ctx:find_var("llm.model.layers.0.self_attn.q_proj.bias"):read()
  assert(qb[1] == 0, "bias init zero")
  local w = ctx:find_var("llm.model.layers.0.mlp.up_proj.weight"):read()
  local s2 = 0
  for i = 1, #w do s2 = s2 + w[i] * w[i] end
  local std = math.sqrt(s2 / #w)
  assert(std > 0.015 and std < 0.025, "init std " .. std)
  local p = projector.new(ctx, "projector", 8, 16, 16)
  assert(ctx:find_var("projector.0.weight") and ctx:find_var("projector.2.bias"), "projector names")
  -- a forward with a wrong inputs_embeds shape names the module
  local g = ctx:graph()
  local bad = g:input("e", {1, 3, 15})
  local ok, err = pcall(m.forward, m, g, {inputs_embeds = bad})
  assert(not ok and tostring(err):find("llm", 1, true) and tostring(err):find("[1, 3, 15]", 1, true), tostring(err))
  local ok2, err2 = pcall(p.forward, p, g, bad)
  assert(not ok2 and tostring(err2):find("projector", 1, true), tostring(err2))
  -- frozen: no gradient reaches frozen vars
  m:freeze()
  local g2 = ctx:graph()
  local ids = g2:input("ids", {1, 4}, "i64")
  local x = g2:input("x", {1, 4, 8})
  local h = p:forward(g2, x)
  local out = m:forward(g2, {inputs_embeds = h})
  local loss = out.logits:sumsq()
  g2:backward(loss)
  assert(g2:grad(g2:use(ctx:find_var("projector.0.weight"))), "projector trainable")
  assert(not g2:grad(g2:use(ctx:find_var("llm.model.norm.weight"))), "llm frozen")
  local _ = ids
end)

T:finish()
