/* engine/cli.h — `vita` subcommand dispatch (SPEC.md §1). */
#ifndef VITA_CLI_H
#define VITA_CLI_H
int vita_main(int argc, char** argv);
#endif
