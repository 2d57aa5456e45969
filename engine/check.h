/* engine/check.h — error reporting. Every library and libc call that can fail goes through
 * one of these macros, which print file:line, what failed and a hint, then exit.
 * Exit codes (SPEC.md §1): 1 user error, 2 internal error. */
#ifndef VITA_CHECK_H
#define VITA_CHECK_H

#include <errno.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#define VITA_EXIT_USER 1
#define VITA_EXIT_INTERNAL 2
#define VITA_EXIT_PREEMPTED 75

/* internal invariant: a failure is a bug in vita */
#define CHECK(cond, ...)                                                                   \
    do {                                                                                   \
        if (!(cond)) {                                                                     \
            fprintf(stderr, "vita: internal error at %s:%d: %s: ", __FILE__, __LINE__, #cond); \
            fprintf(stderr, __VA_ARGS__);                                                  \
            fprintf(stderr, "\n");                                                         \
            exit(VITA_EXIT_INTERNAL);                                                      \
        }                                                                                  \
    } while (0)

/* libc call returning -1 / NULL with errno set */
#define CHECK_ERRNO(cond, hint)                                                            \
    do {                                                                                   \
        if (!(cond)) {                                                                     \
            fprintf(stderr, "vita: %s:%d: %s failed: %s (%s)\n", __FILE__, __LINE__, #cond, \
                    strerror(errno), hint);                                                \
            exit(VITA_EXIT_INTERNAL);                                                      \
        }                                                                                  \
    } while (0)

/* a user-facing error: one line naming the file/key/field and the fix */
#define USER_ERROR(...)                                                                    \
    do {                                                                                   \
        fprintf(stderr, "vita: ");                                                         \
        fprintf(stderr, __VA_ARGS__);                                                      \
        fprintf(stderr, "\n");                                                             \
        exit(VITA_EXIT_USER);                                                              \
    } while (0)

static inline void* xmalloc_at(size_t n, const char* file, int line) {
    void* p = malloc(n ? n : 1);
    if (!p) {
        fprintf(stderr, "vita: %s:%d: out of host memory allocating %zu bytes "
                "(reduce batch size or image size)\n", file, line, n);
        exit(VITA_EXIT_INTERNAL);
    }
    return p;
}
static inline void* xcalloc_at(size_t n, size_t s, const char* file, int line) {
    void* p = calloc(n ? n : 1, s ? s : 1);
    if (!p) {
        fprintf(stderr, "vita: %s:%d: out of host memory allocating %zu x %zu bytes "
                "(reduce batch size or image size)\n", file, line, n, s);
        exit(VITA_EXIT_INTERNAL);
    }
    return p;
}
#define xmalloc(n) xmalloc_at((n), __FILE__, __LINE__)
#define xcalloc(n, s) xcalloc_at((n), (s), __FILE__, __LINE__)

#endif
