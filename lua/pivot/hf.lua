-- pivot.hf: Hugging Face checkpoints (config.json + safetensors) in and out.
--
--   local hf = require "pivot.hf"
--   local cfg = hf.read_config(dir)                      -- config.json as a table
--   local D = hf.get(cfg, "hidden_size", "number")        -- a typed field (errors name the file and field)
--   local ck = hf.open(ctx, dir)                          -- model.safetensors, an index + shards, or a file
--   hf.load_params(ck, tower:parameters(), {map = hf.maps.siglip_vision("vision")})
--   hf.load_vision_tower(ck, tower)                       -- the same, ignoring layers the tower dropped
--   hf.save_vision_tower(ctx, tower, out_dir)             -- a transformers SiglipVisionModel checkpoint
--
-- Name maps take a checkpoint tensor name and return the pivot var name, false for a tensor that is
-- deliberately skipped (e.g. the text tower of a full SiglipModel), or nil for a name the map does not know
-- (an "unexpected tensor" in strict mode).
local pv = require "pivot"
local json = require "pivot.json"

local M = {}

local function join(dir, name)
  if dir:sub(-1) == "/" then return dir .. name end
  return dir .. "/" .. name
end
M.join = join

local function file_exists(path)
  local f = io.open(path, "rb")
  if f then
    f:close()
    return true
  end
  return false
end
M.file_exists = file_exists

local function is_dir(path)
  -- io.open on a directory succeeds on Linux but reading fails; use that to tell them apart
  local f = io.open(path, "rb")
  if not f then return false end
  local ok, err, code = f:read(1)
  f:close()
  return ok == nil and code == 21 -- EISDIR
end
M.is_dir = is_dir

local function shq(s) return "'" .. tostring(s):gsub("'", "'\\''") .. "'" end
M.shell_quote = shq

local function shape_str(s) return "[" .. table.concat(s, ", ") .. "]" end
M.shape_str = shape_str

---------------------------------------------------------------------------------------------------- config.json
-- the file each config table came from (weak keys, so the tables stay plain JSON)
local sources = setmetatable({}, {__mode = "k"})
function M.config_source(cfg, name)
  if name ~= nil then sources[cfg] = name end
  return sources[cfg]
end

-- hf.read_config(dir_or_file) -> table (errors name the file)
function M.read_config(path)
  local file = path
  if not path:match("%.json$") then file = join(path, "config.json") end
  local f, err = io.open(file, "rb")
  if not f then pv.raise("config.json: cannot read '" .. file .. "': " .. tostring(err)) end
  local text = f:read("*a")
  f:close()
  local ok, cfg = pcall(json.decode, text, file)
  if not ok then pv.raise(tostring(cfg)) end
  if type(cfg) ~= "table" then pv.raise(file .. ": expected a JSON object") end
  sources[cfg] = file
  return cfg
end

local function src_name(cfg)
  local s = type(cfg) == "table" and sources[cfg]
  return s or "config.json"
end

-- hf.get(cfg, field, kind, default): cfg[field] checked to be of `kind` ("number", "string", "boolean",
-- "table", "integer"). A missing field gives default, or an error when default is nil.
function M.get(cfg, field, kind, default)
  local v = cfg[field]
  if v == nil or v == json.null then
    if default ~= nil then return default end
    pv.raise(string.format("%s: missing field '%s' (%s)", src_name(cfg), field, kind or "any"))
  end
  if kind then
    local t = type(v)
    local want = kind == "integer" and "number" or kind
    if t ~= want then
      local got = t == "string" and string.format("string \"%s\"", v) or t
      pv.raise(string.format("%s: field '%s' must be a %s, got %s", src_name(cfg), field, want, got))
    end
    if kind == "integer" and v ~= math.floor(v) then
      pv.raise(string.format("%s: field '%s' must be an integer, got %s", src_name(cfg), field, tostring(v)))
    end
  end
  return v
end

