// SHA-256 through OpenSSL's libcrypto EVP interface (uses the CPU's SHA extensions).

import CCrypto
import Foundation

public final class SHA256 {
    private let ctx: OpaquePointer

    public init() {
        ctx = EVP_MD_CTX_new()
        EVP_DigestInit_ex(ctx, EVP_sha256(), nil)
    }

    deinit { EVP_MD_CTX_free(ctx) }

    public func update(_ buf: UnsafeRawBufferPointer) {
        guard let base = buf.baseAddress, buf.count > 0 else { return }
        EVP_DigestUpdate(ctx, base, buf.count)
    }

    public func finalize() -> String {
        var digest = [UInt8](repeating: 0, count: 32)
        var n: UInt32 = 0
        EVP_DigestFinal_ex(ctx, &digest, &n)
        return digest.map { String(format: "%02x", $0) }.joined()
    }

    public static func hex(_ buf: UnsafeRawBufferPointer) -> String {
        let h = SHA256()
        h.update(buf)
        return h.finalize()
    }

    /// The digest of a file, streamed with read(2) through one 8 MB buffer: no page faults
    /// and no resident growth (a map would fault in every page of a 138 MB checkpoint).
    public static func hex(file path: String) throws -> String {
        let fd = open(path, O_RDONLY | O_CLOEXEC)
        guard fd >= 0 else { throw FormatError(.io, MappedFile.errnoText(errno), file: path) }
        defer { close(fd) }
        _ = posix_fadvise(fd, 0, 0, POSIX_FADV_SEQUENTIAL)
        let h = SHA256()
        let size = 8 << 20
        let buf = UnsafeMutableRawPointer.allocate(byteCount: size, alignment: 4096)
        defer { buf.deallocate() }
        while true {
            let n = read(fd, buf, size)
            if n < 0 { if errno == EINTR { continue }; throw FormatError(.io, "read failed: \(String(cString: strerror(errno)))", file: path) }
            if n == 0 { break }
            h.update(UnsafeRawBufferPointer(start: buf, count: n))
        }
        return h.finalize()
    }
}
