// bss-arena: exact address-ordered first fit that starts in the executable's bss tail.
//
// MARK: Map
//
// The arena is made of regions. Region 0 is the bss tail: the bytes from the linker's `_end`
// (rounded up to 16) to the end of its page, which the loader has already mapped and which are
// usually already resident, so a small program costs no new page at all. Further regions are
// mmapped (never brk, which glibc owns) when no free block fits.
//
//     bss tail (no region header; its bounds live in `arena`):
//       _end ↑16          +8                                                  page end
//       | 8 unused | block | block | ... | last block | ≤ 8 unused |
//
//     mmapped region (`Region`, page aligned, `regionChunkBytes` or sized to fit a big request):
//       base +0 next region | +8 previous region | +16 region bytes | +24 block | ... | last block | 8 unused |
//
//     block, in use:   +0 header | +8 payload ...                 (payload is 16-aligned)
//     block, free:     +0 header | +8 left, height | +16 right | +24 largest left, largest right | ... unused
//     big free block:  ... as free ... | last word: unreleased bytes  (size ≥ releaseThresholdBytes)
//
// The header is `size | flags`, size a multiple of 16 (see `HeaderBit`): in use, previous block
// in use, first block of its region, last block of its region. There are no footers: the free
// block below a freed block is found in the free tree, in the descent that updates it anyway.
// Free blocks are the nodes of one AVL tree keyed by address across all regions (FreeTree.swift),
// each node knowing the largest block of each of its subtrees, so the first fit is one descent.
// A big free block also keeps, in its last word, a bound on how much of it may still be resident,
// so that its pages go back to the kernel in batches. All other state is `arena`, a static
// `ArenaState`.
//
// MARK: Invariants (n = a block, R = a region)
//
//     address(n) ≡ 8 (mod 16),   size(n) ≡ 0 (mod 16),   size(n) ≥ 32       (payload 16-aligned; a free block holds its node)
//     Σ_{n ∈ R} size(n) = area(R)             (blocks tile each region: the tail, and mmapped region bytes − 32)
//     Σ_R area(R) = arenaBytes = inUseBytes + Σ_{n free} size(n)
//     free(n) ∧ ¬last(n) ⇒ inUse(next(n))     (no two adjacent free blocks: coalescing is complete)
//     previousInUse(next(n)) = inUse(n);  previousInUse(first(R)) = 1
//     first(n) ⇔ n = first block of R;  last(n) ⇔ n + size(n) = end(R)
//     inorder(free tree) = free blocks by address;  |free tree| = freeBlockCount
//     free(n) ∧ size(n) ≥ releaseThresholdBytes ⇒
//         pageSize · #(resident pages wholly inside [n + keptResidentBytes, n + size(n) − 8)) ≤ unreleased(n) < arena.releaseBatchBytes
//     Layout.releaseBatchBytes ≤ arena.releaseBatchBytes ≤ Layout.largestReleaseBatchBytes (it only rises)
//     #{R mapped and wholly free} ≤ 1          (the retained region, against map/unmap thrash)
//
// Debug builds check them in two tiers: tier 1 (every operation, O(1) or one path) checks the
// headers an operation touches and that the instance is the live one; tier 2 (every operation
// when `BssArena.validatesEveryOperation` is set, O(heap)) walks every region and the whole tree
// and checks all of the above, residency included (mincore).
//
// MARK: Cost
//
// malloc: one descent that finds the first fit and, on the way back, moves its node to the
// remainder (or removes it): O(log n) for n free blocks, one node read per level. free: O(1)
// header work plus one descent (insert; or move the next block's node down to the freed block;
// or grow the previous block's), two when both neighbours are free. realloc in place: one descent.
// System calls happen only when a region is mapped or unmapped, or a big free block's pages are
// returned. Alignments above 16 may visit blocks that are big enough but cannot be aligned.
//
// Single-threaded: one instance per process at a time (see `BssArena.init`).

import AllocBenchCore
import CAllocBench

