/* engine/errfmt.h — the one-line error of the (err, errlen) convention: functions that fail
 * write a message into the caller's buffer and return 1. */
#ifndef VITA_ERRFMT_H
#define VITA_ERRFMT_H

#include <stddef.h>

/* printf-formats into err (when err && errlen; truncated to errlen) and returns 1 */
int vita_fail(char* err, size_t errlen, const char* fmt, ...) __attribute__((format(printf, 3, 4)));

/* the same, then every newline / carriage return in err becomes a space (messages that embed
 * file or tensor names stay one line) */
int vita_fail_line(char* err, size_t errlen, const char* fmt, ...) __attribute__((format(printf, 3, 4)));

#endif
