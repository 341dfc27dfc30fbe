/// The free blocks of every region, as one AVL tree keyed by address in which every node knows
/// the largest block of each of its two subtrees, so that the exact first fit — the
/// lowest-addressed free block of at least n bytes — is found in one root-to-node descent that
/// reads one node per level.
///
/// The nodes live inside the free blocks themselves (see the map in BssArena.swift):
///
///     +0  header    size | flags                                   (the block's header, `HeaderBit`)
///     +8  left      address of the left child (0 for none) | height << 56
///     +16 right     address of the right child, 0 for none
///     +24 largests  largest block in the left subtree | largest block in the right subtree << 32,
///                   both in 16-byte units (so no block may reach 64 GiB)
///
/// Invariants (checked by `Arena.validationFailure()`):
///
///     inorder(tree) = the free blocks, by address
///     leftLargest(x)  = largest(left(x)),  rightLargest(x) = largest(right(x)),
///         where largest(y) = max(size(y), leftLargest(y), rightLargest(y)) and largest(none) = 0
///     height(x) = 1 + max(height(left(x)), height(right(x))),  height(none) = 0
///     |height(left(x)) − height(right(x))| ≤ 1
///
/// Keeping the children's maxima in the parent, rather than each subtree's in its root, means a
/// descent decides where to go from the node it stands on, and a parent is brought up to date
/// from the child just changed (still in cache); the other child is read only when a height
/// changes. Every function that changes the tree takes the root and returns the new root.
/// Nothing here looks at the blocks around a node; the arena keeps headers and neighbours
/// consistent. Recursion depth is the tree's height, ≤ 1.44·log2(n + 2) for n free blocks.
enum FreeTree {
    /// The largest block in `node`'s subtree.
    @inline(__always)
    static func largest(_ node: Block) -> UInt {
        node.isNone ? 0 : max(node.size, max(node.leftLargest, node.rightLargest))
    }

    @inline(__always)
    static func height(_ node: Block) -> UInt { node.isNone ? 0 : node.height }

    // MARK: - Finding

    /// The lowest-addressed free block of at least `byteCount` bytes, or `.none`.
    @inline(__always)
    static func firstFit(_ byteCount: UInt, in root: Block) -> Block {
        guard largest(root) >= byteCount else { return .none }
        var node = root
        while true {
            if node.leftLargest >= byteCount {
                node = node.left
            } else if node.size >= byteCount {
                return node
            } else {
                // The subtree holds a fit, and it is neither left nor here.
                node = node.right
            }
        }
    }

    /// The lowest-addressed free block in which `alignedStart` finds room, with the block start it
    /// chose there. Subtrees whose largest block is under `byteCount` are skipped, but blocks that
    /// are big enough yet cannot be aligned are visited one by one, so this is O(log n + k) for k
    /// such blocks: it serves only alignments above 16.
    static func firstFit(
        _ byteCount: UInt, alignment: UInt, in node: Block
    ) -> (block: Block, start: UInt)? {
        guard largest(node) >= byteCount else { return nil }
        if node.leftLargest >= byteCount, let found = firstFit(byteCount, alignment: alignment, in: node.left) {
            return found
        }
        if node.size >= byteCount, let start = alignedStart(in: node, byteCount: byteCount, alignment: alignment) {
            return (node, start)
        }
        guard node.rightLargest >= byteCount else { return nil }
        return firstFit(byteCount, alignment: alignment, in: node.right)
    }

    /// Where a block of `byteCount` bytes whose payload is a multiple of `alignment` (> 16) can
    /// start inside the free block `free`: as low as possible, leaving before it either nothing or
    /// a gap big enough to stay a free block. nil when it does not fit.
    @inline(__always)
    static func alignedStart(in free: Block, byteCount: UInt, alignment: UInt) -> UInt? {
        let payload = (free.address &+ Layout.headerBytes &+ alignment &- 1) & ~(alignment &- 1)
        var start = payload &- Layout.headerBytes
        let gap = start &- free.address
        if gap != 0 && gap < Layout.minimumBlockBytes { start &+= alignment }
        return start &+ byteCount <= free.end ? start : nil
    }

    // MARK: - Changing

    /// Adds `node`, whose header already holds its size and flags.
    static func insert(_ node: Block, into root: Block) -> Block {
        if root.isNone {
            node.setLeaf()
            return node
        }
        if node.address < root.address {
            let left = root.left
            let oldHeight = height(left)
            return adoptLeft(insert(node, into: left), of: root, oldHeight: oldHeight)
        }
        let right = root.right
        let oldHeight = height(right)
        return adoptRight(insert(node, into: right), of: root, oldHeight: oldHeight)
    }

