-- pivot.check_hf: `pivot check-hf DIR [--backend NAME] [--threads N] [--verbose]`
--
-- Recomputes everything a reference directory's golden file holds and prints, per group, the relative L2
-- error ‖ours − ref‖ / ‖ref‖ and its tolerance; raises an error (non-zero exit) when any group is over.
-- The layout is detected from the files:
--   config.json model_type siglip_vision_model   -> SigLIP (checked here)
--   config.json model_type siglip2_vision_model  -> SigLIP2 NaFlex (checked here)
--   config.json model_type qwen2                 -> require("pivot.check_hf_llm").check_qwen2
--   setup.json + policy.safetensors              -> require("pivot.check_hf_llm").check_mllm
--   tokenizer.json + golden.json                 -> require("pivot.check_hf_llm").check_tokenizer
-- Every check returns a list of rows {group, err, tol, ok [, note]}. Sizes come from config.json and the
-- golden tensors, never from constants here.
local pv = require "pivot"
local hf = require "pivot.hf"

local M = {}

M.TOL = {forward = 1e-5, rewards = 1e-4, grad = 1e-4}

---------------------------------------------------------------------------------------------------- helpers
-- relative L2 error of two double arrays of n elements; also returns ‖a − b‖ and ‖b‖
function M.rel_err(a, b, n, ao, bo)
  ao, bo = ao or 0, bo or 0
  local d2, r2 = 0, 0
  for i = 0, n - 1 do
    local x, y = a[ao + i], b[bo + i]
    d2 = d2 + (x - y) * (x - y)
    r2 = r2 + y * y
  end
  local d, r = math.sqrt(d2), math.sqrt(r2)
  if r == 0 then return d, d, r end
  return d / r, d, r
end

function M.row(group, err, tol, note)
  return {group = group, err = err, tol = tol, ok = (err == err) and err <= tol, note = note}
end

local function shape_eq(a, b)
  if #a ~= #b then return false end
  for i = 1, #a do if a[i] ~= b[i] then return false end end
  return true
end

