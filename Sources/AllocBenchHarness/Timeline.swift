import AllocBenchCore
import AllocBenchModel
import CAllocBench

/// Shaping a replay's timeline for reports.
enum Timeline {
    /// At most `limit` points: the points are split into equal buckets of op index, and each bucket
    /// keeps its highest and lowest touched point, so neither peaks nor dips disappear. The first,
    /// last and globally highest points are always kept.
    static func bounded(_ points: [TimelinePoint], to limit: Int) -> [TimelinePoint] {
        guard points.count > limit, limit >= 4 else { return points }
        let bucketCount = (limit - 2) / 2
        let bucketSize = (points.count + bucketCount - 1) / bucketCount
        var kept = Set<Int>([0, points.count - 1])
        if let highest = points.indices.max(by: { points[$0].sample.rssAnonKilobytes < points[$1].sample.rssAnonKilobytes }) {
            kept.insert(highest)
        }
        var start = 0
        while start < points.count {
            let bucket = start..<min(start + bucketSize, points.count)
            let byTouched = bucket.sorted { points[$0].sample.rssAnonKilobytes < points[$1].sample.rssAnonKilobytes }
            kept.insert(byTouched.first!)
            kept.insert(byTouched.last!)
            start += bucketSize
        }
        return kept.sorted().map { points[$0] }
    }

    /// The requested bytes live as the op stream is replayed, one op at a time.
    struct LiveBytes {
        private var slotSizes: [UInt64]
        private(set) var bytes: UInt64 = 0

        init(slotCount: Int) {
            slotSizes = [UInt64](repeating: 0, count: max(slotCount, 1))
        }

        mutating func apply(_ op: ab_op) {
            let slot = Int(op.slot)
            let size = Int(op.kind) == AB_OP_FREE ? 0 : op.size
            bytes = bytes - slotSizes[slot] + size
            slotSizes[slot] = size
        }
    }

    /// Sets each point's live requested bytes by walking the op stream once; the points are in
    /// replay order.
    static func fillLiveBytes(_ points: inout [TimelinePoint], stream: OpStreamFile) throws(SystemError) {
        var live = LiveBytes(slotCount: stream.slotCount)
        var pointIndex = 0
        var opsApplied = 0
        func settle(_ points: inout [TimelinePoint]) {
            while pointIndex < points.count && min(points[pointIndex].opsCompleted, stream.opCount) <= opsApplied {
                points[pointIndex].liveBytes = live.bytes
                pointIndex += 1
            }
        }
        settle(&points)
        try stream.forEachOp { op in
            live.apply(op)
            opsApplied += 1
            settle(&points)
        }
    }

    /// Live requested bytes over the whole trace in at most `buckets` points, each the largest
    /// value inside its bucket of ops, so the ideal's peak is always drawn.
    static func liveBytes(stream: OpStreamFile, buckets: Int) throws(SystemError) -> [LiveBytesPoint] {
        let opCount = stream.opCount
        guard opCount > 0, buckets > 0 else { return [] }
        let bucketSize = max(1, (opCount + buckets - 1) / buckets)
        var walk = LiveBytes(slotCount: stream.slotCount)
        var points: [LiveBytesPoint] = [LiveBytesPoint(opsCompleted: 0, liveBytes: 0)]
        var bucketMaximum: (ops: Int, bytes: UInt64) = (0, 0)
        var index = 0
        try stream.forEachOp { op in
            walk.apply(op)
            let live = walk.bytes
            if live >= bucketMaximum.bytes { bucketMaximum = (index + 1, live) }
            if (index + 1) % bucketSize == 0 || index == opCount - 1 {
                points.append(LiveBytesPoint(opsCompleted: bucketMaximum.ops, liveBytes: bucketMaximum.bytes))
                if bucketMaximum.ops != index + 1 { points.append(LiveBytesPoint(opsCompleted: index + 1, liveBytes: live)) }
                bucketMaximum = (index + 1, 0)
            }
            index += 1
        }
        return points
    }
}
