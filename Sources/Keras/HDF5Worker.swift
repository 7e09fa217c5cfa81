// libhdf5 in a worker process (SECURITY.md 26). The parent re-executes the sfnet
// binary as `sfnet _hdf5-worker FILE OUTPUT LIMITS...`; the worker first limits
// itself (address space, CPU time, file size, no core dumps) and only then lets
// libhdf5 see the file, and writes the weights as a safetensors file into a
// private directory the parent created. The parent enforces a wall-clock limit
// (SIGKILL on expiry), validates everything it reads back (sizes are never taken
// from the worker on trust), and turns any failure — crash, signal, limit,
// non-zero exit, malformed output — into "malformed HDF5 file: PATH (reason)".

import Foundation
import Formats

/// Resource limits of one worker run.
public struct HDF5WorkerLimits: Sendable {
    /// RLIMIT_AS of the worker (bytes of address space, runtime and libraries included).
    public var addressSpace: Int
    /// RLIMIT_CPU (seconds of CPU time).
    public var cpuSeconds: Int
    /// Wall-clock limit enforced by the parent.
    public var wallSeconds: Double
    /// What the file may declare.
    public var keras: KerasLimits

    /// Limits for a file of `size` bytes: 1 GiB of address space for the runtime plus twice
    /// the tensor budget; 20 s of CPU and 30 s of wall clock plus 1 s per 10 MB.
    public static func forFile(size: Int) -> HDF5WorkerLimits {
        let k = KerasLimits.forFile(size: size)
        let seconds = 20 + size / 10_000_000
        return HDF5WorkerLimits(addressSpace: (1 << 30) + 2 * k.maxTotalBytes, cpuSeconds: seconds,
                                wallSeconds: Double(seconds + 10), keras: k)
    }

    public init(addressSpace: Int, cpuSeconds: Int, wallSeconds: Double, keras: KerasLimits) {
        self.addressSpace = addressSpace
        self.cpuSeconds = cpuSeconds
        self.wallSeconds = wallSeconds
        self.keras = keras
    }
}

public enum HDF5Worker {
    /// The hidden subcommand that runs the worker.
    public static let subcommand = "_hdf5-worker"

    /// The error every worker failure becomes.
    public static func malformed(_ path: String, _ reason: String) -> FormatError {
        FormatError(.malformed, "malformed HDF5 file: \(path) (\(reason))")
    }

    // MARK: Worker side

    /// When `arguments` (the process's) ask for the worker, runs it and returns its exit
    /// status; nil otherwise. Call first thing in `main`, before anything else runs.
    public static func runIfRequested(_ arguments: [String]) -> Int32? {
        guard arguments.count >= 2, arguments[1] == subcommand else { return nil }
        let args = Array(arguments.dropFirst(2))
        guard args.count == 7, let aspace = Int(args[2]), let cpu = Int(args[3]), let maxTotal = Int(args[4]),
              let maxElements = Int(args[5]), let fsize = Int(args[6]) else {
            FileHandle.standardError.write(Data("usage: sfnet \(subcommand) FILE OUTPUT AS_BYTES CPU_SECONDS MAX_TOTAL MAX_ELEMENTS FSIZE\n".utf8))
            return 64
        }
        // Limits before the file is touched.
        func limit(_ resource: Int32, _ value: Int) -> Bool {
            var r = rlimit(rlim_cur: rlim_t(value), rlim_max: rlim_t(value))
            return setrlimit(__rlimit_resource_t(UInt32(resource)), &r) == 0
        }
        guard limit(Int32(RLIMIT_CORE.rawValue), 0), limit(Int32(RLIMIT_CPU.rawValue), cpu),
              limit(Int32(RLIMIT_FSIZE.rawValue), fsize), limit(Int32(RLIMIT_AS.rawValue), aspace) else {
            FileHandle.standardError.write(Data("cannot set resource limits\n".utf8))
            return 65
        }
        var limits = KerasLimits()
        limits.maxTotalBytes = maxTotal
        limits.maxElements = maxElements
        do {
            let weights = try HDF5File.read(path: args[0], limits: limits)
            let (items, metadata) = KerasFraming.encode(weights)
            try SafetensorsWriter.write(items, metadata: metadata, to: args[1], overwrite: false)
            return 0
        } catch {
            FileHandle.standardError.write(Data("\(error)\n".utf8))
            return 1
        }
    }

