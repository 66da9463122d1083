-- pivot: the LuaJIT FFI binding of libpivot.
--
--   local pv = require "pivot"
--   local ctx = pv.context{threads = 2, seed = 1}
--   local W = ctx:var("w", {4, 3}, {init = "normal", std = 0.02})
--   local g = ctx:graph()
--   local x = g:input("x", {8, 3})                -- f32 unless a dtype is given
--   local y = (x:linear(g:param(W))):relu()      -- x·Wᵀ, elementwise ops, operators
--   local loss = (y * y):mean()
--   g:backward(loss)
--   local plan = g:compile{backend = "cpu"}
--   plan:write(x, {...}); plan:run(); print(plan:item(loss))
--
-- Conventions (PyTorch-like): shapes are Lua arrays, outermost first ({B, T, D}); axes are 0-based and
-- negative axes count from the end; slices are [start, end). Dtypes are strings ("f32", "i64", ...) or
-- pv.F32 ... pv.F64. Graph-builder failures raise Lua errors with the runtime's message (op name and
-- shapes); other failures raise "<STATUS>: <pv_last_error>". Handles are freed by the garbage collector
-- (children before parents) or explicitly with :free().
--
-- The C declarations are not copied here: they come from the library itself (pv_header_text), with
-- preprocessor lines removed, so the binding always matches the libpivot it runs against.
local ffi = require "ffi"

local M = {}

local THIS_SOURCE = debug.getinfo(1, "S").source
local LUA_DIR = THIS_SOURCE:sub(1, 1) == "@" and (THIS_SOURCE:sub(2):match("^(.*)/[^/]*$") or ".") or "."
local SOURCE_DIR = rawget(_G, "PIVOT_SOURCE_DIR") or (LUA_DIR .. "/../..")
M.source_dir = SOURCE_DIR

---------------------------------------------------------------------------------------------------- library
-- bootstrap declarations under private names (asm redirection) so the full header can be cdef'd after
if not pcall(ffi.typeof, "pv__boot_marker") then
  ffi.cdef [[
    typedef struct pv__boot_marker pv__boot_marker;
    const char *pv__boot_version(void) __asm__("pv_version");
    const char *pv__boot_header_text(void) __asm__("pv_header_text");
    extern const char pv__header_bytes[];
  ]]
end

local function has_pivot(ns)
  return ns ~= nil and pcall(function() return ns.pv__boot_version end)
end