    /// Removes the node at `key`, which must be in the tree.
    static func remove(_ key: Block, from root: Block) -> Block {
        assert(!root.isNone, "bss-arena: removing a block that is not in the free tree")
        if key.address < root.address {
            let left = root.left
            let oldHeight = height(left)
            return adoptLeft(remove(key, from: left), of: root, oldHeight: oldHeight)
        }
        if key.address > root.address {
            let right = root.right
            let oldHeight = height(right)
            return adoptRight(remove(key, from: right), of: root, oldHeight: oldHeight)
        }
        return removeRoot(root)
    }

    /// Puts `replacement` where `old` was, writing `header` as its header. The caller guarantees
    /// that no other free block lies between the two addresses and that the subtree maxima above
    /// change only through the new size, so no rotation is needed. `old`'s node is read before
    /// anything is written, so the two may overlap (a block shifted by 16 bytes).
    static func replace(_ old: Block, with replacement: Block, header: UInt, in root: Block) -> Block {
        if root == old { return moveRoot(old, to: replacement, header: header) }
        // Heights do not change here, so there is nothing to rebalance.
        if old.address < root.address {
            let left = replace(old, with: replacement, header: header, in: root.left)
            root.left = left
            root.leftLargest = largest(left)
        } else {
            let right = replace(old, with: replacement, header: header, in: root.right)
            root.right = right
            root.rightLargest = largest(right)
        }
        return root
    }

    /// Takes the first fit for `byteCount` (the caller has checked that `largest(root)` is at
    /// least that) in the same descent that finds it: its node moves to the remainder past
    /// `byteCount`, with the header `Layout.remainderHeader` gives it, or leaves the tree when
    /// the remainder is too small to be a block. Returns the new root and the block, whose header
    /// is untouched.
    static func takeFirstFit(_ byteCount: UInt, in root: Block) -> (root: Block, taken: Block) {
        if root.leftLargest >= byteCount {
            let left = root.left
            let oldHeight = height(left)
            let (newLeft, taken) = takeFirstFit(byteCount, in: left)
            return (adoptLeft(newLeft, of: root, oldHeight: oldHeight), taken)
        }
        let header = root.header
        let size = header & ~HeaderBit.flags
        if size >= byteCount {
            let remainder = Layout.remainderBytes(of: size, after: byteCount)
            if remainder == 0 { return (removeRoot(root), root) }
            let moved = moveRoot(root, to: Block(address: root.address &+ byteCount),
                                 header: Layout.remainderHeader(remainder, of: header))
            return (moved, root)
        }
        let right = root.right
        let oldHeight = height(right)
        let (newRight, taken) = takeFirstFit(byteCount, in: right)
        return (adoptRight(newRight, of: root, oldHeight: oldHeight), taken)
    }

    /// Brings the maxima from the root down to `key`, whose size has changed, up to date.
    static func refreshPath(to key: Block, in root: Block) {
        assert(!root.isNone, "bss-arena: resizing a block that is not in the free tree")
        if key.address < root.address {
            let left = root.left
            refreshPath(to: key, in: left)
            root.leftLargest = largest(left)
        } else if key.address > root.address {
            let right = root.right
            refreshPath(to: key, in: right)
            root.rightLargest = largest(right)
        }
    }

    /// Adds `headerDelta` to the header of the free block just below `key` (the highest address
    /// under it) and returns that block. Used when the block at `key` is freed and its lower
    /// neighbour is free: this finds the neighbour without a footer, in the same descent that
    /// updates the maxima above it.
    static func growPredecessor(of key: UInt, headerDelta: UInt, in root: Block) -> Block {
        if root.isNone { return .none }
        if root.address < key {
            let right = root.right
            let found = growPredecessor(of: key, headerDelta: headerDelta, in: right)
            if found.isNone {
                assert(root.end == key, "bss-arena: the free block below a freed block does not end where it starts")
                root.header &+= headerDelta
                return root
            }
            root.rightLargest = largest(right)
            return found
        }
        let left = root.left
        let found = growPredecessor(of: key, headerDelta: headerDelta, in: left)
        if !found.isNone { root.leftLargest = largest(left) }
        return found
    }

    // MARK: - Keeping the summaries and the balance

    /// Links `child`, the new version of `node`'s left subtree whose height was `oldHeight`
    /// (read before it changed), brings `node`'s left maximum up to date, and rebalances only if
    /// the subtree's height changed.
    @inline(__always)
    private static func adoptLeft(_ child: Block, of node: Block, oldHeight: UInt) -> Block {
        node.left = child
        node.leftLargest = largest(child)
        return height(child) == oldHeight ? node : rebalance(node)
    }

