-- Minimal JSON decode/encode for configs, metrics and reports (no tensor data goes through here).
-- decode(str [, name]) -> value; errors name the source and the byte offset. json.null marks JSON null.
local M = {}
M.null = setmetatable({}, {__tostring = function() return "null" end})

local byte, sub, find, char = string.byte, string.sub, string.find, string.char

local function perr(src, pos, msg) error(string.format("%s: JSON error at byte %d: %s", src or "json", pos, msg), 0) end

local function skip(s, i)
  local _, e = find(s, "^[ \t\r\n]*", i)
  return e + 1
end

local function utf8_enc(cp)
  if cp < 0x80 then return char(cp)
  elseif cp < 0x800 then return char(0xC0 + math.floor(cp / 64), 0x80 + cp % 64)
  elseif cp < 0x10000 then return char(0xE0 + math.floor(cp / 4096), 0x80 + math.floor(cp / 64) % 64, 0x80 + cp % 64)
  else return char(0xF0 + math.floor(cp / 262144), 0x80 + math.floor(cp / 4096) % 64, 0x80 + math.floor(cp / 64) % 64, 0x80 + cp % 64) end
end

local esc = {['"'] = '"', ['\\'] = '\\', ['/'] = '/', b = '\b', f = '\f', n = '\n', r = '\r', t = '\t'}

local parse
local function parse_string(s, i, src)
  local out, j = {}, i + 1
  while true do
    local a, b = find(s, '["\\]', j)
    if not a then perr(src, i, "unterminated string") end
    out[#out + 1] = sub(s, j, a - 1)
    if sub(s, a, a) == '"' then return table.concat(out), a + 1 end
    local c = sub(s, a + 1, a + 1)
    if c == 'u' then
      local hex = sub(s, a + 2, a + 5)
      if not hex:match("^%x%x%x%x$") then perr(src, a, "bad \\u escape") end
      local cp = tonumber(hex, 16)
      local nxt = a + 6
      if cp >= 0xD800 and cp < 0xDC00 and sub(s, nxt, nxt + 1) == "\\u" then
        local lo = tonumber(sub(s, nxt + 2, nxt + 5), 16)
        if lo and lo >= 0xDC00 and lo < 0xE000 then
          cp = 0x10000 + (cp - 0xD800) * 1024 + (lo - 0xDC00)
          nxt = nxt + 6
        end
      end
      out[#out + 1] = utf8_enc(cp)
      j = nxt
    elseif esc[c] then
      out[#out + 1] = esc[c]
      j = a + 2
    else
      perr(src, a, "bad escape \\" .. c)
    end
    _ = b
  end
end

parse = function(s, i, src)
  i = skip(s, i)
  local c = sub(s, i, i)
  if c == "{" then
    local obj = {}
    i = skip(s, i + 1)
    if sub(s, i, i) == "}" then return obj, i + 1 end
    while true do
      i = skip(s, i)
      if sub(s, i, i) ~= '"' then perr(src, i, "expected a key string") end
      local k
      k, i = parse_string(s, i, src)
      i = skip(s, i)
      if sub(s, i, i) ~= ":" then perr(src, i, "expected ':'") end
      local v
      v, i = parse(s, i + 1, src)
      obj[k] = v
      i = skip(s, i)
      local d = sub(s, i, i)
      if d == "}" then return obj, i + 1 end
      if d ~= "," then perr(src, i, "expected ',' or '}'") end
      i = i + 1
    end
  elseif c == "[" then
    local arr, n = {}, 0
    i = skip(s, i + 1)
    if sub(s, i, i) == "]" then return arr, i + 1 end
    while true do
      local v
      v, i = parse(s, i, src)
      n = n + 1
      arr[n] = v
      i = skip(s, i)
      local d = sub(s, i, i)
      if d == "]" then return arr, i + 1 end
      if d ~= "," then perr(src, i, "expected ',' or ']'") end
      i = i + 1
    end
  elseif c == '"' then
    return parse_string(s, i, src)
  elseif c == "t" and sub(s, i, i + 3) == "true" then return true, i + 4
  elseif c == "f" and sub(s, i, i + 4) == "false" then return false, i + 5
  elseif c == "n" and sub(s, i, i + 3) == "null" then return M.null, i + 4
  else
    local a, b = find(s, "^-?%d+%.?%d*[eE]?[-+]?%d*", i)
    if not a then perr(src, i, "unexpected character '" .. c .. "'") end
    local v = tonumber(sub(s, a, b))
    if not v then perr(src, i, "bad number") end
    return v, b + 1
  end
end

function M.decode(s, src)
  if type(s) ~= "string" then error((src or "json") .. ": expected a string", 2) end
  local v, i = parse(s, 1, src)
  i = skip(s, i)
  if i <= #s then perr(src, i, "trailing characters") end
  return v
end

function M.read_file(path)
  local f, err = io.open(path, "rb")
  if not f then error(path .. ": " .. tostring(err), 0) end
  local s = f:read("*a")
  f:close()
  return M.decode(s, path)
end

local function is_array(t)
  local n = 0
  for k in pairs(t) do
    if type(k) ~= "number" then return false end
    n = n + 1
  end
  return n == #t
end

local function enc_str(s)
  return '"' .. s:gsub('[%c"\\]', function(c)
    local m = {['"'] = '\\"', ['\\'] = '\\\\', ['\n'] = '\\n', ['\r'] = '\\r', ['\t'] = '\\t'}
    return m[c] or string.format("\\u%04x", byte(c))
  end) .. '"'
end

local function enc(v, ind, cur, out)
  local t = type(v)
  if v == M.null or v == nil then out[#out + 1] = "null"
  elseif t == "boolean" then out[#out + 1] = tostring(v)
  elseif t == "number" then
    if v ~= v or v == math.huge or v == -math.huge then out[#out + 1] = "null"
    elseif v == math.floor(v) and math.abs(v) < 1e15 then out[#out + 1] = string.format("%d", v)
    else out[#out + 1] = string.format("%.9g", v) end
  elseif t == "string" then out[#out + 1] = enc_str(v)
  elseif t == "table" then
    local nl = ind and ("\n" .. cur .. ind) or ""
    local close = ind and ("\n" .. cur) or ""
    local sep = ind and ": " or ":"
    if is_array(v) and (#v > 0 or getmetatable(v) ~= M.object_mt) then
      if #v == 0 then out[#out + 1] = "[]" return end
      out[#out + 1] = "["
      for i = 1, #v do
        out[#out + 1] = (i > 1 and "," or "") .. nl
        enc(v[i], ind, ind and cur .. ind or cur, out)
      end
      out[#out + 1] = close .. "]"
    else
      local keys = {}
      for k in pairs(v) do keys[#keys + 1] = tostring(k) end
      table.sort(keys)
      if #keys == 0 then out[#out + 1] = "{}" return end
      out[#out + 1] = "{"
      for i, k in ipairs(keys) do
        out[#out + 1] = (i > 1 and "," or "") .. nl .. enc_str(k) .. sep
        local val = v[k]
        if val == nil then val = v[tonumber(k)] end
        enc(val, ind, ind and cur .. ind or cur, out)
      end
      out[#out + 1] = close .. "}"
    end
  else
    error("json.encode: cannot encode a " .. t, 0)
  end
end

M.object_mt = {}
function M.object(t) return setmetatable(t or {}, M.object_mt) end

-- encode(value [, indent]) -> string (keys sorted, so output is deterministic)
function M.encode(v, indent)
  local out = {}
  enc(v, indent and (type(indent) == "string" and indent or "  ") or nil, "", out)
  return table.concat(out)
end

return M
