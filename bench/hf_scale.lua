-- bench/hf_scale.lua: checkpoint loading and MLLM forward at the scale of the released models (random weights).
--
--   pivot run bench/hf_scale.lua --part PART [--dir DIR] [--cold] [--no-init] [--threads 2] [--runs 3]
--                                [--results FILE]
--
-- Parts (bench/hf_scale.sh runs each in its own process, so that peak RSS belongs to one measurement):
--   gen_qwen     --dir D: a random Qwen2.5-0.5B (Qwen2ForCausalLM shapes) as bf16 safetensors in transformers'
--                layout: D/qwen (config.json + model.safetensors) and D/qwen_sharded (config.json,
--                model.safetensors.index.json, model-0000{1,2}-of-00002.safetensors)
--   gen_siglip   --dir D: a random SigLIP2-B/16-224 vision tower (SiglipVisionModel layout, the FixRes one) as bf16:
--                D/siglip (config.json + model.safetensors)
--   load_qwen | load_qwen_sharded | load_siglip  --dir D [--cold] [--no-init]: builds the model from
--                config.json (f32 vars, random init), then hf.open + hf.load_params (timed), and reports the
--                seconds and peak RSS.
--                --cold first writes back and drops the files' pages from the page cache (fdatasync +
--                posix_fadvise DONTNEED), so the load reads the disk. --no-init creates the vars zero-filled from
--                the checkpoint's shapes before the model (whose constructor reuses them), skipping the random
--                init that hf.load_params overwrites anyway.
--   forward      SigLIP2-So400m/16-384 (26 of 27 layers run: feature layer -2) -> projector 1152->896->896 ->
--                Qwen2.5-0.5B over 576 image + 64 text tokens, batch 1, random weights, CPU backend; logits for
--                the 64 text positions only (qwen2 forward's logits_range). Compile time, first run, median of
--                --runs runs, plan peak bytes, peak RSS. --blas-core NAME only labels the row (bench/hf_scale.sh
--                sets OPENBLAS_CORETYPE=NAME for it).
--   forward_full the same through mllm's own forward (logits for all 640 positions).
--   table        --results FILE: prints the table of the RESULT lines in FILE.
-- Each part prints one line `RESULT {json}`.
local pv = require "pivot"
local hf = require "pivot.hf"
local json = require "pivot.json"
local ffi = require "ffi"

local opts = ... or {}
local PART = opts.part or error("--part is required (gen_qwen, gen_siglip, load_qwen, load_qwen_sharded, " ..
  "load_siglip, forward, forward_full, table)")
local THREADS = tonumber(opts.threads) or 2
local RUNS = tonumber(opts.runs) or 3

ffi.cdef [[
  typedef struct { long tv_sec; long tv_nsec; } hfs_timespec;
  int clock_gettime(int clk, hfs_timespec *ts);
  int open(const char *path, int flags, ...);
  int close(int fd);
  int fdatasync(int fd);
  int posix_fadvise(int fd, long offset, long len, int advice);
]]
local ts = ffi.new("hfs_timespec")
local function now()
  ffi.C.clock_gettime(1, ts) -- CLOCK_MONOTONIC
  return tonumber(ts.tv_sec) + tonumber(ts.tv_nsec) * 1e-9
end

-- /proc/self/status fields in MB (VmHWM = peak RSS, VmRSS, RssAnon, RssFile)
local function mem()
  local r = {}
  local f = io.open("/proc/self/status", "r")
  if not f then return r end
  for line in f:lines() do
    local k, v = line:match("^(%w+):%s+(%d+) kB")
    if k then r[k] = tonumber(v) / 1024 end
  end
  f:close()
  return r
end

local function file_size(path)
  local f = io.open(path, "rb")
  if not f then return nil end
  local n = f:seek("end")
  f:close()
  return n
end

local function emit(t)
  t.part = PART
  io.write("RESULT ", json.encode(t), "\n")
  io.flush()
end

local function round(x, d)
  local m = 10 ^ (d or 3)
  return math.floor(x * m + 0.5) / m
end

---------------------------------------------------------------------------------------------------- configs
-- Qwen2.5-0.5B's config.json (the released one, minus token ids)
local QWEN = {
  architectures = {"Qwen2ForCausalLM"}, model_type = "qwen2", attention_dropout = 0.0, hidden_act = "silu",
  hidden_size = 896, initializer_range = 0.02, intermediate_size = 4864, max_position_embeddings = 32768,
  max_window_layers = 24, num_attention_heads = 14, num_hidden_layers = 24, num_key_value_heads = 2,
  rms_norm_eps = 1e-6, rope_theta = 1000000.0, sliding_window = 32768, tie_word_embeddings = true,
  torch_dtype = "bfloat16", use_cache = true, use_sliding_window = false, vocab_size = 151936,
  bos_token_id = 151643, eos_token_id = 151643,
}
-- SigLIP2-B/16-224's vision_config
local SIGLIP_B = {
  hidden_size = 768, intermediate_size = 3072, num_hidden_layers = 12, num_attention_heads = 12, num_channels = 3,
  image_size = 224, patch_size = 16, hidden_act = "gelu_pytorch_tanh", layer_norm_eps = 1e-6,
}
-- SigLIP2-So400m/16-384's vision_config
local SIGLIP_SO400M = {
  hidden_size = 1152, intermediate_size = 4304, num_hidden_layers = 27, num_attention_heads = 16, num_channels = 3,
  image_size = 384, patch_size = 16, hidden_act = "gelu_pytorch_tanh", layer_norm_eps = 1e-6,
}

local function mkdir(d) assert(os.execute("mkdir -p " .. hf.shell_quote(d)) == 0, "cannot create " .. d) end

local function dir_opt()
  local d = opts.dir
  if type(d) ~= "string" or d == "" then error("--dir DIR is required for part " .. PART) end
  return d
end

local function count_params(params)
  local n = 0
  for _, p in ipairs(params) do n = n + (p.var or p).numel end
  return n
end

---------------------------------------------------------------------------------------------------- generation
local function gen_qwen()
  local D = dir_opt()
  local qwen2 = require "pivot.models.qwen2"
  local t0 = now()
  local ctx = pv.context{threads = THREADS, seed = 1}
  local m = qwen2.new(ctx, "", QWEN) -- prefix "": the vars carry transformers' names
  local params = m:parameters()
  local t1 = now()
  -- single file
  local dir1 = hf.join(D, "qwen")
  mkdir(dir1)
  local vars, names = {}, {}
  for i, p in ipairs(params) do vars[i], names[i] = p.var, p.name end
  ctx:save_safetensors(hf.join(dir1, "model.safetensors"), vars, {dtype = "bf16", names = names,
    metadata = {format = "pt"}})
  hf.write_json(hf.join(dir1, "config.json"), QWEN)
  local t2 = now()
  -- two shards split at half the bytes (in parameter order, as save_pretrained fills shards), plus the index
  local dir2 = hf.join(D, "qwen_sharded")
  mkdir(dir2)
  local total = 0
  for _, p in ipairs(params) do total = total + 2 * p.var.numel end
  local shards, acc = {{vars = {}, names = {}}, {vars = {}, names = {}}}, 0
  local files = {"model-00001-of-00002.safetensors", "model-00002-of-00002.safetensors"}
  local weight_map = {}
  for _, p in ipairs(params) do
    local k = acc < total / 2 and 1 or 2
    acc = acc + 2 * p.var.numel
    local s = shards[k]
    s.vars[#s.vars + 1], s.names[#s.names + 1] = p.var, p.name
    weight_map[p.name] = files[k]
  end
  for k = 1, 2 do
    ctx:save_safetensors(hf.join(dir2, files[k]), shards[k].vars, {dtype = "bf16", names = shards[k].names,
      metadata = {format = "pt"}})
  end
  hf.write_json(hf.join(dir2, "model.safetensors.index.json"), {metadata = {total_size = total},
    weight_map = weight_map})
  hf.write_json(hf.join(dir2, "config.json"), QWEN)
  local t3 = now()
  local mm = mem()
  emit({params = count_params(params), tensors = #params, build_s = round(t1 - t0),
    save_s = round(t2 - t1), save_sharded_s = round(t3 - t2),
    file_mb = round(file_size(hf.join(dir1, "model.safetensors")) / 2 ^ 20, 1),
    shard_mb = {round(file_size(hf.join(dir2, files[1])) / 2 ^ 20, 1),
      round(file_size(hf.join(dir2, files[2])) / 2 ^ 20, 1)},
    peak_rss_mb = round(mm.VmHWM or 0, 1)})
end

local function gen_siglip()
  local D = dir_opt()
  local siglip = require "pivot.models.siglip"
  local t0 = now()
  local ctx = pv.context{threads = THREADS, seed = 2}
  -- the full tower (all layers, post_layernorm and the MAP head), bare transformers names
  local tower = siglip.new(ctx, "", SIGLIP_B)
  local t1 = now()
  local dir = hf.join(D, "siglip")
  hf.save_vision_tower(ctx, tower, dir, {dtype = "bf16", extra_config = {dtype = "bfloat16"}})
  local t2 = now()
  local mm = mem()
  emit({params = count_params(tower:parameters()), tensors = #tower:parameters(), build_s = round(t1 - t0),
    save_s = round(t2 - t1), file_mb = round(file_size(hf.join(dir, "model.safetensors")) / 2 ^ 20, 1),
    peak_rss_mb = round(mm.VmHWM or 0, 1)})
end

---------------------------------------------------------------------------------------------------- loading
-- writes back and drops the page-cache pages of every *.safetensors in dir; returns the bytes dropped
local function drop_cache(dir)
  local p = io.popen("ls -1 " .. hf.shell_quote(dir))
  local bytes = 0
  for name in p:lines() do
    if name:match("%.safetensors$") then
      local path = hf.join(dir, name)
      local fd = ffi.C.open(path, 0) -- O_RDONLY
      if fd < 0 then error("cannot open " .. path) end
      ffi.C.fdatasync(fd)
      local rc = ffi.C.posix_fadvise(fd, 0, 0, 4) -- POSIX_FADV_DONTNEED
      ffi.C.close(fd)
      if rc ~= 0 then error("posix_fadvise failed on " .. path .. " (" .. rc .. ")") end
      bytes = bytes + (file_size(path) or 0)
    end
  end
  p:close()
  return bytes
end

local function files_mb(dir)
  local p = io.popen("ls -1 " .. hf.shell_quote(dir))
  local bytes = 0
  for name in p:lines() do
    if name:match("%.safetensors$") then bytes = bytes + (file_size(hf.join(dir, name)) or 0) end
  end
  p:close()
  return bytes / 2 ^ 20
end

local function load_part(sub, kind)
  local dir = hf.join(dir_opt(), sub)
  local cold = opts.cold and true or false
  if cold then drop_cache(dir) end
  local m0 = mem()
  local t0 = now()
  local ctx = pv.context{threads = THREADS, seed = 3}
  local cfg = hf.read_config(dir)
  if opts.no_init then
    -- zero-filled vars with the checkpoint's names and shapes, created before the model (whose constructor then
    -- reuses them instead of drawing random values): the load path without the wasted random init
    local map = kind == "qwen" and hf.maps.qwen2("llm") or hf.maps.siglip_vision("vision")
    local ck0 = hf.open(ctx, dir)
    for _, n in ipairs(ck0:names()) do
      local target = map(n)
      if target and not (kind == "qwen" and n == "lm_head.weight") then ctx:var(target, ck0:info(n).shape) end
    end
    ck0:close()
  end
  local params, load
  if kind == "qwen" then
    local m = require("pivot.models.qwen2").new(ctx, "llm", cfg)
    params = m:parameters()
    load = function(ck)
      return hf.load_params(ck, params, {map = hf.maps.qwen2("llm"), ignore = {"^lm_head%.weight$"}})
    end
  else
    local tower = require("pivot.models.siglip").new(ctx, "vision", cfg)
    params = tower:parameters()
    load = function(ck) return hf.load_vision_tower(ck, tower) end
  end
  local t1 = now()
  local m1 = mem()
  local ck = hf.open(ctx, dir)
  local t2 = now()
  local res = load(ck)
  local t3 = now()
  local m2 = mem()
  -- a checksum of a few values, so that the load is known to have written the vars
  local nfiles = #ck.files
  -- (the smallest 2-d var, so that the check adds nothing to the peak RSS)
  local small
  for _, p in ipairs(params) do
    if #p.var.shape == 2 and (not small or p.var.numel < small.numel) then small = p.var end
  end
  local first = small:read_raw("f32")
  local finite = true
  for i = 0, small.numel - 1 do
    local v = first[i]
    if v ~= v or v == math.huge or v == -math.huge then finite = false end
  end
  ck:close()
  local m3 = mem()
  emit({dir = sub, cold = cold, no_init = opts.no_init and true or false, params = count_params(params),
    loaded = res.loaded, files = nfiles,
    file_mb = round(files_mb(dir), 1), f32_mb = round(count_params(params) * 4 / 2 ^ 20, 1),
    build_s = round(t1 - t0), open_s = round(t2 - t1), load_s = round(t3 - t2), open_load_s = round(t3 - t1),
    start_rss_mb = round(m0.VmRSS or 0, 1), built_rss_mb = round(m1.VmRSS or 0, 1),
    loaded_rss_mb = round(m2.VmRSS or 0, 1), loaded_rss_file_mb = round(m2.RssFile or 0, 1),
    closed_rss_mb = round(m3.VmRSS or 0, 1), peak_rss_mb = round(m3.VmHWM or 0, 1), finite = finite})
end

---------------------------------------------------------------------------------------------------- forward
local function forward_part(full)
  local mllm = require "pivot.models.mllm"
  local t0 = now()
  local ctx = pv.context{threads = THREADS, seed = 4}
  local cfg = {vision = SIGLIP_SO400M, llm = QWEN, projector = {1152, 896, 896}, vision_feature_layer = -2}
  local m = mllm.new(ctx, cfg):freeze()
  local nparams = m:num_parameters()
  local t1 = now()
  local m1 = mem()
  local S, Lt = SIGLIP_SO400M.image_size, 64
  local N = m.num_image_tokens
  local g = ctx:graph()
  local px = g:input("pixel_values", {1, 3, S, S})
  local ids = g:input("input_ids", {1, Lt}, "i32")
  local logits
  if full then
    logits = m:forward(g, {pixel_values = px, input_ids = ids}).logits
  else
    -- mllm's forward without the logits of the image positions: the same pieces, with qwen2's logits_range
    local enc = m:encode_images(g, px)
    local x = mllm.splice(m.llm:embed(g, ids), enc.image_embeds, nil)
    logits = m.llm:forward(g, {inputs_embeds = x, logits_range = {N, N + Lt}}).logits
  end
  logits:mark_output()
  local t2 = now()
  local plan = g:compile{backend = "cpu", threads = THREADS}
  local t3 = now()
  -- inputs: a deterministic pseudo-random image in [-1, 1] and token ids
  local pix = pv.array("f32", 3 * S * S)
  local x = 12345
  for i = 0, 3 * S * S - 1 do
    x = (16807 * x) % 2147483647
    pix[i] = x / 2147483647 * 2 - 1
  end
  local idv = pv.array("i32", Lt)
  for i = 0, Lt - 1 do idv[i] = (i * 7919 + 13) % QWEN.vocab_size end
  plan:write(px, pix)
  plan:write(ids, idv)
  local ta = now()
  plan:run()
  local first = now() - ta
  local times = {}
  for i = 1, RUNS do
    local tb = now()
    plan:run()
    times[i] = now() - tb
  end
  local sorted = {}
  for i, t in ipairs(times) do sorted[i] = t end
  table.sort(sorted)
  local median = sorted[math.floor((#sorted + 1) / 2)]
  if #sorted % 2 == 0 then median = (sorted[#sorted / 2] + sorted[#sorted / 2 + 1]) / 2 end
  local m_runs = mem() -- before the logits are copied out
  local out, n = plan:read_raw(logits, "f32")
  local finite, absmax = true, 0
  for i = 0, n - 1 do
    local v = out[i]
    if v ~= v or v == math.huge or v == -math.huge then finite = false end
    if math.abs(v) > absmax then absmax = math.abs(v) end
  end
  local rt = {}
  for i, t in ipairs(times) do rt[i] = round(t) end
  local mm = mem()
  emit({threads = THREADS, blas_core = opts.blas_core or os.getenv("OPENBLAS_CORETYPE"), params = nparams,
    tokens = N + Lt, image_tokens = N, text_tokens = Lt,
    logits_shape = logits.shape, build_s = round(t1 - t0), graph_s = round(t2 - t1), compile_s = round(t3 - t2),
    first_run_s = round(first), runs_s = rt, median_s = round(median), nodes = plan:node_count(),
    peak_plan_mb = round(plan:peak_bytes() / 2 ^ 20, 1), naive_plan_mb = round(plan:naive_bytes() / 2 ^ 20, 1),
    f32_weights_mb = round(nparams * 4 / 2 ^ 20, 1), built_rss_mb = round(m1.VmRSS or 0, 1),
    peak_rss_mb = round(m_runs.VmHWM or 0, 1), peak_rss_read_mb = round(mm.VmHWM or 0, 1), logits_finite = finite,
    logits_absmax = round(absmax, 4)})
end

---------------------------------------------------------------------------------------------------- table
local function table_part()
  local path = opts.results or error("--results FILE is required")
  local rows = {}
  for line in io.lines(path) do
    local j = line:match("^RESULT (.*)$")
    if j then rows[#rows + 1] = json.decode(j, path) end
  end
  local function f(v, fmt)
    if v == nil or v == json.null then return "-" end
    return string.format(fmt or "%s", v)
  end
  local out = {}
  local function put(...) out[#out + 1] = string.format(...) end
  put("%-44s %9s %9s %9s %9s %10s  %s", "measurement", "params M", "file MB", "build s", "load s", "peak RSS", "notes")
  for _, r in ipairs(rows) do
    if r.part == "gen_qwen" or r.part == "gen_siglip" then
      local what = r.part == "gen_qwen" and "write Qwen2.5-0.5B bf16" or "write SigLIP2-B/16-224 bf16"
      local note = r.part == "gen_qwen" and string.format("save %.1fs, sharded %.1fs (%s + %s MB)", r.save_s,
        r.save_sharded_s, f(r.shard_mb[1]), f(r.shard_mb[2])) or string.format("save %.1fs", r.save_s)
      put("%-44s %9.1f %9.1f %9.2f %9s %7.0f MB  %s", what, r.params / 1e6, r.file_mb, r.build_s, "-", r.peak_rss_mb,
        note)
    elseif r.part:match("^load_") then
      local name = ({qwen = "Qwen2.5-0.5B", qwen_sharded = "Qwen2.5-0.5B, 2 shards", siglip = "SigLIP2-B/16"})[r.dir]
      local how = (r.cold and "cold" or "warm") .. (r.no_init and ", no init" or "")
      put("%-44s %9.1f %9.1f %9.2f %9.2f %7.0f MB  %s", "load " .. name .. " (" .. how .. ")",
        r.params / 1e6, r.file_mb, r.build_s, r.open_load_s, r.peak_rss_mb,
        string.format("open %.3fs; RSS %.0f built, %.0f loaded (%.0f file-mapped), %.0f closed; f32 vars %.0f MB",
          r.open_s, r.built_rss_mb, r.loaded_rss_mb, r.loaded_rss_file_mb, r.closed_rss_mb, r.f32_mb))
    end
  end
  local fw = {}
  for _, r in ipairs(rows) do if r.part:match("^forward") then fw[#fw + 1] = r end end
  if #fw > 0 then
    put("")
    put("%-44s %9s %9s %9s %14s %9s %10s %9s", "MLLM forward (CPU)", "compile s", "1st run s", "median s", "runs s",
      "plan MB", "peak RSS", "build s")
    for _, r in ipairs(fw) do
      local name = string.format("%s, logits %s%s", r.part == "forward" and "So400m+0.5B" or "So400m+0.5B full",
        table.concat(r.logits_shape, "x"), r.blas_core and (", " .. r.blas_core) or "")
      local runs = {}
      for i, t in ipairs(r.runs_s) do runs[i] = string.format("%.1f", t) end
      put("%-44s %9.2f %9.2f %9.2f %14s %9.0f %7.0f MB %9.2f", name, r.compile_s, r.first_run_s, r.median_s,
        table.concat(runs, "/"), r.peak_plan_mb, r.peak_rss_mb, r.build_s)
      put("    %.1f M params (%.0f MB f32), %d tokens (%d image + %d text), threads %d, %d nodes, " ..
        "naive plan %.0f MB," ..
        " RSS after build %.0f MB, peak RSS after reading the logits out %.0f MB, logits finite %s (max |x| %.3g)",
        r.params / 1e6, r.f32_weights_mb, r.tokens, r.image_tokens, r.text_tokens, r.threads, r.nodes, r.naive_plan_mb,
        r.built_rss_mb, r.peak_rss_read_mb, tostring(r.logits_finite), r.logits_absmax)
    end
  end
  io.write(table.concat(out, "\n"), "\n")
end

---------------------------------------------------------------------------------------------------- dispatch
local parts = {
  gen_qwen = gen_qwen,
  gen_siglip = gen_siglip,
  load_qwen = function() load_part("qwen", "qwen") end,
  load_qwen_sharded = function() load_part("qwen_sharded", "qwen") end,
  load_siglip = function() load_part("siglip", "siglip") end,
  forward = function() forward_part(false) end,
  forward_full = function() forward_part(true) end,
  table = table_part,
}
local fn = parts[PART] or error("unknown --part '" .. tostring(PART) .. "'")
fn()
return 0
