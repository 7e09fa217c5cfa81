// The activation type of the native network: float32, contiguous, row-major
// (NCTHW for video activations), owned 64-byte-aligned memory plus a shape.
// Kept deliberately minimal: ops take raw pointers from it in their hot loops.

import Foundation

/// A contiguous float32 tensor. Activations are NCTHW `[N, C, T, H, W]`;
/// weights keep PyTorch layout (`[O, C/groups, kT, kH, kW]`, `[O, F]`, `[C]`).
///
/// Named `FloatTensor` so that it never collides with `Formats.Tensor`.
/// A reference type: `reshape` and in-place ops are visible to every holder.
public final class FloatTensor: @unchecked Sendable {
    /// Dimensions, outermost first.
    public private(set) var shape: [Int]
    /// Element count (the product of `shape`).
    public let count: Int
    /// The elements: `count` floats, valid only while this object is alive.
    /// Swift may release an object right after its last use, so never keep
    /// the pointer past the tensor's last use (`f(x).pointer[0]` reads freed
    /// memory); hold the tensor in a variable, or use `withExtendedLifetime`.
    public let pointer: UnsafeMutablePointer<Float>

    /// A tensor filled with zeros.
    public convenience init(zeros shape: [Int]) {
        self.init(uninitialized: shape)
        pointer.initialize(repeating: 0, count: count)
    }

    /// Where the storage goes back to on deinit (nil: freed).
    private let pool: TensorPool?
    /// Floats allocated behind `pointer` (>= count for pooled storage).
    let capacity: Int

    /// A tensor whose elements the caller writes before reading.
    public init(uninitialized shape: [Int]) {
        precondition(shape.allSatisfy { $0 >= 0 }, "negative dimension in \(shape)")
        self.shape = shape
        self.count = shape.reduce(1, *)
        let raw = UnsafeMutableRawPointer.allocate(byteCount: max(count, 1) * 4, alignment: 64)
        self.pointer = raw.bindMemory(to: Float.self, capacity: max(count, 1))
        self.capacity = max(count, 1)
        self.pool = nil
    }

    /// A tensor on storage lent by `pool`, returned to it on deinit.
    init(shape: [Int], pooled pointer: UnsafeMutablePointer<Float>, capacity: Int, pool: TensorPool) {
        self.shape = shape
        self.count = shape.reduce(1, *)
        precondition(count <= capacity)
        self.pointer = pointer
        self.capacity = capacity
        self.pool = pool
    }

    /// A tensor holding a copy of `values` (row-major).
    public convenience init(shape: [Int], values: [Float]) {
        self.init(uninitialized: shape)
        precondition(values.count == count, "\(values.count) values for shape \(shape) (\(count) elements)")
        values.withUnsafeBufferPointer { pointer.update(from: $0.baseAddress!, count: count) }
    }

    /// A tensor holding a copy of `count` floats at `source`.
    public convenience init(shape: [Int], copying source: UnsafePointer<Float>) {
        self.init(uninitialized: shape)
        pointer.update(from: source, count: count)
    }

    /// A tensor filled with `value`.
    public convenience init(shape: [Int], repeating value: Float) {
        self.init(uninitialized: shape)
        pointer.initialize(repeating: value, count: count)
    }

    deinit {
        if let pool { pool.recycle(pointer, capacity) } else { UnsafeMutableRawPointer(pointer).deallocate() }
    }

    public var rank: Int { shape.count }

    /// The elements as a new array (for tests and small outputs).
    public var values: [Float] { Array(UnsafeBufferPointer(start: pointer, count: count)) }

    /// A copy with its own storage.
    public func copy() -> FloatTensor { FloatTensor(shape: shape, copying: pointer) }

    /// Changes the shape in place, keeping the element order (a view, like `torch.reshape`).
    public func reshape(_ newShape: [Int]) {
        precondition(newShape.reduce(1, *) == count, "cannot reshape \(shape) to \(newShape)")
        shape = newShape
    }

    /// Element access by full index (slow; for tests and small tensors).
    public subscript(_ index: Int...) -> Float {
        get { pointer[flatIndex(index)] }
        set { pointer[flatIndex(index)] = newValue }
    }

    private func flatIndex(_ index: [Int]) -> Int {
        precondition(index.count == shape.count, "index \(index) for shape \(shape)")
        var flat = 0
        for (i, d) in zip(index, shape) {
            precondition(i >= 0 && i < d, "index \(index) out of bounds for shape \(shape)")
            flat = flat * d + i
        }
        return flat
    }

    /// Sets every element to `value`.
    public func fill(_ value: Float) { pointer.update(repeating: value, count: count) }
}

extension FloatTensor: CustomStringConvertible {
    public var description: String { "FloatTensor\(shape)" }
}

/// The five dimensions of an NCTHW activation.
public struct Shape5D: Equatable, Sendable, CustomStringConvertible {
    public var n, c, t, h, w: Int

    public init(n: Int, c: Int, t: Int, h: Int, w: Int) {
        (self.n, self.c, self.t, self.h, self.w) = (n, c, t, h, w)
    }

    public init(_ shape: [Int]) {
        precondition(shape.count == 5, "expected a 5-D NCTHW shape, got \(shape)")
        self.init(n: shape[0], c: shape[1], t: shape[2], h: shape[3], w: shape[4])
    }

    public var array: [Int] { [n, c, t, h, w] }
    /// Elements in one channel plane (T*H*W).
    public var plane: Int { t * h * w }
    public var spatial: Size3 { Size3(t, h, w) }
    public var description: String { "\(array)" }
}

extension FloatTensor {
    /// The shape as NCTHW; traps when the tensor is not 5-D.
    public var shape5D: Shape5D { Shape5D(shape) }
}

