import AllocBenchModel
import Foundation

/// One mapping of /proc/PID/smaps, with the sizes the breakdown needs (kB).
public struct Mapping: Sendable, Equatable {
    public var start: UInt64
    public var end: UInt64
    public var writable: Bool
    public var path: String
    public var sizeKilobytes: Int
    public var anonymousKilobytes: Int
    /// Rss: resident pages of the mapping, file-backed and anonymous (copied on write) alike.
    public var residentKilobytes: Int = 0
}

enum MemoryMap {
    /// Parses /proc/PID/smaps text.
    static func parse(_ text: String) -> [Mapping] {
        var mappings: [Mapping] = []
        for line in text.split(separator: "\n", omittingEmptySubsequences: true) {
            if let first = line.first, first.isHexDigit, let dash = line.firstIndex(of: "-"),
               line[line.startIndex..<dash].allSatisfy(\.isHexDigit) {
                let fields = line.split(separator: " ", maxSplits: 5, omittingEmptySubsequences: true)
                guard fields.count >= 5 else { continue }
                let range = fields[0].split(separator: "-")
                guard range.count == 2, let start = UInt64(range[0], radix: 16), let end = UInt64(range[1], radix: 16) else { continue }
                let path = fields.count == 6 ? fields[5].trimmingCharacters(in: .whitespaces) : ""
                mappings.append(Mapping(start: start, end: end, writable: fields[1].dropFirst().first == "w",
                                        path: path, sizeKilobytes: 0, anonymousKilobytes: 0))
            } else if !mappings.isEmpty, line.hasPrefix("Size:") {
                mappings[mappings.count - 1].sizeKilobytes = kilobytes(line)
            } else if !mappings.isEmpty, line.hasPrefix("Rss:") {
                mappings[mappings.count - 1].residentKilobytes = kilobytes(line)
            } else if !mappings.isEmpty, line.hasPrefix("Anonymous:") {
                mappings[mappings.count - 1].anonymousKilobytes = kilobytes(line)
            }
        }
        return mappings
    }

    private static func kilobytes(_ line: Substring) -> Int {
        Int(line.split(separator: " ", omittingEmptySubsequences: true).dropFirst().first ?? "") ?? 0
    }

    /// Names the region a mapping belongs to. An anonymous mapping that starts where a writable
    /// file mapping ends is that file's bss.
    static func regions(_ mappings: [Mapping], executable: String) -> [(region: String, mapping: Mapping)] {
        var named: [(String, Mapping)] = []
        var previous: Mapping?
        var previousRegion = ""
        for mapping in mappings {
            let region: String
            switch mapping.path {
            case "[heap]": region = "heap (brk)"
            case "[stack]": region = "stack"
            case "":
                if let previous, previous.end == mapping.start, previous.writable, !previous.path.isEmpty, !previous.path.hasPrefix("[") {
                    region = previousRegion
                } else {
                    region = "anonymous mmaps"
                }
            case executable: region = "executable data/bss"
            case let path where path.hasPrefix("/memfd:"): region = "allocbench inputs"
            case let path where path.hasPrefix("["): region = "other"
            case let path: region = (path as NSString).lastPathComponent + " data/bss"
            }
            named.append((region, mapping))
            previous = mapping
            previousRegion = region
        }
        return named
    }

    /// Per-region deltas between two instants, in pages; regions that did not change are left out.
    static func usage(from baseline: [Mapping], to current: [Mapping], executable: String, pageSize: Int) -> [RegionUsage] {
        var totals: [String: (touched: Int, mapped: Int)] = [:]
        for (region, mapping) in regions(current, executable: executable) {
            totals[region, default: (0, 0)].touched += mapping.anonymousKilobytes
            totals[region, default: (0, 0)].mapped += mapping.sizeKilobytes
        }
        for (region, mapping) in regions(baseline, executable: executable) {
            totals[region, default: (0, 0)].touched -= mapping.anonymousKilobytes
            totals[region, default: (0, 0)].mapped -= mapping.sizeKilobytes
        }
        func pages(_ kilobytes: Int) -> Int { AllocBenchModel.pages(kilobytes: kilobytes, pageSize: pageSize) }
        return totals
            .map { RegionUsage(region: $0.key, touchedPages: pages($0.value.touched), mappedPages: pages($0.value.mapped)) }
            .filter { $0.touchedPages != 0 || $0.mappedPages != 0 }
            .sorted { ($0.touchedPages, $0.mappedPages, $1.region) > ($1.touchedPages, $1.mappedPages, $0.region) }
    }

    /// Anonymous mappings (not a file's bss) whose start did not exist at the baseline.
    static func newMappings(from baseline: [Mapping], to current: [Mapping], executable: String, pageSize: Int) -> [NewMapping] {
        let known = Set(baseline.map(\.start))
        return regions(current, executable: executable)
            .filter { $0.region == "anonymous mmaps" && !known.contains($0.mapping.start) }
            .map { NewMapping(start: "0x" + String($0.mapping.start, radix: 16),
                              mappedPages: pages(kilobytes: $0.mapping.sizeKilobytes, pageSize: pageSize),
                              touchedPages: pages(kilobytes: $0.mapping.anonymousKilobytes, pageSize: pageSize)) }
    }
}