local function load_library()
  if has_pivot(ffi.C) then return ffi.C, "(linked into the process)" end
  local tried, candidates = {}, {}
  local env = os.getenv("PIVOT_LIB")
  if env and env ~= "" then candidates[#candidates + 1] = env end
  for _, d in ipairs {"build", "build-lua", "build-release", "build-debug"} do
    candidates[#candidates + 1] = SOURCE_DIR .. "/" .. d .. "/libpivot.so"
  end
  candidates[#candidates + 1] = "pivot"
  for _, c in ipairs(candidates) do
    local ok, lib = pcall(ffi.load, c)
    if ok and has_pivot(lib) then return lib, c end
    tried[#tried + 1] = c .. (ok and " (no pv_version)" or (": " .. tostring(lib)))
  end
  error("pivot: cannot find libpivot; set PIVOT_LIB to the path of libpivot.so (tried: " .. table.concat(tried, "; ")
    .. ")", 0)
end

local LIB, LIB_PATH = load_library()
M.library_path = LIB_PATH

local function header_text()
  local ok, s = pcall(function() return LIB.pv__boot_header_text() end)
  if ok and s ~= nil then return ffi.string(s) end
  ok, s = pcall(function() return LIB.pv__header_bytes end)
  if ok and s ~= nil then return ffi.string(s) end
  local f = io.open(SOURCE_DIR .. "/runtime/include/pivot.h", "r")
  if not f then error("pivot: libpivot has no pv_header_text and pivot.h was not found", 0) end
  local t = f:read("*a")
  f:close()
  return t
end

-- Drops preprocessor lines (with their continuations) and `#ifdef __cplusplus ... #endif` blocks.
function M._strip_header(text)
  local out, skip_depth, depth, cont = {}, nil, 0, false
  for line in (text .. "\n"):gmatch("([^\n]*)\n") do
    if cont then
      cont = line:match("\\%s*$") ~= nil
    elseif line:match("^%s*#") then
      cont = line:match("\\%s*$") ~= nil
      local directive = line:match("^%s*#%s*(%a+)")
      if directive == "if" or directive == "ifdef" or directive == "ifndef" then
        depth = depth + 1
        if not skip_depth and line:match("__cplusplus") then skip_depth = depth end
      elseif directive == "endif" then
        if skip_depth == depth then skip_depth = nil end
        depth = depth - 1
      end
    elseif not skip_depth then
      out[#out + 1] = line
    end
  end
  return table.concat(out, "\n")
end

if not pcall(ffi.typeof, "pv_plan_options") then ffi.cdef(M._strip_header(header_text())) end

-- C functions, looked up lazily so that a missing symbol gives a clear error when (and only when) used
local C = setmetatable({}, {__index = function(t, k)
  local ok, f = pcall(function() return LIB[k] end)
  if not ok then
    error(string.format("pivot: %s is not available in this libpivot (%s)", k, LIB_PATH), 2)
  end
  rawset(t, k, f)
  return f
end})
M.C = C
M.ffi = ffi

---------------------------------------------------------------------------------------------------- errors
M._tracebacks = {} -- message -> traceback where it was first raised (see pv.scope)
local ntracebacks = 0

-- Raises msg at the first stack frame outside this file (so the position is the user's line).
local function raise(msg)
  local level = 2
  while true do
    local info = debug.getinfo(level, "S")
    if not info then
      level = 0
      break
    end
    if info.source ~= THIS_SOURCE and info.what ~= "C" then break end
    level = level + 1
  end
  error(msg, level)
end
M.raise = raise

local scope_stack = {}

-- pv.scope(name, fn, ...): calls fn(...) and returns its results; an error raised inside gets the
-- dotted module path of the enclosing scopes inserted after its position, e.g.
-- "model.lua:40: mllm.llm.layers.3.attn: matmul: ...". The traceback of the original error is kept.
-- name is relative to the enclosing scope ("attn" inside "mllm.llm.layers.3"), or a full path that
-- already starts with the enclosing one ("mllm.llm.layers.3.attn"), which is used as it is.
function M.scope(name, fn, ...)
  name = tostring(name)
  local parent = scope_stack[#scope_stack]
  local path = name
  if parent and parent ~= "" and name ~= parent and name:sub(1, #parent + 1) ~= parent .. "." then
    path = parent .. "." .. name
  end
  scope_stack[#scope_stack + 1] = path
  local function handler(e)
    if type(e) ~= "string" or M._tracebacks[e] then return e end
    local pos, rest = e:match("^([^\n]-:%d+: )(.*)$")
    local m = pos and (pos .. path .. ": " .. rest) or (path .. ": " .. e)
    if ntracebacks > 64 then
      M._tracebacks, ntracebacks = {}, 0
    end
    M._tracebacks[m] = (debug.traceback("", 2):gsub("^\n", ""))
    ntracebacks = ntracebacks + 1
    return m
  end
  local res = {xpcall(fn, handler, ...)}
  scope_stack[#scope_stack] = nil
  if not res[1] then error(res[2], 0) end
  return unpack(res, 2, table.maxn(res))
end

-- The current dotted scope path ("" outside any scope).
function M.scope_path() return scope_stack[#scope_stack] or "" end

---------------------------------------------------------------------------------------------------- dtypes
M.F32, M.F16, M.BF16, M.I32, M.I64, M.F64 = 0, 1, 2, 3, 4, 5
local DTYPES = {f32 = 0, f16 = 1, bf16 = 2, i32 = 3, i64 = 4, f64 = 5,
  float32 = 0, float16 = 1, bfloat16 = 2, int32 = 3, int64 = 4, float64 = 5}
local DTYPE_NAMES = {[0] = "f32", "f16", "bf16", "i32", "i64", "f64"}

local function dtype_of(d, default)
  if d == nil then return default end
  if type(d) == "number" and DTYPE_NAMES[d] then return d end
  local v = DTYPES[d]
  if v then return v end
  raise("pivot: unknown dtype " .. tostring(d) .. " (expected f32, f16, bf16, i32, i64 or f64)")
end
M.dtype = function(d) return dtype_of(d) end
M.dtype_name = function(d) return DTYPE_NAMES[dtype_of(d)] end
local function is_int(d) return d == 3 or d == 4 end

-- C element type used to hold host data of a dtype
local HOST_CT = {[0] = "float", "float", "float", "int32_t", "int64_t", "double"}
local HOST_DT = {[0] = 0, 0, 0, 3, 4, 5}
local VLA = {}
for k, ct in pairs(HOST_CT) do VLA[k] = ffi.typeof(ct .. "[?]") end

-- dtype of host data in a cdata array or pointer
local CT_BASE = {float = 0, double = 5, int = 3, int32_t = 3, int64_t = 4, long = 4, ["unsigned short"] = 1}
local cdata_cache = {}
local function cdata_info(x)
  local key = tostring(ffi.typeof(x))
  local hit = cdata_cache[key]
  if hit then return hit[1], hit[2] end
  local base, rest = key:match("^ctype<(.-)%s*([%[%*].*)>$")
  if not base then return nil end
  base = base:gsub("^const%s+", "")
  local dt = CT_BASE[base]
  local is_array = rest:sub(1, 1) == "["
  cdata_cache[key] = {dt, is_array}
  return dt, is_array
end

local function shape_arg(shape, what)
  if type(shape) == "number" then shape = {shape} end
  if type(shape) ~= "table" then raise((what or "shape") .. ": expected a table of dimensions, got " .. type(shape)) end
  local n = #shape
  local a = ffi.new("int64_t[?]", n > 0 and n or 1)
  for i = 1, n do
    local d = shape[i]
    if type(d) ~= "number" then raise((what or "shape") .. ": dimension " .. i .. " is not a number") end
    a[i - 1] = d
  end
  return n, a
end

local function flatten(t, out)
  for i = 1, #t do
    local v = t[i]
    if type(v) == "table" then flatten(v, out)
    else out[#out + 1] = v end
  end
  return out
end

-- Host data (Lua table, nested table, number, or cdata) -> pointer, src dtype, count for an object of
-- `numel` elements and dtype `dt`. `src` optionally forces the dtype of cdata.
local function host_data(data, dt, numel, src, what)
  local tp = type(data)
  local hd = HOST_DT[dt]
  if tp == "number" or tp == "boolean" then
    local v = tp == "boolean" and (data and 1 or 0) or data
    local buf = VLA[hd](numel > 0 and numel or 1)
    for i = 0, numel - 1 do buf[i] = v end
    return buf, hd, numel
  elseif tp == "table" then
    local flat = type(data[1]) == "table" and flatten(data, {}) or data
    local n = #flat
    local buf = VLA[hd](n > 0 and n or 1)
    for i = 1, n do buf[i - 1] = flat[i] end
    return buf, hd, n
  elseif tp == "cdata" then
    local cdt, is_array = cdata_info(data)
    if src ~= nil then cdt = dtype_of(src) end
    if cdt == nil then
      raise(what .. ": cannot tell the dtype of " .. tostring(ffi.typeof(data)) .. "; pass it explicitly")
    end
    local count = numel
    if is_array then
      local len = ffi.sizeof(data) / tonumber(C.pv_dtype_size(cdt))
      if len < numel then
        raise(string.format("%s: %d elements given, %d expected", what, tonumber(len), tonumber(numel)))
      end
    end
    return data, cdt, count
  end
  raise(what .. ": expected a table, a number or a cdata array, got " .. tp)
end

---------------------------------------------------------------------------------------------------- handles
local function status_error(st, ctxp, what)
  local msg = ctxp ~= nil and ffi.string(C.pv_last_error(ctxp)) or ""
  local name = ffi.string(C.pv_status_name(st))
  if msg == "" then msg = what or "failed" end
  raise(name .. ": " .. msg)
end
local function check(st, ctxp, what)
  st = tonumber(st)
  if st ~= 0 then status_error(st, ctxp, what) end
end

local function free_plan(pb)
  if pb.ptr ~= nil then
    C.pv_plan_free(pb.ptr)
    pb.ptr = nil
  end
  if pb.gbox then pb.gbox.plans[pb] = nil end
end
-- the keys of a set, so that freeing (which removes entries) never mutates a table being traversed
local function set_keys(t)
  local r = {}
  for k in pairs(t) do r[#r + 1] = k end
  return r
end
local function free_graph(gb)
  local plans = set_keys(gb.plans)
  gb.plans = {}
  for i = 1, #plans do free_plan(plans[i]) end
  if gb.ptr ~= nil then
    C.pv_graph_free(gb.ptr)
    gb.ptr = nil
  end
  if gb.cbox then gb.cbox.children[gb] = nil end
end
local function free_child(b) -- a graph, or another context-owned object (safetensors, tokenizer)
  if b.plans then return free_graph(b) end
  if b.ptr ~= nil then
    b.free(b.ptr)
    b.ptr = nil
  end
  if b.cbox then b.cbox.children[b] = nil end
end
local function free_context(cb)
  local children = set_keys(cb.children)
  cb.children = {}
  for i = 1, #children do free_child(children[i]) end
  if cb.ptr ~= nil then
    C.pv_context_free(cb.ptr)
    cb.ptr = nil
  end
end

-- an anchor cdata whose finalizer runs fn(box); the closure does not reference the anchor
local function anchor(fn, box)
  return ffi.gc(ffi.new("char[1]"), function() fn(box) end)
end

local Context, Var, Graph, Tensor, Plan = {}, {}, {}, {}, {}
Context.__index, Var.__index, Graph.__index, Plan.__index = Context, Var, Graph, Plan
M.Context, M.Var, M.Graph, M.Tensor, M.Plan = Context, Var, Graph, Tensor, Plan

local function cptr(ctx)
  local p = ctx._box.ptr
  if p == nil then raise("pivot: the context was freed") end
  return p
end

---------------------------------------------------------------------------------------------------- library info
function M.version() return ffi.string(C.pv_version()) end
function M.status_name(st) return ffi.string(C.pv_status_name(st)) end

---------------------------------------------------------------------------------------------------- context
-- pv.context{threads = N, seed = S}
function M.context(opts)
  opts = opts or {}
  local p = C.pv_context_new()
  if p == nil then raise("pivot: out of memory creating a context") end
  local box = {ptr = p, children = {}}
  local self = setmetatable({_box = box, _vars = {}}, Context)
  self._anchor = anchor(free_context, box)
  if opts.threads then self:set_threads(opts.threads) end
  if opts.seed then self:set_seed(opts.seed) end
  return self
end

function Context:free() free_context(self._box) end
function Context:ptr() return cptr(self) end
function Context:last_error() return ffi.string(C.pv_last_error(cptr(self))) end
function Context:set_threads(n) check(C.pv_set_threads(cptr(self), n), cptr(self)) end
function Context:threads() return tonumber(C.pv_get_threads(cptr(self))) end
function Context:set_seed(s) check(C.pv_set_seed(cptr(self), s), cptr(self)) end

function Context:backend_available(name)
  local why = ffi.new("const char *[1]")
  local ok = C.pv_backend_available(cptr(self), name, why) ~= 0
  return ok, (why[0] ~= nil) and ffi.string(why[0]) or nil
end
function Context:backend_describe(name)
  local buf = ffi.new("char[4096]")
  check(C.pv_backend_describe(cptr(self), name, buf, 4096), cptr(self))
  return ffi.string(buf)
end

local function wrap_var(ctx, p)
  local name = ffi.string(C.pv_var_name(p))
  local v = ctx._vars[name]
  if v and v._p == p then return v end
  local nd = C.pv_var_ndim(p)
  local shape = {}
  for i = 0, nd - 1 do shape[i + 1] = tonumber(C.pv_var_dim(p, i)) end
  local dt = tonumber(C.pv_var_dtype(p))
  v = setmetatable({_p = p, ctx = ctx, name = name, shape = shape, dtype = DTYPE_NAMES[dt], _dt = dt,
    numel = tonumber(C.pv_var_numel(p))}, Var)
  ctx._vars[name] = v
  return v
end

-- ctx:var(name, shape, {dtype = "f32", init = "zeros"|"ones"|"normal"|"uniform"|number, mean, std, lo, hi, data})
function Context:var(name, shape, opts)
  opts = opts or {}
  if type(name) ~= "string" then raise("var: the name must be a string") end
  local n, sh = shape_arg(shape, "var '" .. name .. "'")
  local out = ffi.new("pv_var *[1]")
  local p = cptr(self)
  check(C.pv_var_new(p, name, dtype_of(opts.dtype, 0), n, sh, out), p)
  local v = wrap_var(self, out[0])
  local init = opts.init
  local d = rawget(self, "_deferred")
  if d and opts.data == nil and (init == "normal" or init == "uniform") then -- left zero-filled for now
    d.list[#d.list + 1] = {var = v, opts = opts}
    return v
  end
  if opts.data ~= nil then v:write(opts.data)
  elseif init == nil or init == "zeros" or init == "zero" then -- zero-filled already
  elseif init == "ones" then v:fill(1)
  elseif type(init) == "number" then v:fill(init)
  elseif init == "normal" then v:init_normal(opts.mean or 0, opts.std or 0.02)
  elseif init == "uniform" then
    local a = opts.bound or 1
    v:init_uniform(opts.lo or -a, opts.hi or a)
  else
    raise("var '" .. name .. "': unknown init " .. tostring(init))
  end
  return v
end

-- ctx:defer_init(fn) -> fn's results: vars that fn creates with a random init ("normal" or "uniform") are left
-- zero-filled while fn runs; afterwards each of them that nothing wrote in the meantime (Var:write, Var:fill,
-- Var:init_*, a safetensors load) gets its random init, in creation order. For building a model and then loading
-- a checkpoint into it without drawing (seconds of) random values that the load overwrites.
function Context:defer_init(fn)
  if rawget(self, "_deferred") then return fn() end -- nested: the outer call finishes
  local d = {list = {}, written = {}}
  self._deferred = d
  local res = (function(...) return {n = select("#", ...), ...} end)(pcall(fn))
  self._deferred = nil
  if not res[1] then error(res[2], 0) end
  for _, e in ipairs(d.list) do
    local v, o = e.var, e.opts
    if v._p ~= nil and not d.written[v._p] then
      if o.init == "normal" then v:init_normal(o.mean or 0, o.std or 0.02)
      else
        local a = o.bound or 1
        v:init_uniform(o.lo or -a, o.hi or a)
      end
    end
  end
  return unpack(res, 2, res.n)
end

-- marks v written while a defer_init is running (it then keeps its values)
local function mark_written(v)
  local d = rawget(v.ctx, "_deferred")
  if d and v._p ~= nil then d.written[v._p] = true end
end
M._mark_written = mark_written

function Context:find_var(name)
  local p = C.pv_var_find(cptr(self), name)
  if p == nil then return nil end
  return wrap_var(self, p)
end

function Context:vars()
  local p, list = cptr(self), {}
  for i = 0, C.pv_var_count(p) - 1 do list[#list + 1] = wrap_var(self, C.pv_var_at(p, i)) end
  return list
end

local function vptr(v)
  if v._p == nil then raise("var '" .. v.name .. "' was freed") end
  cptr(v.ctx)
  return v._p
end

function Var:write(data, src_dtype)
  local p = vptr(self)
  local buf, dt, n = host_data(data, self._dt, self.numel, src_dtype, "var '" .. self.name .. "' write")
  check(C.pv_var_write(p, dt, buf, n), cptr(self.ctx))
  mark_written(self)
  return self
end
-- v:read_raw([dtype or cdata]) -> cdata array, numel
function Var:read_raw(out)
  local p = vptr(self)
  local dt
  if type(out) == "cdata" then dt = cdata_info(out)
  else
    dt = out and dtype_of(out) or HOST_DT[self._dt]
    out = VLA[HOST_DT[dt]](self.numel > 0 and self.numel or 1)
  end
  check(C.pv_var_read(p, dt, out, self.numel), cptr(self.ctx))
  return out, self.numel
end
-- v:read() -> Lua table of numbers (flat, row-major), shape
function Var:read()
  local buf = self:read_raw(is_int(self._dt) and 4 or 5)
  local t = {}
  for i = 0, self.numel - 1 do t[i + 1] = tonumber(buf[i]) end
  return t, self.shape
end
function Var:item() return (self:read())[1] end
function Var:fill(v)
  check(C.pv_var_fill(vptr(self), v), cptr(self.ctx))
  mark_written(self)
  return self
end
function Var:init_normal(mean, std)
  check(C.pv_var_init_normal(vptr(self), mean or 0, std or 1), cptr(self.ctx))
  mark_written(self)
  return self
end
function Var:init_uniform(lo, hi)
  check(C.pv_var_init_uniform(vptr(self), lo or -1, hi or 1), cptr(self.ctx))
  mark_written(self)
  return self
end
function Var:free()
  local p = vptr(self)
  check(C.pv_var_free(p), cptr(self.ctx))
  self.ctx._vars[self.name] = nil
  self._p = nil
end
function Var:__tostring()
  return string.format("Var('%s' [%s] %s)", self.name, table.concat(self.shape, ", "), self.dtype)
end

---------------------------------------------------------------------------------------------------- graph
function Context:graph()
  local p = C.pv_graph_new(cptr(self))
  if p == nil then raise("pivot: out of memory creating a graph") end
  local gb = {ptr = p, plans = {}, cbox = self._box}
  self._box.children[gb] = true
  local g = setmetatable({ctx = self, _box = gb, _t = {}}, Graph)
  g._anchor = anchor(free_graph, gb)
  return g
end

local tp -- tensor pointer check (defined with the tensors below)

local function gptr(g)
  local p = g._box.ptr
  if p == nil then raise("pivot: the graph was freed") end
  return p
end

function Graph:free() free_graph(self._box) end
function Graph:ptr() return gptr(self) end
function Graph:status() return tonumber(C.pv_graph_status(gptr(self))) end
function Graph:error() return ffi.string(C.pv_graph_error(gptr(self))) end
function Graph:clear_error() C.pv_graph_clear_error(gptr(self)) end
function Graph:node_count() return tonumber(C.pv_graph_node_count(gptr(self))) end

local function graph_fail(g, gp, op)
  local msg = ffi.string(C.pv_graph_error(gp))
  if msg == "" then msg = (op or "op") .. ": failed (" .. ffi.string(C.pv_last_error(cptr(g.ctx))) .. ")" end
  raise(msg)
end

-- wraps a pv_tensor* of graph g (raising the graph's error if NULL); one wrapper per node
local function wrap(g, p, op)
  if p == nil then graph_fail(g, gptr(g), op) end
  local id = C.pv_tensor_id(p)
  local t = g._t[id]
  if t then return t end
  t = setmetatable({_p = p, g = g}, Tensor)
  g._t[id] = t
  return t
end
M._wrap = wrap

-- raises the sticky error of a graph before building on it
local function pre(g, op)
  local gp = gptr(g)
  if C.pv_graph_status(gp) ~= 0 then
    raise((op or "op") .. ": the graph has an earlier error (g:clear_error() to go on): " ..
      ffi.string(C.pv_graph_error(gp)))
  end
  return gp
end

function Graph:input(name, shape, dtype)
  local gp = pre(self, "input")
  local n, sh = shape_arg(shape, "input '" .. tostring(name) .. "'")
  return wrap(self, C.pv_input(gp, name, dtype_of(dtype, 0), n, sh), "input")
end
function Graph:use(var)
  local gp = pre(self, "use")
  if getmetatable(var) ~= Var then raise("use: expected a Var, got " .. tostring(var)) end
  return wrap(self, C.pv_use_var(gp, vptr(var)), "use_var")
end
function Graph:param(var)
  local t = self:use(var)
  t:set_trainable(true)
  return t
end
function Graph:fill(value, shape)
  local gp = pre(self, "fill")
  local n, sh = shape_arg(shape or {1}, "fill")
  return wrap(self, C.pv_fill(gp, value, n, sh), "fill")
end
function Graph:arange(n, dtype)
  local gp = pre(self, "arange")
  return wrap(self, C.pv_arange(gp, n, dtype_of(dtype, 4)), "arange")
end
function Graph:backward(loss)
  local gp = pre(self, "backward")
  local st = tonumber(C.pv_graph_backward(gp, tp(loss)))
  if st ~= 0 then
    if C.pv_graph_status(gp) ~= 0 then graph_fail(self, gp, "backward") end
    status_error(st, cptr(self.ctx), "backward")
  end
end
function Graph:grad(t)
  local p = C.pv_grad(gptr(self), t._p)
  if p == nil then return nil end
  return wrap(self, p)
end

local function as_node(g, x, what)
  if getmetatable(x) == Var then return g:use(x) end
  if getmetatable(x) == Tensor then return x end
  if x == nil then return nil end
  raise(what .. ": expected a tensor or a Var, got " .. tostring(x))
end

-- g:adamw(param, grad, m, v, hyper, lr_scale, weight_decay): params and states may be Vars
function Graph:adamw(param, grad, m, v, hyper, lr_scale, weight_decay)
  local gp = pre(self, "adamw")
  param, m, v = as_node(self, param, "adamw"), as_node(self, m, "adamw"), as_node(self, v, "adamw")
  hyper, grad = as_node(self, hyper, "adamw"), as_node(self, grad, "adamw")
  if not (param and grad and m and v and hyper) then raise("adamw: param, grad, m, v and hyper are required") end
  return wrap(self, C.pv_adamw(gp, param._p, grad._p, m._p, v._p, hyper._p, lr_scale or 1, weight_decay or 0), "adamw")
end
-- g:assign(dst, value, factor, accumulate)
function Graph:assign(dst, value, factor, accumulate)
  local gp = pre(self, "assign")
  dst, value, factor = as_node(self, dst, "assign"), as_node(self, value, "assign"), as_node(self, factor, "assign")
  return wrap(self, C.pv_assign(gp, dst._p, value._p, factor and factor._p or nil, accumulate and 1 or 0), "assign")
end

---------------------------------------------------------------------------------------------------- tensors
local T = {} -- tensor methods
M.tensor_methods = T

function tp(t)
  if getmetatable(t) ~= Tensor then raise("expected a tensor, got " .. tostring(t)) end
  gptr(t.g)
  return t._p
end

local props = {
  shape = function(t)
    local p = tp(t)
    local s = {}
    for i = 0, C.pv_tensor_ndim(p) - 1 do s[i + 1] = tonumber(C.pv_tensor_dim(p, i)) end
    return s
  end,
  ndim = function(t) return tonumber(C.pv_tensor_ndim(tp(t))) end,
  dtype = function(t) return DTYPE_NAMES[tonumber(C.pv_tensor_dtype(tp(t)))] end,
  name = function(t) return ffi.string(C.pv_tensor_name(tp(t))) end,
  op = function(t) return ffi.string(C.pv_tensor_op(tp(t))) end,
  id = function(t) return tonumber(C.pv_tensor_id(tp(t))) end,
}
Tensor.__index = function(t, k)
  local m = T[k]
  if m ~= nil then return m end
  local pf = props[k]
  if pf then return pf(t) end
  return nil
end
Tensor.__tostring = function(t)
  if t.g._box.ptr == nil then return "Tensor(freed)" end
  local name = t.name
  return string.format("Tensor(%s%s [%s] %s #%d)", t.op, name ~= "" and (" '" .. name .. "'") or "",
    table.concat(t.shape, ", "), t.dtype, t.id)
end
Tensor.__eq = function(a, b) return rawequal(a, b) or (a._p ~= nil and a._p == b._p) end

function T.numel(t) return tonumber(C.pv_tensor_numel(tp(t))) end
function T.dim(t) return tonumber(C.pv_tensor_ndim(tp(t))) end
-- t:size() -> shape table; t:size(i) -> dimension i (0-based, negative from the end)
function T.size(t, i)
  if i == nil then return t.shape end
  return tonumber(C.pv_tensor_dim(tp(t), i))
end
function T.mark_output(t) check(C.pv_mark_output(tp(t)), cptr(t.g.ctx)); return t end
-- t:set_output(false) unmarks an output (e.g. a gradient consumed by an update in the same plan)
function T.set_output(t, on)
  check(C.pv_set_output(tp(t), (on == nil or on) and 1 or 0), cptr(t.g.ctx))
  return t
end
function T.set_output(t, on) check(C.pv_set_output(tp(t), (on == nil or on) and 1 or 0), cptr(t.g.ctx)); return t end
function T.set_trainable(t, on)
  check(C.pv_set_trainable(tp(t), (on == nil or on) and 1 or 0), cptr(t.g.ctx))
  return t
end
function T.set_name(t, name) check(C.pv_set_name(tp(t), name), cptr(t.g.ctx)); return t end
function T.var(t)
  local p = C.pv_tensor_var(tp(t))
  if p == nil then return nil end
  return wrap_var(t.g.ctx, p)
end
function T.grad(t) return t.g:grad(t) end

local function same_graph(a, b, op)
  if a.g ~= b.g then raise(op .. ": tensors of different graphs") end
end

-- generic builder: fn(gp, ...) with the graph of `t`
local function build(t, op, fn, ...)
  tp(t)
  local gp = pre(t.g, op)
  return wrap(t.g, fn(gp, ...), op)
end

local BIN = {add = "pv_add", sub = "pv_sub", mul = "pv_mul", div = "pv_div"}
local function binop(op, a, b)
  local ta, tb = getmetatable(a) == Tensor, getmetatable(b) == Tensor
  if ta and tb then
    same_graph(a, b, op)
    return build(a, op, C[BIN[op]], a._p, b._p)
  end
  if ta and type(b) == "number" then
    if op == "add" then return a:add_scalar(b)
    elseif op == "sub" then return a:add_scalar(-b)
    elseif op == "mul" then return a:scale(b)
    else return a:scale(1 / b) end
  end
  if tb and type(a) == "number" then
    if op == "add" then return b:add_scalar(a)
    elseif op == "sub" then return build(b, "affine", C.pv_scale, b._p, -1):add_scalar(a)
    elseif op == "mul" then return b:scale(a)
    else return binop("div", b.g:fill(a, {1}), b) end
  end
  raise(op .. ": expected tensors or numbers, got " .. type(a) .. " and " .. type(b))
end
function T.add(a, b) return binop("add", a, b) end
function T.sub(a, b) return binop("sub", a, b) end
function T.mul(a, b) return binop("mul", a, b) end
function T.div(a, b) return binop("div", a, b) end
function T.scale(x, s) return build(x, "scale", C.pv_scale, x._p, s) end
function T.add_scalar(x, c) return build(x, "add_scalar", C.pv_add_scalar, x._p, c) end
Tensor.__add = function(a, b) return binop("add", a, b) end
Tensor.__sub = function(a, b) return binop("sub", a, b) end
Tensor.__mul = function(a, b) return binop("mul", a, b) end
Tensor.__div = function(a, b) return binop("div", a, b) end
Tensor.__unm = function(a) return a:neg() end
Tensor.__pow = function(a, p)
  if getmetatable(a) ~= Tensor or type(p) ~= "number" then raise("pow: only tensor ^ number is supported") end
  if p == 2 then return a:square()
  elseif p == 1 then return a
  elseif p == 0.5 then return a:sqrt()
  elseif p == -0.5 then return a:rsqrt()
  elseif p == -1 then return 1 / a
  elseif p == -2 then return 1 / a:square() end
  raise("pow: exponent " .. p .. " is not supported (use 2, 1, 0.5, -0.5, -1, -2 or exp/log)")
end

local UNARY = {neg = 0, exp = 1, log = 2, sqrt = 3, rsqrt = 4, tanh = 5, sigmoid = 6, logsigmoid = 7, silu = 8,
  gelu_tanh = 9, gelu = 10, gelu_erf = 10, relu = 11, square = 12, abs = 13}
M.unary_kinds = UNARY
for name, kind in pairs(UNARY) do
  T[name] = function(x) return build(x, name, C.pv_unary, kind, x._p) end
end
local function unary_kind(k)
  if type(k) == "string" then
    local v = UNARY[k]
    if not v then raise("unknown unary kind '" .. k .. "'") end
    return v
  end
  return k
end
function T.unary(x, kind) return build(x, "unary", C.pv_unary, unary_kind(kind), x._p) end
function T.unary_grad(x, kind, dy) return build(x, "unary_grad", C.pv_unary_grad, unary_kind(kind), x._p, tp(dy)) end
-- a:swiglu(b) = silu(a) * b (a and b of one shape; one fused op forward, one per gradient backward)
function T.swiglu(a, b)
  tp(b)
  same_graph(a, b, "swiglu")
  return build(a, "swiglu", C.pv_swiglu, a._p, b._p)
end

-- reductions: sum(axis, keepdim); without an axis, over all elements (-> [1])
function T.sum(x, axis, keepdim)
  if axis == nil then return x:sum_all() end
  return build(x, "sum", C.pv_sum, x._p, axis, keepdim and 1 or 0)
end
function T.mean(x, axis, keepdim)
  if axis == nil then return x:sum_all():scale(1 / x:numel()) end
  return build(x, "mean", C.pv_mean, x._p, axis, keepdim and 1 or 0)
end
function T.max(x, axis, keepdim)
  if axis == nil then return x:reshape{-1}:max(0, true) end -- [1], like sum_all
  return build(x, "max", C.pv_max, x._p, axis, keepdim and 1 or 0)
end
function T.sumsq(x) return build(x, "sumsq", C.pv_sumsq, x._p) end
function T.sum_all(x) return build(x, "sum_all", C.pv_sum_all, x._p) end
function T.sum_to(x, shape)
  local n, sh = shape_arg(shape, "sum_to")
  return build(x, "sum_to", C.pv_sum_to, x._p, n, sh)
end
function T.expand(x, shape)
  local n, sh = shape_arg(shape, "expand")
  return build(x, "expand", C.pv_expand, x._p, n, sh)
end

-- matmul(b, trans_a, trans_b); linear(w, bias): x·wᵀ (+ bias), w [out, in]
local function flag(v) return (v and v ~= 0) and 1 or 0 end
function T.matmul(a, b, ta, tb)
  same_graph(a, b, "matmul")
  return build(a, "matmul", C.pv_matmul, a._p, tp(b), flag(ta), flag(tb))
end
function T.linear(x, w, bias)
  local y = x:matmul(w, false, true)
  if bias ~= nil then y = y + bias end
  return y
end

-- norms over the last axis; w, b may be nil
function T.layer_norm(x, w, b, eps)
  return build(x, "layer_norm", C.pv_layer_norm, x._p, w and tp(w) or nil, b and tp(b) or nil, eps or 1e-5)
end
function T.rms_norm(x, w, eps)
  return build(x, "rms_norm", C.pv_rms_norm, x._p, w and tp(w) or nil, eps or 1e-6)
end

-- softmax{mask = t, scale = s, causal = bool} over the last axis
local function softmax_args(o)
  o = o or {}
  if type(o) ~= "table" then raise("softmax: options must be a table {mask=, scale=, causal=}") end
  return o.mask and tp(o.mask) or nil, o.scale or 1, o.causal and 1 or 0
end
function T.softmax(x, o)
  local mask, scale, causal = softmax_args(o)
  return build(x, "softmax", C.pv_softmax, x._p, mask, scale, causal)
end
function T.log_softmax(x, o)
  local mask, scale, causal = softmax_args(o)
  return build(x, "log_softmax", C.pv_log_softmax, x._p, mask, scale, causal)
end

-- rope(pos, theta = 10000, rot_dims = D): x [B, T, H, D]
function T.rope(x, pos, theta, rot_dims)
  return build(x, "rope", C.pv_rope, x._p, tp(pos), theta or 10000, rot_dims or x:size(-1))
end
-- weight:embedding(ids): weight [V, D], ids [...] -> [..., D]
function T.embedding(w, ids) return build(w, "embedding", C.pv_embedding, w._p, tp(ids)) end
-- dy:scatter_add(ids, V): out [V, D] with out[ids[i]] += dy[i] (the backward of embedding)
function T.scatter_add(dy, ids, V) return build(dy, "scatter_add", C.pv_scatter_add, dy._p, tp(ids), V) end

-- shape ops
local function dims_arg(a, ...)
  if type(a) == "table" then return a end
  return {a, ...}
end
function T.reshape(x, ...)
  local n, sh = shape_arg(dims_arg(...), "reshape")
  return build(x, "reshape", C.pv_reshape, x._p, n, sh)
end
T.view = T.reshape
function T.permute(x, ...)
  local perm = dims_arg(...)
  local a = ffi.new("int[?]", #perm > 0 and #perm or 1)
  for i = 1, #perm do a[i - 1] = perm[i] end
  return build(x, "permute", C.pv_permute, x._p, #perm, a)
end
function T.transpose(x, a0, a1) return build(x, "transpose", C.pv_transpose, x._p, a0 or -2, a1 or -1) end
function T.slice(x, axis, s, e) return build(x, "slice", C.pv_slice, x._p, axis, s, e) end
function T.copy(x) return build(x, "copy", C.pv_copy, x._p) end
function T.cast(x, dtype) return build(x, "cast", C.pv_cast, x._p, dtype_of(dtype)) end
-- pv.concat({a, b, ...}, axis); a:concat(b, axis) or a:concat({b, c}, axis)
local function concat(list, axis)
  if #list == 0 then raise("concat: no tensors") end
  local a = ffi.new("pv_tensor *[?]", #list)
  for i = 1, #list do
    a[i - 1] = tp(list[i])
    same_graph(list[1], list[i], "concat")
  end
  return build(list[1], "concat", C.pv_concat, #list, a, axis or 0)
end
function T.concat(x, others, axis)
  local list = {x}
  if getmetatable(others) == Tensor then list[2] = others
  else for i = 1, #others do list[#list + 1] = others[i] end end
  return concat(list, axis)
end
M.concat = concat

-- images: patchify(P); patch_embed(w, b, P)
function T.patchify(x, patch) return build(x, "patchify", C.pv_patchify, x._p, patch) end
-- x:unpatchify(P, H, W): [B, (H/P)*(W/P), C*P*P] -> [B, C, H, W]
function T.unpatchify(x, patch, H, W) return build(x, "unpatchify", C.pv_unpatchify, x._p, patch, H, W) end
function T.patch_embed(x, w, b, patch)
  return build(x, "patch_embed", C.pv_patch_embed, x._p, tp(w), b and tp(b) or nil, patch)
end

-- logits:token_logprob(labels, ignore_index = -100) -> [N]; labels:label_mask(ignore_index = -100)
function T.token_logprob(logits, labels, ignore_index)
  return build(logits, "token_logprob", C.pv_token_logprob, logits._p, tp(labels), ignore_index or -100)
end
function T.label_mask(labels, ignore_index)
  return build(labels, "label_mask", C.pv_label_mask, labels._p, ignore_index or -100)
end

-- module-level functions with the tensor first: pv.matmul(a, b), pv.softmax(x, {...}), ...
for name, fn in pairs(T) do
  if M[name] == nil then M[name] = fn end
end

---------------------------------------------------------------------------------------------------- plans
-- g:compile{backend = "cpu"|"vulkan"|"ref", threads = N, device = N, no_inplace = bool}
function Graph:compile(o)
  o = o or {}
  local gp = gptr(self)
  local opts = ffi.new("pv_plan_options")
  opts.backend = o.backend
  opts.threads = o.threads or 0
  opts.device = o.device or -1
  opts.no_inplace = o.no_inplace and 1 or 0
  local out = ffi.new("pv_plan *[1]")
  check(C.pv_plan_compile(gp, opts, out), cptr(self.ctx), "compile")
  local pb = {ptr = out[0], gbox = self._box}
  self._box.plans[pb] = true
  local plan = setmetatable({g = self, _box = pb, _backend_name = o.backend}, Plan)
  plan._anchor = anchor(free_plan, pb)
  return plan
end

local function pptr(p)
  local q = p._box.ptr
  if q == nil then raise("pivot: the plan was freed") end
  return q
end
function Plan:free() free_plan(self._box) end

-- plan:write(t, data [, src_dtype]): data is a (nested) Lua table, a number (filled), or a cdata array
function Plan:write(t, data, src_dtype)
  local q = pptr(self)
  local p = tp(t)
  local numel = tonumber(C.pv_tensor_numel(p))
  local buf, dt, n = host_data(data, tonumber(C.pv_tensor_dtype(p)), numel, src_dtype,
    "plan:write '" .. t.name .. "'")
  check(C.pv_plan_write(q, p, dt, buf, n), cptr(self.g.ctx))
  return self
end
-- plan:run([feeds]): feeds is an optional table {[tensor] = data, ...} written first
function Plan:run(feeds)
  local q = pptr(self)
  if feeds then for t, data in pairs(feeds) do self:write(t, data) end end
  check(C.pv_plan_run(q), cptr(self.g.ctx), "run")
  return self
end
-- plan:read_raw(t [, dtype or cdata]) -> cdata array, numel (float for f32/f16/bf16 tensors)
function Plan:read_raw(t, out)
  local q = pptr(self)
  local p = tp(t)
  local numel = tonumber(C.pv_tensor_numel(p))
  local dt
  if type(out) == "cdata" then
    dt = cdata_info(out)
  else
    dt = out and dtype_of(out) or HOST_DT[tonumber(C.pv_tensor_dtype(p))]
    out = VLA[HOST_DT[dt]](numel > 0 and numel or 1)
  end
  check(C.pv_plan_read(q, p, dt, out, numel), cptr(self.g.ctx), "read")
  return out, numel
end
-- plan:read(t) -> flat Lua table of numbers (row-major), shape
function Plan:read(t)
  local buf, n = self:read_raw(t, is_int(tonumber(C.pv_tensor_dtype(tp(t)))) and 4 or 5)
  local r = {}
  for i = 0, n - 1 do r[i + 1] = tonumber(buf[i]) end
  return r, t.shape
end
-- plan:item(t) -> the first element as a number (losses)
function Plan:item(t)
  local buf = self:read_raw(t, is_int(tonumber(C.pv_tensor_dtype(tp(t)))) and 4 or 5)
  return tonumber(buf[0])
end
function Plan:peak_bytes() return tonumber(C.pv_plan_peak_bytes(pptr(self))) end
function Plan:naive_bytes() return tonumber(C.pv_plan_naive_bytes(pptr(self))) end
function Plan:node_count() return tonumber(C.pv_plan_node_count(pptr(self))) end
function Plan:backend() return ffi.string(C.pv_plan_backend(pptr(self))) end
function Plan:set_profiling(on)
  check(C.pv_plan_set_profiling(pptr(self), (on == nil or on) and 1 or 0), cptr(self.g.ctx))
  return self
end
-- plan:profile() -> the per-op timing table as text (enable with plan:set_profiling(true) first)
function Plan:profile()
  local cap = 65536
  local buf = ffi.new("char[?]", cap)
  check(C.pv_plan_profile(pptr(self), buf, cap), cptr(self.g.ctx))
  return ffi.string(buf)
end

---------------------------------------------------------------------------------------------------- safetensors
local SafeTensors = {}
SafeTensors.__index = SafeTensors
M.SafeTensors = SafeTensors

local function ctx_child(ctx, ptr, free)
  local b = {ptr = ptr, free = free, cbox = ctx._box}
  ctx._box.children[b] = true
  return b, anchor(free_child, b)
end

-- ctx:open_safetensors(path) -> st with :names(), :find(name), :info(name), :read(name [, dtype]),
-- :read_table(name), :load_var(name, var), :metadata(), :close()
function Context:open_safetensors(path)
  local p = cptr(self)
  local out = ffi.new("pv_safetensors *[1]")
  check(C.pv_st_open(p, path, out), p)
  local b, a = ctx_child(self, out[0], function(q) C.pv_st_close(q) end)
  return setmetatable({ctx = self, path = path, _box = b, _anchor = a}, SafeTensors)
end
local function stp(st)
  local p = st._box.ptr
  if p == nil then raise("safetensors '" .. st.path .. "' was closed") end
  return p
end
function SafeTensors:close() free_child(self._box) end
function SafeTensors:count() return tonumber(C.pv_st_count(stp(self))) end
function SafeTensors:names()
  local p, r = stp(self), {}
  for i = 0, C.pv_st_count(p) - 1 do r[#r + 1] = ffi.string(C.pv_st_name(p, i)) end
  return r
end
function SafeTensors:find(name)
  local i = tonumber(C.pv_st_find(stp(self), name))
  return i >= 0 and i or nil
end
local function st_index(st, name)
  local i = st:find(name)
  if not i then
    raise(string.format("PV_ERR_NOT_FOUND: safetensors '%s' has no tensor '%s'", st.path, tostring(name)))
  end
  return i
end
function SafeTensors:info(name)
  local p, i = stp(self), st_index(self, name)
  local shape = {}
  for d = 0, C.pv_st_ndim(p, i) - 1 do shape[d + 1] = tonumber(C.pv_st_dim(p, i, d)) end
  return {dtype = DTYPE_NAMES[tonumber(C.pv_st_dtype(p, i))], shape = shape, numel = tonumber(C.pv_st_numel(p, i))}
end
function SafeTensors:read(name, dtype)
  local p, i = stp(self), st_index(self, name)
  local n = tonumber(C.pv_st_numel(p, i))
  local dt = dtype and dtype_of(dtype) or HOST_DT[tonumber(C.pv_st_dtype(p, i))]
  local out = VLA[HOST_DT[dt]](n > 0 and n or 1)
  check(C.pv_st_read(p, i, HOST_DT[dt], out, n), cptr(self.ctx))
  return out, n
end
function SafeTensors:read_table(name)
  local info = self:info(name)
  local buf, n = self:read(name, is_int(dtype_of(info.dtype)) and 4 or 5)
  local r = {}
  for k = 0, n - 1 do r[k + 1] = tonumber(buf[k]) end
  return r, info.shape
end
function SafeTensors:load_var(name, var)
  check(C.pv_st_load_var(stp(self), st_index(self, name), vptr(var)), cptr(self.ctx))
  mark_written(var)
end
function SafeTensors:metadata()
  local s = C.pv_st_metadata(stp(self))
  return s ~= nil and ffi.string(s) or nil
end

-- ctx:save_safetensors(path, vars, {dtype = "f32", names = {...}, metadata = "json text" or {k = "v"}})
-- vars: a list of Vars (saved under their names unless opts.names) or a table name -> Var.
function Context:save_safetensors(path, vars, opts)
  opts = opts or {}
  local list, names = {}, {}
  if #vars > 0 then
    for i, v in ipairs(vars) do
      list[i] = v
      names[i] = opts.names and opts.names[i] or v.name
    end
  else
    for k in pairs(vars) do names[#names + 1] = k end
    table.sort(names)
    for i, k in ipairs(names) do list[i] = vars[k] end
  end
  local n = #list
  local va = ffi.new("pv_var *[?]", n > 0 and n or 1)
  local na = ffi.new("const char *[?]", n > 0 and n or 1)
  for i = 1, n do
    va[i - 1] = vptr(list[i])
    na[i - 1] = names[i]
  end
  local meta = opts.metadata
  if type(meta) == "table" then meta = require("pivot.json").encode(meta) end
  local p = cptr(self)
  check(C.pv_st_save_vars(p, path, n, va, na, dtype_of(opts.dtype, 0), meta), p)
end

---------------------------------------------------------------------------------------------------- tokenizer
local Tokenizer = {}
Tokenizer.__index = Tokenizer
M.Tokenizer = Tokenizer

-- ctx:tokenizer(path to tokenizer.json) -> tok with :encode(text), :encode_raw(text), :decode(ids),
-- :vocab_size(), :token_to_id(s), :id_to_token(i), :free()
function Context:tokenizer(path)
  local p = cptr(self)
  local out = ffi.new("pv_tokenizer *[1]")
  check(C.pv_tok_load(p, path, out), p)
  local b, a = ctx_child(self, out[0], function(q) C.pv_tok_free(q) end)
  return setmetatable({ctx = self, path = path, _box = b, _anchor = a}, Tokenizer)
end
local function tokp(t)
  local p = t._box.ptr
  if p == nil then raise("tokenizer was freed") end
  return p
end
function Tokenizer:free() free_child(self._box) end
function Tokenizer:vocab_size() return tonumber(C.pv_tok_vocab_size(tokp(self))) end
-- -> int32_t cdata array, count
function Tokenizer:encode_raw(text)
  local p = tokp(self)
  local cap = #text + 16
  local buf = ffi.new("int32_t[?]", cap)
  local n = tonumber(C.pv_tok_encode(p, text, #text, buf, cap))
  if n < 0 then status_error(1, cptr(self.ctx), "encode") end
  if n > cap then
    cap = n
    buf = ffi.new("int32_t[?]", cap)
    n = tonumber(C.pv_tok_encode(p, text, #text, buf, cap))
    if n < 0 then status_error(1, cptr(self.ctx), "encode") end
  end
  return buf, n
end
function Tokenizer:encode(text)
  local buf, n = self:encode_raw(text)
  local r = {}
  for i = 0, n - 1 do r[i + 1] = buf[i] end
  return r
end
-- ids: a Lua table, or a cdata array with a count
function Tokenizer:decode(ids, n)
  local p = tokp(self)
  local buf = ids
  if type(ids) == "table" then
    n = #ids
    buf = ffi.new("int32_t[?]", n > 0 and n or 1)
    for i = 1, n do buf[i - 1] = ids[i] end
  end
  local cap = n * 8 + 16
  local out = ffi.new("char[?]", cap + 1)
  local len = tonumber(C.pv_tok_decode(p, buf, n, out, cap + 1))
  if len < 0 then status_error(1, cptr(self.ctx), "decode") end
  if len > cap then
    cap = len
    out = ffi.new("char[?]", cap + 1)
    len = tonumber(C.pv_tok_decode(p, buf, n, out, cap + 1))
  end
  return ffi.string(out, len)
end
function Tokenizer:token_to_id(s)
  local id = C.pv_tok_token_to_id(tokp(self), s)
  return id >= 0 and id or nil
end
function Tokenizer:id_to_token(id)
  local s = C.pv_tok_id_to_token(tokp(self), id)
  return s ~= nil and ffi.string(s) or nil
end

---------------------------------------------------------------------------------------------------- helpers
-- pv.array(dtype, n_or_table): a cdata array of a host dtype (f32 -> float[], i32 -> int32_t[], ...)
function M.array(dtype, x)
  local dt = HOST_DT[dtype_of(dtype)]
  if type(x) == "table" then
    local a = VLA[dt](#x > 0 and #x or 1)
    for i = 1, #x do a[i - 1] = x[i] end
    return a
  end
  return VLA[dt](x)
end

-- pv.available_backends() -> list of backend names usable here
function M.available_backends(ctx)
  ctx = ctx or M.context()
  local r = {}
  for _, b in ipairs {"cpu", "vulkan", "ref"} do
    if ctx:backend_available(b) then r[#r + 1] = b end
  end
  return r
end

return M
