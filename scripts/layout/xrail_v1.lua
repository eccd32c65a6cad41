-- xrail_v1.lua: the metadata layout an engine publishes when no other is
-- named. It is the built-in layout written out, field for field; copy it to
-- start your own (docs/layout.md).
--
-- Each entry is { id, name, type, required }. The names at the top and in
-- rails, regions and keys are the engine's own fields: a layout picks which
-- of them go on the wire and under which ids, and may not change their
-- types or drop one the engine needs (those are marked "needed" below).
-- Ids are what is on the wire; names are not. A reader skips ids it does
-- not know and gives optional fields it does not find their default, so a
-- new optional field never breaks an older peer.
return {
  name = "xrail.v1",
  version = 1,                 -- goes in the blob's header; `xrail md dump` shows it
  fields = {
    { id = 1, name = "name",     type = "string", required = true },  -- needed
    { id = 2, name = "instance", type = "u64",    required = true },  -- needed
    { id = 3, name = "rails", type = "list", required = true, fields = {   -- needed
      { id = 1, name = "index",       type = "u32",    required = true },  -- needed
      { id = 2, name = "provider",    type = "string", required = true },  -- needed
      { id = 3, name = "domain",      type = "string" },
      { id = 4, name = "addr_format", type = "u32",    required = true },  -- needed
      { id = 5, name = "addr",        type = "bytes",  required = true },  -- needed
      { id = 6, name = "mr_mode",     type = "u64",    required = true },  -- needed
      { id = 7, name = "speed_mbps",  type = "u64" },
      { id = 8, name = "numa",        type = "i32" },
    } },
    { id = 4, name = "regions", type = "list", fields = {
      { id = 1, name = "addr",   type = "u64", required = true },        -- needed
      { id = 2, name = "len",    type = "u64", required = true },        -- needed
      { id = 3, name = "kind",   type = "u8" },
      { id = 4, name = "device", type = "u32" },
      { id = 5, name = "access", type = "u8",  required = true },        -- needed
      { id = 6, name = "keys", type = "list", required = true, fields = {   -- needed
        { id = 1, name = "rail",  type = "u32",   required = true },     -- needed
        { id = 2, name = "raw",   type = "u8" },
        { id = 3, name = "bytes", type = "bytes", required = true },     -- needed
        { id = 4, name = "base",  type = "u64",   required = true },     -- needed: offsets count from it
      } },
      { id = 7, name = "staged", type = "u8" },  -- 1: no keys, the owner stages it (CUDA without FI_HMEM)
    } },
    -- Untyped application fields (xr_metadata_set_field of a name this
    -- layout does not declare). Leave it out to allow only declared ones.
    { id = 5, name = "extra", type = "list" },
  },
}
