/* engine/main.c — the `vita` command line: dispatches subcommands (SPEC.md §1). */
#include "cli.h"

int main(int argc, char** argv) { return vita_main(argc, argv); }
