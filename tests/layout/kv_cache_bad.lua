-- kv_cache_bad.lua (test): kv_cache with kv.blocks widened to u64 under the
-- same id, the incompatible way: readers of either fail naming the field.
return {
  name = "kv_cache_bad",
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
      { id = 5, name = "kv.blocks",      type = "u64",    required = true },
      { id = 6, name = "kv.block_bytes", type = "u32",    required = true },
      { id = 7, name = "kv.dtype",       type = "string", required = true },
    } },
  },
}
