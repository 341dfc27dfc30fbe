// One timed run of a lean replay child, started as allocbench starts it for a timed replay
// (`ab_spawn` of the C shim: isolated, no address randomization, the op stream on descriptor 3
// and a control block on 4), without allocbench's parse and traced run: so that compare.py can
// alternate the real replay with the C reference loop many times within `make bench`.
//
//     time-child [--aslr] OP_STREAM LEAN_CHILD ALLOCATOR [LD_PRELOAD_LIBRARY]
//
// --aslr keeps address randomization (allocbench --aslr): each run then has a layout of its own,
// so that many runs compare the loops over layouts rather than one layout with another.
//
// prints "<ns per op> <ops>": the child's own clock around its replay loop (the control block's
// replay_nanoseconds, the figure behind allocbench's ns/op) over the stream's op count.
#include "CAllocBench.h"

#include <fcntl.h>
#include <sys/wait.h>

static _Noreturn void fail(const char *message) {
    fprintf(stderr, "time-child: %s\n", message);
    exit(1);
}

int main(int argc, char **argv) {
    int randomize = argc > 1 && strcmp(argv[1], "--aslr") == 0;
    argc -= randomize;
    argv += randomize;
    if (argc != 4 && argc != 5) fail("usage: time-child [--aslr] OP_STREAM LEAN_CHILD ALLOCATOR [LD_PRELOAD_LIBRARY]");
    int stream = open(argv[1], O_RDONLY | O_CLOEXEC);
    if (stream < 0) fail("cannot open the op stream");
    ab_stream_header header;
    if (pread(stream, &header, sizeof header, 0) != (ssize_t)sizeof header || header.magic != AB_STREAM_MAGIC) {
        fail("not an op stream");
    }

    int control_file = ab_memfd_create("allocbench-control");
    if (control_file < 0 || ftruncate(control_file, AB_CONTROL_BLOCK_SIZE) != 0) fail("cannot create the control block");
    ab_control *control = mmap(NULL, AB_CONTROL_BLOCK_SIZE, PROT_READ | PROT_WRITE, MAP_SHARED, control_file, 0);
    if (control == MAP_FAILED) fail("cannot map the control block");
    control->magic = AB_CONTROL_MAGIC;

    char parent[32], preload[4096];
    snprintf(parent, sizeof parent, "ALLOCBENCH_PARENT=%d", (int)getpid());
    char *environment[] = {parent, NULL, NULL};
    if (argc == 5) {
        snprintf(preload, sizeof preload, "LD_PRELOAD=%s", argv[4]);
        environment[1] = preload;
    }
    char *arguments[] = {argv[2], "run", argv[3], "--timed", "--touch", "pages", NULL};
    int keep[] = {stream, control_file};
    ab_spawn_options options = {
        .keep = keep, .keep_count = 2, .standard_output = -1, .standard_error = -1,
        .isolate = 1, .no_aslr = !randomize, .exec_descriptor = -1,
    };
    pid_t child;
    int error = ab_spawn(&child, argv[2], arguments, environment, &options);
    if (error != 0) {
        fprintf(stderr, "time-child: cannot start %s: %s\n", argv[2], strerror(error));
        return 1;
    }
    int status;
    while (waitpid(child, &status, 0) < 0) {
        if (ab_errno() != EINTR) fail("waitpid");
    }
    if (!WIFEXITED(status) || WEXITSTATUS(status) != 0 || control->state != AB_STATE_DONE) {
        fprintf(stderr, "time-child: %s %s failed (status %d, state %u, failure %u)\n", argv[2], argv[3], status,
                control->state, control->failure);
        return 3;
    }
    uint64_t op_count = header.op_count > 0 ? header.op_count : 1;
    printf("%.3f %llu\n", (double)control->replay_nanoseconds / (double)op_count, (unsigned long long)header.op_count);
    return 0;
}
