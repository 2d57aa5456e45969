/* engine/cmd_report.c — `vita report` (being built; see engine/commands.h). */
#include "commands.h"
#include "check.h"
#include <stdio.h>
int cmd_report(int argc, char** argv) {
    (void)argc; (void)argv;
    fprintf(stderr, "vita: 'report' is not built in this version yet\n");
    return VITA_EXIT_USER;
}
