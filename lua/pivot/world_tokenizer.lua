-- pivot.world_tokenizer: a small Qwen2-format tokenizer.json for the built-in world.
--
--   local wt = require "pivot.world_tokenizer"
--   local info = wt.build(w:vocabulary(), "world_tokenizer.json")   -- info.vocab_size (<= 512), info.specials
--   local tok = ctx:tokenizer("world_tokenizer.json")                 -- the C tokenizer that reads real checkpoints
--
-- The file is what Qwen2's tokenizer.json looks like: byte-level BPE with the 256 byte symbols (GPT-2's
-- bytes_to_unicode order, ids 0..255), NFC normalizer, the exact Qwen2 Split regex then ByteLevel as the
-- pre-tokenizer, a ByteLevel decoder, and the added special tokens <|endoftext|>, <|im_start|>, <|im_end|> and
-- <image> (special: matched whole before pre-tokenization) with the last ids. The merges are learned (BPE
-- training, most frequent pair first, ties broken by the shorter then the lexicographically smaller result) on
-- the bare words until every word is one token; then one merge "Ġ" + word per word makes the form with a
-- leading space one token too. So every word of the world is one token with and without a leading space; digits,
-- punctuation and newlines are single bytes already. If the vocabulary would exceed max_vocab, the spaced forms of
-- capitalised words (which only start sentences) are dropped first; beyond that build() fails.
local json = require "pivot.json"

local M = {}