/// Sizes and policies of the arena.
enum Layout {
    static let headerBytes: UInt = 8
    static let granule: UInt = 16
    /// Header plus the three words of a free-tree node.
    static let minimumBlockBytes: UInt = 32
    /// next, previous, region bytes: puts the first block at 8 (mod 16).
    static let regionHeaderBytes: UInt = 24
    /// Region header in front and the 8 bytes after the last block (blocks end at 8 mod 16).
    static let regionOverheadBytes: UInt = 32
    /// The size of an ordinary grown region; a request that does not fit gets a region of its own.
    /// Fewer, larger regions fragment less (fewer region ends that a request cannot straddle);
    /// their untouched pages cost address space only.
    static let regionChunkBytes: UInt = 1 << 20
    /// A free block at least this big ("big") gives its pages back to the kernel (MADV_DONTNEED) …
    static let releaseThresholdBytes: UInt = 512 << 10
    /// … except its first bytes, so that allocating and freeing at its front (where first fit
    /// cuts) does not fault and release the same pages over and over …
    static let keptResidentBytes: UInt = 128 << 10
    /// … once the pages it may hold resident past that front add up to this much: one madvise per
    /// batch freed, as glibc trims its top only past a threshold, instead of one per free. On the
    /// systemui trace these three settings take half the page faults of 128 KiB / 32 KiB / 64 KiB
    /// (6.1k against 12.6k with every page touched) for 4% more peak RSS.
    static let releaseBatchBytes: UInt = 256 << 10
    /// The ceiling the batch rises to (glibc's trim threshold stops at 32 MiB too).
    static let largestReleaseBatchBytes: UInt = 32 << 20
    /// Larger requests (and alignments) are refused with nil: the free tree counts block sizes in
    /// 32 bits of 16-byte units, so every block, a request's own region included, stays under 64 GiB.
    static let largestRequestBytes: UInt = 1 << 34

    /// The block size that holds `byteCount` payload bytes: header included, rounded to the granule.
    @inline(__always)
    static func blockBytes(for byteCount: UInt) -> UInt {
        max(minimumBlockBytes, (byteCount &+ headerBytes &+ granule &- 1) & ~(granule &- 1))
    }

    /// What is left of a free block of `blockBytes` once `byteCount` of it are taken: a free block
    /// of its own, or 0 when too small to be one (it then stays with the taken block).
    @inline(__always)
    static func remainderBytes(of blockBytes: UInt, after byteCount: UInt) -> UInt {
        let remainder = blockBytes &- byteCount
        return remainder >= minimumBlockBytes ? remainder : 0
    }

    /// The header of the free remainder of a block whose header was `splitHeader`: it follows a
    /// block in use and ends where the split block ended.
    @inline(__always)
    static func remainderHeader(_ remainder: UInt, of splitHeader: UInt) -> UInt {
        remainder | HeaderBit.previousInUse | (splitHeader & HeaderBit.lastInRegion)
    }
}

/// The flag bits of a block header; the rest of the header is the block size.
enum HeaderBit {
    static let inUse: UInt = 1
    static let previousInUse: UInt = 2
    static let firstInRegion: UInt = 4
    static let lastInRegion: UInt = 8
    static let flags: UInt = 15
}

/// A block, by the address of its header. The payload of a block in use starts 8 bytes later; a
/// free block's next three words are its free-tree node.
struct Block: Equatable {
    var address: UInt

    static let none = Block(address: 0)

    @inline(__always) init(address: UInt) { self.address = address }

    @inline(__always) init(payload: UnsafeMutableRawPointer) {
        address = UInt(bitPattern: payload) &- Layout.headerBytes
    }

    @inline(__always) var isNone: Bool { address == 0 }
    @inline(__always) var payload: UnsafeMutableRawPointer {
        UnsafeMutableRawPointer(bitPattern: address &+ Layout.headerBytes).unsafelyUnwrapped
    }

    @inline(__always) private func word(_ offset: UInt) -> UnsafeMutablePointer<UInt> {
        UnsafeMutablePointer<UInt>(bitPattern: address &+ offset).unsafelyUnwrapped
    }

    @inline(__always) var header: UInt {
        get { word(0).pointee }
        nonmutating set { word(0).pointee = newValue }
    }

    @inline(__always) var size: UInt { header & ~HeaderBit.flags }
    @inline(__always) var end: UInt { address &+ size }
    @inline(__always) var next: Block { Block(address: end) }
    @inline(__always) var isInUse: Bool { header & HeaderBit.inUse != 0 }
    @inline(__always) var isPreviousInUse: Bool { header & HeaderBit.previousInUse != 0 }
    @inline(__always) var isFirstInRegion: Bool { header & HeaderBit.firstInRegion != 0 }
    @inline(__always) var isLastInRegion: Bool { header & HeaderBit.lastInRegion != 0 }

