import CAllocBench

/// Walking the arena: for `statistics()`, for tier-2 validation, and for tests (`@testable`).
/// Nothing here runs on a hot path.
extension Arena {
    /// One block as a walk sees it.
    struct BlockInfo: Equatable {
        var address: UInt
        var size: UInt
        var isInUse: Bool
        var isInTail: Bool
        var isLastInRegion: Bool
        var payload: UInt { address + Layout.headerBytes }
        var end: UInt { address + size }
    }

    /// Calls `body` with every block of the tail (`inTail: true`) or of every mapped region, each
    /// region in address order.
    static func forEachBlock(inTail: Bool, _ body: (Block) -> Void) {
        if inTail {
            if !arena.tailFirstBlock.isNone { forEachBlock(from: arena.tailFirstBlock, body) }
            return
        }
        var region = arena.newestRegion
        while !region.isNone {
            forEachBlock(from: region.firstBlock, body)
            region = region.next
        }
    }

    private static func forEachBlock(from first: Block, _ body: (Block) -> Void) {
        var block = first
        while true {
            let isLast = block.isLastInRegion
            body(block)
            if isLast || block.size == 0 { return }
            block = block.next
        }
    }

    /// Every block of the arena, by address.
    static func allBlocks() -> [BlockInfo] {
        var blocks: [BlockInfo] = []
        for inTail in [true, false] {
            forEachBlock(inTail: inTail) { block in
                blocks.append(BlockInfo(address: block.address, size: block.size, isInUse: block.isInUse, isInTail: inTail,
                                        isLastInRegion: block.isLastInRegion))
            }
        }
        return blocks.sorted { $0.address < $1.address }
    }

    /// The free tree's nodes in order.
    static func freeTreeInOrder() -> [UInt] {
        var addresses: [UInt] = []
        func visit(_ node: Block) {
            guard !node.isNone else { return }
            visit(node.left)
            addresses.append(node.address)
            visit(node.right)
        }
        visit(arena.root)
        return addresses
    }

    /// The bss tail's block range in this executable ([first block, end of blocks)), empty when
    /// the tail cannot hold a block.
    static var tailBlocks: Range<UInt> {
        arena.tailFirstBlock.isNone ? 0..<0 : arena.tailFirstBlock.address..<arena.tailBlocksEnd
    }

    // MARK: - Tier 2

    /// The first invariant (see the map in BssArena.swift) that does not hold, or nil.
    static func validationFailure() -> String? {
        var freeBytes: UInt = 0
        var freeBlocks: UInt = 0
        var areaBytes: UInt = 0
        var whollyFreeRegions = 0

        if !arena.tailFirstBlock.isNone {
            if let failure = validateBlocks(from: arena.tailFirstBlock, to: arena.tailBlocksEnd, &freeBytes, &freeBlocks) {
                return "tail: \(failure)"
            }
            areaBytes += arena.tailBlocksEnd - arena.tailFirstBlock.address
        }
        var region = arena.newestRegion
        var regions: UInt = 0
        var mapped: UInt = 0
        var previous = Region.none
        while !region.isNone {
            if region.previous != previous { return "region \(region.base): its previous link is broken" }
            if region.base & (arena.pageSize - 1) != 0 { return "region \(region.base) is not page aligned" }
            if let failure = validateBlocks(from: region.firstBlock, to: region.blocksEnd, &freeBytes, &freeBlocks) {
                return "region \(region.base): \(failure)"
            }
            if Arena.isWhollyFree(region) { whollyFreeRegions += 1 }
            areaBytes += region.area
            mapped += region.byteCount
            regions += 1
            previous = region
            region = region.next
        }
        if regions != arena.regionCount || mapped != arena.mappedBytes {
            return "regions: \(regions) of \(mapped) bytes, the counters say \(arena.regionCount) of \(arena.mappedBytes)"
        }
        if whollyFreeRegions > 1 { return "\(whollyFreeRegions) mapped regions are wholly free" }
        if areaBytes != arena.arenaBytes { return "Σ areas = \(areaBytes) ≠ arenaBytes = \(arena.arenaBytes)" }
        if arena.inUseBytes + freeBytes != arena.arenaBytes {
            return "inUseBytes \(arena.inUseBytes) + free \(freeBytes) ≠ arenaBytes \(arena.arenaBytes)"
        }
        if freeBlocks != arena.freeBlockCount { return "\(freeBlocks) free blocks, the counter says \(arena.freeBlockCount)" }

        var treeNodes: [UInt] = []
        if let failure = validateTree(arena.root, &treeNodes) { return "free tree: \(failure)" }
        let walked = allBlocks().filter { !$0.isInUse }.map(\.address)
        if treeNodes != walked { return "free tree holds \(treeNodes.count) blocks, the regions \(walked.count), or in another order" }
        return validateResidency()
    }

