/* engine/commands.h — entry points of the `vita` subcommands added with pretraining, sweeps,
 * reports, import and prediction (SPEC.md §1). argv[0] is the command name; each returns the
 * process exit code (0 ok, 1 user error, 2 internal error, 75 preempted). */
#ifndef VITA_COMMANDS_H
#define VITA_COMMANDS_H
int cmd_pretrain(int argc, char** argv);   /* engine/cmd_pretrain.c */
int cmd_sweep(int argc, char** argv);      /* engine/cmd_sweep.c */
int cmd_report(int argc, char** argv);     /* engine/cmd_report.c */
int cmd_import(int argc, char** argv);     /* engine/cmd_import.c */
int cmd_predict(int argc, char** argv);    /* engine/cmd_predict.c */
#endif
