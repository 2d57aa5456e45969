/* engine/cmd_sweep.c — `vita sweep` (being built; see engine/commands.h). */
#include "commands.h"
#include "check.h"
#include <stdio.h>
int cmd_sweep(int argc, char** argv) {
    (void)argc; (void)argv;
    fprintf(stderr, "vita: 'sweep' is not built in this version yet\n");
    return VITA_EXIT_USER;
}
