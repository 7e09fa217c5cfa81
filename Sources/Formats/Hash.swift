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

    /// The digest of a file, streamed through a map (pages released as it goes).
    public static func hex(file path: String) throws -> String {
        let m = try MappedFile(path: path)
        m.adviseSequential()
        let h = SHA256()
        let chunk = 8 << 20
        var off = 0
        while off < m.size {
            let part = m.bytes.slice(off, min(chunk, m.size - off))
            h.update(part.raw)
            part.releasePages()
            off += chunk
        }
        return h.finalize()
    }
}