    /// A big free block's bound on the bytes of its pages, past the kept front, that may be
    /// resident. It is the block's last word, so a block cut from the front of a big free block
    /// leaves the remainder its bound without a copy. A fresh region reads 0 here (mmap zeroes).
    @inline(__always) var unreleasedBytes: UInt {
        get { Block(address: end &- 8).header }
        nonmutating set { Block(address: end &- 8).header = newValue }
    }

}

/// An mmapped region, by its page-aligned base. Regions form a doubly linked list from
/// `arena.newestRegion`, so that init can unmap them all and validation can walk them.
struct Region: Equatable {
    var base: UInt

    static let none = Region(base: 0)

    @inline(__always) init(base: UInt) { self.base = base }
    @inline(__always) init(firstBlock: Block) { base = firstBlock.address &- Layout.regionHeaderBytes }

    @inline(__always) var isNone: Bool { base == 0 }

    @inline(__always) private func word(_ offset: UInt) -> UnsafeMutablePointer<UInt> {
        UnsafeMutablePointer<UInt>(bitPattern: base &+ offset).unsafelyUnwrapped
    }

    var next: Region {
        get { Region(base: word(0).pointee) }
        nonmutating set { word(0).pointee = newValue.base }
    }

    var previous: Region {
        get { Region(base: word(8).pointee) }
        nonmutating set { word(8).pointee = newValue.base }
    }

    var byteCount: UInt {
        get { word(16).pointee }
        nonmutating set { word(16).pointee = newValue }
    }

    var firstBlock: Block { Block(address: base &+ Layout.regionHeaderBytes) }
    var area: UInt { byteCount &- Layout.regionOverheadBytes }
    var blocksEnd: UInt { base &+ byteCount &- (Layout.regionOverheadBytes &- Layout.regionHeaderBytes) }
}

/// Everything the arena knows besides what is in its regions. One per process (static storage, in
/// the executable's bss: no page of its own).
struct ArenaState {
    var root = Block.none
    /// Bumped by every init; an instance whose generation differs is stale (debug check).
    var generation: UInt = 0
    var pageSize: UInt = 4096
    /// Bytes from `_end` to the end of its page; 0 when another allocator owns the tail.
    var tailBytes: UInt = 0
    /// The tail's first block, or `.none` when the tail cannot hold one.
    var tailFirstBlock = Block.none
    var tailBlocksEnd: UInt = 0
    var newestRegion = Region.none
    var regionCount: UInt = 0
    var mappedBytes: UInt = 0
    /// The region kept mapped after it became wholly free, or `.none`.
    var retainedRegion = Region.none
    /// Σ block sizes over all regions, tail included.
    var arenaBytes: UInt = 0
    var inUseBytes: UInt = 0
    var peakInUseBytes: UInt = 0
    var freeBlockCount: UInt = 0
    /// Bytes given back with MADV_DONTNEED so far (a page may be counted again after reuse).
    var releasedBytes: UInt = 0
    /// How many unreleased bytes a big free block gathers before it gives them back. It starts at
    /// `Layout.releaseBatchBytes` and, like glibc's trim threshold, rises to twice the largest
    /// range released (up to `Layout.largestReleaseBatchBytes`): a program that frees and
    /// reallocates the same big buffer would otherwise fault all of it in again every time
    /// (source-map: 32,805 faults and 43 µs per op before, against glibc's 792 and 1.3 µs).
    var releaseBatchBytes: UInt = Layout.releaseBatchBytes

    init() {}
}

/// Never read or write `arena` inside a closure: whole-module optimisation then can no longer
/// prove that accesses do not overlap and keeps a dynamic exclusivity check (swift_beginAccess,
/// ~15 ns) on every access in the hot paths.
nonisolated(unsafe) var arena = ArenaState()

/// The operations on `arena`. Each public entry point of `BssArena` is one call here.
enum Arena {
    // MARK: - Setting up

    /// The bss tail of the running executable: `_end` and the end of its page.
    static func bssTail(pageSize: UInt) -> (end: UInt, pageEnd: UInt) {
        let end = UInt(ab_end_of_bss())
        return (end, (end &+ pageSize &- 1) & ~(pageSize &- 1))
    }

    static func systemPageSize() -> UInt { UInt(Page.size) }

