// A read-only memory map of an input file, with the checks of SECURITY.md 28:
// empty files, directories and unreadable files are refused with a clear error.

import Foundation
#if canImport(Glibc)
import Glibc
#elseif canImport(Darwin)
import Darwin
#endif

public final class MappedFile: ByteOwner, @unchecked Sendable {
    public let path: String
    public let size: Int
    private let base: UnsafeMutableRawPointer?
    private let modificationTime: timespec
    /// The open descriptor, kept for kernel-side copies (copy_file_range) of mapped ranges.
    public let descriptor: Int32

    public init(path: String) throws {
        self.path = path
        var st = stat()
        guard stat(path, &st) == 0 else {
            throw FormatError(.io, Self.errnoText(errno), file: path)
        }
        if (st.st_mode & S_IFMT) == S_IFDIR {
            throw FormatError(.io, "is a directory, expected a file", file: path)
        }
        if (st.st_mode & S_IFMT) != S_IFREG {
            throw FormatError(.io, "not a regular file", file: path)
        }
        let fd = open(path, O_RDONLY | O_CLOEXEC)
        guard fd >= 0 else { throw FormatError(.io, Self.errnoText(errno), file: path) }
        var fst = stat()
        guard fstat(fd, &fst) == 0 else { close(fd); throw FormatError(.io, Self.errnoText(errno), file: path) }
        let size = Int(fst.st_size)
        if size == 0 { close(fd); throw FormatError(.malformed, "empty file (0 bytes)", file: path) }
        self.descriptor = fd
        self.size = size
        #if canImport(Glibc)
        self.modificationTime = fst.st_mtim
        #else
        self.modificationTime = fst.st_mtimespec
        #endif
        let p = mmap(nil, size, PROT_READ, MAP_PRIVATE, fd, 0)
        guard let p, p != MAP_FAILED else {
            close(fd)
            throw FormatError(.io, "cannot map file: \(Self.errnoText(errno))", file: path)
        }
        self.base = p
    }

    deinit {
        if let base { munmap(base, size) }
        close(descriptor)
    }

    /// Where `bytes` (a slice of this map) starts in the file.
    public func fileOffset(of bytes: Bytes) -> Int? {
        guard let b = base, let p = bytes.raw.baseAddress, p >= UnsafeRawPointer(b), p + bytes.count <= UnsafeRawPointer(b) + size else { return nil }
        return p - UnsafeRawPointer(b)
    }

    public var bytes: Bytes { Bytes(UnsafeRawBufferPointer(start: base, count: size), owner: self) }

    /// Tells the kernel we will read the whole file sequentially (readahead).
    public func adviseSequential() {
        if let base { _ = madvise(base, size, MADV_SEQUENTIAL) }
    }

    /// Throws when the file changed (size or modification time) since it was mapped:
    /// an input changing while read is refused (SECURITY.md 28).
    public func checkUnchanged() throws {
        var st = stat()
        guard stat(path, &st) == 0 else { throw FormatError(.io, "file disappeared while being read", file: path) }
        #if canImport(Glibc)
        let m = st.st_mtim
        #else
        let m = st.st_mtimespec
        #endif
        if Int(st.st_size) != size || m.tv_sec != modificationTime.tv_sec || m.tv_nsec != modificationTime.tv_nsec {
            throw FormatError(.io, "file changed while being read", file: path)
        }
    }

    static func errnoText(_ code: Int32) -> String {
        switch code {
        case EACCES, EPERM: return "permission denied"
        case ENOENT: return "no such file"
        default: return String(cString: strerror(code))
        }
    }
}

extension Bytes {
    /// Drops the pages behind these bytes from this process's memory when they
    /// come from a mapped file (they are re-read from the page cache if touched
    /// again), so reading a large checkpoint does not grow resident memory.
    public func releasePages() {
        guard owner is MappedFile, let base = raw.baseAddress, count > 0 else { return }
        let page = UInt(sysconf(Int32(_SC_PAGESIZE)))
        let start = UInt(bitPattern: base) & ~(page - 1)
        let end = UInt(bitPattern: base + count)
        _ = madvise(UnsafeMutableRawPointer(bitPattern: start), Int(end - start), MADV_DONTNEED)
    }
}
