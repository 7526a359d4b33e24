# Build description of vmd's own native addon (SO_PEERCRED, TUNSETIFF, openAs, rtnetlink, libnftables), compiled by node-gyp at build time.
# Plain Node-API C with a fixed NAPI_VERSION, so one build runs on every Node >= 20 of the same ABI family.
{
  "targets": [
    {
      "target_name": "vmd_native",
      "sources": ["vmd_native.c", "open_as.c", "dgram.c", "unix_request.c", "netlink.c", "nft.c"],
      "defines": ["NAPI_VERSION=8", "_GNU_SOURCE"],
      "cflags_c": ["-std=gnu11", "-Wall", "-Wextra", "-Wno-unused-parameter", "-O2"]
    }
  ]
}