    /// The tail this process's arena owns: claimed by the first instance (`ab_claim_bss_tail`)
    /// and reused by every later one; empty when another allocator claimed it first.
    nonisolated(unsafe) static var claimedTail: (end: UInt, pageEnd: UInt)?

    static func ownedTail() -> (end: UInt, pageEnd: UInt) {
        if let claimedTail { return claimedTail }
        var length = 0
        let end = UInt(ab_claim_bss_tail(&length))
        let tail = (end, end &+ UInt(length))
        claimedTail = tail
        return tail
    }

    /// The blocks the tail can hold: from `_end` rounded to 16, plus 8 for the first header, to the
    /// last 16-byte boundary before the page end, minus 8.
    static func tailBlockRange(end: UInt, pageEnd: UInt) -> (first: UInt, end: UInt) {
        let first = ((end &+ Layout.granule &- 1) & ~(Layout.granule &- 1)) &+ Layout.headerBytes
        guard first < pageEnd else { return (first, first) }
        let blocksEnd = first &+ ((pageEnd &- first) & ~(Layout.granule &- 1))
        return (first, blocksEnd)
    }

    /// Unmaps whatever a previous instance mapped and starts again with the tail as one free block.
    static func start() -> UInt {
        var region = arena.newestRegion
        while !region.isNone {
            let next = region.next
            munmap(UnsafeMutableRawPointer(bitPattern: region.base), Int(region.byteCount))
            region = next
        }
        let generation = arena.generation &+ 1
        arena = ArenaState()
        arena.generation = generation
        arena.pageSize = systemPageSize()

        let (end, pageEnd) = ownedTail()
        arena.tailBytes = pageEnd &- end
        let (first, blocksEnd) = tailBlockRange(end: end, pageEnd: pageEnd)
        if blocksEnd >= first &+ Layout.minimumBlockBytes {
            let block = Block(address: first)
            block.header = (blocksEnd &- first) | HeaderBit.previousInUse | HeaderBit.firstInRegion | HeaderBit.lastInRegion
            arena.tailFirstBlock = block
            arena.tailBlocksEnd = blocksEnd
            arena.arenaBytes = blocksEnd &- first
            arena.root = FreeTree.insert(block, into: .none)
            arena.freeBlockCount = 1
        }
        return generation
    }

    // MARK: - Allocating

    /// A block of at least `byteCount` payload bytes whose payload is aligned to `alignment`, and
    /// whether it was carved from a region mapped by this call (its payload is then still zero).
    static func allocate(byteCount: Int, alignment: Int) -> (block: Block, isFresh: Bool)? {
        guard byteCount >= 0, UInt(byteCount) <= Layout.largestRequestBytes,
              alignment > 0, UInt(alignment) <= Layout.largestRequestBytes else { return nil }
        let need = Layout.blockBytes(for: UInt(byteCount))
        if alignment <= Int(Layout.granule) {
            if FreeTree.largest(arena.root) >= need {
                let (root, fit) = FreeTree.takeFirstFit(need, in: arena.root)
                arena.root = root
                return (carve(fit, at: fit.address, byteCount: need, from: .takenFromTree), false)
            }
            guard let fresh = mapRegion(areaAtLeast: need) else { return nil }
            return (carve(fresh, at: fresh.address, byteCount: need, from: .newRegion), true)
        }
        let alignment = UInt(alignment)
        if let (fit, start) = FreeTree.firstFit(need, alignment: alignment, in: arena.root) {
            return (carve(fit, at: start, byteCount: need, from: .tree), false)
        }
        // Room for the block after a gap: none, or at least a minimum block, and under one
        // alignment step more than that.
        guard let fresh = mapRegion(areaAtLeast: need &+ alignment &+ Layout.minimumBlockBytes),
              let start = FreeTree.alignedStart(in: fresh, byteCount: need, alignment: alignment)
        else { return nil }
        return (carve(fresh, at: start, byteCount: need, from: .newRegion), true)
    }

    /// Where the free block that `carve` cuts comes from.
    enum CarvedBlock {
        /// In the free tree.
        case tree
        /// Already taken out by `FreeTree.takeFirstFit`, its remainder (if any) put in its place.
        case takenFromTree
        /// The one block of a region mapped just now, not in the tree.
        case newRegion
    }

