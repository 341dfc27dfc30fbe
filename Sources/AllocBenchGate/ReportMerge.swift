import AllocBenchModel

/// `allocbench merge`: run reports put back together only where the gate would compare them. One
/// merged report holds one environment, so every fact of `EnvironmentFact.all` that can change
/// page counts — of every row or of one allocator's — must be the same in every part, and be
/// recorded in all or none; a new kernel release is a warning, a refusal with `strictEnvironment`,
/// as in `check`; facts that only describe the machine are notes. The rest is
/// `RunReport.merging`.
public enum ReportMerge {
    public static func merge(_ parts: [RunReport.MergePart], strictEnvironment: Bool = false) throws(MergeConflict) -> RunReport.Merged {
        var notes: [String] = []
        if let first = parts.first {
            let reference = EnvironmentFact.fields(first.report.environment, first.report.conditions)
            for part in parts.dropFirst() {
                let fields = EnvironmentFact.fields(part.report.environment, part.report.conditions)
                for key in EnvironmentFact.ordered(Set(reference.keys).union(fields.keys)) {
                    guard let fact = EnvironmentFact.named(key) else { continue }
                    let before = reference[key]
                    let after = fields[key]
                    guard before != after else { continue }
                    let difference = "\(key) \(before ?? "not recorded") (\(first.source)) vs \(after ?? "not recorded") (\(part.source))"
                    switch fact.effect {
                    case .countsEveryRow, .countsOwnRow:
                        throw MergeConflict("\(first.source) and \(part.source) were measured where page counts can differ: "
                            + difference + "; merge only results of one environment")
                    case .kernelRelease where strictEnvironment:
                        throw MergeConflict("\(first.source) and \(part.source) were measured on different kernel releases "
                            + "(--strict-env): " + difference)
                    case .kernelRelease:
                        notes.append("warning: \(difference): the kernel does the counting; the merged result records "
                            + "\(first.source)'s (--strict-env refuses this)")
                    case .describes:
                        notes.append("\(difference): describes the machine only; the merged result records \(first.source)'s")
                    }
                }
            }
        }
        var merged = try RunReport.merging(parts)
        merged.notes = notes + merged.notes
        return merged
    }
}
