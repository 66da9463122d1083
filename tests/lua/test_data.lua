-- Tests of lua/pivot/data.lua: JSONL reading (DPO / SFT formats, errors that name file, line and field,
-- skip_bad counting), images and masks (truncated PNG, wrong mode), image folders, and batching (bucket padding,
-- seeded shuffles, epochs, exact resume with state/restore). Run by ctest as `pivot run tests/lua/test_data.lua`.
local pv = require "pivot"
local ffi = pv.ffi
local data = require "pivot.data"
local json = require "pivot.json"

local T = require("pivot.testing").suite("data")
local function case(name, fn) T:case(name, fn) end
-- expects fn to raise; checks the message contains every (plain) pattern; returns the message
local function raises(fn, ...)
  local ok, err = pcall(fn)
  assert(not ok, "expected an error")
  err = tostring(err)
  for _, p in ipairs {...} do
    assert(err:find(p, 1, true), "error message '" .. err .. "' does not mention '" .. p .. "'")
  end
  return err
end

local ctx = pv.context{threads = 1}
local TMP = os.tmpname()
os.remove(TMP)
data.mkdir(TMP)

local function write(path, text)
  local f = assert(io.open(path, "wb"))
  f:write(text)
  f:close()
end
local function read(path)
  local f = assert(io.open(path, "rb"))
  local s = f:read("*a")
  f:close()
  return s
end

-- a 12x10 RGB gradient
local W, H = 12, 10
local rgb = ffi.new("uint8_t[?]", W * H * 3)
for y = 0, H - 1 do
  for x = 0, W - 1 do
    local p = (y * W + x) * 3
    rgb[p], rgb[p + 1], rgb[p + 2] = x * 20, y * 25, 128
  end