    /// Makes the `byteCount` bytes at `start` inside the free block `free` a block in use. What lies
    /// before (`start − free`: 0 or at least a minimum block) stays free at `free`'s address; what
    /// lies after becomes a free block when it can hold one, else it joins the new block.
    @inline(__always)
    static func carve(_ free: Block, at start: UInt, byteCount: UInt, from source: CarvedBlock) -> Block {
        let freeHeader = free.header
        let gap = start &- free.address
        // A remainder ends where `free` did and keeps its unreleased bound in place; a big gap
        // block needs it copied to its own last word.
        if gap >= Layout.releaseThresholdBytes { Block(address: start &- 8).header = free.unreleasedBytes }
        let rest = Layout.remainderBytes(of: free.end &- start, after: byteCount)
        let blockBytes = rest == 0 ? free.end &- start : byteCount
        let block = Block(address: start)
        let restBlock = Block(address: start &+ blockBytes)
        let restHeader = Layout.remainderHeader(rest, of: freeHeader)
        let keepsLast = rest == 0 ? freeHeader & HeaderBit.lastInRegion : 0
        var freeBlocksAdded: UInt = 0
        if gap == 0 {
            switch source {
            case .tree where rest > 0:
                arena.root = FreeTree.replace(free, with: restBlock, header: restHeader, in: arena.root)
            case .tree:
                arena.root = FreeTree.remove(free, from: arena.root)
                arena.freeBlockCount &-= 1
            case .takenFromTree:
                if rest == 0 { arena.freeBlockCount &-= 1 }
            case .newRegion where rest > 0:
                restBlock.header = restHeader
                arena.root = FreeTree.insert(restBlock, into: arena.root)
                freeBlocksAdded = 1
            case .newRegion:
                break
            }
            block.header = blockBytes | HeaderBit.inUse | keepsLast
                | (freeHeader & (HeaderBit.previousInUse | HeaderBit.firstInRegion))
        } else {
            assert(source != .takenFromTree, "bss-arena: takeFirstFit cuts at the block's start")
            free.header = gap | (freeHeader & (HeaderBit.previousInUse | HeaderBit.firstInRegion))
            if source == .tree {
                FreeTree.refreshPath(to: free, in: arena.root)
            } else {
                arena.root = FreeTree.insert(free, into: arena.root)
                freeBlocksAdded = 1
            }
            if rest > 0 {
                restBlock.header = restHeader
                arena.root = FreeTree.insert(restBlock, into: arena.root)
                freeBlocksAdded &+= 1
            }
            block.header = blockBytes | HeaderBit.inUse | keepsLast
        }
        if rest == 0 && keepsLast == 0 { restBlock.header |= HeaderBit.previousInUse }
        arena.freeBlockCount &+= freeBlocksAdded
        arena.inUseBytes &+= blockBytes
        if arena.inUseBytes > arena.peakInUseBytes { arena.peakInUseBytes = arena.inUseBytes }
        return block
    }

    // MARK: - Freeing