    private static func validateBlocks(
        from first: Block, to end: UInt, _ freeBytes: inout UInt, _ freeBlocks: inout UInt
    ) -> String? {
        var block = first
        var previousInUse = true
        var previousFree = false
        while true {
            let size = block.size
            if block.address % Layout.granule != Layout.headerBytes { return "block \(block.address) is not at 8 mod 16" }
            if size < Layout.minimumBlockBytes || size % Layout.granule != 0 { return "block \(block.address) has size \(size)" }
            if block.isFirstInRegion != (block == first) { return "block \(block.address): first-in-region flag is wrong" }
            if block.isPreviousInUse != previousInUse { return "block \(block.address): previous-in-use flag is wrong" }
            if !block.isInUse {
                if previousFree { return "blocks before \(block.address) and it are both free" }
                freeBytes += size
                freeBlocks += 1
            }
            previousInUse = block.isInUse
            previousFree = !block.isInUse
            if block.end > end { return "block \(block.address) runs past the region's end" }
            if block.isLastInRegion != (block.end == end) { return "block \(block.address): last-in-region flag is wrong" }
            if block.isLastInRegion { return nil }
            block = block.next
        }
    }

    private static func validateTree(_ node: Block, _ inOrder: inout [UInt]) -> String? {
        guard !node.isNone else { return nil }
        if node.isInUse { return "node \(node.address) is a block in use" }
        if let failure = validateTree(node.left, &inOrder) { return failure }
        if let previous = inOrder.last, previous >= node.address {
            return "node \(node.address) is out of address order"
        }
        inOrder.append(node.address)
        if let failure = validateTree(node.right, &inOrder) { return failure }
        let left = node.left
        let right = node.right
        if node.leftLargest != FreeTree.largest(left) || node.rightLargest != FreeTree.largest(right) {
            return "node \(node.address) says its subtrees' largest blocks are \(node.leftLargest) and \(node.rightLargest), "
                + "not \(FreeTree.largest(left)) and \(FreeTree.largest(right))"
        }
        let leftHeight = FreeTree.height(left)
        let rightHeight = FreeTree.height(right)
        if node.height != 1 + max(leftHeight, rightHeight) {
            return "node \(node.address) says height \(node.height), not \(1 + max(leftHeight, rightHeight))"
        }
        if max(leftHeight, rightHeight) - min(leftHeight, rightHeight) > 1 { return "node \(node.address) is out of balance" }
        return nil
    }

    /// The pages wholly inside a big free block, past its kept front, that are resident (mincore)
    /// are within its unreleased bound, and the bound is under a batch.
    private static func validateResidency() -> String? {
        let pageSize = arena.pageSize
        var failure: String?
        forEachBlock(inTail: false) { block in
            guard failure == nil, !block.isInUse, block.size >= Layout.releaseThresholdBytes else { return }
            let unreleased = block.unreleasedBytes
            if unreleased >= arena.releaseBatchBytes {
                failure = "free block \(block.address) holds an unreleased bound of \(unreleased) bytes, a batch or more"
                return
            }
            let (first, end) = Arena.trackedPages(of: block.address, byteCount: block.size, pageSize: pageSize)
            guard first < end else { return }
            var residency = [UInt8](repeating: 0, count: Int((end - first) / pageSize))
            guard mincore(UnsafeMutableRawPointer(bitPattern: first), Int(end - first), &residency) == 0 else {
                failure = "mincore failed on free block \(block.address)"
                return
            }
            let residentBytes = UInt(residency.filter { $0 & 1 != 0 }.count) * pageSize
            if residentBytes > unreleased {
                failure = "free block \(block.address) of \(block.size) bytes has \(residentBytes) resident bytes past its front, "
                    + "over its bound \(unreleased)"
            }
        }
        return failure
    }
}
