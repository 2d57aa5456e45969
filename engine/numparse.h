/* engine/numparse.h — strict integer parsing for command lines and file names: the whole
 * string must be a base-10 integer in [lo, hi] (no sign-only, no trailing text, no overflow). */
#ifndef VITA_NUMPARSE_H
#define VITA_NUMPARSE_H

/* 0 with *out set, or 1 (out untouched) */
int parse_long_in(const char* s, long lo, long hi, long* out);
/* the value of flag's argument s; otherwise prints
 * "vita: FLAG 'S': expected an integer in [LO, HI]" and exits VITA_EXIT_USER (1) */
long arg_long(const char* flag, const char* s, long lo, long hi);

#endif