-- the exact pre-tokenizer regex of Qwen2's tokenizer.json
M.QWEN2_REGEX = [[(?i:'s|'t|'re|'ve|'m|'ll|'d)|[^\r\n\p{L}\p{N}]?\p{L}+|\p{N}| ?[^\s\p{L}\p{N}]+[\r\n]*|\s*[\r\n]+|\s+(?!\S)|\s+]]
M.SPECIALS = {"<|endoftext|>", "<|im_start|>", "<|im_end|>", "<image>"}

local function utf8(cp)
  if cp < 0x80 then return string.char(cp) end
  if cp < 0x800 then return string.char(0xC0 + math.floor(cp / 64), 0x80 + cp % 64) end
  error("world_tokenizer: code point out of range")
end

-- GPT-2 bytes_to_unicode: byte -> symbol (a UTF-8 string), and the 256 symbols in vocab order
local BYTE_SYM, BYTE_ORDER = {}, {}
do
  local n = 0
  for b = 0, 255 do
    if (b >= 33 and b <= 126) or (b >= 161 and b <= 172) or b >= 174 then
      BYTE_SYM[b] = utf8(b)
      BYTE_ORDER[#BYTE_ORDER + 1] = b
    end
  end
  for b = 0, 255 do
    if not BYTE_SYM[b] then
      BYTE_SYM[b] = utf8(256 + n)
      n = n + 1
      BYTE_ORDER[#BYTE_ORDER + 1] = b
    end
  end
end
M.byte_symbol = function(b) return BYTE_SYM[b] end

-- text (bytes) -> the byte-level symbol string (how the token appears in vocab)
function M.to_symbols(s)
  local t = {}
  for i = 1, #s do t[i] = BYTE_SYM[s:byte(i)] end
  return table.concat(t)
end

local SPACE = BYTE_SYM[32] -- "Ġ"

-- BPE training on distinct words (each word counts once per occurrence of a pair) until every word is one token.
local function train(words)
  local segs = {}
  for i, w in ipairs(words) do
    local s = {}
    for j = 1, #w do s[j] = BYTE_SYM[w:byte(j)] end
    segs[i] = s
  end
  local merges, new_tokens, have = {}, {}, {}
  while true do
    local counts, keys = {}, {}
    for _, s in ipairs(segs) do
      for j = 1, #s - 1 do
        local k = s[j] .. "\0" .. s[j + 1]
        if not counts[k] then
          counts[k] = 0
          keys[#keys + 1] = k
        end
        counts[k] = counts[k] + 1
      end
    end
    if #keys == 0 then break end
    local best, bc, bl
    for _, k in ipairs(keys) do
      local c, l = counts[k], #k - 1
      if not best or c > bc or (c == bc and (l < bl or (l == bl and k < best))) then best, bc, bl = k, c, l end
    end
    local a, b = best:match("^(.-)%z(.*)$")
    local ab = a .. b
    merges[#merges + 1] = {a, b}
    if not have[ab] then
      have[ab] = true
      new_tokens[#new_tokens + 1] = ab
    end
    for i, s in ipairs(segs) do
      local o, j = {}, 1
      while j <= #s do
        if j < #s and s[j] == a and s[j + 1] == b then
          o[#o + 1] = ab
          j = j + 2
        else
          o[#o + 1] = s[j]
          j = j + 1
        end
      end
      segs[i] = o
    end
  end
  return merges, new_tokens
end

-- wt.build(words, path, opts) -> {path, vocab_size, n_merges, specials = {name = id}, pad_id, words}
--   words: list of words (ASCII letters; a leading space is ignored; duplicates are fine)
--   opts.max_vocab (512)
function M.build(words, path, opts)
  opts = opts or {}
  local max_vocab = opts.max_vocab or 512
  local list, seen = {}, {}
  for _, w in ipairs(words) do
    if type(w) ~= "string" then error("world_tokenizer.build: words must be strings", 2) end
    w = w:gsub("^ ", "")
    if not w:match("^%a+$") then
      error("world_tokenizer.build: '" .. w .. "' is not a word of ASCII letters (one pre-token)", 2)
    end
    if not seen[w] then
      seen[w] = true
      list[#list + 1] = w
    end
  end
  table.sort(list)
  local merges, tokens = train(list)
  local have = {}
  for _, b in ipairs(BYTE_ORDER) do have[BYTE_SYM[b]] = true end
  for _, t in ipairs(tokens) do have[t] = true end
  local base = 0
  for _ in pairs(have) do base = base + 1 end
  -- spaced forms: lowercase words first, capitalised ones only while the budget allows
  local spaced = {}
  for _, w in ipairs(list) do if not w:match("^%u") then spaced[#spaced + 1] = w end end
  local budget = max_vocab - #M.SPECIALS - base
  if #spaced > budget then
    error(string.format("world_tokenizer.build: %d words need %d tokens, more than max_vocab %d", #list,
      base + #spaced + #M.SPECIALS, max_vocab), 2)
  end
  for _, w in ipairs(list) do
    if w:match("^%u") and #spaced < budget then spaced[#spaced + 1] = w end
  end
  local vocab, order = {}, {}
  local function add(t)
    if vocab[t] == nil then
      vocab[t] = #order
      order[#order + 1] = t
    end
  end
  for _, b in ipairs(BYTE_ORDER) do add(BYTE_SYM[b]) end
  for _, t in ipairs(tokens) do add(t) end
  for _, w in ipairs(spaced) do
    merges[#merges + 1] = {SPACE, w}
    add(SPACE .. w)
  end
  local added, specials = {}, {}
  for i, sp in ipairs(M.SPECIALS) do
    local id = #order + i - 1
    specials[sp] = id
    added[i] = {id = id, content = sp, single_word = false, lstrip = false, rstrip = false, normalized = false,
      special = true}
  end
  local doc = {
    version = "1.0", truncation = json.null, padding = json.null, added_tokens = added,
    normalizer = {type = "NFC"},
    pre_tokenizer = {type = "Sequence", pretokenizers = {
      {type = "Split", pattern = {Regex = M.QWEN2_REGEX}, behavior = "Isolated", invert = false},
      {type = "ByteLevel", add_prefix_space = false, trim_offsets = false, use_regex = false}}},
    post_processor = json.null,
    decoder = {type = "ByteLevel", add_prefix_space = true, trim_offsets = true, use_regex = true},
    model = {type = "BPE", dropout = json.null, unk_token = json.null, continuing_subword_prefix = json.null,
      end_of_word_suffix = json.null, fuse_unk = false, byte_fallback = false, ignore_merges = false,
      vocab = vocab, merges = merges},
  }
  local tmp = path .. ".tmp"
  local f, err = io.open(tmp, "wb")
  if not f then error("world_tokenizer.build: " .. tostring(err), 2) end
  f:write(json.encode(doc, "  "), "\n")
  f:close()
  local ok, rerr = os.rename(tmp, path)
  if not ok then error("world_tokenizer.build: " .. tostring(rerr), 2) end
  return {path = path, vocab_size = #order + #M.SPECIALS, n_merges = #merges, specials = specials,
    pad_id = specials["<|endoftext|>"], words = list, spaced = spaced}
end

---------------------------------------------------------------------------------------------------- pre-tokenizer
local function is_letter(c) return c:match("^%a$") ~= nil end
local function is_digit(c) return c:match("^%d$") ~= nil end
local function is_space(c) return c:match("^%s$") ~= nil end
local function is_nl(c) return c == "\r" or c == "\n" end

-- wt.pretokenize_ascii(text [, specials]) -> list of pieces: the Qwen2 Split regex for ASCII text (what the
-- tokenizer's pre-tokenizer does), with the special tokens (default wt.SPECIALS) split off whole first. For
-- checks: a text whose every word is one token encodes to exactly #pieces ids.
function M.pretokenize_ascii(text, specials)
  specials = specials or M.SPECIALS
  local out = {}
  local function chunk(s)
    local i, n = 1, #s
    while i <= n do
      local c = s:sub(i, i)
      local nx = s:sub(i + 1, i + 1)
      local j
      local lower = s:sub(i, i + 2):lower()
      if c == "'" and (lower:match("^'[stmd]") or lower:match("^'re") or lower:match("^'ve") or lower:match("^'ll")) then
        j = (lower:match("^'[stmd]") and i + 1) or i + 2
      elseif is_letter(c) or (not is_nl(c) and not is_letter(c) and not is_digit(c) and nx ~= "" and is_letter(nx)) then
        j = is_letter(c) and i or i + 1
        while j + 1 <= n and is_letter(s:sub(j + 1, j + 1)) do j = j + 1 end
      elseif is_digit(c) then
        j = i
      else
        local k = i
        if c == " " and nx ~= "" and not is_space(nx) and not is_letter(nx) and not is_digit(nx) then k = i + 1 end
        local cc = s:sub(k, k)
        if cc ~= "" and not is_space(cc) and not is_letter(cc) and not is_digit(cc) then
          j = k
          while j + 1 <= n do
            local d = s:sub(j + 1, j + 1)
            if is_space(d) or is_letter(d) or is_digit(d) then break end
            j = j + 1
          end
          while j + 1 <= n and is_nl(s:sub(j + 1, j + 1)) do j = j + 1 end
        else -- whitespace
          local e = i
          while e + 1 <= n and is_space(s:sub(e + 1, e + 1)) do e = e + 1 end
          local lastnl
          for q = i, e do if is_nl(s:sub(q, q)) then lastnl = q end end
          if lastnl then j = lastnl
          elseif e == n then j = e
          elseif e > i then j = e - 1
          else j = i end
        end
      end
      out[#out + 1] = s:sub(i, j)
      i = j + 1
    end
  end
  local pos = 1
  while pos <= #text do
    local best, bl
    for _, sp in ipairs(specials) do
      local a = text:find(sp, pos, true)
      if a and (not best or a < best or (a == best and #sp > bl)) then best, bl = a, #sp end
    end
    if not best then
      chunk(text:sub(pos))
      break
    end
    if best > pos then chunk(text:sub(pos, best - 1)) end
    out[#out + 1] = text:sub(best, best + bl - 1)
    pos = best + bl
  end
  return out
end

return M
