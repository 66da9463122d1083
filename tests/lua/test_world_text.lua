-- Tests of the built-in world's Lua side (lua/pivot/world.lua) and its tokenizer (lua/pivot/world_tokenizer.lua):
-- determinism, patch labels against the instance map, one-error preference pairs, the knowledge bank, and the
-- world tokenizer (every word one token, exact round trips, vocab <= 512). Run by ctest as
-- `pivot run tests/lua/test_world_text.lua`.
local pv = require "pivot"
local ffi = pv.ffi
local world = require "pivot.world"
local wt = require "pivot.world_tokenizer"
local data = require "pivot.data"
local json = require "pivot.json"

local T = require("pivot.testing").suite("world_text")
local function case(name, fn) T:case(name, fn) end

local ctx = pv.context{threads = 1}
local CONFIGS = {
  {},
  {image_size = 64, grid = 3, min_objects = 2, max_objects = 6, allow_occlusion = true, noise = 0.1},
  {image_size = 32, grid = 2, min_objects = 0, max_objects = 4, textured = false, noise = 0},
}
local N = 60 -- samples per config

-- deep comparison of plain Lua values (cdata compared by identity is skipped: `skip` lists keys to ignore)
local function same(a, b, path, skip)
  path = path or "value"
  if type(a) ~= type(b) then return false, path .. ": " .. type(a) .. " vs " .. type(b) end
  if type(a) == "table" then
    for k, v in pairs(a) do
      if not (skip and skip[k]) then
        local ok, why = same(v, b[k], path .. "." .. tostring(k), skip)
        if not ok then return false, why end
      end
    end
    for k in pairs(b) do
      if not (skip and skip[k]) and a[k] == nil then return false, path .. "." .. tostring(k) .. " missing" end
    end
    return true
  end
  if type(a) == "cdata" then return true end
  if a ~= b then return false, path .. ": " .. tostring(a) .. " vs " .. tostring(b) end
  return true
end

local SKIP = {world = true, image = true, rgb = true, instance = true}

case("determinism: same (seed, index) -> the same texts, pairs and image bytes", function()
  for ci, cfg in ipairs(CONFIGS) do
    local w1, w2 = world.new(ctx, cfg), world.new(ctx, cfg)
    local S = w1.S
    local distinct = {}
    for i = 0, 19 do
      local a, b = w1:sample(11, i), w2:sample(11, i)
      local c = w1:sample(11, i) -- the same world again, after other samples
      for _, x in ipairs {b, c} do
        local ok, why = same(a, x, "sample", SKIP)
        assert(ok, string.format("config %d index %d: %s", ci, i, tostring(why)))
        assert(ffi.string(a.rgb, S * S * 3) == ffi.string(x.rgb, S * S * 3), "rgb bytes differ")
        assert(ffi.string(a.image, S * S * 12) == ffi.string(x.image, S * S * 12), "image bytes differ")
        assert(ffi.string(a.instance, S * S * 4) == ffi.string(x.instance, S * S * 4), "instance bytes differ")
      end
      distinct[ffi.string(a.rgb, S * S * 3)] = true
    end
    local n = 0
    for _ in pairs(distinct) do n = n + 1 end
    assert(n == 20, "config " .. ci .. ": only " .. n .. " distinct images of 20")
    -- another seed gives another stream
    local d = 0
    for i = 0, 9 do
      if ffi.string(w1:sample(11, i).rgb, S * S * 3) ~= ffi.string(w1:sample(12, i).rgb, S * S * 3) then d = d + 1 end
    end
    assert(d == 10, "seeds 11 and 12 share images")
  end
end)

