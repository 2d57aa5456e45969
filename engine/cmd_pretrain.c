/* engine/cmd_pretrain.c — `vita pretrain` (being built; see engine/commands.h). */
#include "commands.h"
#include "check.h"
#include <stdio.h>
int cmd_pretrain(int argc, char** argv) {
    (void)argc; (void)argv;
    fprintf(stderr, "vita: 'pretrain' is not built in this version yet\n");
    return VITA_EXIT_USER;
}