-- compares output t of plan with golden tensor `name`; appends a row
function M.compare(rows, plan, t, golden, name, tol, group)
  local info = golden:info(name)
  if not shape_eq(info.shape, t.shape) then
    pv.raise(string.format("%s: golden shape %s, ours %s", name, hf.shape_str(info.shape), hf.shape_str(t.shape)))
  end
  local ref, n = golden:read(name, "f64")
  local ours = plan:read_raw(t, "f64")
  local err = M.rel_err(ours, ref, n)
  rows[#rows + 1] = M.row(group or name, err, tol)
  return err
end

local function open_golden(ctx, dir)
  local path = hf.join(dir, "golden.safetensors")
  if not hf.file_exists(path) then pv.raise("check-hf: " .. dir .. " has no golden.safetensors") end
  return ctx:open_safetensors(path)
end

local function context(opts)
  local ctx = pv.context{seed = 1}
  if opts.threads then ctx:set_threads(tonumber(opts.threads)) end
  return ctx
end

local function input_from(g, plan_inputs, golden, name, dtype)
  local info = golden:info(name)
  local t = g:input(name, info.shape, dtype or info.dtype)
  plan_inputs[#plan_inputs + 1] = {t, name}
  return t
end

local function write_inputs(plan, golden, list)
  for _, e in ipairs(list) do
    local t, name = e[1], e[2]
    local info = golden:info(name)
    local int = info.dtype == "i64" or info.dtype == "i32"
    local buf = golden:read(name, int and "i64" or "f64")
    plan:write(t, buf, int and "i64" or "f64")
  end
end

-- gradient rows of a vision tower: every golden grad.<bare> (k_proj.bias / in_proj_bias key third use the
-- README's exception: ‖ours − ref‖ ≤ 1e-4 · ‖ref grad of the same layer's q_proj.bias‖)
local function vision_grad_rows(rows, plan, g, tower, golden)
  local plen = tower.prefix ~= "" and #tower.prefix + 2 or 1
  local tol = M.TOL.grad
  local params = tower:parameters()
  local have = {}
  for _, p in ipairs(params) do have[p.name:sub(plen)] = p end
  for _, gname in ipairs(golden:names()) do
    local bare = gname:match("^grad%.(.*)$")
    if bare and not have[bare] then pv.raise("check-hf: golden has " .. gname .. " but the tower has no " .. bare) end
  end
  for _, p in ipairs(params) do
    local bare = p.name:sub(plen)
    local gname = "grad." .. bare
    if golden:find(gname) then
      local node = g:param(p.var)
      local gt = g:grad(node)
      local ref, n = golden:read(gname, "f64")
      local ours
      if gt then ours = plan:read_raw(gt, "f64")
      else ours = pv.ffi.new("double[?]", n) end
      if bare:match("self_attn%.k_proj%.bias$") then
        local qname = gname:gsub("k_proj%.bias$", "q_proj.bias")
        local qref, qn = golden:read(qname, "f64")
        local _, qnorm = M.rel_err(qref, pv.ffi.new("double[?]", qn), qn)
        local _, d = M.rel_err(ours, ref, n)
        rows[#rows + 1] = M.row(gname, d / qnorm, tol, "‖Δ‖/‖grad q_proj.bias‖ (k bias grad is exactly 0)")
      elseif bare == "head.attention.in_proj_bias" then
        local D = math.floor(n / 3)
        local _, dq, rq = M.rel_err(ours, ref, D, 0, 0)
        local _, dk = M.rel_err(ours, ref, D, D, D)
        local _, dv, rv = M.rel_err(ours, ref, D, 2 * D, 2 * D)
        local rqv = math.sqrt(rq * rq + rv * rv)
        rows[#rows + 1] = M.row(gname .. "[q,v]", math.sqrt(dq * dq + dv * dv) / rqv, tol)
        rows[#rows + 1] = M.row(gname .. "[k]", dk / rq, tol, "‖Δ‖/‖grad q third‖ (k bias grad is exactly 0)")
      else
        rows[#rows + 1] = M.row(gname, (M.rel_err(ours, ref, n)), tol)
      end
    end
  end
end

---------------------------------------------------------------------------------------------------- SigLIP
-- the fixture's tower (module pivot.models.<kind>) with its weights, the golden file and the layer count
local function vision_fixture(dir, opts, kind)
  local ctx = context(opts)
  local cfg = hf.read_config(dir)
  local golden = open_golden(ctx, dir)
  local tower = require("pivot.models." .. kind).new(ctx, "vision", cfg, {})
  local ck = hf.open(ctx, dir)
  hf.load_vision_tower(ck, tower)
  ck:close()
  return ctx, golden, tower, hf.get(cfg, "num_hidden_layers", "number")
end

function M.check_siglip(dir, opts)
  opts = opts or {}
  local ctx, golden, tower, L = vision_fixture(dir, opts, "siglip")
  local g = ctx:graph()
  local inputs = {}
  local pix = input_from(g, inputs, golden, "pixel_values", "f32")
  local out = tower:forward(g, pix)
  local outputs = {}
  for i = 0, L do
    local name = "hidden_states." .. i
    if golden:find(name) then outputs[#outputs + 1] = {out.hidden_states[i + 1], name} end
  end
  outputs[#outputs + 1] = {out.last_hidden_state, "last_hidden_state"}
  local objective
  if out.pooler_output then
    outputs[#outputs + 1] = {out.pooler_output, "pooler_output"}
  end
  if golden:find("objective") and golden:find("objective.R") then
    local R = input_from(g, inputs, golden, "objective.R", "f32")
    objective = (out.last_hidden_state * R):sum_all()
    if out.pooler_output then objective = objective + out.pooler_output:sumsq() end
    outputs[#outputs + 1] = {objective, "objective"}
    g:backward(objective)
  end
  if objective then
    for _, p in ipairs(tower:parameters()) do
      local gt = g:grad(g:param(p.var))
      if gt then gt:mark_output() end
    end
  end
  for _, o in ipairs(outputs) do o[1]:mark_output() end
  local plan = g:compile{backend = opts.backend}
  write_inputs(plan, golden, inputs)
  plan:run()
  local rows = {}
  for _, o in ipairs(outputs) do M.compare(rows, plan, o[1], golden, o[2], M.TOL.forward) end
  if objective then vision_grad_rows(rows, plan, g, tower, golden) end
  return rows
end

---------------------------------------------------------------------------------------------------- SigLIP2 NaFlex
function M.check_siglip2(dir, opts)
  opts = opts or {}
  local ctx, golden, tower, L = vision_fixture(dir, opts, "siglip2")
  local shapes_flat, sshape = golden:read_table("spatial_shapes")
  local shapes = {}
  for b = 1, sshape[1] do shapes[b] = {shapes_flat[2 * b - 1], shapes_flat[2 * b]} end
  local g = ctx:graph()
  local inputs = {}
  local pix = input_from(g, inputs, golden, "pixel_values", "f32")
  local mask = input_from(g, inputs, golden, "pixel_attention_mask")
  local out = tower:forward(g, pix, mask, shapes)
  local outputs = {}
  for i = 0, L do
    local name = "hidden_states." .. i
    if golden:find(name) then outputs[#outputs + 1] = {out.hidden_states[i + 1], name} end
  end
  outputs[#outputs + 1] = {out.last_hidden_state, "last_hidden_state"}
  if out.pooler_output and golden:find("pooler_output") then
    outputs[#outputs + 1] = {out.pooler_output, "pooler_output"}
  end
  local objective
  if golden:find("objective") and golden:find("objective.R") then
    local R = input_from(g, inputs, golden, "objective.R", "f32")
    objective = (out.last_hidden_state * R):sum_all()
    if out.pooler_output then objective = objective + out.pooler_output:sumsq() end
    outputs[#outputs + 1] = {objective, "objective"}
    g:backward(objective)
    for _, p in ipairs(tower:parameters()) do
      local gt = g:grad(g:param(p.var))
      if gt then gt:mark_output() end
    end
  end
  for _, o in ipairs(outputs) do o[1]:mark_output() end
  local plan = g:compile{backend = opts.backend}
  write_inputs(plan, golden, inputs)
  plan:run(out.feeds)
  local rows = {}
  for _, o in ipairs(outputs) do M.compare(rows, plan, o[1], golden, o[2], M.TOL.forward) end
  if objective then vision_grad_rows(rows, plan, g, tower, golden) end
  return rows
end

---------------------------------------------------------------------------------------------------- dispatch
-- the layout of a reference directory: "siglip", "siglip2", "qwen2", "mllm", "tokenizer"
function M.detect(dir)
  if not hf.is_dir(dir) then pv.raise("check-hf: '" .. tostring(dir) .. "' is not a directory") end
  if hf.file_exists(hf.join(dir, "setup.json")) and hf.file_exists(hf.join(dir, "policy.safetensors")) then
    return "mllm"
  end
  if hf.file_exists(hf.join(dir, "tokenizer.json")) and hf.file_exists(hf.join(dir, "golden.json")) then
    return "tokenizer"
  end
  if hf.file_exists(hf.join(dir, "config.json")) then
    local cfg = hf.read_config(dir)
    local mt = cfg.model_type
    if mt == "siglip_vision_model" then return "siglip" end
    if mt == "siglip2_vision_model" then return "siglip2" end
    if mt == "qwen2" then return "qwen2" end
    pv.raise("check-hf: " .. dir .. "/config.json: unsupported model_type '" .. tostring(mt) ..
      "' (expected siglip_vision_model, siglip2_vision_model or qwen2)")
  end
  pv.raise("check-hf: cannot tell the layout of '" .. dir .. "' (expected config.json, setup.json + " ..
    "policy.safetensors, or tokenizer.json + golden.json)")
end

local function llm_module()
  local ok, mod = pcall(require, "pivot.check_hf_llm")
  if not ok then
    pv.raise("check-hf: the checks of Qwen2, MLLM and tokenizer directories live in pivot.check_hf_llm, which " ..
      "could not be loaded: " .. tostring(mod))
  end
  return mod
end

-- check_hf.run(dir, opts) -> rows, kind (no printing, no exit)
function M.run(dir, opts)
  opts = opts or {}
  local kind = M.detect(dir)
  local rows
  if kind == "siglip" then rows = M.check_siglip(dir, opts)
  elseif kind == "siglip2" then rows = M.check_siglip2(dir, opts)
  else
    local mod = llm_module()
    local fn = mod["check_" .. kind]
    if type(fn) ~= "function" then pv.raise("check-hf: pivot.check_hf_llm has no check_" .. kind) end
    rows = fn(dir, opts)
  end
  if type(rows) ~= "table" then pv.raise("check-hf: check_" .. kind .. " returned no rows") end
  return rows, kind
end

-- formats rows as a table; returns text, number of failed rows, max err/tol ratio
function M.format(rows)
  local w = 5
  for _, r in ipairs(rows) do w = math.max(w, #r.group) end
  local lines = {string.format("%-" .. w .. "s  %11s  %9s  %s", "group", "rel_err", "tol", "")}
  local nfail = 0
  for _, r in ipairs(rows) do
    if not r.ok then nfail = nfail + 1 end
    local err = type(r.err) == "number" and string.format("%11.3e", r.err) or string.format("%11s", tostring(r.err))
    local tol = type(r.tol) == "number" and string.format("%9.1e", r.tol) or string.format("%9s", tostring(r.tol))
    lines[#lines + 1] = string.format("%-" .. w .. "s  %s  %s  %s%s", r.group, err, tol, r.ok and "ok" or "FAIL",
      r.note and ("  (" .. r.note .. ")") or "")
  end
  return table.concat(lines, "\n"), nfail
end

-- max error per group kind (forward / grad / other) for summaries
function M.summary(rows)
  local s = {}
  for _, r in ipairs(rows) do
    local k = r.group:match("^grad%.") and "grad" or r.group:match("%.grad%.") and "grad" or "forward"
    if type(r.err) == "number" then s[k] = math.max(s[k] or 0, r.err) end
  end
  return s
end

function M.main(opts)
  opts = opts or {}
  local dir = opts.dir or opts[1]
  if not dir then pv.raise("usage: pivot check-hf DIR [--backend cpu|vulkan|ref] [--threads N]") end
  local rows, kind = M.run(dir, opts)
  local text, nfail = M.format(rows)
  print(string.format("check-hf %s (%s, backend %s)", dir, kind, opts.backend or os.getenv("PIVOT_BACKEND") or "cpu"))
  print(text)
  print(string.format("%d groups, %d over tolerance", #rows, nfail))
  if nfail > 0 then pv.raise(string.format("check-hf: %d of %d groups over tolerance in %s", nfail, #rows, dir)) end
  return 0
end

return M