/// A (t, h, w) triple: kernel sizes, strides, paddings, dilations, extents.
/// An integer literal means the same value on all three axes.
public struct Size3: Equatable, Hashable, Sendable, ExpressibleByIntegerLiteral, CustomStringConvertible {
    public var t, h, w: Int

    public init(_ t: Int, _ h: Int, _ w: Int) { (self.t, self.h, self.w) = (t, h, w) }
    public init(integerLiteral value: Int) { self.init(value, value, value) }

    public var product: Int { t * h * w }
    public var array: [Int] { [t, h, w] }
    public var description: String { "(\(t), \(h), \(w))" }
}

/// PyTorch's output length of a convolution or pooling window along one axis:
/// `floor((L + 2p - d*(k-1) - 1) / s) + 1` (ceil_mode false).
@inline(__always)
public func windowOutputLength(_ length: Int, kernel: Int, stride: Int, padding: Int, dilation: Int = 1) -> Int {
    let span = length + 2 * padding - dilation * (kernel - 1) - 1
    // Floor division (span may be negative when the kernel does not fit).
    return (span >= 0 ? span / stride : -((-span + stride - 1) / stride)) + 1
}

/// Output extents of a window op on a (t, h, w) input.
public func windowOutputSize(_ input: Size3, kernel: Size3, stride: Size3, padding: Size3, dilation: Size3 = 1) -> Size3 {
    Size3(windowOutputLength(input.t, kernel: kernel.t, stride: stride.t, padding: padding.t, dilation: dilation.t),
          windowOutputLength(input.h, kernel: kernel.h, stride: stride.h, padding: padding.h, dilation: dilation.h),
          windowOutputLength(input.w, kernel: kernel.w, stride: stride.w, padding: padding.w, dilation: dilation.w))
}

/// Scratch memory reused across calls (im2col buffers, repacked weights),
/// in a few independent slots. Not thread-safe: one workspace per
/// concurrently running forward pass.
public final class Workspace: @unchecked Sendable {
    private var slots: [(pointer: UnsafeMutablePointer<Float>, capacity: Int)?] = []

    public init() {}

    deinit {
        for slot in slots { slot.map { UnsafeMutableRawPointer($0.pointer).deallocate() } }
    }

    /// At least `count` floats in slot `slot`, contents undefined; valid until
    /// the next request for the same slot.
    public func buffer(_ count: Int, slot: Int = 0) -> UnsafeMutablePointer<Float> {
        while slots.count <= slot { slots.append(nil) }
        if let held = slots[slot], held.capacity >= count { return held.pointer }
        slots[slot].map { UnsafeMutableRawPointer($0.pointer).deallocate() }
        let capacity = max(count, 1)
        let pointer = UnsafeMutableRawPointer.allocate(byteCount: capacity * 4, alignment: 64)
            .bindMemory(to: Float.self, capacity: capacity)
        slots[slot] = (pointer, capacity)
        return pointer
    }

    /// Bytes currently held.
    public var bytes: Int { slots.reduce(0) { $0 + ($1?.capacity ?? 0) * 4 } }
}

/// Recycles tensor storage across layers and training iterations: a tensor
/// taken from the pool returns its memory on deinit, and the next request of a
/// similar size reuses it (no allocation, no page faults after the first
/// iteration). Thread-safe. Tracks the bytes it holds and their peak.
public final class TensorPool: @unchecked Sendable {
    private var free: [(pointer: UnsafeMutablePointer<Float>, capacity: Int)] = []
    private let lock = NSLock()
    private var held = 0, inUse = 0, peakInUse = 0

    public init() {}

    deinit { for block in free { UnsafeMutableRawPointer(block.pointer).deallocate() } }

    /// A tensor of `shape`, contents undefined; the smallest free block that fits
    /// (and is at most 1/4 larger) is reused.
    public func take(_ shape: [Int]) -> FloatTensor {
        let count = max(1, shape.reduce(1, *))
        lock.lock()
        var best: Int?
        for (i, block) in free.enumerated() where block.capacity >= count && block.capacity <= count + count / 4 + 4096 {
            if best == nil || block.capacity < free[best!].capacity { best = i }
        }
        let block = best.map { free.remove(at: $0) }
        let capacity = block?.capacity ?? count
        if block == nil { held += capacity * 4 }
        inUse += capacity * 4
        peakInUse = max(peakInUse, inUse)
        lock.unlock()
        let pointer = block?.pointer ?? UnsafeMutableRawPointer.allocate(byteCount: count * 4, alignment: 64)
            .bindMemory(to: Float.self, capacity: count)
        return FloatTensor(shape: shape, pooled: pointer, capacity: capacity, pool: self)
    }

    /// A zero-filled tensor of `shape`.
    public func zeros(_ shape: [Int]) -> FloatTensor {
        let t = take(shape)
        t.fill(0)
        return t
    }

    fileprivate func recycle(_ pointer: UnsafeMutablePointer<Float>, _ capacity: Int) {
        lock.lock()
        free.append((pointer, capacity))
        inUse -= capacity * 4
        lock.unlock()
    }

    /// Frees the blocks no tensor is using.
    public func trim() {
        lock.lock()
        for block in free { UnsafeMutableRawPointer(block.pointer).deallocate() }
        held -= free.reduce(0) { $0 + $1.capacity * 4 }
        free.removeAll()
        lock.unlock()
    }

    /// Bytes allocated by the pool (in use or free).
    public var heldBytes: Int { lock.lock(); defer { lock.unlock() }; return held }
    /// The most bytes lent out at once.
    public var peakBytesInUse: Int { lock.lock(); defer { lock.unlock() }; return peakInUse }
}
