/* crc32c.h - CRC-32C (Castagnoli), the checksum of metadata blobs. */
#ifndef XR_CRC32C_H
#define XR_CRC32C_H
#include <stddef.h>
#include <stdint.h>

/* Continue a CRC: start with crc = 0. */
uint32_t xr__crc32c_update(uint32_t crc, const void *buf, size_t len);

#endif
