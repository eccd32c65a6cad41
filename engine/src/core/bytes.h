/* bytes.h - little-endian integers on the wire (metadata and notification frames). */
#ifndef XR_BYTES_H
#define XR_BYTES_H

#include <stddef.h>
#include <stdint.h>

static inline void xr__bytes_put_le(uint8_t *p, uint64_t v, size_t n)
{
    for (size_t i = 0; i < n; i++)
        p[i] = (uint8_t)(v >> (8 * i));
}

static inline uint64_t xr__bytes_get_le(const uint8_t *p, size_t n)
{
    uint64_t v = 0;
    for (size_t i = 0; i < n; i++)
        v |= (uint64_t)p[i] << (8 * i);
    return v;
}

#endif
