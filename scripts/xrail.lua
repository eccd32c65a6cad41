-- xrail.lua: the default engine configuration.
--
-- An engine reads this when no other config is named (xr_engine_opts.config
-- or XRAIL_CONFIG). It is looked for along the script path: the
-- script_path option, then XRAIL_SCRIPT_PATH, then the installed share
-- directory. Fields set in xr_engine_opts, and XRAIL_* environment
-- variables, win over what is written here.
return {
  -- provider = "efa",          -- nil: any RDM provider with RMA

  -- Discovery: one rail per NIC (libfabric domain) of the provider, at most
  -- `max`. `rails = { max = 1 }` is the honest form of FI_EFA_DEV_LIST=0.
  rails = { max = 64 },

  -- Or an explicit list; `count` rails on one interface is how one host gets many:
  -- rails = {
  --   { provider = "tcp;ofi_rxm", domain = "lo", count = 4 },
  --   { provider = "shm", count = 2, speed = 100000 },   -- speed in Mbit/s, for weighted.lua
  --   { provider = "efa", domain = "rdmap79s0", numa = 0, gpu = 0 },   -- topology, for numa_local.lua
  --   max = 8,
  -- },

  stripe_min = 128 * 1024,      -- descriptors at or above are split across rails
  chunk = 1024 * 1024,          -- largest chunk, before each provider's own cap
  progress = "manual",          -- or "thread": a thread drives completions
  policy = "even_stripe.lua",   -- found along the script path, under policy/
  layout = "xrail_v1.lua",      -- the metadata layout, under layout/; kv_cache.lua adds
                                -- typed KV-pool fields (docs/layout.md)
}