    // MARK: Parent side

    /// The weights of the Keras file at `path`, read by a worker run of `executable`
    /// (the sfnet binary). Every failure is `malformed(path, reason)`, except an input
    /// that cannot be opened at all (an I/O error naming the file).
    public static func read(path: String, executable: String, limits given: HDF5WorkerLimits? = nil) throws -> KerasWeights {
        var st = stat()
        guard stat(path, &st) == 0 else { throw FormatError(.io, "cannot open the file", file: path) }
        guard (st.st_mode & S_IFMT) == S_IFREG else { throw FormatError(.io, "not a regular file", file: path) }
        guard access(path, R_OK) == 0 else { throw FormatError(.io, "cannot read the file", file: path) }
        let size = Int(st.st_size)
        guard size > 0 else { throw FormatError(.malformed, "empty file", file: path) }
        let limits = given ?? .forFile(size: size)

        var template = Array((NSTemporaryDirectory() + "/sfnet-hdf5-XXXXXX").utf8CString)
        guard let dirPtr = mkdtemp(&template) else { throw FormatError(.io, "cannot create a temporary directory for the HDF5 worker") }
        let dir = String(cString: dirPtr)
        defer { try? FileManager.default.removeItem(atPath: dir) }
        let output = dir + "/weights.safetensors"
        let errPath = dir + "/stderr"
        let fsize = limits.keras.maxTotalBytes + (64 << 20)
        let arguments = [executable, subcommand, path, output, String(limits.addressSpace), String(limits.cpuSeconds),
                         String(limits.keras.maxTotalBytes), String(limits.keras.maxElements), String(fsize)]
        var env = ProcessInfo.processInfo.environment
        env["SFNET_KEEP_BLAS_KERNEL"] = "1"        // no OpenBLAS re-exec in the worker (BlasKernel.swift)
        env["OPENBLAS_NUM_THREADS"] = "1"          // no BLAS thread buffers under RLIMIT_AS
        env["SWIFT_BACKTRACE"] = "enable=no"       // a crash ends at once; the parent reports it
        env["HDF5_PLUGIN_PRELOAD"] = "::"          // libhdf5: load no filter plugins
        env["HDF5_USE_FILE_LOCKING"] = "FALSE"     // read-only files on read-only mounts

        // posix_spawn and waitpid rather than Foundation's Process: no monitoring thread is left
        // running in the parent, which usually exits right after reporting the worker's error.
        let pid = try spawn(arguments, environment: env, stderrPath: errPath)
        let deadline = Date().addingTimeInterval(limits.wallSeconds)
        var killed = false
        var status: Int32 = 0
        while true {
            let r = waitpid(pid, &status, WNOHANG)
            if r == pid { break }
            if r < 0 && errno != EINTR { throw FormatError(.io, "lost the HDF5 worker: \(String(cString: strerror(errno)))") }
            if !killed && Date() >= deadline {
                kill(pid, SIGKILL)
                killed = true
            }
            usleep(2_000)
        }

        if killed { throw malformed(path, "the reader exceeded its \(formatSeconds(limits.wallSeconds)) wall-clock limit and was killed") }
        let signaled = status & 0x7F != 0 && status & 0x7F != 0x7F
        if signaled {
            let sig = status & 0x7F
            let why = sig == SIGXCPU ? "its \(limits.cpuSeconds) s CPU limit" : sig == SIGXFSZ ? "its output size limit" : "signal \(sig) (\(signalName(sig)))"
            throw malformed(path, "the reader was stopped by \(why)")
        }
        let exitStatus = (status >> 8) & 0xFF
        if exitStatus != 0 {
            throw malformed(path, firstLine(of: errPath) ?? "the reader exited with status \(exitStatus)")
        }
        var after = stat()
        guard stat(path, &after) == 0, after.st_size == st.st_size, after.st_mtim.tv_sec == st.st_mtim.tv_sec,
              after.st_mtim.tv_nsec == st.st_mtim.tv_nsec, after.st_ino == st.st_ino else {
            throw FormatError(.io, "the file changed while it was read", file: path)
        }
        do {
            // The output is ours to validate: safetensors rules first, then the framing's.
            let ckpt = try CheckpointReader.read(path: output, as: .safetensors)
            return try KerasFraming.decode(ckpt, limits: limits.keras)
        } catch {
            throw malformed(path, "\(error)".replacingOccurrences(of: output + ": ", with: ""))
        }
    }

