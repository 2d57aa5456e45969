/* engine/sha256.h — SHA-256 (FIPS 180-4) of memory and of files, for the provenance fields
 * (weights_sha256, data_sha256) of feature files and run logs. Self-contained, no OpenSSL. */
#ifndef VITA_SHA256_H
#define VITA_SHA256_H

#include <stddef.h>
#include <stdint.h>

typedef struct {
    uint32_t h[8];
    uint64_t len;              /* bytes hashed so far */
    unsigned char buf[64];
    size_t nbuf;
} Sha256;

void sha256_init(Sha256* s);
void sha256_update(Sha256* s, const void* data, size_t n);
void sha256_final(Sha256* s, unsigned char digest[32]);
/* digest as 64 lowercase hex digits + NUL */
void sha256_hex(const unsigned char digest[32], char hex[65]);
/* one-shot over memory: hex[65] */
void sha256_mem(const void* data, size_t n, char hex[65]);
/* streams the file; 0, or 1 with one line in err (unreadable file) */
int sha256_file(const char* path, char hex[65], char* err, size_t errlen);

#endif
