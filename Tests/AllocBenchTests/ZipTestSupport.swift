import Foundation
import ZIPFoundation

enum ZipTestSupport {
    /// Creates a zip archive holding `entries` (name → contents).
    @discardableResult
    static func makeArchive(at path: String, entries: [String: Data]) throws -> URL {
        let url = URL(fileURLWithPath: path)
        let archive = try Archive(url: url, accessMode: .create)
        for (name, data) in entries.sorted(by: { $0.key < $1.key }) {
            try archive.addEntry(with: name, type: .file, uncompressedSize: Int64(data.count), compressionMethod: .deflate) { position, size in
                data.subdata(in: Int(position)..<Int(position) + size)
            }
        }
        return url
    }
}