    @inline(__always)
    private static func adoptRight(_ child: Block, of node: Block, oldHeight: UInt) -> Block {
        node.right = child
        node.rightLargest = largest(child)
        return height(child) == oldHeight ? node : rebalance(node)
    }

    /// The subtree rooted at `node` without it.
    private static func removeRoot(_ node: Block) -> Block {
        let left = node.left
        let right = node.right
        if left.isNone { return right }
        if right.isNone { return left }
        let (successor, rest) = removeLowest(from: right)
        successor.left = left
        successor.right = rest
        successor.leftLargest = largest(left)
        successor.rightLargest = largest(rest)
        return rebalance(successor)
    }

    private static func removeLowest(from root: Block) -> (lowest: Block, rest: Block) {
        let left = root.left
        if left.isNone { return (root, root.right) }
        let oldHeight = height(left)
        let (lowest, rest) = removeLowest(from: left)
        return (lowest, adoptLeft(rest, of: root, oldHeight: oldHeight))
    }

    /// `replacement` takes `node`'s place, children, height and maxima, with `header`.
    @inline(__always)
    private static func moveRoot(_ node: Block, to replacement: Block, header: UInt) -> Block {
        let link = node.leftLink
        let right = node.right
        let largests = node.largests
        replacement.header = header
        replacement.leftLink = link
        replacement.right = right
        replacement.largests = largests
        return replacement
    }

    /// Sets `node`'s height from its children and restores the AVL balance with one or two
    /// rotations when the heights differ by two.
    private static func rebalance(_ node: Block) -> Block {
        let left = node.left
        let right = node.right
        let leftHeight = height(left)
        let rightHeight = height(right)
        if leftHeight > rightHeight &+ 1 {
            if height(left.left) < height(left.right) { node.left = rotateLeft(left) }
            return rotateRight(node)
        }
        if rightHeight > leftHeight &+ 1 {
            if height(right.right) < height(right.left) { node.right = rotateRight(right) }
            return rotateLeft(node)
        }
        node.height = 1 &+ max(leftHeight, rightHeight)
        return node
    }

    private static func rotateRight(_ node: Block) -> Block {
        let pivot = node.left
        let middle = pivot.right
        node.left = middle
        node.leftLargest = pivot.rightLargest
        node.height = 1 &+ max(height(middle), height(node.right))
        pivot.right = node
        pivot.rightLargest = largest(node)
        pivot.height = 1 &+ max(height(pivot.left), node.height)
        return pivot
    }

    private static func rotateLeft(_ node: Block) -> Block {
        let pivot = node.right
        let middle = pivot.left
        node.right = middle
        node.rightLargest = pivot.leftLargest
        node.height = 1 &+ max(height(node.left), height(middle))
        pivot.left = node
        pivot.leftLargest = largest(node)
        pivot.height = 1 &+ max(node.height, height(pivot.right))
        return pivot
    }
}

/// A free block's node fields (offsets in the map above).
extension Block {
    private static let heightShift: UInt = 56
    private static let addressMask: UInt = (1 << heightShift) - 1
    private static let unitShift: UInt = 4

    @inline(__always) private func word(_ offset: UInt) -> UnsafeMutablePointer<UInt> {
        UnsafeMutablePointer<UInt>(bitPattern: address &+ offset).unsafelyUnwrapped
    }

    /// The left child and the height, as stored.
    @inline(__always) var leftLink: UInt {
        get { word(8).pointee }
        nonmutating set { word(8).pointee = newValue }
    }

    @inline(__always) var left: Block {
        get { Block(address: leftLink & Self.addressMask) }
        nonmutating set { leftLink = newValue.address | (leftLink & ~Self.addressMask) }
    }

    @inline(__always) var height: UInt {
        get { leftLink >> Self.heightShift }
        nonmutating set { leftLink = (leftLink & Self.addressMask) | newValue << Self.heightShift }
    }

    @inline(__always) var right: Block {
        get { Block(address: word(16).pointee) }
        nonmutating set { word(16).pointee = newValue.address }
    }

    /// Both subtree maxima, as stored.
    @inline(__always) var largests: UInt {
        get { word(24).pointee }
        nonmutating set { word(24).pointee = newValue }
    }

    @inline(__always) var leftLargest: UInt {
        get { (largests & 0xFFFF_FFFF) << Self.unitShift }
        nonmutating set { largests = (largests & ~0xFFFF_FFFF) | newValue >> Self.unitShift }
    }

    @inline(__always) var rightLargest: UInt {
        get { (largests >> 32) << Self.unitShift }
        nonmutating set { largests = (largests & 0xFFFF_FFFF) | (newValue >> Self.unitShift) << 32 }
    }

    /// A node without children.
    @inline(__always) func setLeaf() {
        leftLink = 1 << Self.heightShift
        right = .none
        largests = 0
    }
}