    /// Frees a block in use: merges it with free neighbours in its region, returns the pages of a
    /// big free block, and unmaps or retains a region that became wholly free.
    static func free(_ block: Block) {
        let header = block.header
        let size = header & ~HeaderBit.flags
        arena.inUseBytes &-= size
        var merged = block
        var total = size
        var lastFlag = header & HeaderBit.lastInRegion
        var next = Block.none
        if lastFlag == 0 {
            let candidate = block.next
            if !candidate.isInUse {
                next = candidate
                total &+= candidate.size
                lastFlag = candidate.header & HeaderBit.lastInRegion
            }
        }
        let nextBytes = next.isNone ? 0 : next.size
        // Its last word is the merged block's, so read it before anything is written there.
        let nextUnreleased = nextBytes >= Layout.releaseThresholdBytes ? next.unreleasedBytes : 0
        var previousBytes: UInt = 0
        if header & HeaderBit.previousInUse == 0 {
            if !next.isNone {
                arena.root = FreeTree.remove(next, from: arena.root)
                arena.freeBlockCount &-= 1
            }
            merged = FreeTree.growPredecessor(of: block.address, headerDelta: total | lastFlag, in: arena.root)
            assert(!merged.isNone, "bss-arena: the block below a freed block is marked free but is not in the free tree")
            previousBytes = merged.size &- total
            total = merged.size
        } else {
            let mergedHeader = total | HeaderBit.previousInUse | (header & HeaderBit.firstInRegion) | lastFlag
            if next.isNone {
                block.header = mergedHeader
                arena.root = FreeTree.insert(block, into: arena.root)
                arena.freeBlockCount &+= 1
            } else {
                arena.root = FreeTree.replace(next, with: block, header: mergedHeader, in: arena.root)
            }
        }
        if lastFlag == 0 { Block(address: merged.address &+ total).header &= ~HeaderBit.previousInUse }

        if merged.header & (HeaderBit.firstInRegion | HeaderBit.lastInRegion)
            == HeaderBit.firstInRegion | HeaderBit.lastInRegion, merged != arena.tailFirstBlock,
            !retainsRegion(of: merged) {
            unmapRegion(of: merged)
            return
        }
        guard total >= Layout.releaseThresholdBytes else { return }
        // The merged block's bound: the bounds its big neighbours brought, plus every page of its
        // tracked pages that neither of them tracked.
        let pageSize = arena.pageSize
        let (first, end) = trackedPages(of: merged.address, byteCount: total, pageSize: pageSize)
        var unreleased = end &- first
        if previousBytes >= Layout.releaseThresholdBytes {
            let (_, previousEnd) = trackedPages(of: merged.address, byteCount: previousBytes, pageSize: pageSize)
            unreleased &-= previousEnd &- first
            // The previous block's bound is still in its old last word, just below `block`.
            unreleased &+= Block(address: block.address &- 8).header
        }
        if nextBytes >= Layout.releaseThresholdBytes {
            let (nextFirst, _) = trackedPages(of: next.address, byteCount: nextBytes, pageSize: pageSize)
            unreleased &-= end &- nextFirst
            unreleased &+= nextUnreleased
        }
        if unreleased >= arena.releaseBatchBytes {
            madvise(UnsafeMutableRawPointer(bitPattern: first), Int(end &- first), MADV_DONTNEED)
            arena.releasedBytes &+= end &- first
            arena.releaseBatchBytes = min(max(arena.releaseBatchBytes, 2 &* unreleased), Layout.largestReleaseBatchBytes)
            unreleased = 0
        }
        // Skip an unchanged store: a fresh region's last page may never have been written.
        if merged.unreleasedBytes != unreleased { merged.unreleasedBytes = unreleased }
    }

    /// The pages of a big free block whose residency its unreleased bound tracks: those wholly
    /// past its kept front, short of the page that holds the bound itself (writing the bound
    /// makes that page resident).
    @inline(__always)
    static func trackedPages(of address: UInt, byteCount: UInt, pageSize: UInt) -> (first: UInt, end: UInt) {
        let pageMask = pageSize &- 1
        let first = (address &+ Layout.keptResidentBytes &+ pageMask) & ~pageMask
        let end = (address &+ byteCount &- 8) & ~pageMask
        return (first, max(first, end))
    }

    // MARK: - Reallocating

    /// Shrinks in place, or grows in place into a free next block; false when neither is possible.
    static func resizeInPlace(_ block: Block, byteCount: Int) -> Bool {
        guard byteCount >= 0, UInt(byteCount) <= Layout.largestRequestBytes else { return false }
        let need = Layout.blockBytes(for: UInt(byteCount))
        let header = block.header
        let size = header & ~HeaderBit.flags
        let kept = header & (HeaderBit.inUse | HeaderBit.previousInUse | HeaderBit.firstInRegion)
        if need <= size {
            let cut = Layout.remainderBytes(of: size, after: need)
            guard cut > 0 else { return true }
            // The cut-off end becomes a block in use of its own, freed like any other.
            let end = Block(address: block.address &+ need)
            end.header = Layout.remainderHeader(cut, of: header) | HeaderBit.inUse
            block.header = need | kept
            free(end)
            return true
        }
        guard header & HeaderBit.lastInRegion == 0 else { return false }
        let next = block.next
        let nextHeader = next.header
        guard nextHeader & HeaderBit.inUse == 0 else { return false }
        let total = size &+ (nextHeader & ~HeaderBit.flags)
        guard total >= need else { return false }
        let rest = Layout.remainderBytes(of: total, after: need)
        if rest > 0 {
            arena.root = FreeTree.replace(next, with: Block(address: block.address &+ need),
                                          header: Layout.remainderHeader(rest, of: nextHeader), in: arena.root)
            block.header = need | kept
            arena.inUseBytes &+= need &- size
        } else {
            arena.root = FreeTree.remove(next, from: arena.root)
            arena.freeBlockCount &-= 1
            let lastFlag = nextHeader & HeaderBit.lastInRegion
            block.header = total | kept | lastFlag
            if lastFlag == 0 { block.next.header |= HeaderBit.previousInUse }
            arena.inUseBytes &+= total &- size
        }
        if arena.inUseBytes > arena.peakInUseBytes { arena.peakInUseBytes = arena.inUseBytes }
        return true
    }

