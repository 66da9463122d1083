-- pivot.train.checkpoint: atomic training checkpoints.
--
-- Layout (HF Trainer-like):
--   DIR/checkpoint-<step>/model.safetensors       the parameters (f32, names = var names)
--   DIR/checkpoint-<step>/optimizer.safetensors   the optimizer state ("<param>.adam_m", ".adam_v", ".grad_acc")
--   DIR/checkpoint-<step>/trainer_state.json      {global_step, epoch, data_state, config, ...}
--   DIR/latest                                    "checkpoint-<step>\n", the newest complete checkpoint
-- A checkpoint is written into DIR/checkpoint-<step>.tmp-<pid> (each file fsynced), renamed to its final name,
-- and only then is "latest" replaced (temp file + rename). A crash at any point leaves the previous checkpoint and
-- pointer intact; directories named *.tmp-* are never read, and are removed by the next save.
--
--   local ckpt = require "pivot.train.checkpoint"
--   local path = ckpt.save(ctx, "runs/a", 17, {model = vars, optimizer = vars, state = {...}, keep = 2})
--   local path, state = ckpt.find_latest("runs/a")          -- nil when there is none
--   local state = ckpt.load(ctx, path, {model = vars, optimizer = vars})
local ffi = require "ffi"
local pv = require "pivot"
local json = require "pivot.json"

local M = {}

---------------------------------------------------------------------------------------------------- system calls
-- private names (asm redirection) so that other modules' declarations of the same functions do not clash
if not pcall(ffi.typeof, "pv_train_FILE") then
  ffi.cdef [[
    typedef struct pv_train_FILE pv_train_FILE;
    int pv_train_getpid(void) __asm__("getpid");
    int pv_train_mkdir(const char *path, unsigned int mode) __asm__("mkdir");
    int pv_train_open(const char *path, int flags, ...) __asm__("open");
    int pv_train_close(int fd) __asm__("close");
    int pv_train_fsync(int fd) __asm__("fsync");
    pv_train_FILE *pv_train_fopen(const char *path, const char *mode) __asm__("fopen");
    size_t pv_train_fwrite(const void *p, size_t size, size_t n, pv_train_FILE *f) __asm__("fwrite");
    int pv_train_fflush(pv_train_FILE *f) __asm__("fflush");
    int pv_train_fileno(pv_train_FILE *f) __asm__("fileno");
    int pv_train_fclose(pv_train_FILE *f) __asm__("fclose");
    char *pv_train_strerror(int e) __asm__("strerror");
  ]]
end
local C = ffi.C

local function errstr() return ffi.string(C.pv_train_strerror(ffi.errno())) end

function M.getpid() return tonumber(C.pv_train_getpid()) end

local function shq(s) return "'" .. tostring(s):gsub("'", "'\\''") .. "'" end
M.shell_quote = shq

function M.exists(path)
  local f = io.open(path, "rb")
  if f then
    f:close()
    return true
  end
  return false
end
local function is_dir(path) -- "<path>/." opens only when path is a directory
  local f = io.open(path .. "/.", "rb")
  if f then
    f:close()
    return true
  end
  return false
end
M.is_dir = is_dir

-- mkdir -p
function M.mkdirs(path)
  local acc = path:sub(1, 1) == "/" and "" or nil
  for part in path:gmatch("[^/]+") do
    acc = acc and (acc .. "/" .. part) or part
    if C.pv_train_mkdir(acc, tonumber("755", 8)) ~= 0 and not is_dir(acc) then
      error(string.format("checkpoint: cannot create directory '%s': %s", acc, errstr()), 0)
    end
  end
end

function M.rmtree(path)
  if path == nil or path == "" or path == "/" then error("checkpoint: refusing to remove '" .. tostring(path) .. "'", 2) end
  os.execute("rm -rf " .. shq(path))
end

local function fsync_path(path)
  local fd = C.pv_train_open(path, 0) -- O_RDONLY works for directories too
  if fd >= 0 then
    C.pv_train_fsync(fd)
    C.pv_train_close(fd)
  end