    /// Starts `arguments[0]` with `arguments`, `environment`, stdin and stdout on /dev/null and
    /// stderr into `stderrPath`; returns its pid.
    static func spawn(_ arguments: [String], environment: [String: String], stderrPath: String) throws -> pid_t {
        var actions = posix_spawn_file_actions_t()
        posix_spawn_file_actions_init(&actions)
        defer { posix_spawn_file_actions_destroy(&actions) }
        posix_spawn_file_actions_addopen(&actions, 0, "/dev/null", O_RDONLY, 0)
        posix_spawn_file_actions_addopen(&actions, 1, "/dev/null", O_WRONLY, 0)
        posix_spawn_file_actions_addopen(&actions, 2, stderrPath, O_WRONLY | O_CREAT | O_TRUNC, 0o600)
        let argv = arguments.map { strdup($0) } + [nil]
        let envp = environment.map { strdup("\($0.key)=\($0.value)") } + [nil]
        defer { for p in argv + envp { free(p) } }
        var pid: pid_t = 0
        let rc = posix_spawn(&pid, arguments[0], &actions, nil, argv, envp)
        guard rc == 0 else { throw FormatError(.io, "cannot start the HDF5 worker \(arguments[0]): \(String(cString: strerror(rc)))") }
        return pid
    }

    /// The first line the worker printed (bounded, control characters removed).
    static func firstLine(of path: String) -> String? {
        guard let h = FileHandle(forReadingAtPath: path) else { return nil }
        defer { try? h.close() }
        let data = h.readData(ofLength: 4096)
        let text = String(decoding: data, as: UTF8.self).split(separator: "\n").first.map(String.init) ?? ""
        let clean = String(text.unicodeScalars.filter { $0.value >= 0x20 && $0.value != 0x7F }.prefix(400).map(Character.init))
        return clean.isEmpty ? nil : clean
    }

    static func signalName(_ s: Int32) -> String {
        switch s {
        case SIGSEGV: return "SIGSEGV"
        case SIGABRT: return "SIGABRT"
        case SIGBUS: return "SIGBUS"
        case SIGILL: return "SIGILL"
        case SIGFPE: return "SIGFPE"
        case SIGTRAP: return "SIGTRAP"
        case SIGKILL: return "SIGKILL"
        default: return "signal"
        }
    }

    static func formatSeconds(_ s: Double) -> String { s == s.rounded() ? "\(Int(s)) s" : String(format: "%.3g s", s) }

    /// This process's executable (the sfnet binary when called from sfnet).
    public static var currentExecutable: String {
        if let p = try? FileManager.default.destinationOfSymbolicLink(atPath: "/proc/self/exe"), FileManager.default.isExecutableFile(atPath: p) { return p }
        return "/proc/self/exe"   // the binary was replaced or removed meanwhile: the kernel still has it
    }
}
