/* bytes.h - little-endian integers on the wire (metadata and notification
 * frames), fixed-width and variable-length (7 bits a byte, low first). */
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

/* Bytes an integer takes with its high zero bytes left off (0 for 0). */
static inline size_t xr__bytes_min_width(uint64_t v)
{
    size_t n = 0;
    for (; v; v >>= 8)
        n++;
    return n;
}

#define XR_VARINT_MAX 10

/* Writes v at p when p is not NULL; returns its length either way. */
static inline size_t xr__bytes_put_varint(uint8_t *p, uint64_t v)
{
    size_t n = 0;
    do {
        uint8_t b = (uint8_t)(v & 0x7f);
        v >>= 7;
        if (p)
            p[n] = (uint8_t)(b | (v ? 0x80 : 0));
        n++;
    } while (v);
    return n;
}

/* Reads one from at most `left` bytes: its length, or 0 when it is cut
 * short or longer than a u64 holds (the caller names the field). */
static inline size_t xr__bytes_get_varint(const uint8_t *p, size_t left, uint64_t *v)
{
    uint64_t r = 0;
    for (size_t i = 0; i < left && i < XR_VARINT_MAX; i++) {
        uint64_t b = p[i] & 0x7f;
        if (i == XR_VARINT_MAX - 1 && b > 1)
            return 0;
        r |= b << (7 * i);
        if (!(p[i] & 0x80)) {
            *v = r;
            return i + 1;
        }
    }
    return 0;
}

#endif
