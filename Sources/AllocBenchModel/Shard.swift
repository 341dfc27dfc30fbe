/// One of N shards of a run: which (trace, allocator) pairs a `--shard K/N` invocation replays, and
/// the whole plan it was cut from, so that `merge` can put the shards back in the unsharded order
/// and tell a complete set from a partial one.
///
/// A pair's shard is a stable hash of "trace/allocator" (FNV-1a, 64 bits) modulo N, not its
/// position in the plan: it depends on the pair alone, so machines whose catalogs differ (one
/// without mimalloc) or a plan that gains an allocator or a trace never move the other pairs to
/// another shard, where they would be replayed twice or not at all.
public struct Shard: Codable, Sendable, Equatable, CustomStringConvertible {
    /// 1-based: 1…count.
    public var index: Int
    public var count: Int
    /// Every trace name of the run, in `--trace` order, this shard's or not.
    public var traces: [String]
    /// Every allocator of the run, in the catalog's order, this shard's or not.
    public var allocators: [String]

    public init(index: Int, count: Int, traces: [String] = [], allocators: [String] = []) {
        self.index = index
        self.count = count
        self.traces = traces
        self.allocators = allocators
    }

    /// "K/N".
    public var description: String { "\(index)/\(count)" }

    /// Parses `K/N` (1 ≤ K ≤ N); the error is the one-line reason.
    public static func parse(_ text: String) -> Result<Shard, ShardError> {
        let parts = text.split(separator: "/", omittingEmptySubsequences: false)
        guard parts.count == 2, let index = Int(parts[0]), let count = Int(parts[1]) else {
            return .failure(ShardError("--shard '\(text)': expected K/N, e.g. 2/3"))
        }
        guard count >= 1 else { return .failure(ShardError("--shard '\(text)': N must be 1 or more")) }
        guard (1...count).contains(index) else { return .failure(ShardError("--shard '\(text)': K must be 1 to \(count)")) }
        return .success(Shard(index: index, count: count))
    }

    /// The 1-based shard of a pair among `count` shards.
    public static func number(trace: String, allocator: String, of count: Int) -> Int {
        Int(FNV1a64.digest("\(trace)/\(allocator)".utf8) % UInt64(count)) + 1
    }

    public func contains(trace: String, allocator: String) -> Bool {
        Shard.number(trace: trace, allocator: allocator, of: count) == index
    }

    /// The same shard of the same plan: what `merge` requires of every shard it puts together.
    public func isCut(from other: Shard) -> Bool {
        count == other.count && traces == other.traces && allocators == other.allocators
    }
}

public struct ShardError: Error, Sendable, CustomStringConvertible {
    public var description: String

    public init(_ description: String) {
        self.description = description
    }
}

/// The 64-bit FNV-1a hash: tiny, stable across platforms and releases (unlike `Hasher`, which is
/// seeded per process), which is all a shard number needs.
public enum FNV1a64 {
    public static func digest(_ bytes: some Sequence<UInt8>) -> UInt64 {
        var digest: UInt64 = 0xcbf2_9ce4_8422_2325
        for byte in bytes {
            digest = (digest ^ UInt64(byte)) &* 0x0000_0100_0000_01b3
        }
        return digest
    }
}