case("objects, instance map and image-level labels agree", function()
  for _, cfg in ipairs(CONFIGS) do
    local w = world.new(ctx, cfg)
    local S = w.S
    for i = 0, N - 1 do
      local s = w:sample(3, i)
      local n = #s.objects
      assert(n >= w.cfg.min_objects and n <= w.cfg.max_objects, "object count " .. n)
      local count = {}
      for k = 1, n do count[k] = 0 end
      for y = 0, S - 1 do
        for x = 0, S - 1 do
          local k = s.instance[y * S + x]
          assert(k >= 0 and k <= n, "instance value " .. k)
          if k > 0 then
            count[k] = count[k] + 1
            local b = s.objects[k].bbox
            assert(x >= b[1] and x < b[3] and y >= b[2] and y < b[4], "pixel outside its object's bbox")
          end
        end
      end
      local cells = {}
      for k, o in ipairs(s.objects) do
        assert(count[k] == o.visible, string.format("object %d: %d pixels in the map, visible says %d", k, count[k],
          o.visible))
        assert(o.visible > 0, "an invisible object")
        local key = o.cell_x .. "," .. o.cell_y
        assert(not cells[key], "two objects in one cell")
        cells[key] = true
        assert(o.position == w:position_name(o.cell_x, o.cell_y))
        assert(w.shapes[o.shape_id + 1] == o.shape and w.colors[o.color_id + 1] == o.color)
      end
      if n > 0 then
        local best = 0
        for _, o in ipairs(s.objects) do best = math.max(best, o.visible) end
        local lo = s.objects[s.label_object]
        assert(lo.visible == best and s.labels.shape == lo.shape_id and s.labels.color == lo.color_id)
      else
        assert(s.labels.shape == -1)
      end
      assert(s.labels.count == n and s.labels.count_class == n - w.cfg.min_objects)
    end
  end
end)

