/* engine/errfmt.c — vita_fail, vita_fail_line (errfmt.h). */
#include "errfmt.h"

#include <stdarg.h>
#include <stdio.h>

static int vfail(char* err, size_t errlen, int one_line, const char* fmt, va_list ap) {
    if (!err || !errlen) return 1;
    vsnprintf(err, errlen, fmt, ap);
    if (one_line)
        for (char* p = err; *p; p++)
            if (*p == '\n' || *p == '\r') *p = ' ';
    return 1;
}

int vita_fail(char* err, size_t errlen, const char* fmt, ...) {
    va_list ap;
    va_start(ap, fmt);
    vfail(err, errlen, 0, fmt, ap);
    va_end(ap);
    return 1;
}

int vita_fail_line(char* err, size_t errlen, const char* fmt, ...) {
    va_list ap;
    va_start(ap, fmt);
    vfail(err, errlen, 1, fmt, ap);
    va_end(ap);
    return 1;
}
