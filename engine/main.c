/* engine/main.c — the `vita` command line: dispatches subcommands (SPEC.md §1).
 *
 * OpenMP wait policy: libgomp's default lets idle team threads spin for a long while after
 * each parallel region. vita also runs loader threads (prefetch, augmentation) and shares
 * cluster nodes with other jobs; spinning threads then steal the cores those need (measured:
 * a phantom training run 15x slower). libgomp reads OMP_WAIT_POLICY once, when it is loaded,
 * before main, so unless the user chose a policy we set PASSIVE and re-execute ourselves. */
#include "cli.h"

#include <stdlib.h>
#include <unistd.h>

int main(int argc, char** argv) {
    if (!getenv("OMP_WAIT_POLICY") && !getenv("VITA_NO_REEXEC")) {
        setenv("OMP_WAIT_POLICY", "PASSIVE", 1);
        setenv("VITA_NO_REEXEC", "1", 1);
        execv("/proc/self/exe", argv);   /* returns only on failure: carry on as we are */
    }
    return vita_main(argc, argv);
}
