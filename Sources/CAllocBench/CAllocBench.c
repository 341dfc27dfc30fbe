// The parent side of the C shim: tracing, spawning and reaping replay children (child.c has
// what the children call).
#include "CAllocBench.h"

#include <errno.h>
#include <fcntl.h>
#include <signal.h>
#include <pthread.h>
#include <string.h>
#include <sys/mman.h>
#include <sys/personality.h>
#include <sys/prctl.h>
#include <sys/resource.h>
#include <sys/ptrace.h>
#include <sys/syscall.h>
#include <sys/user.h>
#include <sys/wait.h>
#include <unistd.h>

int ab_ptrace_set_options(pid_t pid) {
    long options = PTRACE_O_TRACESECCOMP | PTRACE_O_EXITKILL | PTRACE_O_TRACECLONE;
    return (int)ptrace(PTRACE_SETOPTIONS, pid, 0, (void *)options);
}

int ab_ptrace_continue(pid_t pid, int signal) {
    return (int)ptrace(PTRACE_CONT, pid, 0, (void *)(long)signal);
}

int ab_ptrace_event_message(pid_t pid, unsigned long *message) {
    return (int)ptrace(PTRACE_GETEVENTMSG, pid, 0, message);
}

int ab_ptrace_argument(pid_t pid, int index, uint64_t *argument) {
    if (index < 0 || index > 5) {
        errno = EINVAL;
        return -1;
    }
    struct user_regs_struct registers;
#if defined(__x86_64__)
    if (ptrace(PTRACE_GETREGS, pid, 0, &registers) != 0) return -1;
    const unsigned long long in_order[6] = {registers.rdi, registers.rsi, registers.rdx, registers.r10, registers.r8, registers.r9};
    *argument = in_order[index];
#else
    struct iovec vector = {.iov_base = &registers, .iov_len = sizeof(registers)};
    if (ptrace(PTRACE_GETREGSET, pid, (void *)1 /* NT_PRSTATUS */, &vector) != 0) return -1;
    *argument = registers.regs[index];
#endif
    return 0;
}

int ab_drain_page_batches(pid_t pid) {
    void *no_page = NULL;
    int node = 0;
    int status = 0;
    return (int)syscall(SYS_move_pages, pid, 0UL, &no_page, &node, &status, 0);
}

int ab_is_seccomp_stop(int status) {
    return WIFSTOPPED(status) && (status >> 8) == (SIGTRAP | (PTRACE_EVENT_SECCOMP << 8));
}

int ab_is_event_stop(int status) {
    return WIFSTOPPED(status) && (status >> 16) != 0 && (status >> 16) != PTRACE_EVENT_SECCOMP;
}

int ab_delivery_stop_signal(int status) {
    return WIFSTOPPED(status) && (status >> 16) == 0 ? WSTOPSIG(status) : 0;
}

