-- pivot.data: real data formats (JSONL in the paper's formats, image folders, PNG label masks) and batching.
--
--   local data = require "pivot.data"
--   local items, stats = data.read_jsonl("dpo.jsonl", {format = "auto", skip_bad = true, image_root = "imgs"})
--     -- DPO line  {id, prompt, chosen, rejected, image}            -> {format = "dpo", id, prompt, chosen, rejected,
--     --                                                                 image = resolved path or nil, line, source}
--     -- SFT line  {id, conversations = {{from, value}...}, image}   -> {format = "sft", id, conversations, prompt,
--     --                                                                 response, image, line, source}
--     -- a bad line raises "dpo.jsonl:17: field 'chosen' missing"; with skip_bad it is skipped and counted:
--     -- stats = {lines, items, skipped, reasons = {"dpo.jsonl:17: field 'chosen' missing", ...},
--     --          counts = {invalid_json = n, missing_field = n, wrong_type = n, missing_image = n, ...}}
--   local img = data.load_image(ctx, "a.png", 384)            -- float[3*384*384], bicubic, mean/std 0.5
--   local classes, list = data.image_folder("imagenet/train")  -- list[i] = {path = ..., label = 0-based}
--   local mask = data.load_mask(ctx, data.mask_for("ADE/images/training/x.jpg"), 384)   -- int32_t[384*384]
--   local it = data.batches(items, {batch_size = 8, seed = 1, epochs = 3, buckets = {64, 96, 128}, pad_id = 0})
--   for batch in it do ... end        -- batch.ids (int32_t[B*T]), batch.labels, batch.attention_mask, batch.T ...
--   local st = it:state()             -- plain table (JSON-serialisable); it2:restore(st) resumes exactly there
--
-- Labels (image folders, probes) are 0-based class indices, so they can go straight into i32 tensors; the class
-- name of label l is classes[l + 1].
local pv = require "pivot"
local json = require "pivot.json"
local ffi = pv.ffi
local C = pv.C

local M = {}

---------------------------------------------------------------------------------------------------- RNG
-- A seeded deterministic generator (splitmix64 on uint64 cdata), the same on every machine and independent of
-- math.random. data.rng(seed [, stream...]) -> r with r:u32(), r:below(n) (0..n-1), r:int(lo, hi) (inclusive),
-- r:uniform() ([0, 1)), r:pick(list), r:shuffle(list) (in place, returns it), r:permutation(n) (1..n).
local U64 = ffi.typeof("uint64_t")
local GOLDEN = 0x9e3779b97f4a7c15ULL

local function to_u64(x)
  if type(x) == "cdata" then return ffi.cast(U64, x) end
  if type(x) == "string" then -- hash a string (FNV-1a 64)
    local h = 0xcbf29ce484222325ULL
    for i = 1, #x do h = bit.bxor(h, x:byte(i)) * 0x100000001b3ULL end
    return h
  end
  if type(x) ~= "number" or x ~= x or x % 1 ~= 0 then
    error("pivot.data: a seed must be an integer, a string or a uint64 cdata, got " .. tostring(x), 3)
  end
  if x < 0 then return ffi.cast(U64, ffi.cast("int64_t", x)) end
  return ffi.cast(U64, x)
end

local function mix64(z)
  z = (bit.bxor(z, bit.rshift(z, 30))) * 0xbf58476d1ce4e5b9ULL
  z = (bit.bxor(z, bit.rshift(z, 27))) * 0x94d049bb133111ebULL
  return bit.bxor(z, bit.rshift(z, 31))
end
M.mix64 = mix64

local Rng = {}
Rng.__index = Rng
function M.rng(seed, ...)
  local s = mix64(to_u64(seed or 0) + GOLDEN)
  for i = 1, select("#", ...) do s = mix64(bit.bxor(s, mix64(to_u64((select(i, ...))) + 0x14057b7ef767814fULL))) end
  return setmetatable({s = s}, Rng)
end
function Rng:u32()
  self.s = self.s + GOLDEN
  return tonumber(bit.rshift(mix64(self.s), 32))
end
function Rng:uniform() return self:u32() / 4294967296 end
function Rng:below(n)
  if n < 1 then error("rng:below(n): n must be >= 1", 2) end
  -- multiply-shift on 32 random bits (n is small here; the bias is below 2^-20 for n < 4096)
  return math.floor(self:u32() * n / 4294967296)
end
function Rng:int(lo, hi) return lo + self:below(hi - lo + 1) end
function Rng:pick(list) return list[1 + self:below(#list)] end
function Rng:shuffle(t)
  for i = #t, 2, -1 do
    local j = 1 + self:below(i)
    t[i], t[j] = t[j], t[i]
  end
  return t
end
function Rng:permutation(n)
  local p = {}
  for i = 1, n do p[i] = i end
  return self:shuffle(p)
end

---------------------------------------------------------------------------------------------------- files
if not pcall(ffi.typeof, "struct pv__dirent") then
  -- glibc's struct dirent on 64-bit Linux (x86-64 and aarch64)
  ffi.cdef [[
    struct pv__dirent { uint64_t d_ino; int64_t d_off; unsigned short d_reclen; unsigned char d_type; char d_name[256]; };
    typedef struct pv__DIR pv__DIR;
    pv__DIR *pv__opendir(const char *name) __asm__("opendir");
    struct pv__dirent *pv__readdir(pv__DIR *d) __asm__("readdir");
    int pv__closedir(pv__DIR *d) __asm__("closedir");
    int pv__mkdir(const char *path, unsigned int mode) __asm__("mkdir");
  ]]
end

-- data.list_dir(path) -> sorted list of entry names (without "." and ".."), or nil, message
function M.list_dir(path)
  local d = ffi.C.pv__opendir(path)
  if d == nil then return nil, path .. ": cannot open directory" end
  local names = {}
  while true do
    local e = ffi.C.pv__readdir(d)
    if e == nil then break end
    local name = ffi.string(e.d_name)
    if name ~= "." and name ~= ".." then names[#names + 1] = name end
  end
  ffi.C.pv__closedir(d)
  table.sort(names)
  return names
end

function M.is_dir(path)
  local d = ffi.C.pv__opendir(path)
  if d == nil then return false end
  ffi.C.pv__closedir(d)
  return true
end

function M.file_exists(path)
  local f = io.open(path, "rb")
  if not f then return false end
  f:close()
  return not M.is_dir(path)
end

-- data.mkdir(path): creates a directory and its parents (no error if it exists)
function M.mkdir(path)
  local acc = path:sub(1, 1) == "/" and "/" or ""
  for part in path:gmatch("[^/]+") do
    acc = acc .. part
    if not M.is_dir(acc) then ffi.C.pv__mkdir(acc, tonumber("755", 8)) end
    acc = acc .. "/"
  end
  if not M.is_dir(path) then error("pivot.data: cannot create directory " .. path, 2) end
end

function M.dirname(path) return path:match("^(.*)/[^/]*$") or "." end
local function join(dir, rel)
  if rel:sub(1, 1) == "/" or dir == nil or dir == "" or dir == "." then return rel end
  return (dir:gsub("/+$", "")) .. "/" .. rel
end
M.join = join

---------------------------------------------------------------------------------------------------- JSONL
local function bad(kind, msg) error({kind = kind, msg = msg}, 0) end

local function type_name(v)
  if v == json.null then return "null" end
  local t = type(v)
  if t == "table" then return (#v > 0 or next(v) == nil) and "array" or "object" end
  return t
end

local function is_object(v) return type(v) == "table" and v ~= json.null and (next(v) == nil or #v == 0) end

local function need_string(obj, field, where)
  local v = obj[field]
  if v == nil then bad("missing_field", string.format("field '%s' missing", where or field)) end
  if type(v) ~= "string" then
    bad("wrong_type", string.format("field '%s' must be a string, got %s", where or field, type_name(v)))
  end
  return v
end

local function get_id(obj)
  local v = obj.id
  if v == nil then return nil end
  if type(v) == "number" then return string.format("%.17g", v) end
  if type(v) ~= "string" then bad("wrong_type", "field 'id' must be a string or a number, got " .. type_name(v)) end
  return v
end

local function parse_dpo(obj)
  return {format = "dpo", id = get_id(obj), prompt = need_string(obj, "prompt"), chosen = need_string(obj, "chosen"),
    rejected = need_string(obj, "rejected")}
end

local ROLES = {human = "user", gpt = "assistant", system = "system"}
local function parse_sft(obj)
  local conv = obj.conversations
  if conv == nil then bad("missing_field", "field 'conversations' missing") end
  if type(conv) ~= "table" or conv == json.null or (#conv == 0 and next(conv) ~= nil) then
    bad("wrong_type", "field 'conversations' must be an array, got " .. type_name(conv))
  end
  if #conv == 0 then bad("wrong_type", "field 'conversations' is empty") end
  local out, prompt, response = {}, nil, nil
  for i, turn in ipairs(conv) do
    local where = string.format("conversations[%d]", i - 1)
    if not is_object(turn) then bad("wrong_type", string.format("field '%s' must be an object, got %s", where,
      type_name(turn))) end
    local from = need_string(turn, "from", where .. ".from")
    local value = need_string(turn, "value", where .. ".value")
    if not ROLES[from] then
      bad("wrong_type", string.format("field '%s.from' must be 'human', 'gpt' or 'system', got '%s'", where, from))
    end
    out[i] = {from = from, value = value, role = ROLES[from]}
    if from == "human" and not prompt then prompt = value end
    if from == "gpt" and prompt and not response then response = value end
  end
  if not prompt then bad("missing_field", "field 'conversations' has no 'human' turn") end
  if not response then bad("missing_field", "field 'conversations' has no 'gpt' turn after the 'human' one") end
  return {format = "sft", id = get_id(obj), conversations = out, prompt = prompt, response = response}
end

-- data.read_jsonl(path, opts) -> items, stats. opts:
--   format = "auto" (default; per line: 'conversations' -> sft, else dpo) | "dpo" | "sft"
--   skip_bad = false: raise on the first bad line ("file:line: message"); true: skip and count it
--   image_root = directory that relative image paths are resolved against (default: the JSONL file's folder)
--   check_images = true: a missing image file is a bad line
--   image_token = true: prepend "<image>\n" to the prompt (first human turn) of an item with an image whose
--     prompt has no "<image>" (what the paper's mpo-make_jsons.py does)
--   limit = n: stop after n items
function M.read_jsonl(path, opts)
  opts = opts or {}
  local fmt = opts.format or "auto"
  if fmt ~= "auto" and fmt ~= "dpo" and fmt ~= "sft" then
    error("pivot.data.read_jsonl: format must be 'auto', 'dpo' or 'sft', got " .. tostring(fmt), 2)
  end
  local f, ferr = io.open(path, "rb")
  if not f then error("pivot.data.read_jsonl: " .. tostring(ferr), 2) end
  local root = opts.image_root or M.dirname(path)
  local check_images = opts.check_images ~= false
  local image_token = opts.image_token ~= false
  local items, stats = {}, {lines = 0, items = 0, skipped = 0, reasons = {}, counts = {}}
  local lineno = 0
  for line in f:lines() do
    lineno = lineno + 1
    line = line:gsub("\r$", "")
    if line:match("^%s*$") then goto continue end
    stats.lines = stats.lines + 1
    do
      local ok, item = pcall(function()
        local dok, obj = pcall(json.decode, line, "line")
        if not dok then bad("invalid_json", "invalid JSON: " .. tostring(obj):gsub("^line: ", "")) end
        if not is_object(obj) or #obj > 0 then bad("wrong_type", "expected a JSON object, got " .. type_name(obj)) end
        local kind = fmt
        if kind == "auto" then
          if obj.conversations ~= nil then kind = "sft"
          elseif obj.prompt ~= nil or obj.chosen ~= nil then kind = "dpo"
          else bad("missing_field", "cannot tell the format: field 'prompt' (dpo) or 'conversations' (sft) missing") end
        end
        local it = kind == "dpo" and parse_dpo(obj) or parse_sft(obj)
        local img = obj.image
        if img ~= nil and img ~= json.null then
          if type(img) ~= "string" then bad("wrong_type", "field 'image' must be a string, got " .. type_name(img)) end
          it.image_rel = img
          it.image = join(root, img)
          if check_images and not M.file_exists(it.image) then
            bad("missing_image", string.format("image '%s' not found (%s)", img, it.image))
          end
          if image_token and not it.prompt:find("<image>", 1, true) then
            it.prompt = "<image>\n" .. it.prompt
            if it.conversations then
              for _, t in ipairs(it.conversations) do
                if t.from == "human" then t.value = it.prompt break end
              end
            end
          end
        end
        return it
      end)
      if ok then
        item.line, item.source = lineno, path
        item.id = item.id or string.format("%s:%d", path:match("[^/]*$"), lineno)
        items[#items + 1] = item
        stats.items = stats.items + 1
        if opts.limit and #items >= opts.limit then break end
      else
        local kind, msg = "error", tostring(item)
        if type(item) == "table" then kind, msg = item.kind, item.msg end
        msg = string.format("%s:%d: %s", path, lineno, msg)
        if not opts.skip_bad or kind == "error" then
          f:close()
          error(msg, 2)
        end
        stats.skipped = stats.skipped + 1
        stats.reasons[#stats.reasons + 1] = msg
        stats.counts[kind] = (stats.counts[kind] or 0) + 1
      end
    end
    ::continue::
  end
  f:close()
  return items, stats
end

-- data.write_jsonl(path, records): one JSON object per line (keys sorted), written atomically (tmp + rename)
function M.write_jsonl(path, records)
  local tmp = path .. ".tmp"
  local f = assert(io.open(tmp, "wb"))
  for _, r in ipairs(records) do f:write(json.encode(r), "\n") end
  f:close()
  assert(os.rename(tmp, path))
end

-- data.to_sft(dpo_item) -> the SFT item on the chosen answer (how the paper's SFT uses the same pairs)
function M.to_sft(it)
  return {format = "sft", id = it.id, image = it.image, prompt = it.prompt, response = it.chosen, line = it.line,
    source = it.source, conversations = {{from = "human", role = "user", value = it.prompt},
      {from = "gpt", role = "assistant", value = it.chosen}}}
end

---------------------------------------------------------------------------------------------------- images
local function ctx_ptr(ctx)
  if type(ctx) == "table" and ctx.ptr then return ctx:ptr() end
  return ctx
end
local function c_error(ctx, st, what)
  local msg = ffi.string(C.pv_last_error(ctx_ptr(ctx)))
  if msg == "" then msg = what end
  return pv.status_name(st) .. ": " .. msg
end

local FLOATS = ffi.typeof("float[?]")
local I32S = ffi.typeof("int32_t[?]")

-- data.load_image(ctx, path, size [, out [, offset]]) -> out: float[3*size*size] (CHW), bicubic resize, normalised
-- with mean/std 0.5 (pv_image_load). out may be a larger buffer (a batch); offset counts floats. Errors name the
-- file (missing, truncated or undecodable data).
function M.load_image(ctx, path, size, out, offset)
  if type(path) ~= "string" then error("pivot.data.load_image: path must be a string, got " .. type(path), 2) end
  out = out or FLOATS(3 * size * size)
  local st = tonumber(C.pv_image_load(ctx_ptr(ctx), path, size, nil, nil, out + (offset or 0)))
  if st ~= 0 then error(c_error(ctx, st, path .. ": cannot load image"), 2) end
  return out
end

-- data.load_mask(ctx, path, size [, out]) -> int32_t[size*size]: a one-channel PNG label mask, nearest-neighbour
-- resized (pv_mask_load). A colour PNG is rejected as a wrong image mode.
function M.load_mask(ctx, path, size, out)
  out = out or I32S(size * size)
  local st = tonumber(C.pv_mask_load(ctx_ptr(ctx), path, size, out))
  if st ~= 0 then error(c_error(ctx, st, path .. ": cannot load mask"), 2) end
  return out
end

-- data.write_png(ctx, path, width, height, channels, bytes): an 8-bit PNG (rows top to bottom), atomically
function M.write_png(ctx, path, w, h, ch, bytes)
  local st = tonumber(C.pv_png_write(ctx_ptr(ctx), path, w, h, ch, bytes))
  if st ~= 0 then error(c_error(ctx, st, path .. ": cannot write PNG"), 2) end
end

-- data.mask_for(image_path, opts) -> the path of its label mask. Default layout (ADE20K): .../images/<split>/X.jpg
-- -> .../annotations/<split>/X.png. opts: image_dir ("images"), mask_dir ("annotations"), ext (".png"),
-- mask_root (a folder holding the masks directly: mask_root/X.png).
function M.mask_for(image_path, opts)
  opts = opts or {}
  local ext = opts.ext or ".png"
  local base = image_path:match("([^/]*)$"):gsub("%.[^.]*$", "") .. ext
  if opts.mask_root then return join(opts.mask_root, base) end
  local idir, mdir = opts.image_dir or "images", opts.mask_dir or "annotations"
  local dir = M.dirname(image_path)
  local parts, found = {}, false
  for p in (dir .. "/"):gmatch("([^/]*)/") do parts[#parts + 1] = p end
  for i = #parts, 1, -1 do
    if parts[i] == idir then
      parts[i] = mdir
      found = true
      break
    end
  end
  if not found then
    error(string.format("pivot.data.mask_for: '%s' has no '%s' folder in its path (pass mask_root)", image_path, idir), 2)
  end
  return table.concat(parts, "/") .. "/" .. base
end

local IMAGE_EXT = {png = true, jpg = true, jpeg = true, bmp = true, JPEG = true, JPG = true, PNG = true}

-- data.image_folder(root, opts) -> classes, list: one subfolder per class (sorted names; label = 0-based index),
-- list = {{path, label, class}, ...} in class then file-name order. opts.extensions: a set of extensions
-- (default png, jpg, jpeg, bmp), opts.limit_per_class.
function M.image_folder(root, opts)
  opts = opts or {}
  local exts = opts.extensions or IMAGE_EXT
  local names, err = M.list_dir(root)
  if not names then error("pivot.data.image_folder: " .. err, 2) end
  local classes, list = {}, {}
  for _, n in ipairs(names) do
    if M.is_dir(join(root, n)) then classes[#classes + 1] = n end
  end
  if #classes == 0 then error("pivot.data.image_folder: " .. root .. " has no class subfolders", 2) end
  for label0, cname in ipairs(classes) do
    local files = M.list_dir(join(root, cname)) or {}
    local k = 0
    for _, fname in ipairs(files) do
      local ext = fname:match("%.([^.]+)$")
      if ext and exts[ext] then
        k = k + 1
        if opts.limit_per_class and k > opts.limit_per_class then break end
        list[#list + 1] = {path = join(join(root, cname), fname), label = label0 - 1, class = cname}
      end
    end
  end
  return classes, list
end

---------------------------------------------------------------------------------------------------- patch labels
-- data.patch_labels(class_map, size, patch, n_classes, opts) -> {data = uint8_t[n_patches*n_classes],
--   n_patches, n_classes, grid}: multi-label targets of the segmentation probe. class_map is int32 [size*size]
--   (row-major) with classes 0..n_classes-1; patch p (row-major over the (size/patch)^2 grid) gets label c when at
--   least max(1, ceil(min_fraction * patch^2)) of its pixels have class c. Pixels equal to opts.ignore (e.g. 255
--   or -1) count for no class. opts.min_fraction defaults to 0 (any pixel).
function M.patch_labels(map, size, patch, nclass, opts)
  opts = opts or {}
  if size % patch ~= 0 then error(string.format("pivot.data.patch_labels: size %d is not a multiple of patch %d",
    size, patch), 2) end
  local g = size / patch
  local np = g * g
  local need = math.max(1, math.ceil((opts.min_fraction or 0) * patch * patch - 1e-9))
  local ignore = opts.ignore
  local counts = ffi.new("int32_t[?]", nclass)
  local out = ffi.new("uint8_t[?]", np * nclass)
  for py = 0, g - 1 do
    for px = 0, g - 1 do
      ffi.fill(counts, nclass * 4)
      for y = py * patch, py * patch + patch - 1 do
        local row = y * size
        for x = px * patch, px * patch + patch - 1 do
          local c = map[row + x]
          if c ~= ignore then
            if c < 0 or c >= nclass then
              error(string.format("pivot.data.patch_labels: class %d at (%d, %d) out of range 0..%d", c, x, y,
                nclass - 1), 2)
            end
            counts[c] = counts[c] + 1
          end
        end
      end
      local base = (py * g + px) * nclass
      for c = 0, nclass - 1 do out[base + c] = counts[c] >= need and 1 or 0 end
    end
  end
  return {data = out, n_patches = np, n_classes = nclass, grid = g}
end

---------------------------------------------------------------------------------------------------- batching
local Batches = {}
Batches.__index = Batches
Batches.__call = function(self) return self:next() end

local function seq_len(v, it, field)
  if type(v) == "table" then return #v end
  if type(v) == "cdata" then
    local n = it[field .. "_n"] or it.n
    if not n then error("pivot.data.batches: cdata field '" .. field .. "' needs a length in '" .. field .. "_n'", 3) end
    return n
  end
  error(string.format("pivot.data.batches: item %s field '%s' must be a list of ids, got %s", tostring(it.id),
    field, type(v)), 3)
end

-- data.batches(items, opts) -> an iterator (for batch in it do ... end, or it:next()) with it:state() and
-- it:restore(state). opts:
--   batch_size (required), seed (0), epochs (1; math.huge for endless), shuffle (true), drop_last (false),
--   buckets: sorted lengths; a batch is padded to the smallest bucket >= its longest sequence (none: to the
--     longest); a longer sequence is an error unless truncate = true (cut to the largest bucket)
--   fields: {name = pad_value} of the sequence fields to pad (right padding); default {ids = pad_id,
--     labels = -100} for the ones the first item has. pad_id defaults to 0.
--   pad_last: pad a short last batch with empty rows (all pad, mask 0) so B stays batch_size (batch.real = rows)
-- Each batch: {B, T, real, epoch, step, index (position of its first item in the epoch, 0-based), items,
--   indices (1-based into items), lengths, attention_mask (int32_t[B*T]), and one int32_t[B*T] per field}.
-- The order depends only on (seed, epoch): the permutation of epoch e is data.rng(seed, "epoch", e):permutation.
function M.batches(items, opts)
  opts = opts or {}
  local bs = opts.batch_size
  if type(bs) ~= "number" or bs < 1 then error("pivot.data.batches: batch_size must be >= 1", 2) end
  local fields = opts.fields
  if not fields then
    fields = {}
    local first = items[1] or {}
    if first.ids ~= nil then fields.ids = opts.pad_id or 0 end
    if first.labels ~= nil then fields.labels = -100 end
  end
  local fnames = {}
  for k in pairs(fields) do fnames[#fnames + 1] = k end
  table.sort(fnames)
  if opts.buckets then
    for i = 2, #opts.buckets do
      if opts.buckets[i] <= opts.buckets[i - 1] then error("pivot.data.batches: buckets must increase", 2) end
    end
  end
  local self = setmetatable({items = items, n = #items, bs = bs, seed = opts.seed or 0, epochs = opts.epochs or 1,
    shuffle = opts.shuffle ~= false, drop_last = opts.drop_last or false, buckets = opts.buckets,
    truncate = opts.truncate, fields = fields, fnames = fnames, pad_last = opts.pad_last,
    epoch = 0, index = 0, step = 0}, Batches)
  return self
end

function Batches:_perm()
  if self._perm_epoch ~= self.epoch then
    if self.shuffle then
      self._order = M.rng(self.seed, "epoch", self.epoch):permutation(self.n)
    else
      local p = {}
      for i = 1, self.n do p[i] = i end
      self._order = p
    end
    self._perm_epoch = self.epoch
  end
  return self._order
end

-- batches per epoch
function Batches:per_epoch()
  if self.drop_last then return math.floor(self.n / self.bs) end
  return math.ceil(self.n / self.bs)
end

function Batches:state()
  return {epoch = self.epoch, index = self.index, seed = self.seed, step = self.step, n = self.n,
    batch_size = self.bs}
end

function Batches:restore(st)
  if type(st) ~= "table" then error("pivot.data.batches:restore: expected a state table", 2) end
  if st.n and st.n ~= self.n then
    error(string.format("pivot.data.batches:restore: the state is for %d items, this iterator has %d", st.n, self.n), 2)
  end
  if st.batch_size and st.batch_size ~= self.bs then
    error(string.format("pivot.data.batches:restore: the state is for batch_size %d, this iterator has %d",
      st.batch_size, self.bs), 2)
  end
  self.epoch, self.index, self.step = st.epoch or 0, st.index or 0, st.step or 0
  if st.seed ~= nil then self.seed = st.seed end
  self._perm_epoch = nil
  return self
end

function Batches:next()
  while true do
    if self.epoch >= self.epochs or self.n == 0 then return nil end
    local left = self.n - self.index
    if left <= 0 or (self.drop_last and left < self.bs) then
      self.epoch, self.index = self.epoch + 1, 0
    else
      break
    end
  end
  local order = self:_perm()
  local real = math.min(self.bs, self.n - self.index)
  local idx, list, lengths = {}, {}, {}
  local longest = 0
  for r = 1, real do
    local i = order[self.index + r]
    local it = self.items[i]
    idx[r], list[r] = i, it
    local len = 0
    for _, f in ipairs(self.fnames) do
      local v = it[f]
      if v == nil then error(string.format("pivot.data.batches: item %s has no field '%s'", tostring(it.id or i), f), 2) end
      local l = seq_len(v, it, f)
      if l > len then len = l end
    end
    lengths[r] = len
    if len > longest then longest = len end
  end
  local T = longest
  if self.buckets then
    T = nil
    for _, b in ipairs(self.buckets) do
      if b >= longest then T = b break end
    end
    if not T then
      local maxb = self.buckets[#self.buckets]
      if not self.truncate then
        local who
        for r = 1, real do if lengths[r] == longest then who = list[r].id or idx[r] break end end
        error(string.format("pivot.data.batches: item %s has length %d, longer than the largest bucket %d " ..
          "(pass truncate = true to cut it)", tostring(who), longest, maxb), 2)
      end
      T = maxb
    end
  end
  T = math.max(T, 1)
  local B = self.pad_last and self.bs or real
  local batch = {B = B, T = T, real = real, epoch = self.epoch, step = self.step, index = self.index, items = list,
    indices = idx, lengths = lengths, attention_mask = ffi.new("int32_t[?]", B * T)}
  for _, f in ipairs(self.fnames) do
    local pad = self.fields[f]
    local buf = ffi.new("int32_t[?]", B * T)
    for k = 0, B * T - 1 do buf[k] = pad end
    for r = 1, real do
      local v = list[r][f]
      local base = (r - 1) * T
      if type(v) == "table" then
        for k = 1, math.min(#v, T) do buf[base + k - 1] = v[k] end
      else
        local n = math.min(seq_len(v, list[r], f), T)
        for k = 0, n - 1 do buf[base + k] = v[k] end
      end
    end
    batch[f] = buf
  end
  local mask = batch.attention_mask
  for r = 1, real do
    local base = (r - 1) * T
    for k = 0, math.min(lengths[r], T) - 1 do mask[base + k] = 1 end
    lengths[r] = math.min(lengths[r], T)
  end
  self.index = self.index + real
  self.step = self.step + 1
  return batch
end

-- data.batch_images(ctx, items, size, opts) -> float[B*3*size*size]: item.image is a float cdata of
-- 3*size*size (a world sample) or a file path (loaded with data.load_image); items without an image (or the
-- padded rows up to opts.B) are zeros. opts.out: a buffer to reuse.
function M.batch_images(ctx, items, size, opts)
  opts = opts or {}
  local B = opts.B or #items
  local per = 3 * size * size
  local out = opts.out or FLOATS(B * per)
  ffi.fill(out, B * per * 4)
  for r, it in ipairs(items) do
    local img = it.image
    if type(img) == "string" then M.load_image(ctx, img, size, out, (r - 1) * per)
    elseif type(img) == "cdata" then ffi.copy(out + (r - 1) * per, img, per * 4) end
  end
  return out
end

return M
