-- kv_cache.lua: xrail.v1 plus the typed fields a prefill -> decode pair
-- checks before it moves a byte: the model, the tensor-parallel rank, and
-- the shape of the decode side's paged KV pool. The example in
-- examples/prefill_decode publishes and reads exactly these.
--
-- Custom fields are published with xr_metadata_set_field(e, name, value,
-- len) and read with xr_peer_field(peer, name, buf, &len). An integer's
-- value is its width in host byte order, a string has no NUL byte. A
-- required field must be set before xr_metadata_get unless it has a
-- default; an optional one a peer did not publish reads as its default.
--
-- Compatibility: a peer running xrail.v1 cannot satisfy the required
-- fields here, and loading its metadata fails naming the first one
-- (custom.model). Add fields as optional, with a default, to stay
-- readable by and from older layouts; never reuse an id.
return {
  name = "kv_cache",
  version = 1,
  fields = {
    { id = 1, name = "name",     type = "string", required = true },
    { id = 2, name = "instance", type = "u64",    required = true },
    { id = 3, name = "rails",    type = "list",   required = true },  -- the built-in rail fields
    { id = 4, name = "regions",  type = "list" },                     -- the built-in region fields
    { id = 5, name = "extra",    type = "list" },
    { id = 6, name = "custom", type = "struct", fields = {
      { id = 1, name = "model",          type = "string", required = true, default = "" },
      { id = 2, name = "tp_rank",        type = "u32",    default = 0 },
      { id = 3, name = "kv.base",        type = "u64",    required = true },  -- pool address
      { id = 4, name = "kv.layers",      type = "u32",    required = true },
      { id = 5, name = "kv.blocks",      type = "u32",    required = true },
      { id = 6, name = "kv.block_bytes", type = "u32",    required = true },
      { id = 7, name = "kv.dtype",       type = "string", required = true },
    } },
  },
}