/// The child's side of ab_spawn, on the parent's memory and stack (vfork): only system calls, and
/// an errno for the parent on failure. Never returns.
__attribute__((noreturn)) static void ab_spawn_child(const char *path, char *const argv[], char *const envp[], const ab_spawn_options *options,
                           pid_t parent, const sigset_t *parent_mask, volatile int *error) {
    // Dies with the thread that spawned it; the parent may have died before the prctl, and then
    // we were reparented already.
    if (prctl(PR_SET_PDEATHSIG, SIGKILL, 0, 0, 0) != 0) goto failed;
    if (getppid() != parent) {
        errno = ESRCH;
        goto failed;
    }
    // A handler of the parent must not run here, on its memory: a caught signal goes back to its
    // default (as the exec would do anyway), an ignored one stays ignored unless isolated — but
    // SIGHUP: under nohup a hang-up reaches the whole process group, and a replay child that did
    // not ignore it as allocbench does would die of it, its row reading "crashed: signal 1".
    for (int signal = 1; signal < NSIG; signal++) {
        struct sigaction action;
        if (sigaction(signal, NULL, &action) != 0) continue;
        if (action.sa_handler == SIG_DFL || (action.sa_handler == SIG_IGN && (!options->isolate || signal == SIGHUP))) continue;
        memset(&action, 0, sizeof action);
        action.sa_handler = SIG_DFL;
        sigaction(signal, &action, NULL);
    }
    // Every source descriptor may sit anywhere, 0–2 included (allocbench run with stdout closed
    // gets its op stream as descriptor 1), so each is first copied above all of them and above
    // the target range, and only then onto its target: no dup2 overwrites a source still to be
    // copied. The copies are closed afterwards.
    int sources[AB_SPAWN_MAX_KEEP + 3];
    int count = options->keep_count;
    if (count < 0 || count > AB_SPAWN_MAX_KEEP) {
        errno = EINVAL;
        goto failed;
    }
    for (int index = 0; index < count; index++) sources[index] = options->keep[index];
    sources[count] = options->standard_output;
    sources[count + 1] = options->standard_error;
    sources[count + 2] = options->exec_descriptor;
    int staging = 3 + count + 1;
    for (int index = 0; index < count + 3; index++)
        if (sources[index] >= staging) staging = sources[index] + 1;
    for (int index = 0; index < count + 3; index++)
        if (sources[index] >= 0 && dup2(sources[index], staging + index) < 0) goto failed;
    if (options->standard_output >= 0 && dup2(staging + count, 1) < 0) goto failed;
    if (options->standard_error >= 0 && dup2(staging + count + 1, 2) < 0) goto failed;
    for (int index = 0; index < count; index++)
        if (dup2(staging + index, 3 + index) < 0) goto failed;
    // The executable's descriptor, right after the kept ones: its number, and so the "/dev/fd/N"
    // the program sees as its path, is the same for every child with as many kept descriptors.
    int executable = -1;
    if (options->exec_descriptor >= 0) {
        executable = 3 + count;
        if (dup3(staging + count + 2, executable, O_CLOEXEC) < 0) goto failed;
    }
    for (int index = 0; index < count + 3; index++)
        if (sources[index] >= 0) close(staging + index);
    if (options->isolate) {
        if (close_range(3 + options->keep_count + (executable >= 0 ? 1 : 0), ~0U, 0) != 0) goto failed;
        // The stack limit places every mapping: the kernel puts mmap_base the limit (clamped to
        // at least 128 MiB) below the stack, and an unlimited stack selects the legacy bottom-up
        // layout. Addresses decide page counts (jemalloc seeds its large-block offsets from its
        // TLS address), so every child gets Linux's default 8 MiB (or the hard limit, if lower),
        // as a CI runner with `ulimit -s unlimited` would otherwise count other pages
        // (docs/gating.md).
        struct rlimit stack_limit;
        if (getrlimit(RLIMIT_STACK, &stack_limit) == 0) {
            stack_limit.rlim_cur = AB_CHILD_STACK_LIMIT;
            if (stack_limit.rlim_max != RLIM_INFINITY && stack_limit.rlim_max < stack_limit.rlim_cur)
                stack_limit.rlim_cur = stack_limit.rlim_max;
            if (setrlimit(RLIMIT_STACK, &stack_limit) != 0) goto failed;
        }
    }
    if (options->no_aslr) {
        int previous = personality(0xffffffff);
        if (previous != -1) personality((unsigned long)previous | ADDR_NO_RANDOMIZE);
    }
    if (options->directory != NULL && chdir(options->directory) != 0) goto failed;
    sigset_t none;
    sigemptyset(&none);
    sigprocmask(SIG_SETMASK, options->isolate ? &none : parent_mask, NULL);
    if (options->trace_from_exec) {
        // Last, so nothing above is filtered: the filter outlives the exec, and the tracer sees
        // the new program's every mm syscall, its loader's and C start-up's first.
        if (ptrace(PTRACE_TRACEME, 0, 0, 0) != 0) goto failed;
        if (ab_install_mm_syscall_filter() != 0) goto failed;
    }
    if (executable >= 0) syscall(SYS_execveat, executable, "", argv, envp, AT_EMPTY_PATH);
    else if (options->search_path) execvpe(path, argv, envp);
    else execve(path, argv, envp);
failed:
    *error = errno;
    _exit(127);
}

int ab_spawn(pid_t *pid, const char *path, char *const argv[], char *const envp[],
             const ab_spawn_options *options) {
    sigset_t all, previous;
    sigfillset(&all);
    int error = pthread_sigmask(SIG_SETMASK, &all, &previous);
    if (error != 0) return error;
    volatile int child_error = 0;
    pid_t parent = getpid();
    pid_t child = vfork();
    if (child == 0) ab_spawn_child(path, argv, envp, options, parent, &previous, &child_error);
    // The child has exec'd or exited: its error, if any, is in child_error.
    error = child < 0 ? errno : child_error;
    if (child > 0 && error != 0) waitpid(child, NULL, 0);
    if (error == 0) *pid = child;
    pthread_sigmask(SIG_SETMASK, &previous, NULL);
    return error;
}

int ab_pidfd_open(pid_t pid) {
    return (int)syscall(SYS_pidfd_open, pid, 0);
}

int ab_pidfd_send_signal(int pidfd, int signal) {
    return (int)syscall(SYS_pidfd_send_signal, pidfd, signal, NULL, 0);
}

#ifndef P_PIDFD
#define P_PIDFD 3
#endif

int ab_pidfd_wait(int pidfd, int *status) {
    siginfo_t info;
    memset(&info, 0, sizeof info);
    if (waitid((idtype_t)P_PIDFD, (id_t)pidfd, &info, WEXITED) != 0) return -1;
    if (info.si_code == CLD_EXITED) *status = (info.si_status & 0xff) << 8;
    else *status = (info.si_status & 0x7f) | (info.si_code == CLD_DUMPED ? 0x80 : 0);
    return 0;
}

int ab_set_nonblocking(int descriptor) {
    int flags = fcntl(descriptor, F_GETFL);
    return flags < 0 ? -1 : fcntl(descriptor, F_SETFL, flags | O_NONBLOCK);
}


int ab_pipe_cloexec(int *read_end, int *write_end) {
    int ends[2];
    if (pipe2(ends, O_CLOEXEC) != 0) return -1;
    *read_end = ends[0];
    *write_end = ends[1];
    return 0;
}

int ab_memfd_create(const char *name) {
    return memfd_create(name, MFD_CLOEXEC);
}

