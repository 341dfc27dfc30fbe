/// The free blocks of every region, as one AVL tree keyed by address and augmented with the
/// largest block in each subtree, so that the exact first fit — the lowest-addressed free block of
/// at least n bytes — is found in one root-to-node descent.
///
/// The nodes live inside the free blocks themselves (see the map in BssArena.swift):
///
///     +0  header   size | flags                      (the block's header, see `HeaderBit`)
///     +8  left     address of the left child, 0 for none
///     +16 right    address of the right child, 0 for none
///     +24 summary  largest block size in this subtree | height << 56
///
/// Invariants (checked by `Arena.validationFailure()`):
///
///     inorder(tree) = the free blocks, by address
///     largest(x) = max(size(x), largest(left(x)), largest(right(x))),  largest(none) = 0
///     height(x)  = 1 + max(height(left(x)), height(right(x))),          height(none) = 0
///     |height(left(x)) - height(right(x))| ≤ 1
///
/// Every function that changes the tree takes the root and returns the new root. Nothing here
/// looks at the blocks around a node; the arena keeps headers and neighbours consistent.
/// Recursion depth is the tree's height, ≤ 1.44·log2(n + 2) for n free blocks.
enum FreeTree {
    static let heightShift: UInt = 56
    static let largestMask: UInt = (1 << heightShift) - 1

    @inline(__always)
    static func largest(_ node: Block) -> UInt { node.isNone ? 0 : node.summary & largestMask }

    @inline(__always)
    static func height(_ node: Block) -> UInt { node.isNone ? 0 : node.summary >> heightShift }

    /// Recomputes `node`'s summary from its own size and its children's summaries.
    @inline(__always)
    static func refresh(_ node: Block) {
        let left = node.left
        let right = node.right
        let largestBelow = max(largest(left), largest(right))
        node.summary = max(node.size, largestBelow) | (1 + max(height(left), height(right))) << heightShift
    }

    // MARK: - Finding

    /// The lowest-addressed free block of at least `byteCount` bytes, or `.none`.
    @inline(__always)
    static func firstFit(_ byteCount: UInt, in root: Block) -> Block {
        guard largest(root) >= byteCount else { return .none }
        var node = root
        while true {
            let left = node.left
            if largest(left) >= byteCount {
                node = left
            } else if node.size >= byteCount {
                return node
            } else {
                // The summary promised a fit below `node`, and it is neither left nor here.
                node = node.right
            }
        }
    }

    /// The lowest-addressed free block in which `placement` finds room, with the block start it
    /// chose there. Subtrees whose largest block is under `byteCount` are skipped, but blocks that
    /// are big enough yet cannot be aligned are visited one by one, so this is O(log n + k) for k
    /// such blocks: it serves only alignments above 16.
    static func firstFit(
        _ byteCount: UInt, alignment: UInt, in node: Block
    ) -> (block: Block, start: UInt)? {
        guard largest(node) >= byteCount else { return nil }
        if let found = firstFit(byteCount, alignment: alignment, in: node.left) { return found }
        if node.size >= byteCount, let start = alignedStart(in: node, byteCount: byteCount, alignment: alignment) {
            return (node, start)
        }
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
            node.left = .none
            node.right = .none
            refresh(node)
            return node
        }
        if node.address < root.address {
            root.left = insert(node, into: root.left)
        } else {
            root.right = insert(node, into: root.right)
        }
        return rebalance(root)
    }

    /// Removes the node at `key`, which must be in the tree.
    static func remove(_ key: Block, from root: Block) -> Block {
        assert(!root.isNone, "bss-arena: removing a block that is not in the free tree")
        if key.address < root.address {
            root.left = remove(key, from: root.left)
        } else if key.address > root.address {
            root.right = remove(key, from: root.right)
        } else {
            let left = root.left
            let right = root.right
            if left.isNone { return right }
            if right.isNone { return left }
            let (successor, rest) = removeLowest(from: right)
            successor.left = left
            successor.right = rest
            return rebalance(successor)
        }
        return rebalance(root)
    }

    private static func removeLowest(from root: Block) -> (lowest: Block, rest: Block) {
        let left = root.left
        if left.isNone { return (root, root.right) }
        let (lowest, rest) = removeLowest(from: left)
        root.left = rest
        return (lowest, rebalance(root))
    }

    /// Puts `replacement` where `old` was, writing `header` as its header. The caller guarantees
    /// that no other free block lies between the two addresses, so the order is unchanged and no
    /// rotation is needed. `old`'s children are read before `header` is written, so the two nodes
    /// may overlap (a block shifted by 16 bytes).
    static func replace(_ old: Block, with replacement: Block, header: UInt, in root: Block) -> Block {
        if root == old {
            let left = old.left
            let right = old.right
            replacement.header = header
            replacement.left = left
            replacement.right = right
            refresh(replacement)
            return replacement
        }
        if old.address < root.address {
            root.left = replace(old, with: replacement, header: header, in: root.left)
        } else {
            root.right = replace(old, with: replacement, header: header, in: root.right)
        }
        refresh(root)
        return root
    }

    /// Recomputes the summaries from the root down to `key`, whose size has changed.
    static func refreshPath(to key: Block, in root: Block) {
        assert(!root.isNone, "bss-arena: resizing a block that is not in the free tree")
        if key.address < root.address {
            refreshPath(to: key, in: root.left)
        } else if key.address > root.address {
            refreshPath(to: key, in: root.right)
        }
        refresh(root)
    }

    /// Adds `headerDelta` to the header of the free block just below `key` (the highest address
    /// under it) and returns that block. Used when the block at `key` is freed and its lower
    /// neighbour is free: this finds the neighbour without a footer, in the same descent that
    /// updates the summaries above it.
    static func growPredecessor(of key: UInt, headerDelta: UInt, in root: Block) -> Block {
        if root.isNone { return .none }
        if root.address < key {
            var found = growPredecessor(of: key, headerDelta: headerDelta, in: root.right)
            if found.isNone {
                assert(root.end == key, "bss-arena: the free block below a freed block does not end where it starts")
                root.header &+= headerDelta
                found = root
            }
            refresh(root)
            return found
        }
        let found = growPredecessor(of: key, headerDelta: headerDelta, in: root.left)
        if !found.isNone { refresh(root) }
        return found
    }

    // MARK: - Balance

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
        refresh(node)
        return node
    }

    private static func rotateRight(_ node: Block) -> Block {
        let pivot = node.left
        node.left = pivot.right
        pivot.right = node
        refresh(node)
        refresh(pivot)
        return pivot
    }

    private static func rotateLeft(_ node: Block) -> Block {
        let pivot = node.right
        node.right = pivot.left
        pivot.left = node
        refresh(node)
        refresh(pivot)
        return pivot
    }
}