-- rope theta from `rope_theta` or `rope_parameters.rope_theta` (default 10000 when neither is present)
function M.rope_theta(cfg, default)
  if cfg.rope_theta ~= nil and cfg.rope_theta ~= json.null then return M.get(cfg, "rope_theta", "number") end
  local rp = cfg.rope_parameters
  if rp ~= nil and rp ~= json.null then
    if type(rp) ~= "table" then
      pv.raise(string.format("%s: field 'rope_parameters' must be a table, got %s", src_name(cfg), type(rp)))
    end
    local t = rp.rope_theta
    if t ~= nil then
      if type(t) ~= "number" then
        pv.raise(string.format("%s: field 'rope_parameters.rope_theta' must be a number, got %s", src_name(cfg),
          type(t)))
      end
      return t
    end
  end
  if default ~= nil then return default end
  return 10000
end

-- writes a JSON value to path atomically (temporary file + rename)
function M.write_json(path, value)
  local tmp = path .. ".tmp" .. tostring(os.time()) .. tostring(math.random(1, 1e9))
  local f, err = io.open(tmp, "wb")
  if not f then pv.raise("cannot write '" .. tmp .. "': " .. tostring(err)) end
  local ok, werr = f:write(json.encode(value, "  "), "\n")
  f:close()
  if not ok then
    os.remove(tmp)
    pv.raise("cannot write '" .. tmp .. "': " .. tostring(werr))
  end
  local rok, rerr = os.rename(tmp, path)
  if not rok then
    os.remove(tmp)
    pv.raise("cannot rename '" .. tmp .. "' to '" .. path .. "': " .. tostring(rerr))
  end
end

---------------------------------------------------------------------------------------------------- checkpoints
local Checkpoint = {}
Checkpoint.__index = Checkpoint
M.Checkpoint = Checkpoint

