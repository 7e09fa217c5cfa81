// Atomic folder output (SECURITY.md 29-30, for outputs that are folders, such as a Hugging Face
// model folder): the files are written into a temporary folder beside the target, each synced,
// the folder synced, then renamed into place. An existing folder is replaced only with `overwrite`
// and only when it holds nothing but regular files (a model folder, not a tree someone keeps), by
// swapping the two atomically (renameat2 RENAME_EXCHANGE) and removing the old one, so the path
// holds either the old folder or the complete new one. Temporaries of killed runs are recognisably
// named (`.NAME.sfnet-tmp-PID-RANDOM`) and removed by the next run.

import CSys
import Foundation
#if canImport(Glibc)
import Glibc
#elseif canImport(Darwin)
import Darwin
#endif

public enum AtomicFolder {
    static let tempMarker = ".sfnet-tmp-"
    static let oldMarker = ".sfnet-old-"

    /// Refuses `path` when it is a file, or an existing folder without `overwrite`, or one
    /// `overwrite` may not replace (it holds subfolders, links or other non-regular entries).
    public static func refuseExisting(_ path: String, overwrite: Bool) throws {
        var st = stat()
        guard lstat(path, &st) == 0 else { return }
        guard (st.st_mode & S_IFMT) == S_IFDIR else {
            throw FormatError(.io, "output path exists and is not a folder (this export writes a folder)", file: path)
        }
        if !overwrite { throw FormatError(.io, "output folder already exists; use --force to replace it", file: path) }
        let names = (try? FileManager.default.contentsOfDirectory(atPath: path)) ?? []
        for name in names {
            var e = stat()
            guard lstat(path + "/" + name, &e) == 0, (e.st_mode & S_IFMT) == S_IFREG else {
                throw FormatError(.io, "output folder holds '\(name)', which is not a regular file: refusing to replace a folder "
                                  + "that is not a model folder, even with --force", file: path)
            }
        }
    }

    /// Runs `body` with a new empty folder to fill, then publishes it at `path` atomically.
    /// `body` writes plain files into the folder it is given (AtomicFile works there). On any error
    /// the temporary folder is removed and an existing folder at `path` is untouched.
    public static func write(to path: String, overwrite: Bool, _ body: (String) throws -> Void) throws {
        let url = URL(fileURLWithPath: path).standardizedFileURL
        let target = url.path, parent = url.deletingLastPathComponent().path, name = url.lastPathComponent
        try refuseExisting(target, overwrite: overwrite)
        cleanStale(in: parent, name: name)
        let tmp = parent + "/." + name + tempMarker + "\(getpid())-\(UInt32.random(in: 0 ... UInt32.max))"
        guard mkdir(tmp, 0o755) == 0 else {
            throw FormatError(.io, "cannot create a temporary folder beside the output: \(MappedFile.errnoText(errno))", file: path)
        }
        var published = false
        defer { if !published { removeTree(tmp) } }
        try body(tmp)
        try syncPath(tmp, file: path)

        var exists = stat()
        if lstat(target, &exists) != 0 {
            guard rename(tmp, target) == 0 else {
                throw FormatError(.io, "cannot rename the temporary folder into place: \(String(cString: strerror(errno)))", file: path)
            }
            published = true
        } else {
            try refuseExisting(target, overwrite: overwrite)  // it may have changed while the files were written
            if sfnet_rename_exchange(tmp, target) == 0 {
                published = true
                removeTree(tmp)  // now the old folder
            } else {
                // No RENAME_EXCHANGE here: move the old folder aside, the new one in, then drop the old.
                let aside = parent + "/." + name + oldMarker + "\(getpid())-\(UInt32.random(in: 0 ... UInt32.max))"
                guard rename(target, aside) == 0 else {
                    throw FormatError(.io, "cannot move the old folder aside: \(String(cString: strerror(errno)))", file: path)
                }
                guard rename(tmp, target) == 0 else {
                    let code = errno
                    _ = rename(aside, target)
                    throw FormatError(.io, "cannot rename the temporary folder into place: \(String(cString: strerror(code)))", file: path)
                }
                published = true
                removeTree(aside)
            }
        }
        try? syncPath(parent, file: path)
    }

    /// fsync of a folder (its entries) or file.
    static func syncPath(_ p: String, file: String) throws {
        let fd = open(p, O_RDONLY | O_CLOEXEC)
        guard fd >= 0 else { throw FormatError(.io, "cannot open \(p) to sync it: \(MappedFile.errnoText(errno))", file: file) }
        defer { close(fd) }
        if fsync(fd) != 0 && errno != EINVAL {
            throw FormatError(.io, errno == ENOSPC ? "disk full while writing" : "fsync failed: \(String(cString: strerror(errno)))", file: file)
        }
    }

    /// Removes a folder this module made: its regular files (and their temporaries), then the folder.
    static func removeTree(_ dir: String) {
        for name in (try? FileManager.default.contentsOfDirectory(atPath: dir)) ?? [] { unlink(dir + "/" + name) }
        rmdir(dir)
    }

    /// Removes `.NAME.sfnet-tmp-PID-*` / `.NAME.sfnet-old-PID-*` folders in `parent` whose process is gone.
    static func cleanStale(in parent: String, name: String) {
        guard let names = try? FileManager.default.contentsOfDirectory(atPath: parent) else { return }
        for entry in names where entry.hasPrefix("." + name + ".sfnet-") {
            let rest = entry.dropFirst(name.count + 1)
            guard rest.hasPrefix(tempMarker) || rest.hasPrefix(oldMarker),
                  let pid = Int32(rest.dropFirst(tempMarker.count).split(separator: "-").first ?? "") else { continue }
            var st = stat()
            guard lstat(parent + "/" + entry, &st) == 0, (st.st_mode & S_IFMT) == S_IFDIR else { continue }
            if kill(pid, 0) != 0 && errno == ESRCH { removeTree(parent + "/" + entry) }
        }
    }
}
