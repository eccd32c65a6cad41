-- lean.lua (test): only what the engine needs, renumbered in places, and no
-- "extra" section, so undeclared application fields are refused.
return {
  name = "lean",
  version = 7,
  fields = {
    { id = 1, name = "name",     type = "string", required = true },
    { id = 2, name = "instance", type = "u64",    required = true },
    { id = 3, name = "rails", type = "list", required = true, fields = {
      { id = 1, name = "index",       type = "u32",    required = true },
      { id = 2, name = "provider",    type = "string", required = true },
      { id = 4, name = "addr_format", type = "u32",    required = true },
      { id = 5, name = "addr",        type = "bytes",  required = true },
      { id = 6, name = "mr_mode",     type = "u64",    required = true },
    } },
    { id = 4, name = "regions", type = "list", fields = {
      { id = 1, name = "addr",   type = "u64", required = true },
      { id = 2, name = "len",    type = "u64", required = true },
      { id = 5, name = "access", type = "u8",  required = true },
      { id = 6, name = "keys",   type = "list", required = true, fields = {
        { id = 1, name = "rail",  type = "u32",   required = true },
        { id = 3, name = "bytes", type = "bytes", required = true },
        { id = 4, name = "base",  type = "u64",   required = true },
      } },
    } },
  },
}