    // MARK: - Regions

    /// Maps a region whose blocks can hold `byteCount` bytes and returns its one block, free but not
    /// yet in the tree. nil when the kernel refuses.
    static func mapRegion(areaAtLeast byteCount: UInt) -> Block? {
        let pageMask = arena.pageSize &- 1
        let wanted = (byteCount &+ Layout.regionOverheadBytes &+ pageMask) & ~pageMask
        let byteCount = max(Layout.regionChunkBytes, wanted)
        guard let address = mmap(nil, Int(byteCount), PROT_READ | PROT_WRITE, MAP_PRIVATE | MAP_ANONYMOUS, -1, 0),
              address != ab_map_failed() else { return nil }
        let region = Region(base: UInt(bitPattern: address))
        region.byteCount = byteCount
        region.previous = .none
        region.next = arena.newestRegion
        if !arena.newestRegion.isNone { arena.newestRegion.previous = region }
        arena.newestRegion = region
        arena.regionCount &+= 1
        arena.mappedBytes &+= byteCount
        arena.arenaBytes &+= region.area
        let block = region.firstBlock
        block.header = region.area | HeaderBit.previousInUse | HeaderBit.firstInRegion | HeaderBit.lastInRegion
        return block
    }

    /// Whether to keep the mapped region that `free` (in the free tree) now spans wholly: one
    /// ordinary region stays mapped, its pages past the kept front released in batches like any
    /// big free block's, so that a program hovering at a region boundary does not map and unmap
    /// on every call. A region sized for one big request is never kept.
    static func retainsRegion(of free: Block) -> Bool {
        let region = Region(firstBlock: free)
        guard region.byteCount == Layout.regionChunkBytes else { return false }
        let retained = arena.retainedRegion
        guard retained.isNone || retained == region || !isWhollyFree(retained) else { return false }
        arena.retainedRegion = region
        return true
    }

    static func unmapRegion(of free: Block) {
        let region = Region(firstBlock: free)
        arena.root = FreeTree.remove(free, from: arena.root)
        arena.freeBlockCount &-= 1
        let previous = region.previous
        let next = region.next
        if previous.isNone { arena.newestRegion = next } else { previous.next = next }
        if !next.isNone { next.previous = previous }
        if arena.retainedRegion == region { arena.retainedRegion = .none }
        arena.regionCount &-= 1
        arena.mappedBytes &-= region.byteCount
        arena.arenaBytes &-= region.area
        munmap(UnsafeMutableRawPointer(bitPattern: region.base), Int(region.byteCount))
    }

    @inline(__always)
    static func isWhollyFree(_ region: Region) -> Bool {
        region.firstBlock.header & (HeaderBit.inUse | HeaderBit.lastInRegion) == HeaderBit.lastInRegion
    }
}

/// An address-ordered first-fit allocator that starts in the executable's bss tail and grows by
/// mmapped regions: 8-byte headers, the free blocks in one AVL tree keyed by address and augmented
/// with subtree maxima, so the exact first fit costs O(log n). See the map at the top of this file.
///
/// Single-threaded, and one instance at a time per process: the state is static (it lives in
/// the executable's bss, not on a page of its own) and every `init()` starts a new arena, unmapping
/// the regions of the previous instance and taking the tail over again. A replay child creates
/// exactly one instance; tests create them one after another and must not use an instance once a
/// newer one exists (debug builds assert this).
public struct BssArena: Allocator {
    public static let name = "bss-arena"
    public static let summary =
        "Exact address-ordered first fit (AVL tree with subtree maxima) in the executable's bss tail, then in mmapped regions; 8-byte headers."

    /// Tier-2 checking: in debug builds, validate the whole arena after every operation (O(heap)).
    nonisolated(unsafe) static var validatesEveryOperation = false

    let generation: UInt

    public init() {
        generation = Arena.start()
        checkAfterOperation()
    }

    public func allocate(byteCount: Int, alignment: Int) -> UnsafeMutableRawPointer? {
        assertLive()
        let block = Arena.allocate(byteCount: byteCount, alignment: alignment)?.block.payload
        checkAfterOperation()
        return block
    }