end
M.fsync_path = fsync_path

local function dirname(path) return path:match("^(.*)/[^/]*$") or "." end

-- writes text to path durably (fsync); not atomic by itself
local function write_synced(path, text)
  local f = C.pv_train_fopen(path, "wb")
  if f == nil then error(string.format("checkpoint: cannot write '%s': %s", path, errstr()), 0) end
  local n = C.pv_train_fwrite(text, 1, #text, f)
  local ok = n == #text and C.pv_train_fflush(f) == 0 and C.pv_train_fsync(C.pv_train_fileno(f)) == 0
  local e = not ok and errstr() or nil
  C.pv_train_fclose(f)
  if not ok then error(string.format("checkpoint: writing '%s' failed: %s", path, e), 0) end
end

-- writes text to path atomically: path.tmp-<pid>, fsync, rename, fsync the folder
function M.write_atomic(path, text)
  local tmp = path .. ".tmp-" .. M.getpid()
  write_synced(tmp, text)
  local ok, err = os.rename(tmp, path)
  if not ok then
    os.remove(tmp)
    error(string.format("checkpoint: cannot rename '%s' to '%s': %s", tmp, path, tostring(err)), 0)
  end
  fsync_path(dirname(path))
end

-- names in a directory (via ls; "" when it does not exist)
function M.list_dir(dir)
  local r = {}
  if not is_dir(dir) then return r end
  local p = io.popen("ls -1A " .. shq(dir) .. " 2>/dev/null")
  if not p then return r end
  for line in p:lines() do r[#r + 1] = line end
  p:close()
  return r
end

---------------------------------------------------------------------------------------------------- discovery
local function step_of(name) local s = name:match("^checkpoint%-(%d+)$") return s and tonumber(s) or nil end
M.step_of = step_of

local function read_state(path)
  local f = io.open(path .. "/trainer_state.json", "rb")
  if not f then return nil end
  local text = f:read("*a")
  f:close()
  local ok, st = pcall(json.decode, text, path .. "/trainer_state.json")
  if not ok or type(st) ~= "table" then return nil end
  if not (M.exists(path .. "/model.safetensors")) then return nil end
  return st
end
M.read_state = read_state

-- complete checkpoints in dir (with trainer_state.json and model.safetensors), sorted by step: list of
-- {step, name, path}
function M.list(dir)
  local r = {}
  for _, name in ipairs(M.list_dir(dir)) do
    local s = step_of(name)
    local path = dir .. "/" .. name
    if s and M.exists(path .. "/trainer_state.json") and M.exists(path .. "/model.safetensors") then
      r[#r + 1] = {step = s, name = name, path = path}
    end
  end
  table.sort(r, function(a, b) return a.step < b.step end)
  return r
end

-- the newest complete checkpoint: the one "latest" names if it is complete, else the highest-numbered complete
-- one. Returns path, state (the decoded trainer_state.json), or nil.
function M.find_latest(dir)
  local f = io.open(dir .. "/latest", "rb")
  if f then
    local name = (f:read("*a") or ""):match("^%s*(.-)%s*$")
    f:close()
    if name ~= "" and step_of(name) then
      local st = read_state(dir .. "/" .. name)
      if st then return dir .. "/" .. name, st end
    end
  end
  local list = M.list(dir)
  for i = #list, 1, -1 do
    local st = read_state(list[i].path)
    if st then return list[i].path, st end
  end
  return nil
end

---------------------------------------------------------------------------------------------------- save
local function var_list(vars)
  local r = {}
  for _, v in ipairs(vars or {}) do r[#r + 1] = v end
  return r
end

-- Removes old checkpoints beyond the newest `keep` (never `protect`), and stale *.tmp-* folders of other processes.
function M.prune(dir, keep, protect)
  local pid = tostring(M.getpid())
  for _, name in ipairs(M.list_dir(dir)) do
    local tpid = name:match("^checkpoint%-%d+%.tmp%-(%d+)$") or name:match("^checkpoint%-%d+%.old%-(%d+)$")
    if tpid and tpid ~= pid then M.rmtree(dir .. "/" .. name) end
  end
  if not keep or keep <= 0 then return end
  local list = M.list(dir)
  for i = 1, #list - keep do
    if list[i].path ~= protect then M.rmtree(list[i].path) end
  end
end

-- ckpt.save(ctx, dir, step, {model = {vars}, optimizer = {vars}, state = table, keep = 2, metadata = {..}})
-- -> the checkpoint's path. state is stored in trainer_state.json with global_step = step added.
function M.save(ctx, dir, step, opts)
  opts = opts or {}
  step = math.floor(step)
  M.mkdirs(dir)
  local name = "checkpoint-" .. step
  local final = dir .. "/" .. name
  local pid = M.getpid()
  local tmp = final .. ".tmp-" .. pid
  if is_dir(tmp) then M.rmtree(tmp) end
  M.mkdirs(tmp)
  local meta = {format = "pt", step = tostring(step)}
  for k, v in pairs(opts.metadata or {}) do meta[k] = tostring(v) end
  ctx:save_safetensors(tmp .. "/model.safetensors", var_list(opts.model), {dtype = "f32", metadata = meta})
  if opts.optimizer and #opts.optimizer > 0 then
    ctx:save_safetensors(tmp .. "/optimizer.safetensors", var_list(opts.optimizer), {dtype = "f32", metadata = meta})
  end
  local state = {}
  for k, v in pairs(opts.state or {}) do state[k] = v end
  state.global_step = step
  write_synced(tmp .. "/trainer_state.json", json.encode(state, "  ") .. "\n")
  fsync_path(tmp)
  if is_dir(final) then -- a stale copy of this step (e.g. written before a crash and a resume from an older one)
    local old = final .. ".old-" .. pid
    if is_dir(old) then M.rmtree(old) end
    assert(os.rename(final, old))
    local ok, err = os.rename(tmp, final)
    if not ok then error(string.format("checkpoint: cannot rename '%s' to '%s': %s", tmp, final, tostring(err)), 0) end
    M.rmtree(old)
  else
    local ok, err = os.rename(tmp, final)
    if not ok then error(string.format("checkpoint: cannot rename '%s' to '%s': %s", tmp, final, tostring(err)), 0) end
  end
  fsync_path(dir)
  M.write_atomic(dir .. "/latest", name .. "\n")
  M.prune(dir, opts.keep == nil and 2 or opts.keep, final)
  return final
end

---------------------------------------------------------------------------------------------------- load
-- Loads vars (by name) from a safetensors file; every var must be present with its exact shape.
-- optional: a set {name = true} of vars that may be absent (left as they are).
function M.load_vars(ctx, path, vars, optional)
  local st = ctx:open_safetensors(path)
  local ok, err = pcall(function()
    for _, v in ipairs(vars) do
      if st:find(v.name) then
        st:load_var(v.name, v)
      elseif not (optional and optional[v.name]) then
        error(string.format("checkpoint: '%s' has no tensor '%s'", path, v.name), 0)
      end
    end
  end)
  st:close()
  if not ok then error(err, 0) end
end

-- ckpt.load(ctx, path, {model = {vars}, optimizer = {vars}, optional = {name = true}}) -> the trainer state table
function M.load(ctx, path, opts)
  opts = opts or {}
  local state = read_state(path)
  if not state then error("checkpoint: '" .. path .. "' is not a complete checkpoint (no trainer_state.json)", 0) end
  M.load_vars(ctx, path .. "/model.safetensors", var_list(opts.model), opts.optional)
  if opts.optimizer and #opts.optimizer > 0 then
    M.load_vars(ctx, path .. "/optimizer.safetensors", var_list(opts.optimizer), opts.optional)
  end
  return state
end

return M
