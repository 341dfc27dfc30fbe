/// What kind of failure stopped a command outside a replay. The library's errors say which kind
/// they are; the command line turns a kind into its exit code in one place (`ExitStatus`), so no
/// library type carries a number.
public enum FailureKind: Sendable, Equatable {
    /// A bad option or argument (EX_USAGE, 64).
    case usage
    /// A malformed trace, baseline or report (EX_DATAERR, 65).
    case badInput
    /// A file, replay child, allocator or library that is not there (EX_NOINPUT, 66).
    case missingInput
    /// The operating system refused (EX_OSERR, 71).
    case system
    /// An output that cannot be written (EX_CANTCREAT, 73).
    case cannotCreateOutput
    /// A command to record that cannot be executed (126, as the shells say).
    case commandNotExecutable
    /// A command to record that does not exist (127, as the shells say).
    case commandNotFound
}
