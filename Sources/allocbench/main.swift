import AllocBenchHarness
import ArgumentParser
import Glibc

/// Descriptors 0–2 that the caller closed are reopened on /dev/null before anything opens a file:
/// otherwise the next file opened (a replay's op stream, a pipe) would become this process's, and
/// its children's, stdin, stdout or stderr. Output meant for a stdout that was closed still fails
/// with exit 73 (`emit`).
let standardOutputWasClosed: Bool = {
    var closed = [false, false, false]
    for descriptor in Int32(0)...2 where fcntl(descriptor, F_GETFD) == -1 && errno == EBADF {
        closed[Int(descriptor)] = true
        _ = open("/dev/null", O_RDWR)  // the lowest free descriptor: this one
    }
    return closed[1]
}()

_ = standardOutputWasClosed
CleanupOnSignal.install()
AllocBenchCommand.main()
