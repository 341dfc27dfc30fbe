import CAllocBenchCleanup
import Glibc

/// What allocbench leaves behind if SIGINT, SIGTERM or SIGHUP ends it half-way: nothing. Temporary
/// files and spool directories are registered while they exist, and a recorded command while it
/// runs; the handler (ab_cleanup_install, C: only system calls in it) kills the processes, removes
/// the paths, and ends allocbench by the same signal. Replay children need no slot: they die with
/// allocbench by themselves (PR_SET_PDEATHSIG).
public enum CleanupOnSignal {
    /// A registered path or process; `release()` once it is gone or reaped.
    public struct Registration: Sendable {
        let slot: Int32

        public func release() {
            if slot >= 0 { ab_cleanup_unregister(slot) }
        }
    }

    /// Installs the handler; once, at start.
    public static func install() {
        _ = ab_cleanup_install()
    }

    public static func file(_ path: String) -> Registration {
        Registration(slot: ab_cleanup_register_path(path, Int32(AB_CLEANUP_FILE)))
    }

    public static func directory(_ path: String) -> Registration {
        Registration(slot: ab_cleanup_register_path(path, Int32(AB_CLEANUP_DIRECTORY)))
    }

    public static func process(_ pid: pid_t) -> Registration {
        Registration(slot: ab_cleanup_register_process(pid))
    }
}
