/* engine/cmd_import.c — `vita import` (being built; see engine/commands.h). */
#include "commands.h"
#include "check.h"
#include <stdio.h>
int cmd_import(int argc, char** argv) {
    (void)argc; (void)argv;
    fprintf(stderr, "vita: 'import' is not built in this version yet\n");
    return VITA_EXIT_USER;
}