case("patch labels agree with the instance map", function()
  for _, cfg in ipairs(CONFIGS) do
    local w = world.new(ctx, cfg)
    local S = w.S
    for _, P in ipairs {4, 8} do
      for _, attr in ipairs {"shape", "color"} do
        for _, frac in ipairs {0, 0.25} do
          for i = 0, 14 do
            local s = w:sample(5, i)
            local pl = s:patch_labels(P, {attribute = attr, min_fraction = frac})
            local g = S / P
            local nc = 1 + #w[attr .. "s"]
            assert(pl.n_patches == g * g and pl.n_classes == nc and #pl.classes == nc)
            assert(pl.classes[1] == "background")
            local need = math.max(1, math.ceil(frac * P * P))
            for py = 0, g - 1 do
              for px = 0, g - 1 do
                local cnt = {}
                for y = py * P, py * P + P - 1 do
                  for x = px * P, px * P + P - 1 do
                    local k = s.instance[y * S + x]
                    local c = k == 0 and 0 or 1 + s.objects[k][attr .. "_id"]
                    cnt[c] = (cnt[c] or 0) + 1
                  end
                end
                local p = py * g + px
                for c = 0, nc - 1 do
                  local want = (cnt[c] or 0) >= need and 1 or 0
                  assert(pl.data[p * nc + c] == want, string.format("patch %d class %d (%s): label %d, expected %d",
                    p, c, pl.classes[c + 1], pl.data[p * nc + c], want))
                end
              end
            end
          end
        end
      end
    end
  end
end)

-- does a description ("large red circle", "red object", "object at the top left") match exactly one object, k?
local function resolves_to(w, objs, desc, k)
  local matches = {}
  for j, o in ipairs(objs) do
    local ok
    local pos = desc:match("^object at the (.+)$")
    if pos then ok = o.position == pos
    else
      ok = true
      local words = {}
      for wd in desc:gmatch("%a+") do words[#words + 1] = wd end
      for _, wd in ipairs(words) do
        if w.size_id[wd] then ok = ok and o.size == wd
        elseif w.color_id[wd] then ok = ok and o.color == wd
        elseif w.shape_id[wd] then ok = ok and o.shape == wd
        elseif wd ~= "object" then error("unknown word in description: " .. wd) end
      end
    end
    if ok then matches[#matches + 1] = j end
  end
  return #matches == 1 and matches[1] == k
end

case("questions: answers follow from the objects; descriptions are unique", function()
  local types = {}
  for _, cfg in ipairs(CONFIGS) do
    local w = world.new(ctx, cfg)
    for i = 0, N - 1 do
      local s = w:sample(9, i)
      local objs = s.objects
      for _, q in ipairs(s.questions) do
        types[q.type] = (types[q.type] or 0) + 1
        local cands = w:candidates(q)
        local inset = false
        for _, c in ipairs(cands) do if c == q.answer then inset = true end end
        assert(inset, "answer '" .. q.answer .. "' not among the candidates of " .. q.type)
        assert(q.vision == (q.type ~= "knowledge"))
        if q.type == "color" or q.type == "shape" or q.type == "size" then
          local desc = q.question:match("^What %a+ is the (.+)%?$")
          assert(desc and resolves_to(w, objs, desc, q.objects[1]), "ambiguous: " .. q.question)
          assert(not desc:find(q.answer, 1, true), "the description gives the answer away: " .. q.question)
          assert(q.answer == objs[q.objects[1]][q.type])
        elseif q.type == "count" then
          assert(tonumber(q.answer) == #q.objects)
          local value = q.question:match("^How many (%a+) objects are there%?$")
          local n = 0
          for _, o in ipairs(objs) do if not value or o.color == value or o.size == value then n = n + 1 end end
          assert(n == #q.objects, q.question .. " " .. q.answer)
        elseif q.type == "position" then
          local desc = q.question:match("^Where is the (.+)%?$")
          assert(resolves_to(w, objs, desc, q.objects[1]) and not desc:find(" at the ", 1, true))
          assert(q.answer == objs[q.objects[1]].position)
        elseif q.type == "relation" then
          local a, rel, b = q.question:match("^Is the (.-) (%a+ ?o?f?) the (.+)%?$")
          assert(a and resolves_to(w, objs, a, q.objects[1]) and resolves_to(w, objs, b, q.objects[2]), q.question)
          local oa, ob = objs[q.objects[1]], objs[q.objects[2]]
          local yes = (rel == "left of" and oa.cell_x < ob.cell_x) or (rel == "right of" and oa.cell_x > ob.cell_x)
            or (rel == "above" and oa.cell_y < ob.cell_y) or (rel == "below" and oa.cell_y > ob.cell_y)
          assert(q.answer == (yes and "yes" or "no"), q.question)
        elseif q.type == "knowledge" then
          assert(#q.objects == 0)
        end
      end
      -- the caption lists every object in reading order
      local parsed = assert(w:parse_caption(s.caption))
      assert(#parsed == #objs)
      for j, k in ipairs(s.caption_order) do
        for _, a in ipairs {"size", "color", "shape", "position"} do assert(parsed[j][a] == objs[k][a]) end
      end
    end
  end
  for _, t in ipairs {"color", "shape", "size", "count", "position", "relation", "knowledge"} do
    assert((types[t] or 0) > 20, "too few " .. t .. " questions: " .. tostring(types[t]))
  end
end)

case("preference pairs: the rejected answer holds exactly one visual error", function()
  local attrs = {}
  for _, cfg in ipairs(CONFIGS) do
    local w = world.new(ctx, cfg)
    for i = 0, N - 1 do
      local s = w:sample(21, i)
      local nq = 0
      for _, q in ipairs(s.questions) do if q.vision then nq = nq + 1 end end
      assert(#s.pairs == nq + (#s.objects > 0 and 1 or 0), "one pair per vision question plus a caption pair")
      for _, p in ipairs(s.pairs) do
        attrs[p.attribute] = (attrs[p.attribute] or 0) + 1
        assert(p.prompt:sub(1, 8) == "<image>\n", "prompt starts with <image>\\n")
        assert(p.chosen ~= p.rejected)
        if p.type == "caption" then
          assert(p.prompt == "<image>\n" .. world.CAPTION_PROMPT and p.chosen == s.caption)
          local c, r = assert(w:parse_caption(p.chosen)), assert(w:parse_caption(p.rejected))
          assert(#c == #r)
          local diffs = {}
          for j = 1, #c do
            for _, a in ipairs {"size", "color", "shape", "position"} do
              if c[j][a] ~= r[j][a] then diffs[#diffs + 1] = {j = j, a = a} end
            end
          end
          assert(#diffs == 1, "caption pair differs in " .. #diffs .. " attributes")
          assert(diffs[1].a == p.attribute, "recorded attribute " .. p.attribute .. ", found " .. diffs[1].a)
          assert(s.caption_order[diffs[1].j] == p.objects[1], "recorded object")
          assert(c[diffs[1].j][p.attribute] == p.chosen_value and r[diffs[1].j][p.attribute] == p.rejected_value)
          local ok, why = same(c, p.chosen_objects)
          assert(ok, why)
          ok, why = same(r, p.rejected_objects)
          assert(ok, why)
        else
          local q
          for _, x in ipairs(s.questions) do if "<image>\n" .. x.question == p.prompt then q = x end end
          assert(q and q.answer == p.chosen and p.type == q.type, "pair without its question")
          local n = 0
          for _, v in ipairs(w:candidates(q)) do if v == p.chosen or v == p.rejected then n = n + 1 end end
          assert(n == 2, "chosen and rejected are both candidates of " .. q.type)
          if q.type == "count" then assert(math.abs(tonumber(p.chosen) - tonumber(p.rejected)) == 1) end
          local want = q.type == "relation" and "position" or q.type
          assert(p.attribute == want, p.attribute .. " vs " .. want)
        end
      end
    end
  end
  for _, a in ipairs {"color", "shape", "size", "count", "position"} do
    assert((attrs[a] or 0) > 10, "too few pairs with a wrong " .. a)
  end
end)

case("knowledge questions come from the fixed bank and use the answer vocabulary", function()
  local w = world.new(ctx, {})
  assert(#world.KNOWLEDGE >= 30, "bank of " .. #world.KNOWLEDGE)
  local bank, seen = {}, {}
  for _, k in ipairs(world.KNOWLEDGE) do
    assert(not bank[k.question], "duplicate " .. k.question)
    bank[k.question] = k.answer
    local ok = false
    for _, c in ipairs(w:candidates(k.answer_type)) do if c == k.answer then ok = true end end
    assert(ok, k.question .. " -> " .. k.answer .. " is not a " .. k.answer_type .. " answer")
  end
  for i = 0, 299 do
    for _, q in ipairs(w:sample(4, i).questions) do
      if q.type == "knowledge" then
        assert(bank[q.question] == q.answer, "not from the bank: " .. q.question)
        seen[q.question] = true
      end
    end
  end
  local n = 0
  for _ in pairs(seen) do n = n + 1 end
  assert(n >= 25, "only " .. n .. " bank questions drawn in 300 samples")
end)

case("candidates", function()
  local w = world.new(ctx, {})
  assert(#w:candidates("color") >= 8 and #w:candidates("shape") >= 6 and #w:candidates("size") == 3)
  assert(#w:candidates("position") == 9 and #w:candidates("relation") == 2 and w:candidates("count")[1] == "0")
  assert(not pcall(w.candidates, w, "smell"))
end)

local TMP = os.tmpname()
os.remove(TMP)
data.mkdir(TMP)

case("world tokenizer: every word one token, exact round trips, vocab <= 512", function()
  local w = world.new(ctx, {})
  local vocab = w:vocabulary()
  local path = TMP .. "/world_tokenizer.json"
  local info = wt.build(vocab, path)
  assert(info.vocab_size <= 512, "vocab " .. info.vocab_size)
  local tok = ctx:tokenizer(path)
  assert(tok:vocab_size() == info.vocab_size, tok:vocab_size() .. " vs " .. info.vocab_size)
  -- the file is Qwen2's format
  local doc = json.read_file(path)
  local fixture = pv.source_dir .. "/../shared/fixtures/hf/tokenizer/tokenizer.json"
  local f = io.open(fixture, "rb")
  if f then
    f:close()
    local q = json.read_file(fixture)
    assert(doc.pre_tokenizer.pretokenizers[1].pattern.Regex == q.pre_tokenizer.pretokenizers[1].pattern.Regex,
      "the Split regex differs from Qwen2's")
  end
  assert(doc.normalizer.type == "NFC" and doc.decoder.type == "ByteLevel" and doc.model.type == "BPE")
  -- bytes 0..255 are the first 256 ids; specials are matched whole
  for b = 0, 255 do assert(tok:token_to_id(wt.byte_symbol(b)) == nil or tok:token_to_id(wt.byte_symbol(b)) < 256) end
  for _, sp in ipairs(wt.SPECIALS) do
    local ids = tok:encode(sp)
    assert(#ids == 1 and ids[1] == info.specials[sp], sp)
  end
  -- every word alone, with and without a leading space: one token
  for _, wd in ipairs(vocab) do
    for _, form in ipairs {wd, " " .. wd} do
      local ids = tok:encode(form)
      assert(#ids == 1, string.format("'%s' is %d tokens", form, #ids))
      assert(ids[1] >= 256 or #wd == 1, "'" .. form .. "' is a byte token")
      assert(tok:decode(ids) == form)
    end
  end
  -- every text of the world: one id per pre-token, decoded back exactly
  local function check_text(text)
    local ids = tok:encode(text)
    local pieces = wt.pretokenize_ascii(text)
    if #ids ~= #pieces then
      local t = {}
      for i, id in ipairs(ids) do t[i] = tok:id_to_token(id) end
      error(string.format("'%s': %d ids for %d pieces: %s", text, #ids, #pieces, table.concat(t, "|")))
    end
    for i, p in ipairs(pieces) do
      assert(tok:id_to_token(ids[i]) == wt.to_symbols(p) or p == wt.SPECIALS[1] or tok:id_to_token(ids[i]) == p,
        "piece '" .. p .. "'")
    end
    assert(tok:decode(ids) == text, "round trip of '" .. text .. "'")
  end
  local ntexts = 0
  for _, cfg in ipairs(CONFIGS) do
    local ww = world.new(ctx, cfg)
    for i = 0, N - 1 do
      local s = ww:sample(31, i)
      local texts = {s.caption}
      for _, q in ipairs(s.questions) do texts[#texts + 1] = q.question texts[#texts + 1] = q.answer end
      for _, p in ipairs(s.pairs) do
        texts[#texts + 1] = p.prompt
        texts[#texts + 1] = p.chosen
        texts[#texts + 1] = p.rejected
        texts[#texts + 1] = "<|im_start|>system\n" .. world.SYSTEM .. "<|im_end|>\n<|im_start|>user\n" .. p.prompt ..
          "<|im_end|>\n<|im_start|>assistant\n" .. p.chosen .. "<|im_end|>\n"
      end
      for _, t in ipairs(texts) do
        check_text(t)
        ntexts = ntexts + 1
      end
    end
  end
  for _, k in ipairs(world.KNOWLEDGE) do check_text(k.question) check_text(k.answer) end
  assert(ntexts > 1000)
  -- building is deterministic
  local info2 = wt.build(vocab, TMP .. "/again.json")
  local a, b = io.open(path, "rb"), io.open(TMP .. "/again.json", "rb")
  assert(a:read("*a") == b:read("*a"), "two builds differ")
  a:close() b:close()
  print(string.format("world tokenizer: %d words, vocab size %d (%d merges)", #vocab, info.vocab_size, info.n_merges))
  assert(not pcall(wt.build, {"two words"}, TMP .. "/bad.json"))
  _ = info2
end)

case("write_dataset: the JSONL formats read back through pivot.data, images identical", function()
  local w = world.new(ctx, {})
  local r = w:write_dataset(TMP .. "/ds", 8, 0, 4)
  local dpo, st = data.read_jsonl(r.dpo, {format = "dpo"})
  assert(st.skipped == 0 and #dpo == r.n_pairs)
  local sft = data.read_jsonl(r.sft, {format = "sft"})
  assert(#sft == r.n_sft)
  local s = w:sample(8, 0)
  assert(dpo[1].chosen == s.pairs[1].chosen and dpo[1].rejected == s.pairs[1].rejected)
  assert(sft[1].response == s.caption and sft[1].prompt == "<image>\n" .. world.CAPTION_PROMPT)
  local img = data.load_image(ctx, dpo[1].image, w.S)
  assert(ffi.string(img, w.S * w.S * 12) == ffi.string(s.image, w.S * w.S * 12), "PNG round trip changed the image")
end)

os.execute("rm -rf '" .. TMP .. "'")
T:finish()
