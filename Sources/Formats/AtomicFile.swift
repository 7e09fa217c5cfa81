// Atomic file output (SECURITY.md 29-30): write a temporary file in the target
// directory, fsync it, rename it over the target, fsync the directory. The
// output path holds either the old file or the complete new one, never a
// partial file; temporaries of killed runs are removed by the next run.

import CSys
import Foundation
#if canImport(Glibc)
import Glibc
#elseif canImport(Darwin)
import Darwin
#endif

public enum AtomicFile {
    /// A sink for the bytes of the new file.
    public final class Output {
        let fd: Int32
        let path: String
        public private(set) var written = 0
        init(fd: Int32, path: String) { self.fd = fd; self.path = path }

        public func write(_ buf: UnsafeRawBufferPointer) throws {
            guard var p = buf.baseAddress else { return }
            var left = buf.count
            if let stop = AtomicFile.faultKillAtByte { left = AtomicFile.faultBudget(left, stop: stop) }
            while left > 0 {
                let n = Glibc.write(fd, p, min(left, 1 << 30))
                if n < 0 {
                    if errno == EINTR { continue }
                    let code = errno
                    throw FormatError(.io, code == ENOSPC ? "disk full while writing" : "write failed: \(String(cString: strerror(code)))", file: path)
                }
                p += n
                left -= n
                written += n
            }
            if AtomicFile.faultKillAtByte != nil { AtomicFile.faultCheck() }
            startWriteback()
        }

        /// Writes `bytes`; ranges of a mapped file are copied by the kernel (copy_file_range),
        /// without touching them in this process.
        public func write(_ bytes: Bytes) throws {
            if let mf = bytes.owner as? MappedFile, var off = mf.fileOffset(of: bytes), Self.kernelCopy, AtomicFile.faultKillAtByte == nil {
                var left = bytes.count
                while left > 0 {
                    var inOff = Int64(off)
                    let n = sfnet_copy_file_range(mf.descriptor, &inOff, fd, left)
                    if n < 0 {
                        if errno == EINTR { continue }
                        if errno == ENOSPC { throw FormatError(.io, "disk full while writing", file: path) }
                        break // EXDEV, ENOSYS, EINVAL...: fall back to write()
                    }
                    if n == 0 { break }
                    off += n; left -= n; written += n
                }
                if left == 0 { startWriteback(); return }
                let done = bytes.count - left
                try withExtendedLifetime(bytes) { try write(UnsafeRawBufferPointer(rebasing: bytes.raw[done...])) }
                return
            }
            try withExtendedLifetime(bytes) { try write(bytes.raw) }
        }

        /// Flushes what was written so far to disk (the final fsync then has only later changes to write).
        public func sync() throws {
            if fsync(fd) != 0 { throw FormatError(.io, errno == ENOSPC ? "disk full while writing" : "fsync failed: \(String(cString: strerror(errno)))", file: path) }
        }

        /// Overwrites bytes already written at `offset` (fixed-size fields filled in at the end).
        public func patch(_ buf: UnsafeRawBufferPointer, at offset: Int) throws {
            guard offset >= 0, offset + buf.count <= written else { throw FormatError(.io, "patch outside the written file", file: path) }
            var done = 0
            while done < buf.count {
                let n = pwrite(fd, buf.baseAddress! + done, buf.count - done, off_t(offset + done))
                if n < 0 { if errno == EINTR { continue }; throw FormatError(.io, "write failed: \(String(cString: strerror(errno)))", file: path) }
                done += n
            }
        }

        public static let kernelCopy = ProcessInfo.processInfo.environment["SFNET_NO_COPY_FILE_RANGE"] == nil
        private var flushed = 0
        static let writebackStep = Int(ProcessInfo.processInfo.environment["SFNET_WRITEBACK_MB"] ?? "") .map { $0 << 20 } ?? (16 << 20)

        /// Starts disk writeback of every further 16 MB, so the final fsync has little left to do.
        private func startWriteback() {
            let step = Self.writebackStep
            if written - flushed >= step {
                _ = sfnet_start_writeback(fd, Int64(flushed), Int64(written - flushed))
                flushed = written
            }
        }
    }

    static let tempMarker = ".sfnet-tmp-"

    // MARK: fault injection (scripts/fault_inject.py)

    /// `SFNET_FAULT_KILL_AT_BYTE=N`: the process kills itself with SIGKILL once N bytes in all have
    /// gone into atomic outputs, in the middle of the write that reaches N. A test hook that lands
    /// kill -9 exactly inside checkpoint and report writes; unset, it costs one nil check per write.
    static let faultKillAtByte: Int? = ProcessInfo.processInfo.environment["SFNET_FAULT_KILL_AT_BYTE"].flatMap { Int($0) }.map { max($0, 0) }
    private static let faultLock = NSLock()
    nonisolated(unsafe) private static var faultWritten = 0

