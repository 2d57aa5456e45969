/* engine/cli.h — `vita` subcommand dispatch (SPEC.md §1). */
#ifndef VITA_CLI_H
#define VITA_CLI_H
int vita_main(int argc, char** argv);
/* `vita mmd` (engine/cmd_mmd.c); argv[0] is "mmd" */
int cmd_mmd(int argc, char** argv);
int cmd_eval(int argc, char** argv);    /* engine/cmd_eval.c */
#endif