    public func allocateZeroed(byteCount: Int, alignment: Int) -> UnsafeMutableRawPointer? {
        assertLive()
        guard let (block, isFresh) = Arena.allocate(byteCount: byteCount, alignment: alignment) else { return nil }
        // A block carved from a region mapped just now has never been written: the kernel zeroed it.
        if !isFresh { block.payload.initializeMemory(as: UInt8.self, repeating: 0, count: byteCount) }
        checkAfterOperation()
        return block.payload
    }

    public func reallocate(
        _ payload: UnsafeMutableRawPointer, from oldByteCount: Int, to newByteCount: Int, alignment: Int
    ) -> UnsafeMutableRawPointer? {
        assertLive()
        let block = Block(payload: payload)
        assertInUse(block, byteCount: oldByteCount)
        if Arena.resizeInPlace(block, byteCount: newByteCount) {
            checkAfterOperation()
            return payload
        }
        guard let moved = Arena.allocate(byteCount: newByteCount, alignment: alignment)?.block.payload else { return nil }
        moved.copyMemory(from: payload, byteCount: min(oldByteCount, newByteCount))
        Arena.free(block)
        checkAfterOperation()
        return moved
    }

    public func deallocate(_ payload: UnsafeMutableRawPointer, byteCount: Int, alignment: Int) {
        assertLive()
        let block = Block(payload: payload)
        assertInUse(block, byteCount: byteCount)
        Arena.free(block)
        checkAfterOperation()
    }

    /// Block bytes include the 8-byte headers; the tail figures are this executable's.
    public func statistics() -> [AllocatorStatistic] {
        var tailInUse: UInt = 0
        Arena.forEachBlock(inTail: true) { block in if block.isInUse { tailInUse &+= block.size } }
        return [
            AllocatorStatistic("bss_tail_bytes", Int(arena.tailBytes)),
            AllocatorStatistic("bss_tail_in_use_bytes", Int(tailInUse)),
            AllocatorStatistic("in_use_bytes", Int(arena.inUseBytes)),
            AllocatorStatistic("peak_in_use_bytes", Int(arena.peakInUseBytes)),
            AllocatorStatistic("free_bytes", Int(arena.arenaBytes &- arena.inUseBytes)),
            AllocatorStatistic("free_block_count", Int(arena.freeBlockCount)),
            AllocatorStatistic("largest_free_block_bytes", Int(FreeTree.largest(arena.root))),
            AllocatorStatistic("mapped_region_count", Int(arena.regionCount)),
            AllocatorStatistic("mapped_bytes", Int(arena.mappedBytes)),
            AllocatorStatistic("released_bytes", Int(arena.releasedBytes)),
        ]
    }

    public static func buildNote() -> String? {
        let pageSize = Arena.systemPageSize()
        let (end, pageEnd) = Arena.bssTail(pageSize: pageSize)
        let (first, blocksEnd) = Arena.tailBlockRange(end: end, pageEnd: pageEnd)
        return "bss tail: \(pageEnd - end) bytes (\(blocksEnd - first) for blocks)"
    }

    // MARK: - Debug tiers

    /// Tier 1: this is the live instance.
    @inline(__always)
    private func assertLive() {
        let live = arena.generation
        assert(generation == live, "bss-arena: an instance was used after a newer one was created")
    }

    /// Tier 1: the block being freed or resized is a sane block in use that holds `byteCount`.
    @inline(__always)
    private func assertInUse(_ block: Block, byteCount: Int) {
        assert(block.address & (Layout.granule - 1) == Layout.headerBytes, "bss-arena: not a block payload: \(block.payload)")
        assert(block.isInUse, "bss-arena: freeing or resizing a block that is not in use: \(block.payload)")
        assert(block.size >= Layout.blockBytes(for: UInt(max(byteCount, 0))), "bss-arena: block \(block.payload) is smaller than \(byteCount) bytes")
        assert(block.isLastInRegion || block.next.isPreviousInUse, "bss-arena: the block after \(block.payload) does not know it is in use")
    }

    /// Tier 2, when enabled.
    @inline(__always)
    private func checkAfterOperation() {
        #if DEBUG
        if Self.validatesEveryOperation, let failure = Arena.validationFailure() {
            assertionFailure("bss-arena: \(failure)")
        }
        #endif
    }
}