end
data.mkdir(TMP .. "/img")
data.write_png(ctx, TMP .. "/img/a.png", W, H, 3, rgb)
data.write_png(ctx, TMP .. "/img/b.png", W, H, 3, rgb)
-- a truncated PNG: the first half of a good one
local good = read(TMP .. "/img/a.png")
write(TMP .. "/img/trunc.png", good:sub(1, math.floor(#good / 2)))
write(TMP .. "/img/notimage.png", "this is not an image\n")
-- masks: a grey one-channel PNG, and a colour PNG (the wrong mode for a mask)
local grey = ffi.new("uint8_t[?]", 8 * 8)
for i = 0, 63 do grey[i] = (i % 8 < 4) and 0 or (i < 32 and 3 or 7) end
data.write_png(ctx, TMP .. "/img/mask.png", 8, 8, 1, grey)
data.write_png(ctx, TMP .. "/img/colour_mask.png", W, H, 3, rgb)

local DPO = {
  json.encode({id = "p1", prompt = "<image>\nWhat color is the circle?", chosen = "red", rejected = "blue",
    image = "img/a.png"}),
  json.encode({id = 2, prompt = "What shape is it?", chosen = "circle", rejected = "square", image = "img/b.png"}),
  "{\"id\": \"p3\", \"prompt\": \"hi\", \"chosen\": \"x\", \"rejected\": ", -- malformed JSON (line 3)
  json.encode({id = "p4", prompt = "no chosen", rejected = "y", image = "img/a.png"}), -- missing field (line 4)
  json.encode({id = "p5", prompt = "q", chosen = "a", rejected = 5, image = "img/a.png"}), -- wrong type (line 5)
  "",                                                                                       -- blank: ignored
  json.encode({id = "p7", prompt = "q", chosen = "a", rejected = "b", image = "img/missing.png"}), -- line 7
  json.encode({id = "p8", prompt = "text only", chosen = "a", rejected = "b"}),                    -- no image
}
write(TMP .. "/dpo.jsonl", table.concat(DPO, "\n") .. "\n")
local SFT = {
  json.encode({id = "s1", image = "img/a.png", conversations = {{from = "human", value = "<image>\nDescribe."},
    {from = "gpt", value = "a red circle."}}}),
  json.encode({id = "s2", image = "img/a.png", conversations = {{from = "human", value = "q"},
    {from = "bot", value = "a"}}}), -- bad role (line 2)
  json.encode({id = "s3", image = "img/a.png", conversations = "not a list"}), -- (line 3)
  json.encode({id = "s4", conversations = {{from = "human", value = "q"}}}), -- no gpt turn (line 4)
  json.encode({id = "s5", image = "img/a.png", conversations = {{from = "human", value = "Where?"},
    {from = "gpt", value = "top left"}}}),
}
write(TMP .. "/sft.jsonl", table.concat(SFT, "\r\n") .. "\r\n")

case("read_jsonl: errors name the file, the line and the field", function()
  local f = TMP .. "/dpo.jsonl"
  local function lines(from, to) -- a file with some of the DPO lines, keeping their line numbers
    local t = {}
    for i = 1, #DPO do t[i] = (i >= from and i <= to) and DPO[i] or "" end
    local p = TMP .. "/part.jsonl"
    write(p, table.concat(t, "\n"))
    return p
  end
  raises(function() data.read_jsonl(f) end, f .. ":3:", "invalid JSON")
  local p = lines(4, 4)
  raises(function() data.read_jsonl(p) end, "part.jsonl:4: field 'chosen' missing")
  p = lines(5, 5)
  raises(function() data.read_jsonl(p) end, "part.jsonl:5: field 'rejected' must be a string, got number")
  p = lines(7, 7)
  raises(function() data.read_jsonl(p) end, "part.jsonl:7: image 'img/missing.png' not found")
  local s = TMP .. "/sft.jsonl"
  raises(function() data.read_jsonl(s) end, s .. ":2: field 'conversations[1].from' must be 'human', 'gpt'", "'bot'")
  raises(function() data.read_jsonl(TMP .. "/nope.jsonl") end, "nope.jsonl")
  raises(function() data.read_jsonl(f, {format = "xml"}) end, "format")
  -- the forced format checks fields of that format
  raises(function() data.read_jsonl(s, {format = "dpo"}) end, "sft.jsonl:1: field 'prompt' missing")
end)

case("read_jsonl: skip_bad skips and counts; good lines are parsed", function()
  local items, st = data.read_jsonl(TMP .. "/dpo.jsonl", {skip_bad = true})
  assert(#items == 3 and st.items == 3, "#items " .. #items)
  assert(st.skipped == 4 and st.lines == 7, "skipped " .. st.skipped .. " of " .. st.lines)
  assert(#st.reasons == 4)
  assert(st.counts.invalid_json == 1 and st.counts.missing_field == 1 and st.counts.wrong_type == 1 and
    st.counts.missing_image == 1)
  assert(st.reasons[1]:find("dpo.jsonl:3:", 1, true) and st.reasons[4]:find("dpo.jsonl:7:", 1, true))
  local a, b, c = items[1], items[2], items[3]
  assert(a.format == "dpo" and a.id == "p1" and a.chosen == "red" and a.rejected == "blue" and a.line == 1)
  assert(a.image == TMP .. "/img/a.png", a.image)
  assert(a.prompt == "<image>\nWhat color is the circle?", "an existing <image> is kept")
  assert(b.id == "2" and b.prompt == "<image>\nWhat shape is it?", "<image>\\n is prepended: " .. b.prompt)
  assert(c.image == nil and c.prompt == "text only" and c.line == 8)
  local sft, st2 = data.read_jsonl(TMP .. "/sft.jsonl", {skip_bad = true})
  assert(#sft == 2 and st2.skipped == 3, #sft .. " " .. st2.skipped)
  assert(sft[1].format == "sft" and sft[1].prompt == "<image>\nDescribe." and sft[1].response == "a red circle.")
  assert(sft[2].prompt == "<image>\nWhere?" and sft[2].conversations[1].value == "<image>\nWhere?")
  assert(sft[2].conversations[2].role == "assistant" and sft[2].line == 5)
  -- image_root, check_images = false, image_token = false
  local other = TMP .. "/other"
  data.mkdir(other)
  write(other .. "/x.jsonl", DPO[2] .. "\n")
  raises(function() data.read_jsonl(other .. "/x.jsonl") end, "x.jsonl:1: image 'img/b.png' not found")
  local r = data.read_jsonl(other .. "/x.jsonl", {image_root = TMP, image_token = false})
  assert(r[1].image == TMP .. "/img/b.png" and r[1].prompt == "What shape is it?")
  r = data.read_jsonl(other .. "/x.jsonl", {check_images = false})
  assert(r[1].image == other .. "/img/b.png")
  -- auto format mixes both kinds; to_sft turns a pair into its chosen SFT sample
  write(other .. "/mix.jsonl", DPO[1] .. "\n" .. SFT[1] .. "\n")
  local mix = data.read_jsonl(other .. "/mix.jsonl", {image_root = TMP})
  assert(mix[1].format == "dpo" and mix[2].format == "sft")
  local t = data.to_sft(mix[1])
  assert(t.response == "red" and t.conversations[2].value == "red" and t.image == mix[1].image)
end)

case("load_image: good PNG; truncated, missing and non-image files name the file", function()
  local img = data.load_image(ctx, TMP .. "/img/a.png", W)
  -- same size: no resampling, so pixel (x, y) channel 0 is (x*20/255 - 0.5)/0.5
  for y = 0, H - 1, 3 do
    for x = 0, W - 1, 5 do
      local want = (x * 20 / 255 - 0.5) / 0.5
      -- the image is not square: it is resized to W x W, so compare the first channel's columns only at row 0
      if y == 0 then assert(math.abs(img[x] - want) < 0.05, "pixel " .. x) end
    end
  end
  local big = ffi.new("float[?]", 2 * 3 * 16 * 16)
  data.load_image(ctx, TMP .. "/img/a.png", 16, big, 3 * 16 * 16)
  local one = data.load_image(ctx, TMP .. "/img/a.png", 16)
  assert(ffi.string(big + 3 * 16 * 16, 3 * 16 * 16 * 4) == ffi.string(one, 3 * 16 * 16 * 4), "offset load")
  raises(function() data.load_image(ctx, TMP .. "/img/trunc.png", 16) end, "trunc.png")
  raises(function() data.load_image(ctx, TMP .. "/img/notimage.png", 16) end, "notimage.png")
  raises(function() data.load_image(ctx, TMP .. "/img/missing.png", 16) end, "missing.png")
  -- batch_images: paths and cdata images, zero rows for missing images
  local items = {{image = TMP .. "/img/a.png"}, {image = one}, {}}
  local b = data.batch_images(ctx, items, 16, {B = 4})
  local per = 3 * 16 * 16
  assert(ffi.string(b, per * 4) == ffi.string(one, per * 4) and ffi.string(b + per, per * 4) == ffi.string(one, per * 4))
  for i = 2 * per, 4 * per - 1 do assert(b[i] == 0) end
end)

case("load_mask: one-channel labels; a colour PNG is a wrong mode; mask_for", function()
  local m = data.load_mask(ctx, TMP .. "/img/mask.png", 8)
  for i = 0, 63 do assert(m[i] == grey[i], "mask value " .. i) end
  local m2 = data.load_mask(ctx, TMP .. "/img/mask.png", 4) -- nearest: every other pixel
  assert(m2[0] == grey[0] and m2[3] == grey[6])
  raises(function() data.load_mask(ctx, TMP .. "/img/colour_mask.png", 8) end, "colour_mask.png", "mode")
  raises(function() data.load_mask(ctx, TMP .. "/img/trunc.png", 8) end, "trunc.png")
  assert(data.mask_for("/d/ADE/images/training/ADE_1.jpg") == "/d/ADE/annotations/training/ADE_1.png")
  assert(data.mask_for("x/pics/a.jpg", {image_dir = "pics", mask_dir = "masks"}) == "x/masks/a.png")
  assert(data.mask_for("x/pics/a.jpg", {mask_root = "/m"}) == "/m/a.png")
  raises(function() data.mask_for("x/pics/a.jpg") end, "images")
  -- patch labels from a mask: 8x8 with patch 4 -> 4 patches; classes 0, 3, 7; ignore 0
  local pl = data.patch_labels(m, 8, 4, 8)
  local function labels(p)
    local t = {}
    for c = 0, 7 do if pl.data[p * 8 + c] == 1 then t[#t + 1] = c end end
    return table.concat(t, ",")
  end
  assert(labels(0) == "0" and labels(1) == "3" and labels(2) == "0" and labels(3) == "7", labels(1))
  pl = data.patch_labels(m, 8, 8, 8, {ignore = 0})
  assert(pl.n_patches == 1 and pl.data[0] == 0 and pl.data[3] == 1 and pl.data[7] == 1)
  pl = data.patch_labels(m, 8, 8, 8, {min_fraction = 0.3}) -- 16 of 64 pixels are 3 or 7 each: < 0.3
  assert(pl.data[0] == 1 and pl.data[3] == 0 and pl.data[7] == 0)
  raises(function() data.patch_labels(m, 8, 3, 8) end, "multiple")
  raises(function() data.patch_labels(m, 8, 4, 5) end, "out of range")
end)

case("image_folder: sorted classes, 0-based labels, non-images skipped", function()
  local root = TMP .. "/folder"
  for _, c in ipairs {"dog", "cat", "zebra"} do data.mkdir(root .. "/" .. c) end
  for _, p in ipairs {"cat/2.png", "cat/1.jpg", "dog/x.png", "dog/readme.txt", "zebra/a.JPEG"} do
    write(root .. "/" .. p, good)
  end
  write(root .. "/stray.png", good)
  local classes, list = data.image_folder(root)
  assert(table.concat(classes, ",") == "cat,dog,zebra")
  assert(#list == 4, #list)
  local got = {}
  for i, it in ipairs(list) do got[i] = it.path:sub(#root + 2) .. "=" .. it.label end
  assert(table.concat(got, " ") == "cat/1.jpg=0 cat/2.png=0 dog/x.png=1 zebra/a.JPEG=2", table.concat(got, " "))
  assert(list[3].class == "dog")
  raises(function() data.image_folder(TMP .. "/none") end, "none")
  raises(function() data.image_folder(TMP .. "/img") end, "no class subfolders")
end)

-- items with ids of lengths 1..n
local function make_items(n, maxlen)
  local items = {}
  for i = 1, n do
    local len = 1 + (i * 37) % maxlen
    local ids, labels = {}, {}
    for k = 1, len do
      ids[k] = i * 1000 + k
      labels[k] = k % 3 == 0 and -100 or ids[k]
    end
    items[i] = {id = "item" .. i, ids = ids, labels = labels}
  end
  return items
end
local function collect(it, n)
  local out = {}
  while not n or #out < n do
    local b = it:next()
    if not b then break end
    out[#out + 1] = b
  end
  return out
end
local function order_of(batches)
  local t = {}
  for _, b in ipairs(batches) do
    for _, i in ipairs(b.indices) do t[#t + 1] = i end
  end
  return t
end

case("batches: bucket padding, right padding, masks", function()
  local items = make_items(23, 120)
  local it = data.batches(items, {batch_size = 4, seed = 1, buckets = {64, 96, 128}, pad_id = 7})
  local bs = collect(it)
  assert(#bs == 6 and bs[6].B == 3 and bs[6].real == 3, "6 batches, the last with 3")
  for _, b in ipairs(bs) do
    local longest = 0
    for _, l in ipairs(b.lengths) do longest = math.max(longest, l) end
    local want = longest <= 64 and 64 or longest <= 96 and 96 or 128
    assert(b.T == want, string.format("T %d for longest %d", b.T, longest))
    for r = 1, b.B do
      local item = b.items[r]
      assert(item == items[b.indices[r]])
      for k = 1, b.T do
        local at = (r - 1) * b.T + k - 1
        if k <= #item.ids then
          assert(b.ids[at] == item.ids[k] and b.labels[at] == item.labels[k] and b.attention_mask[at] == 1)
        else
          assert(b.ids[at] == 7 and b.labels[at] == -100 and b.attention_mask[at] == 0, "padding")
        end
      end
    end
  end
  -- without buckets: the batch's longest; a sequence over the largest bucket is an error unless truncate
  local b = data.batches(items, {batch_size = 5, shuffle = false}):next()
  local longest = 0
  for r = 1, 5 do longest = math.max(longest, #items[r].ids) end
  assert(b.T == longest and b.indices[1] == 1 and b.indices[5] == 5)
  raises(function() collect(data.batches(items, {batch_size = 4, buckets = {16, 32}})) end, "largest bucket 32",
    "truncate")
  local tb = collect(data.batches(items, {batch_size = 4, buckets = {16, 32}, truncate = true}))
  for _, x in ipairs(tb) do
    assert(x.T <= 32)
    for _, l in ipairs(x.lengths) do assert(l <= 32) end
  end
  -- pad_last keeps B fixed; drop_last drops the short batch
  local pl = collect(data.batches(items, {batch_size = 4, pad_last = true, buckets = {128}}))
  assert(#pl == 6 and pl[6].B == 4 and pl[6].real == 3)
  for k = 3 * 128, 4 * 128 - 1 do assert(pl[6].attention_mask[k] == 0 and pl[6].labels[k] == -100) end
  local dl = data.batches(items, {batch_size = 4, drop_last = true, epochs = 2})
  assert(dl:per_epoch() == 5)
  assert(#collect(dl) == 10)
  -- custom fields (DPO: chosen and rejected sequences padded to one T), cdata sequences with a length
  local pairs_ = {
    {chosen = {1, 2, 3}, rejected = {4, 5}},
    {chosen = ffi.new("int32_t[4]", {9, 9, 9, 9}), chosen_n = 4, rejected = {6}},
  }
  local pb = data.batches(pairs_, {batch_size = 2, shuffle = false, fields = {chosen = 0, rejected = 0}}):next()
  assert(pb.T == 4 and pb.chosen[4] == 9 and pb.chosen[7] == 9 and pb.rejected[4] == 6 and pb.rejected[5] == 0)
end)

case("batches: seeded shuffles, epochs", function()
  local items = make_items(50, 30)
  local function run(seed) return order_of(collect(data.batches(items, {batch_size = 8, seed = seed, epochs = 3}))) end
  local a, b, c = run(5), run(5), run(6)
  assert(#a == 150)
  assert(table.concat(a, ",") == table.concat(b, ","), "same seed, same order")
  assert(table.concat(a, ",") ~= table.concat(c, ","), "another seed, another order")
  local e = {}
  for ep = 0, 2 do
    local seen = {}
    for k = 1, 50 do
      local i = a[ep * 50 + k]
      assert(not seen[i], "an item twice in one epoch")
      seen[i] = true
    end
    e[ep] = table.concat(a, ",", ep * 50 + 1, ep * 50 + 50)
  end
  assert(e[0] ~= e[1] and e[1] ~= e[2], "each epoch has its own permutation")
  local plain = order_of(collect(data.batches(items, {batch_size = 8, shuffle = false})))
  for k = 1, 50 do assert(plain[k] == k) end
  -- the generator itself
  local r1, r2 = data.rng(42), data.rng(42)
  for _ = 1, 100 do assert(r1:u32() == r2:u32()) end
  local counts = {0, 0, 0, 0}
  local r = data.rng("a string seed", 3)
  for _ = 1, 4000 do
    local v = r:below(4)
    counts[v + 1] = counts[v + 1] + 1
  end
  for _, n in ipairs(counts) do assert(n > 850 and n < 1150, "rng:below uniformity " .. n) end
  assert(data.rng(1, 2):u32() ~= data.rng(1, 3):u32() and data.rng(1):u32() ~= data.rng(2):u32())
  assert(not pcall(data.rng, 1.5))
end)

case("batches: state/restore resumes the exact same sequence", function()
  local items = make_items(37, 100)
  local opts = {batch_size = 6, seed = 9, epochs = 3, buckets = {32, 64, 128}, pad_id = 0}
  local full = collect(data.batches(items, opts))
  assert(#full == 21)
  for _, cut in ipairs {0, 1, 6, 7, 13, 20, 21} do
    local it = data.batches(items, opts)
    collect(it, cut)
    local saved = json.decode(json.encode(it:state())) -- survives a checkpoint (JSON)
    local it2 = data.batches(items, opts):restore(saved)
    local rest = collect(it2)
    assert(#rest == #full - cut, string.format("cut %d: %d batches left, expected %d", cut, #rest, #full - cut))
    for k, b in ipairs(rest) do
      local f = full[cut + k]
      assert(b.epoch == f.epoch and b.step == f.step and b.T == f.T and b.B == f.B)
      assert(table.concat(b.indices, ",") == table.concat(f.indices, ","), "resumed order differs")
      assert(ffi.string(b.ids, b.B * b.T * 4) == ffi.string(f.ids, f.B * f.T * 4))
    end
  end
  local st = data.batches(items, opts):state()
  assert(st.epoch == 0 and st.index == 0 and st.seed == 9)
  raises(function() data.batches(make_items(5, 10), opts):restore(st) end, "37 items")
  raises(function() data.batches(items, {batch_size = 0}) end, "batch_size")
end)

os.execute("rm -rf '" .. TMP .. "'")
T:finish()