local function list_safetensors(dir)
  local p = io.popen("ls -1 " .. shq(dir) .. " 2>/dev/null")
  local r = {}
  if p then
    for line in p:lines() do
      if line:match("%.safetensors$") then r[#r + 1] = line end
    end
    p:close()
  end
  table.sort(r)
  return r
end

-- hf.open(ctx, path) -> Checkpoint. path: a directory (model.safetensors, model.safetensors.index.json
-- with its shards, or a single *.safetensors), a .safetensors file or an index .json file.
function M.open(ctx, path)
  local self = setmetatable({ctx = ctx, path = path, files = {}, where = {}, _names = nil}, Checkpoint)
  local function add_file(file)
    local st = ctx:open_safetensors(file)
    self.files[#self.files + 1] = {path = file, st = st}
    return st
  end
  local index
  if is_dir(path) then
    if file_exists(join(path, "model.safetensors")) then
      add_file(join(path, "model.safetensors"))
    elseif file_exists(join(path, "model.safetensors.index.json")) then
      index = join(path, "model.safetensors.index.json")
    else
      local list = list_safetensors(path)
      if #list == 1 then add_file(join(path, list[1]))
      elseif #list == 0 then
        pv.raise("hf.open: '" .. path .. "' has no model.safetensors, model.safetensors.index.json or *.safetensors")
      else
        pv.raise("hf.open: '" .. path .. "' has several *.safetensors (" .. table.concat(list, ", ") ..
          ") and no model.safetensors.index.json; pass the file")
      end
    end
  elseif path:match("%.json$") then
    index = path
  elseif file_exists(path) then
    add_file(path)
  else
    pv.raise("hf.open: '" .. path .. "' does not exist")
  end
  if index then
    local ok, idx = pcall(json.read_file, index)
    if not ok then pv.raise("hf.open: " .. tostring(idx)) end
    if type(idx) ~= "table" or type(idx.weight_map) ~= "table" then
      pv.raise("hf.open: " .. index .. ": field 'weight_map' must be an object")
    end
    local dir = index:match("^(.*)/[^/]*$") or "."
    local shard_of, shards = {}, {}
    for name, file in pairs(idx.weight_map) do
      if type(file) ~= "string" then
        pv.raise("hf.open: " .. index .. ": weight_map['" .. name .. "'] must be a file name")
      end
      if not shard_of[file] then
        shard_of[file] = true
        shards[#shards + 1] = file
      end
    end
    table.sort(shards)
    local st_of = {}
    for _, file in ipairs(shards) do st_of[file] = add_file(join(dir, file)) end
    for name, file in pairs(idx.weight_map) do
      local st = st_of[file]
      if not st:find(name) then
        pv.raise("hf.open: " .. index .. ": weight_map names tensor '" .. name .. "' in '" .. file ..
          "', which does not hold it")
      end
    end
    self.index = index
  end
  -- every tensor of every file (an index may omit some; a tensor in two files is an error)
  for _, f in ipairs(self.files) do
    for _, n in ipairs(f.st:names()) do
      if self.where[n] then
        pv.raise("hf.open: tensor '" .. n .. "' is in both '" .. self.where[n].path .. "' and '" .. f.path .. "'")
      end
      self.where[n] = f
    end
  end
  return self
end

function Checkpoint:names()
  if not self._names then
    local r = {}
    for n in pairs(self.where) do r[#r + 1] = n end
    table.sort(r)
    self._names = r
  end
  local copy = {}
  for i, n in ipairs(self._names) do copy[i] = n end
  return copy
end
function Checkpoint:has(name) return self.where[name] ~= nil end
function Checkpoint:file_of(name)
  local f = self.where[name]
  return f and f.path or nil
end
local function entry(ck, name)
  local f = ck.where[name]
  if not f then pv.raise(string.format("missing tensor '%s' in %s", tostring(name), ck.path)) end
  return f
end
-- ck:info(name) -> {dtype = "f32"|"f16"|"bf16"|..., shape = {...}, numel}
function Checkpoint:info(name) return entry(self, name).st:info(name) end
-- ck:read(name [, dtype]) -> cdata array, numel (see SafeTensors:read)
function Checkpoint:read(name, dtype) return entry(self, name).st:read(name, dtype) end
function Checkpoint:read_table(name) return entry(self, name).st:read_table(name) end
-- ck:load_var(name, var): copies tensor `name` into var (f32/f16/bf16 converted); shapes must agree
function Checkpoint:load_var(name, var)
  local f = entry(self, name)
  local info = f.st:info(name)
  local same = #info.shape == #var.shape
  for i = 1, #info.shape do same = same and info.shape[i] == var.shape[i] end
  if not same then
    pv.raise(string.format("tensor '%s' in %s has shape %s, but var '%s' has shape %s (from config.json)", name,
      f.path, shape_str(info.shape), var.name, shape_str(var.shape)))
  end
  local ok, err = pcall(f.st.load_var, f.st, name, var)
  if not ok then pv.raise(string.format("tensor '%s' in %s: %s", name, f.path, tostring(err))) end
end
function Checkpoint:close()
  for _, f in ipairs(self.files) do f.st:close() end
  self.files, self.where, self._names = {}, {}, nil
end

---------------------------------------------------------------------------------------------------- loading
local function matches_any(name, patterns)
  if not patterns then return false end
  for _, p in ipairs(patterns) do
    if name:match(p) then return true end
  end
  return false
end
M.matches_any = matches_any

-- hf.load_params(ck, params, opts) -> {loaded = n, skipped = n, ignored = n, unexpected = {...}, missing = {...}}
--  params: a list of {name = var name, var = Var} (module:parameters()) or a list of Vars
--  opts.map(ckpt_name) -> var name, false (skip) or nil (unknown); default: the identity
--  opts.strict (default true): every param must be found and every tensor must map to a param
--  opts.ignore: Lua patterns of checkpoint names to leave alone
--  opts.allow_missing: Lua patterns of var names that may be absent from the checkpoint
function M.load_params(ck, params, opts)
  opts = opts or {}
  local strict = opts.strict ~= false
  local map = opts.map or function(n) return n end
  local by_name, order = {}, {}
  for _, p in ipairs(params) do
    local var = p.var or p
    local name = p.name or var.name
    if not by_name[name] then
      by_name[name] = var
      order[#order + 1] = name
    end
  end
  local res = {loaded = 0, skipped = 0, ignored = 0, unexpected = {}, missing = {}}
  local found = {}
  local todo = {}
  for _, n in ipairs(ck:names()) do
    if matches_any(n, opts.ignore) then
      res.ignored = res.ignored + 1
    else
      local target = map(n)
      if target == false then
        res.skipped = res.skipped + 1
      elseif target == nil or not by_name[target] then
        res.unexpected[#res.unexpected + 1] = n
      else
        if found[target] then
          pv.raise(string.format("tensors '%s' and '%s' in %s both map to var '%s'", found[target], n, ck.path,
            target))
        end
        found[target] = n
        todo[#todo + 1] = {n, by_name[target]}
      end
    end
  end
  for _, name in ipairs(order) do
    if not found[name] and not matches_any(name, opts.allow_missing) then res.missing[#res.missing + 1] = name end
  end
  local function listing(kind, list)
    local parts = {}
    for i = 1, math.min(#list, 5) do parts[i] = string.format("%s tensor '%s' in %s", kind, list[i], ck.path) end
    local s = table.concat(parts, "; ")
    if #list > 5 then s = s .. string.format(" (and %d more)", #list - 5) end
    return s
  end
  if strict and #res.missing > 0 then pv.raise(listing("missing", res.missing)) end
  if strict and #res.unexpected > 0 then pv.raise(listing("unexpected", res.unexpected)) end
  -- shapes first, so a failed load leaves every var untouched
  for _, e in ipairs(todo) do
    local info, var = ck:info(e[1]), e[2]
    local same = #info.shape == #var.shape
    for i = 1, #info.shape do same = same and info.shape[i] == var.shape[i] end
    if not same then
      pv.raise(string.format("tensor '%s' in %s has shape %s, but var '%s' has shape %s (from config.json)", e[1],
        ck:file_of(e[1]), shape_str(info.shape), var.name, shape_str(var.shape)))
    end
  end
  for _, e in ipairs(todo) do
    ck:load_var(e[1], e[2])
    res.loaded = res.loaded + 1
  end
  return res
end

---------------------------------------------------------------------------------------------------- name maps
M.maps = {}

local function pfx(prefix, rest)
  if prefix == nil or prefix == "" then return rest end
  return prefix .. "." .. rest
end
M.prefixed = pfx

local VISION_ROOTS = {embeddings = true, encoder = true, post_layernorm = true, head = true}

-- SiglipVisionModel / Siglip2VisionModel names, bare ("encoder.layers.0...") or under "vision_model." (a
-- full SiglipModel, whose text tower, logit_scale and logit_bias are skipped) -> <prefix>.<bare name>
function M.maps.siglip_vision(prefix)
  return function(name)
    local bare = name:match("^vision_model%.(.*)$") or name
    local root = bare:match("^([^.]+)")
    if VISION_ROOTS[root] then return pfx(prefix, bare) end
    if name:match("^text_model%.") or name == "logit_scale" or name == "logit_bias" then return false end
    return nil
  end
end

-- Qwen2ForCausalLM: "model.*" and "lm_head.weight" -> <prefix>.model.* / <prefix>.lm_head.weight
function M.maps.qwen2(prefix)
  return function(name)
    if name:match("^model%.") or name == "lm_head.weight" then return pfx(prefix, name) end
    return nil
  end
end

-- LLaVA-OneVision / PIVOT checkpoints. prefixes: {vision = "vision", projector = "projector", llm = "llm"}
function M.maps.llava_ov(prefixes)
  prefixes = prefixes or {}
  local pvis = prefixes.vision or "vision"
  local pproj = prefixes.projector or "projector"
  local pllm = prefixes.llm or "llm"
  return function(name)
    local rest = name:match("^model%.vision_tower%.vision_tower%.vision_model%.(.*)$")
    if rest then
      local root = rest:match("^([^.]+)")
      if VISION_ROOTS[root] then return pfx(pvis, rest) end
      return nil
    end
    rest = name:match("^model%.mm_projector%.(.*)$")
    if rest then
      if rest:match("^[02]%.weight$") or rest:match("^[02]%.bias$") then return pfx(pproj, rest) end
      return nil
    end
    if name:match("^model%.layers%.") or name:match("^model%.embed_tokens%.") or name:match("^model%.norm%.") then
      return pfx(pllm, name)
    end
    if name:match("^lm_head%.") then return pfx(pllm, name) end
    return nil
  end
end

-- Loads a SigLIP/SigLIP2 tower (pivot.models.siglip or siglip2) from a checkpoint; the tensors of layers,
-- post_layernorm or head the tower did not create are ignored. opts as in load_params (map defaults to
-- hf.maps.siglip_vision(tower.prefix)).
function M.load_vision_tower(ck, tower, opts)
  opts = opts or {}
  local o = {}
  for k, v in pairs(opts) do o[k] = v end
  o.map = o.map or M.maps.siglip_vision(tower.prefix)
  local ignore = {}
  for _, p in ipairs(opts.ignore or {}) do ignore[#ignore + 1] = p end
  for _, p in ipairs(tower.dropped or {}) do
    ignore[#ignore + 1] = "^" .. p
    ignore[#ignore + 1] = "^vision_model%." .. p
  end
  o.ignore = ignore
  return M.load_params(ck, tower:parameters(), o)
end

---------------------------------------------------------------------------------------------------- export
-- hf.save_vision_tower(ctx, tower, dir, opts): writes a transformers SiglipVisionModel (or Siglip2VisionModel
-- for a siglip2 tower) checkpoint: config.json and model.safetensors (f32 unless opts.dtype) with the bare
-- names. A tower built without post_layernorm gets an identity-initialised one (weight 1, bias 0) so that
-- transformers loads the file without random initialisation; a tower without a head is saved with
-- vision_use_head = false. opts.extra_config: fields merged into config.json.
function M.save_vision_tower(ctx, tower, dir, opts)
  opts = opts or {}
  if not tower or not tower.parameters or not tower.cfg then
    pv.raise("hf.save_vision_tower: expected a tower from pivot.models.siglip or siglip2")
  end
  os.execute("mkdir -p " .. shq(dir))
  if not is_dir(dir) then pv.raise("hf.save_vision_tower: cannot create directory '" .. dir .. "'") end
  local c = tower.cfg
  local siglip2 = tower.kind == "siglip2"
  local config = {
    architectures = {siglip2 and "Siglip2VisionModel" or "SiglipVisionModel"},
    model_type = siglip2 and "siglip2_vision_model" or "siglip_vision_model",
    hidden_size = c.hidden_size,
    intermediate_size = c.intermediate_size,
    num_hidden_layers = tower.num_layers,
    num_attention_heads = c.num_attention_heads,
    num_channels = c.num_channels,
    patch_size = c.patch_size,
    hidden_act = c.hidden_act,
    layer_norm_eps = c.layer_norm_eps,
    attention_dropout = 0.0,
    dtype = "float32",
    vision_use_head = tower.has_head and true or false,
  }
  if siglip2 then config.num_patches = c.num_patches else config.image_size = c.image_size end
  for k, v in pairs(opts.extra_config or {}) do config[k] = v end

  local plen = tower.prefix and tower.prefix ~= "" and (#tower.prefix + 2) or 1
  local vars, names, temps = {}, {}, {}
  for _, p in ipairs(tower:parameters()) do
    vars[#vars + 1] = p.var
    names[#names + 1] = p.name:sub(plen)
  end
  if not tower.has_post_layernorm then
    local D = c.hidden_size
    local base = "__hf_export_" .. tostring(math.random(1, 1e9))
    local w = ctx:var(base .. ".weight", {D}, {init = "ones"})
    local b = ctx:var(base .. ".bias", {D})
    temps = {w, b}
    vars[#vars + 1], names[#names + 1] = w, "post_layernorm.weight"
    vars[#vars + 1], names[#names + 1] = b, "post_layernorm.bias"
  end
  -- sorted by name, as save_pretrained writes them
  local idx = {}
  for i = 1, #names do idx[i] = i end
  table.sort(idx, function(a, b) return names[a] < names[b] end)
  local sv, sn = {}, {}
  for k, i in ipairs(idx) do sv[k], sn[k] = vars[i], names[i] end
  local ok, err = pcall(ctx.save_safetensors, ctx, join(dir, "model.safetensors"), sv,
    {names = sn, dtype = opts.dtype or "f32", metadata = {format = "pt"}})
  for _, t in ipairs(temps) do t:free() end
  if not ok then pv.raise("hf.save_vision_tower: " .. tostring(err)) end
  M.write_json(join(dir, "config.json"), config)
  return {config = config, names = sn}
end

return M
