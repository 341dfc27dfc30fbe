#include "CAllocBenchCleanup.h"

#include <fcntl.h>
#include <signal.h>
#include <stdint.h>
#include <string.h>
#include <sys/syscall.h>
#include <sys/wait.h>
#include <unistd.h>

// MARK: - Cleanup when a signal ends allocbench

/// What a cleanup slot holds: nothing yet, a slot being written, or a registered path or process.
enum { AB_SLOT_FREE = 0, AB_SLOT_WRITING = 1, AB_SLOT_READY = 2 };

typedef struct {
    int state;  // AB_SLOT_*, read by the handler with __atomic loads
    int kind;   // AB_CLEANUP_*
    pid_t pid;
    char path[4096];
} ab_cleanup_slot;

static ab_cleanup_slot ab_cleanup_slots[AB_CLEANUP_SLOTS];

static int ab_cleanup_take(int kind, const char *path, pid_t pid) {
    if (path != NULL && strlen(path) >= sizeof ab_cleanup_slots[0].path) return -1;
    for (int index = 0; index < AB_CLEANUP_SLOTS; index++) {
        int expected = AB_SLOT_FREE;
        if (!__atomic_compare_exchange_n(&ab_cleanup_slots[index].state, &expected, AB_SLOT_WRITING, 0,
                                         __ATOMIC_ACQ_REL, __ATOMIC_ACQUIRE)) continue;
        ab_cleanup_slots[index].kind = kind;
        ab_cleanup_slots[index].pid = pid;
        if (path != NULL) strcpy(ab_cleanup_slots[index].path, path);
        __atomic_store_n(&ab_cleanup_slots[index].state, AB_SLOT_READY, __ATOMIC_RELEASE);
        return index;
    }
    return -1;
}

int ab_cleanup_register_path(const char *path, int kind) { return ab_cleanup_take(kind, path, 0); }

int ab_cleanup_register_process(pid_t pid) { return ab_cleanup_take(AB_CLEANUP_PROCESS, NULL, pid); }

void ab_cleanup_unregister(int slot) {
    if (slot >= 0 && slot < AB_CLEANUP_SLOTS) __atomic_store_n(&ab_cleanup_slots[slot].state, AB_SLOT_FREE, __ATOMIC_RELEASE);
}

/// Unlinks every entry of a directory with system calls only (getdents64, unlinkat): a signal
/// handler may not use opendir's heap.
static void ab_empty_directory(const char *path) {
    int directory = open(path, O_RDONLY | O_DIRECTORY | O_CLOEXEC);
    if (directory < 0) return;
    char buffer[4096] __attribute__((aligned(8)));
    for (;;) {
        long count = syscall(SYS_getdents64, directory, buffer, sizeof buffer);
        if (count <= 0) break;
        for (long offset = 0; offset < count;) {
            struct { uint64_t inode; int64_t next; unsigned short length; unsigned char type; char name[]; } *entry = (void *)(buffer + offset);
            if (strcmp(entry->name, ".") != 0 && strcmp(entry->name, "..") != 0) unlinkat(directory, entry->name, 0);
            offset += entry->length;
        }
    }
    close(directory);
}

static void ab_cleanup_on_signal(int signal) {
    // Processes first: a recorded command still running could write a new spool file.
    for (int index = 0; index < AB_CLEANUP_SLOTS; index++) {
        ab_cleanup_slot *slot = &ab_cleanup_slots[index];
        if (__atomic_load_n(&slot->state, __ATOMIC_ACQUIRE) != AB_SLOT_READY || slot->kind != AB_CLEANUP_PROCESS) continue;
        kill(slot->pid, SIGKILL);
        waitpid(slot->pid, NULL, 0);
    }
    for (int index = 0; index < AB_CLEANUP_SLOTS; index++) {
        ab_cleanup_slot *slot = &ab_cleanup_slots[index];
        if (__atomic_load_n(&slot->state, __ATOMIC_ACQUIRE) != AB_SLOT_READY) continue;
        if (slot->kind == AB_CLEANUP_FILE) unlink(slot->path);
        if (slot->kind == AB_CLEANUP_DIRECTORY) {
            ab_empty_directory(slot->path);
            rmdir(slot->path);
        }
    }
    // The default action, unblocked, then the signal again: the process ends as the signal would
    // have ended it, so the caller sees it (exit 128 + N in a shell). Set here rather than trusted
    // to SA_RESETHAND: `record` reinstalls this handler with signal(2), which keeps it and blocks
    // the signal while it runs.
    struct sigaction default_action;
    memset(&default_action, 0, sizeof default_action);
    default_action.sa_handler = SIG_DFL;
    sigaction(signal, &default_action, NULL);
    sigset_t unblock;
    sigemptyset(&unblock);
    sigaddset(&unblock, signal);
    sigprocmask(SIG_UNBLOCK, &unblock, NULL);
    raise(signal);
}

int ab_cleanup_install(void) {
    struct sigaction action;
    memset(&action, 0, sizeof action);
    action.sa_handler = ab_cleanup_on_signal;
    action.sa_flags = SA_RESETHAND | SA_NODEFER;
    sigemptyset(&action.sa_mask);
    const int signals[] = {SIGINT, SIGTERM, SIGHUP};
    for (unsigned index = 0; index < sizeof signals / sizeof signals[0]; index++) {
        struct sigaction previous;
        // A signal the caller ignores (nohup's SIGHUP) stays ignored.
        if (sigaction(signals[index], NULL, &previous) == 0 && previous.sa_handler == SIG_IGN) continue;
        if (sigaction(signals[index], &action, NULL) != 0) return -1;
    }
    return 0;
}
