// Activation memory of the forward pass: buffers recycled through a pool (a
// second forward of the same shapes allocates nothing and takes no page
// faults), and NCTHW views into them, so that a stage can write its output
// straight into the channels of the concatenation that follows it.

import Foundation

/// Reuses activation buffers across layers and forward passes. Thread-safe.
final class BufferPool: @unchecked Sendable {
    private var free: [(pointer: UnsafeMutablePointer<Float>, capacity: Int)] = []
    private let lock = NSLock()

    deinit {
        for block in free { UnsafeMutableRawPointer(block.pointer).deallocate() }
    }

    /// A buffer of at least `count` floats, contents undefined. The smallest free
    /// block that fits is reused unless it is more than twice too large.
    func take(_ count: Int) -> ActBuffer {
        let count = max(count, 1)
        lock.lock()
        var best: Int?
        for (i, block) in free.enumerated() where block.capacity >= count && block.capacity <= 2 * count + (1 << 16) {
            if best == nil || block.capacity < free[best!].capacity { best = i }
        }
        let block = best.map { free.remove(at: $0) }
        lock.unlock()
        if let block { return ActBuffer(pointer: block.pointer, capacity: block.capacity, pool: self) }
        let pointer = UnsafeMutableRawPointer.allocate(byteCount: count * 4, alignment: 64)
            .bindMemory(to: Float.self, capacity: count)
        return ActBuffer(pointer: pointer, capacity: count, pool: self)
    }

    fileprivate func recycle(_ pointer: UnsafeMutablePointer<Float>, _ capacity: Int) {
        lock.lock()
        free.append((pointer, capacity))
        lock.unlock()
    }

    /// Bytes held in free blocks.
    var freeBytes: Int {
        lock.lock()
        defer { lock.unlock() }
        return free.reduce(0) { $0 + $1.capacity * 4 }
    }
}

/// Memory behind activations: from a pool (returned to it when released) or
/// borrowed from a caller's tensor (kept alive, never freed here).
final class ActBuffer: @unchecked Sendable {
    let pointer: UnsafeMutablePointer<Float>
    let capacity: Int
    private let pool: BufferPool?
    private let owner: AnyObject?

    fileprivate init(pointer: UnsafeMutablePointer<Float>, capacity: Int, pool: BufferPool) {
        (self.pointer, self.capacity, self.pool, self.owner) = (pointer, capacity, pool, nil)
    }

    init(borrowing tensor: FloatTensor) {
        (pointer, capacity, pool, owner) = (tensor.pointer, tensor.count, nil, tensor)
    }

    deinit { pool?.recycle(pointer, capacity) }
}

/// An NCTHW view: channel planes of one sample are contiguous (`plane` apart),
/// samples are `sampleStride` floats apart (more than C*plane for a view of
/// some channels of a wider tensor).
struct Act {
    let buffer: ActBuffer
    /// Floats from the buffer's start to element (0, 0, 0, 0, 0).
    let offset: Int
    let shape: Shape5D
    let sampleStride: Int

    /// A fresh contiguous activation from `pool`.
    init(_ pool: BufferPool, _ shape: Shape5D) {
        self.init(buffer: pool.take(shape.n * shape.c * shape.plane), offset: 0, shape: shape,
                  sampleStride: shape.c * shape.plane)
    }

    init(buffer: ActBuffer, offset: Int, shape: Shape5D, sampleStride: Int) {
        precondition(offset + max(0, shape.n - 1) * sampleStride + shape.c * shape.plane <= buffer.capacity,
                     "activation view \(shape) outside its buffer")
        (self.buffer, self.offset, self.shape, self.sampleStride) = (buffer, offset, shape, sampleStride)
    }

    /// Views a caller's 5-D tensor (or a 4-D (N, C, H, W) one as T = 1) without copying.
    init(borrowing tensor: FloatTensor, as shape: Shape5D) {
        precondition(shape.n * shape.c * shape.plane == tensor.count)
        self.init(buffer: ActBuffer(borrowing: tensor), offset: 0, shape: shape, sampleStride: shape.c * shape.plane)
    }

    var plane: Int { shape.plane }
    var base: UnsafeMutablePointer<Float> { buffer.pointer + offset }
    /// Channel 0 of sample `n`.
    func sample(_ n: Int) -> UnsafeMutablePointer<Float> { buffer.pointer + offset + n * sampleStride }

    /// Channels `range` of this view.
    func channels(_ range: Range<Int>) -> Act {
        precondition(range.lowerBound >= 0 && range.upperBound <= shape.c)
        var s = shape
        s.c = range.count
        return Act(buffer: buffer, offset: offset + range.lowerBound * plane, shape: s, sampleStride: sampleStride)
    }

    /// Whether both views cover the same memory with the same layout.
    func sameMemory(_ other: Act) -> Bool {
        buffer === other.buffer && offset == other.offset && sampleStride == other.sampleStride && shape == other.shape
    }

    /// A contiguous copy as an owned tensor.
    func tensor() -> FloatTensor {
        let out = FloatTensor(uninitialized: shape.array)
        let size = shape.c * plane
        withExtendedLifetime(buffer) {
            for n in 0..<shape.n { (out.pointer + n * size).update(from: sample(n), count: size) }
        }
        return out
    }
}
