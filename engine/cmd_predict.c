/* engine/cmd_predict.c — `vita predict` (being built; see engine/commands.h). */
#include "commands.h"
#include "check.h"
#include <stdio.h>
int cmd_predict(int argc, char** argv) {
    (void)argc; (void)argv;
    fprintf(stderr, "vita: 'predict' is not built in this version yet\n");
    return VITA_EXIT_USER;
}
