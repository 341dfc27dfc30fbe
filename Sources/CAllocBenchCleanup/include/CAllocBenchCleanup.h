#ifndef CALLOCBENCH_CLEANUP_H
#define CALLOCBENCH_CLEANUP_H

// The parent's signal cleanup, apart from CAllocBench: the replay children link that one, and a
// table here would move their bss (and the pages a replay touches).

#include <sys/types.h>

// MARK: - Cleanup when a signal ends allocbench

/// Cleanup slots: temporary files and spool directories to remove, and processes to kill first,
/// if SIGINT, SIGTERM or SIGHUP ends allocbench before it removes them itself.
#define AB_CLEANUP_SLOTS 16
enum { AB_CLEANUP_FILE = 1, AB_CLEANUP_DIRECTORY = 2, AB_CLEANUP_PROCESS = 3 };
/// Registers a path (AB_CLEANUP_FILE: unlinked; AB_CLEANUP_DIRECTORY: emptied and removed);
/// returns the slot, or -1 when none is free or the path is too long.
int ab_cleanup_register_path(const char *path, int kind);
/// Registers a child killed (SIGKILL) and reaped before the paths are removed.
int ab_cleanup_register_process(pid_t pid);
/// Forgets a slot once its path is gone or its process reaped.
void ab_cleanup_unregister(int slot);
/// Installs the handler for SIGINT, SIGTERM and SIGHUP (one the caller ignores stays ignored):
/// it kills the registered processes, removes the registered paths with system calls only, then
/// ends the process by the same signal. Returns 0, or -1 with errno.
int ab_cleanup_install(void);

#endif
