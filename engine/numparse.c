/* engine/numparse.c — strict integer parsing (numparse.h). */
#include "numparse.h"
#include "check.h"

#include <errno.h>
#include <stdio.h>
#include <stdlib.h>

int parse_long_in(const char* s, long lo, long hi, long* out) {
    char* end;
    errno = 0;
    long v = strtol(s, &end, 10);
    if (errno || end == s || *end || v < lo || v > hi) return 1;
    *out = v;
    return 0;
}

long arg_long(const char* flag, const char* s, long lo, long hi) {
    long v;
    if (parse_long_in(s, lo, hi, &v))
        USER_ERROR("%s '%s': expected an integer in [%ld, %ld]", flag, s, lo, hi);
    return v;
}