    /// How many of `count` bytes may still be written before the kill point.
    static func faultBudget(_ count: Int, stop: Int) -> Int {
        faultLock.lock(); defer { faultLock.unlock() }
        let allowed = max(0, min(count, stop - faultWritten))
        faultWritten += allowed
        if allowed == 0 && count > 0 { kill(getpid(), SIGKILL) }
        return allowed
    }

    /// Kills the process once the kill point has been reached.
    static func faultCheck() {
        faultLock.lock(); defer { faultLock.unlock() }
        if let stop = faultKillAtByte, faultWritten >= stop { kill(getpid(), SIGKILL) }
    }

    /// The temporary name used for `path` by process `pid`.
    static func tempPath(for path: String, pid: Int32) -> String {
        let url = URL(fileURLWithPath: path)
        let dir = url.deletingLastPathComponent().path
        return dir + "/." + url.lastPathComponent + tempMarker + "\(pid)-\(UInt32.random(in: 0 ... UInt32.max))"
    }

    /// Removes temporaries for `path` left by processes that no longer run.
    public static func cleanStaleTemporaries(for path: String) {
        let url = URL(fileURLWithPath: path)
        removeStaleTemporaries(in: url.deletingLastPathComponent().path, prefix: "." + url.lastPathComponent + tempMarker)
    }

    /// Removes the temporaries of every file in `directory` left by processes that no longer run
    /// (a job that may not rewrite each of its outputs calls this when it starts).
    public static func cleanStaleTemporaries(inDirectory directory: String) {
        removeStaleTemporaries(in: directory, prefix: ".")
    }

    /// Unlinks `directory`'s temporaries (`<prefix>...<tempMarker><pid>-<random>`) whose process is gone.
    private static func removeStaleTemporaries(in directory: String, prefix: String) {
        guard let names = try? FileManager.default.contentsOfDirectory(atPath: directory) else { return }
        for name in names where name.hasPrefix(prefix) {
            guard let marker = name.range(of: tempMarker, options: .backwards),
                  let pidText = name[marker.upperBound...].split(separator: "-").first, let pid = Int32(pidText) else { continue }
            if kill(pid, 0) != 0 && errno == ESRCH {
                unlink(directory + "/" + name)
            }
        }
    }

    /// SECURITY.md 29: refuses an existing `path` unless `overwrite`, and a directory always.
    /// `write` checks this itself; commands call it first to refuse before doing any work.
    public static func refuseExisting(_ path: String, overwrite: Bool) throws {
        var st = stat()
        guard stat(path, &st) == 0 else { return }
        if (st.st_mode & S_IFMT) == S_IFDIR { throw FormatError(.io, "output path is a directory", file: path) }
        if !overwrite { throw FormatError(.io, "output already exists; use --force to replace it", file: path) }
    }

    /// Runs `body` to produce the file's bytes, then publishes them at `path` atomically.
    /// Refuses an existing `path` unless `overwrite`; on any error the temporary is removed
    /// and an existing file at `path` is untouched.
    public static func write(to path: String, overwrite: Bool, mode: mode_t = 0o644, _ body: (Output) throws -> Void) throws {
        try refuseExisting(path, overwrite: overwrite)
        cleanStaleTemporaries(for: path)
        let tmp = tempPath(for: path, pid: getpid())
        let fd = open(tmp, O_WRONLY | O_CREAT | O_EXCL | O_CLOEXEC, mode)
        guard fd >= 0 else {
            throw FormatError(.io, "cannot create a temporary file in the output directory: \(MappedFile.errnoText(errno))", file: path)
        }
        var published = false
        defer {
            if !published { unlink(tmp) }
        }
        var isOpen = true
        do {
            let out = Output(fd: fd, path: path)
            try body(out)
            if fsync(fd) != 0 {
                let code = errno
                throw FormatError(.io, code == ENOSPC ? "disk full while writing" : "fsync failed: \(String(cString: strerror(code)))", file: path)
            }
            isOpen = false
            if close(fd) != 0 { throw FormatError(.io, "close failed: \(String(cString: strerror(errno)))", file: path) }
        } catch {
            if isOpen { close(fd) }
            throw error
        }
        if rename(tmp, path) != 0 {
            throw FormatError(.io, "cannot rename the temporary file into place: \(String(cString: strerror(errno)))", file: path)
        }
        published = true
        let dir = URL(fileURLWithPath: path).deletingLastPathComponent().path
        let dfd = open(dir, O_RDONLY | O_DIRECTORY | O_CLOEXEC)
        if dfd >= 0 { _ = fsync(dfd); close(dfd) }
    }
}
