// Conformances that need Foundation-free but full Swift: the lean replay children compile
// Allocator.swift as Embedded Swift, which has no Codable.
extension TouchMode: Codable {}
